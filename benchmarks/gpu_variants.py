"""Launch variants of the GPU kernels, timed side by side in one call: the tuning table.

    python -m benchmarks.gpu_variants [--shapes N,C,T ...] [--rep 30]

For each shape (float32 scores, (N, T) int64 targets, p = 1) and each variant of a backend's
launch, the raw backend ``hinge`` (no autograd, no reduction) is timed loss-only and with the
gradient (CUDA events around each call, L2 flushed before each; median over ``--rep``), with
GB/s against the bytes that must move and % of the measured copy bandwidth. Each variant's
loss and gradient are compared with the default variant's: ``same`` (bitwise), ``close``
(rounding: another summation order) or what differs; a variant that cannot launch says why.

Variants (the host heuristics they override are in the backends' modules):

* triton: the default plan; S (programs per row) forced to 1, 2, 4, 8, 16, 32; BLOCK_C of 256,
  512, 1024 with 4 or 8 warps;
* cupy: the default plan; the one-block kernel (no split); S forced to 2, 4, 8, 16, 32.

``--device cpu`` runs the script's code on the CPU (Triton through its interpreter, CuPy left
out) to check the script itself; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ._common import multilabel_problem, shape_triples, summary, time_cuda, time_interleaved
from .multilabel_hinge_gpu import copy_bandwidth

DEFAULT_SHAPES = [(4096, 4096, 64), (4096, 32768, 16), (64, 1_000_000, 32), (512, 100_000, 16)]
SPLITS = (1, 2, 4, 8, 16, 32)


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def triton_variants() -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """name -> a context in which the Triton launcher uses that variant."""
    from xmargin.backends import triton as tb

    real = tb.launch_config
    out: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
        "default": contextlib.nullcontext
    }
    for s in SPLITS:
        out[f"S={s}"] = lambda s=s: _patched(tb, "programs_per_row", lambda *a, **k: s)
    for block_c in (256, 512, 1024):
        for warps in (4, 8):

            def config(*args, block_c=block_c, warps=warps, **kwargs):
                cfg = dict(real(*args, **kwargs))
                if cfg["S"] > 1:  # the slice length is a whole number of chunks
                    unit = tb._slice_unit(block_c)
                    chunks = -(-args[1] // unit)  # args: (n, c, k, is_f64, sms)
                    cfg["SLICE"] = -(-chunks // cfg["S"]) * unit
                cfg.update(BLOCK_C=block_c, num_warps=warps,
                           maxnreg=min(255, 65536 // (tb.CTAS_PER_SM * 32 * warps)))  # fmt: skip
                return cfg

            out[f"BLOCK_C={block_c},warps={warps}"] = lambda config=config: _patched(
                tb, "launch_config", config
            )
    return out


def cupy_variants() -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """name -> a context in which the CuPy launcher uses that variant."""
    from xmargin.backends import cupy as cb

    out: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
        "default": contextlib.nullcontext,
        "one-block": lambda: _patched(cb, "slices", lambda *a: 0),
    }
    for s in SPLITS[1:]:
        out[f"S={s}"] = lambda s=s: _patched(cb, "slices", lambda *a, s=s: s)
    return out


def _compare(got: tuple, ref: tuple) -> str:
    import torch

    verdicts = []
    for a, b, what in zip(got, ref, ("loss", "grad"), strict=True):
        if a is None:
            continue
        if a.shape == b.shape and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)):
            verdicts.append("same")
        elif torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-6, equal_nan=True):
            verdicts.append("close")
        else:
            diff = (a.double() - b.double()).abs().max().item()
            verdicts.append(f"{what} differs by {diff:.3g}")
    return "same" if set(verdicts) == {"same"} else ", ".join(verdicts)


def run(shapes, backends: list[str], device: str, rep: int) -> list[dict[str, Any]]:
    from xmargin.backends import get

    timer = (lambda fn: summary(time_cuda(fn, warmup=3, rep=rep))) if device == "cuda" else (
        lambda fn: summary(x * 1e3 for x in time_interleaved({"f": fn}, repeats=2)["f"]))  # fmt: skip
    variants = {"triton": triton_variants, "cupy": cupy_variants}
    rows: list[dict[str, Any]] = []
    copy_gbps = copy_bandwidth(device, 1 << 30, timer) if device == "cuda" else float("nan")
    print(f"device-to-device copy: {copy_gbps:.0f} GB/s", flush=True)
    for n, c, t in shapes:
        x, full = multilabel_problem(n, c, t, device=device)
        target = full[:, :t].contiguous()  # (N, T): the layout for many classes
        del full
        for backend in backends:
            hinge = get(backend).load()
            ref: dict[bool, tuple] = {}
            for name, variant in variants[backend]().items():
                for want_grad in (False, True):
                    mode = "fwd+grad" if want_grad else "loss"
                    nbytes = n * c * 4 * (2 if want_grad else 1) + n * t * 8 + n * 4

                    def go(want_grad=want_grad, hinge=hinge, x=x, target=target):
                        return hinge(x, target, margin=1.0, p=1, weight=None,
                                     want_grad=want_grad)  # fmt: skip

                    try:
                        with variant():
                            out = go()
                            s = timer(go)
                    except Exception as exc:  # reported; the next variant runs
                        print(f"{(n, c, t)!s:>20} {backend:>6} {name:>22} {mode:>8} "
                              f"{type(exc).__name__}: {str(exc)[:100]}", flush=True)  # fmt: skip
                        continue
                    ref.setdefault(want_grad, out)
                    gbps = nbytes / (s["ms"] * 1e-3) / 1e9
                    row = {"backend": backend, "variant": name, "N": n, "C": c, "T": t,
                           "mode": mode, **s, "gbps": gbps, "pct_copy_bw": 100 * gbps / copy_gbps,
                           "matches_default": _compare(out, ref[want_grad])}  # fmt: skip
                    rows.append(row)
                    print(f"{(n, c, t)!s:>20} {backend:>6} {name:>22} {mode:>8} "
                          f"{s['ms'] * 1e3:9.1f} µs {gbps:7.0f} GB/s "
                          f"{row['pct_copy_bw']:4.0f}%  {row['matches_default']}", flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_variants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--shapes", nargs="*", help="N,C,T triples")
    parser.add_argument("--backends", nargs="*", help="default: triton and cupy where usable")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rep", type=int, default=30)
    args = parser.parse_args(argv)
    import torch

    import xmargin

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_variants: no CUDA device here (use --device cpu to check the script)")
        return 2
    shapes = shape_triples(args.shapes, DEFAULT_SHAPES)
    probe = torch.zeros(1, 1, device=args.device)
    usable = xmargin.backends.available(probe)
    backends = args.backends or [b for b in ("triton", "cupy") if b in usable]
    rows = run(shapes, backends, args.device, args.rep)
    best: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = (r["backend"], r["N"], r["C"], r["T"], r["mode"])
        if r["matches_default"] in ("same", "close") and (
            key not in best or r["ms"] < best[key]["ms"]
        ):
            best[key] = r
    print("\nfastest variant per shape (matching the default's results):")
    for (backend, n, c, t, mode), r in best.items():
        default = next((d for d in rows if d["variant"] == "default" and d["backend"] == backend
                        and (d["N"], d["C"], d["T"], d["mode"]) == (n, c, t, mode)), None)  # fmt: skip
        if default is None:  # the default launch failed (printed above): nothing to compare
            continue
        print(f"{(n, c, t)!s:>20} {backend:>6} {mode:>8}: {r['variant']:>22} "
              f"{r['ms'] * 1e3:9.1f} µs ({default['ms'] / r['ms']:.2f}x the default), "
              f"{r['pct_copy_bw']:.0f}% of copy bandwidth")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
