"""Compile the Triton kernel for a CUDA architecture without a GPU (Triton's ahead-of-time
path: PTX via LLVM, then ptxas), for a few dtype/option variants, and report registers.

    python tests/tools/compile_triton.py 90 [80 ...]

Run by tests/test_triton.py in a subprocess without TRITON_INTERPRET (which would turn @jit
functions into interpreted ones).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from xmargin.backends import triton as tb  # noqa: E402

VARIANTS = [  # (scores, targets, P, HAS_WEIGHT, WANT_GRAD, HAS_SCALE)
    ("fp32", "i64", 1, False, True, False),
    ("fp32", "i64", 1, False, False, False),
    ("fp16", "i32", 2, True, True, True),
    ("bf16", "i64", 1, True, True, True),
    ("fp64", "i64", 2, False, True, False),
]


def signature(x: str, t: str, f: str) -> dict[str, str]:
    ptr = {
        "x_ptr": f"*{x}",
        "t_ptr": f"*{t}",
        "w_ptr": f"*{f}",
        "loss_ptr": f"*{f}",
        "grad_ptr": f"*{x}",
        "bits_ptr": "*i32",
        "ts_ptr": f"*{f}",
        "cls_ptr": "*i32",
        "pre_ptr": f"*{f}",
        "scale_ptr": f"*{f}",
    }
    sig = {}
    for name in tb._kernels().multilabel_hinge_kernel.arg_names:
        if name in ptr:
            sig[name] = ptr[name]
        elif name.startswith("stride"):
            sig[name] = "i64"
        elif name in ("words", "C", "K"):
            sig[name] = "i32"
        elif name == "margin":
            sig[name] = "fp32"
        else:
            sig[name] = "constexpr"
    return sig


def main(archs: list[int]) -> int:
    kernel = tb._kernels().multilabel_hinge_kernel
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    for arch in archs:
        for x, t, p, w, g, s in VARIANTS:
            f = "fp64" if x == "fp64" else "fp32"
            cfg = tb.launch_config(4096, 32768, 32768, x == "fp64")
            consts = {
                "P": p,
                "HAS_WEIGHT": w,
                "WANT_GRAD": g,
                "HAS_SCALE": s,
                "F": tl.float64 if f == "fp64" else tl.float32,
                "BLOCK_C": cfg["BLOCK_C"],
                "BLOCK_T": cfg["BLOCK_T"],
            }
            src = ASTSource(fn=kernel, signature=signature(x, t, f), constexprs=consts)
            out = triton.compile(
                src, target=GPUTarget("cuda", arch, 32), options={"num_warps": cfg["num_warps"]}
            )
            usage = ""
            if cuobjdump.exists():
                path = Path(f"/tmp/xmargin_sm{arch}.cubin")
                path.write_bytes(out.asm["cubin"])
                res = subprocess.run(
                    [str(cuobjdump), "-res-usage", str(path)], capture_output=True, text=True
                ).stdout
                usage = " ".join(line.strip() for line in res.splitlines() if "REG:" in line)
            print(f"sm_{arch} {x} targets={t} p={p} weight={w} grad={g} scale={s}: ok {usage}")
    return 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [90]))
