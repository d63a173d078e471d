"""Compile the Triton kernels ahead of time, without a GPU, exactly as the launcher would launch
them, and report what each compiled variant uses.

    python tests/tools/compile_triton.py 80 90        # one JSON object per line, per variant

For every case of ``CASES`` (real shapes, score and target dtypes, p, weight, gradient and
scale), ``xmargin.backends.triton.launch_plan`` builds the kernel's arguments on ``meta``
tensors (its real block sizes, warps and row split for an H100's 132 SMs, nothing allocated:
one kernel per row, or the split kernel and its finishing kernel), and Triton's own launch
logic turns each launch into a specialisation: the binder that ``JITFunction.run`` uses
(``triton.runtime.jit.create_function_from_signature``: integers equal to 1 become constexpr,
pointers and integers divisible by 16 get ``tt.divisibility``, the margin is typed by its
annotation) and ``JITFunction._pack_args`` (signature, constexprs, attributes, options). That
is compiled with ``triton.compile`` for ``GPUTarget("cuda", arch, 32)``; cases that Triton
would cache under one key are compiled once. Reported per variant: the margin parameter's PTX
type and whether the kernel loads it as such, registers, stack frame, local memory (spills)
and static shared memory (``cuobjdump -res-usage`` on the cubin), and the dynamic shared memory
Triton requests at launch (``metadata.shared``).

Run by tests/test_triton.py in a subprocess without TRITON_INTERPRET (which would turn @jit
functions into interpreted ones); ``specialise`` is also imported there (it needs no compiler).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SCORE_DTYPES = ("float16", "bfloat16", "float32", "float64")
# (N, C, K): the benchmark's GPU shapes (DESIGN.md §8) and the issue's
SHAPES = (
    (256, 1000, 5),
    (1024, 300, 10),
    (4096, 4096, 4),
    (4096, 4096, 16),
    (4096, 4096, 64),
    (4096, 4096, 256),
    (64, 10**6, 32),
    (256, 4000, 2000),
    # rows split across programs (N below the 264 program slots of 132 SMs, K <= BLOCK_T;
    # in this order every score dtype meets the split with p = 1 and with p = 2, float64 at
    # (64, 10**6, 32) and (32, 300000, 16): its BLOCK_T of 64 keeps K = 100 unsplit)
    (32, 300000, 16),
    (128, 200000, 100),
)
# (target dtype, p, weighted): the shapes of a score dtype take one each (in an order that
# rotates with the dtype), so that every score dtype meets every combination once
OPTIONS = tuple((t, p, w) for t in ("int64", "int32") for p in (1, 2) for w in (False, True))
# what the loss layer launches: the loss-only forward under autograd, the scaled gradient of
# backward and value_and_grad, and the raw gradient of a direct backend call
GRAD_MODES = (("loss", False, False), ("grad+scale", True, True), ("grad", True, False))


def cases() -> list[dict]:
    out = []
    for si, score in enumerate(SCORE_DTYPES):
        for hi, (n, c, k) in enumerate(SHAPES):
            target, p, weighted = OPTIONS[(hi + 3 * si) % len(OPTIONS)]
            for mode, want_grad, scaled in GRAD_MODES:
                out.append(
                    {"shape": [n, c, k], "scores": score, "targets": target, "p": p,
                     "weight": weighted, "mode": mode, "want_grad": want_grad, "scale": scaled}
                )  # fmt: skip
    return out


def jit_function(name: str = "multilabel_hinge_kernel"):
    """A kernel as a JITFunction (also when TRITON_INTERPRET=1 made it an interpreted one)."""
    from triton.runtime.jit import JITFunction

    from xmargin.backends import triton as tb

    kernel = getattr(tb._kernels(), name)
    return kernel if isinstance(kernel, JITFunction) else JITFunction(kernel.fn)


def launches(case: dict) -> list[tuple[str, tuple, tuple, dict]]:
    """The launches the launcher produces for ``case``, in order: (kernel name, grid, args,
    kwargs) (meta tensors: no memory)."""
    import torch

    from xmargin.backends import triton as tb

    n, c, k = case["shape"]
    x = torch.empty((n, c), dtype=getattr(torch, case["scores"]), device="meta")
    t = torch.empty((n, k), dtype=getattr(torch, case["targets"]), device="meta")
    acc = torch.float64 if case["scores"] == "float64" else torch.float32
    w = torch.empty((c,), dtype=acc, device="meta") if case["weight"] else None
    s = torch.empty((n,), dtype=acc, device="meta") if case["scale"] else None
    _, _, steps = tb.launch_plan(
        x, t, margin=0.1, p=case["p"], weight=w, want_grad=case["want_grad"], grad_scale=s
    )
    return [(name, grid, args, dict(kwargs)) for name, grid, args, kwargs in steps]


def launch_arguments(case: dict, step: int = 0) -> tuple[tuple, dict]:
    """The arguments of launch ``step`` of ``case``."""
    _, _, args, kwargs = launches(case)[step]
    return args, kwargs


def specialise(case: dict, arch: int, step: int = 0) -> dict:
    """Triton's launch-time specialisation of launch ``step`` of ``case`` for sm_<arch>: the
    steps of ``JITFunction.run`` up to the compile (binder, cache key, ``_pack_args``)."""
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import compute_cache_key, create_function_from_signature

    name, grid, args, kwargs = launches(case)[step]
    fn = jit_function(name)
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    kwargs["debug"] = kwargs.get("debug", fn.debug) or knobs.runtime.debug
    kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    kwargs["fpsan_homomorphic_casts"] = knobs.compilation.fpsan_homomorphic_casts
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    key = (name, compute_cache_key({}, specialization, options))
    options, signature, constexprs, attrs = fn._pack_args(
        backend, kwargs, bound, specialization, options
    )
    return {
        "kernel": name, "grid": grid, "key": key, "target": target, "signature": signature,
        "constexprs": constexprs, "attrs": attrs, "options": options,
    }  # fmt: skip


def _param_index(signature: dict, name: str) -> int:
    """The PTX parameter index of ``name``: constexpr arguments are not parameters."""
    return [k for k, v in signature.items() if v != "constexpr"].index(name)


def compile_variant(case: dict, arch: int, step: int = 0) -> dict:
    import triton
    from triton.compiler import ASTSource

    spec = specialise(case, arch, step)
    fn = jit_function(spec["kernel"])
    src = ASTSource(fn, spec["signature"], spec["constexprs"], spec["attrs"])
    out = triton.compile(src, target=spec["target"], options=spec["options"].__dict__)
    ptx = out.asm["ptx"]
    name = out.metadata.name
    decl, loads = None, []
    if "margin" in spec["signature"]:  # the finishing kernel has none
        idx = _param_index(spec["signature"], "margin")
        decl = re.search(rf"\.param \.(\w+) {name}_param_{idx}\b", ptx)
        loads = re.findall(rf"ld\.param\.(\w+)\s+%\w+,\s*\[{name}_param_{idx}\]", ptx)
    usage = _resource_usage(out.asm["cubin"])
    usage.update(_ptxas_report(ptx, arch, spec["options"]))
    sig = list(spec["signature"])
    return {
        "arch": arch, **case, "kernel": spec["kernel"], "step": step,
        "grid": list(spec["grid"]),
        "BLOCK_T": spec["constexprs"][(sig.index("BLOCK_T"),)],
        "BLOCK_C": spec["constexprs"][(sig.index("BLOCK_C"),)],
        "num_warps": spec["options"].num_warps, "maxnreg": spec["options"].maxnreg,
        "specialised": sorted(k for k, v in spec["signature"].items()
                              if v == "constexpr" and k.startswith(("stride", "K", "C"))),
        "margin_param": decl.group(1) if decl else None, "margin_loads": sorted(set(loads)),
        "dyn_shared": int(out.metadata.shared), **usage,
    }  # fmt: skip


def _resource_usage(cubin: bytes) -> dict:
    """REG, STACK, SHARED (static), LOCAL from cuobjdump -res-usage."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run(
            [str(tool), "-res-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
    found = dict(re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", text))
    return {k.lower(): int(v) for k, v in found.items()}


def _ptxas_report(ptx: str, arch: int, options) -> dict:
    """Registers, stack frame and spill bytes from ``ptxas -v`` run on the variant's PTX with
    the flags ``triton.compile`` gave it (CUDABackend.make_cubin: the ptxas of the arch,
    -lineinfo, --fmad=false without fp fusion, --regAllocOptLevel=2, the ptx_options)."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    fmad = [] if options.enable_fp_fusion else ["--fmad=false"]
    extra = options.ptx_options.split(" ") if options.ptx_options else []
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        cmd = [get_ptxas(arch).path, "-lineinfo", *fmad, "-v", "--regAllocOptLevel=2", *extra,
               f"--gpu-name={sm_arch_from_capability(arch)}", str(src), "-o", str(src) + ".o"]  # fmt: skip
        log = subprocess.run(cmd, capture_output=True, text=True, check=True)
    text = log.stdout + log.stderr
    frame = re.search(
        r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text
    )
    regs = re.search(r"Used (\d+) registers", text)
    return {
        "ptxas_regs": int(regs.group(1)), "stack_frame": int(frame.group(1)),
        "spill_stores": int(frame.group(2)), "spill_loads": int(frame.group(3)),
    }  # fmt: skip


def _job(item: tuple[dict, int, int]) -> dict:
    case, arch, step = item
    return compile_variant(case, arch, step)


def launch_items(selected: list[dict] | None = None) -> list[tuple[dict, int]]:
    """(case, step) for every launch of every case."""
    return [(case, i) for case in selected or cases() for i in range(len(launches(case)))]


def main(archs: list[int], selected: list[dict] | None = None) -> int:
    """Compile every distinct specialisation of every launch of ``cases()`` for each arch;
    print one JSON line per launch (launches sharing a specialisation share the compiled
    variant's numbers)."""
    jobs, owner = [], {}
    items = launch_items(selected)
    for arch in archs:
        for case, step in items:
            key = (arch, specialise(case, arch, step)["key"])
            if key not in owner:
                owner[key] = len(jobs)
                jobs.append((case, arch, step))
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_job, jobs))
    for arch in archs:
        for case, step in items:
            key = (arch, specialise(case, arch, step)["key"])
            row = dict(results[owner[key]])
            row.update(case, arch=arch, variant=owner[key])
            print(json.dumps(row), flush=True)
    print(f"# {len(jobs)} distinct variants compiled", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [80, 90]))
