"""GPU benchmark of the pairwise multilabel hinge: xmargin's GPU backends against torch CUDA
eager and torch.compile, side by side in one run.

    python -m benchmarks.multilabel_hinge_gpu [--shapes N,C,T ...] [--backends triton cupy]

For each (N, C, T) (default (4096, 4096, T) for T in 4, 16, 64, 256, and (4096, 32768, 16)),
with float32 scores and PyTorch's (N, C) target layout:

* parity first: each backend's loss and gradient against PyTorch eager in float64 on the same
  values (and torch.compile's, which is wrong with -1 targets in torch 2.13: reported, not
  fatal);
* fwd (loss only, no autograd) and fwd+bwd (``loss.backward()``) of torch eager,
  torch.compile and every backend, timed with CUDA events after warm-up, the L2 cache flushed
  before each run, median of ``--rep`` runs; xmargin runs with value checks off (no syncs);
* GB/s against the bytes that must move (read x and the target prefix, write the loss; fwd+bwd
  also writes the gradient), and that as a fraction of the device-to-device copy bandwidth
  measured in the same run.

Results: a table, and rows merged into ``benchmarks/results/<gpu>-multilabel_hinge_gpu.csv`` keyed by device,
backend, loss, shape and mode. ``--device cpu`` runs the same code on the CPU (Triton through
its interpreter) to check the script itself; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import (
    RESULTS,
    machine_name,
    multilabel_problem,
    print_table,
    shape_triples,
    summary,
    time_cuda,
    time_interleaved,
    write_csv,
)
from .suite import COMPILE_GPU_MAX_WORK, NARROW_TARGETS_MIN_C

DEFAULT_SHAPES = [
    (4096, 4096, 4),
    (4096, 4096, 16),
    (4096, 4096, 64),
    (4096, 4096, 256),
    (4096, 32768, 16),
]
GOALS = {  # (shape, mode) -> minimum speed-up over torch eager (issue 4)
    (4096, 4096, 64): 10.0,
    (4096, 4096, 4): 3.0,
}


def _timer(device: str, rep: int):
    if device == "cuda":
        return lambda fn: summary(time_cuda(fn, warmup=5, rep=rep))
    return lambda fn: summary(
        x * 1e3 for x in time_interleaved({"f": fn}, repeats=max(2, rep // 10))["f"]
    )


def copy_bandwidth(device: str, nbytes: int, timer) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written per second)."""
    import torch

    a = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    ms = timer(lambda: b.copy_(a))["ms"]
    return 2 * a.numel() * 4 / (ms * 1e-3) / 1e9


def parity(fn, x, target, ref_loss, ref_grad) -> str:
    """'ok', or what differs. Near-ties may flip one hinge count in float32 (PyTorch rounds
    margin − x_t + x_j in float32): allowed on at most 1e-4 of the gradient entries."""
    import torch

    leaf = x.detach().clone().requires_grad_()
    loss = fn(leaf, target)
    loss.backward()
    if not torch.allclose(loss.double(), ref_loss, rtol=1e-4, atol=1e-6):
        return f"loss {loss.item():.6g} != {ref_loss.item():.6g}"
    diff = (leaf.grad.double() - ref_grad).abs()
    step = 1.0 / (x.shape[0] * x.shape[1])  # one hinge count, after the mean over N and 1/C
    # float32 sums of many 1/(N·C) steps are coarse (PyTorch accumulates in float32); a
    # near-tie flips one count
    bad = diff > 2e-4 * ref_grad.abs() + 1e-3 * step
    flips = diff > 1.01 * step + 2e-4 * ref_grad.abs()
    if bad.float().mean().item() > 1e-4 or flips.any().item():
        return f"grad differs at {int(bad.sum())} entries (max {diff.max().item():.3g})"
    return "ok"


def run(shapes, backends, device: str, rep: int) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    import xmargin

    timer = _timer(device, rep)
    eager = F.multilabel_margin_loss
    compiled = torch.compile(F.multilabel_margin_loss)
    name = machine_name(device)
    rows: list[dict[str, Any]] = []
    copy_gbps = None
    for n, c, t in shapes:
        x, target = multilabel_problem(n, c, t, device=device)
        if copy_gbps is None:
            copy_gbps = copy_bandwidth(device, max(x.numel() * 4, 1 << 28), timer)
            print(f"device-to-device copy: {copy_gbps:.0f} GB/s")
        # the reference: PyTorch float64 on the CPU, as the suite's (on an H200, torch's CUDA
        # gradient, float64 too, differed from it at a few dozen entries where xmargin's agreed)
        leaf64 = x.double().cpu().requires_grad_()
        ref_loss = eager(leaf64, target.cpu())
        ref_loss.backward()
        ref_loss, ref_grad = ref_loss.detach().to(device), leaf64.grad.to(device)
        # from 10^6 classes on xmargin gets (N, T) targets, PyTorch its (N, C) layout (suite.py)
        narrow = target[:, :t].contiguous() if c >= NARROW_TARGETS_MIN_C else None

        def ours(b, narrow=narrow):
            return lambda a, y: xmargin.multilabel_margin_loss(
                a, y if narrow is None else narrow, backend=b
            )

        candidates = {"torch": eager}
        if n * c * c <= COMPILE_GPU_MAX_WORK:  # its (N, C, C) intermediate must fit
            candidates["torch.compile"] = compiled
        else:
            print(f"({n}, {c}, {t}): torch.compile left out (an (N, C, C) intermediate of "
                  f"{n * c * c * 4 / 2**30:.0f} GiB)")  # fmt: skip
        candidates.update({b: ours(b) for b in backends})
        checks = {}
        for k, fn in list(candidates.items()):
            try:
                checks[k] = parity(fn, x, target, ref_loss, ref_grad)
            except Exception as exc:  # a contender that cannot run is reported, not timed
                print(f"({n}, {c}, {t}) {k}: {type(exc).__name__}: {str(exc)[:200]}")
                del candidates[k]
        bytes_fwd = n * c * x.element_size() + n * max(t, 1) * target.element_size() + n * 4
        bytes_bwd = bytes_fwd + n * c * x.element_size()
        leaf = x.detach().clone().requires_grad_()

        def fwd(fn, x=x, target=target):
            def go():
                with torch.no_grad():
                    fn(x, target)

            return go

        def fwd_bwd(fn, leaf=leaf, target=target):
            def go():
                leaf.grad = None
                fn(leaf, target).backward()

            return go

        base: dict[str, float] = {}
        with xmargin.options(check_values=False):
            for mode, make, nbytes in (("fwd", fwd, bytes_fwd), ("fwd+bwd", fwd_bwd, bytes_bwd)):
                for k, fn in candidates.items():
                    s = timer(make(fn))
                    if k == "torch":
                        base[mode] = s["ms"]
                    gbps = nbytes / (s["ms"] * 1e-3) / 1e9
                    rows.append(
                        {
                            "device": name,
                            "backend": k,
                            "loss": "multilabel_margin_loss",
                            "N": n,
                            "C": c,
                            "T": t,
                            "mode": mode,
                            **s,
                            "speedup_vs_torch": base[mode] / s["ms"],
                            "gbps": gbps,
                            "pct_copy_bw": 100 * gbps / copy_gbps,
                            "parity": checks[k],
                        }
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.multilabel_hinge_gpu", description=__doc__
    )
    parser.add_argument("--shapes", nargs="*", help="N,C,T triples")
    parser.add_argument("--backends", nargs="*", help="xmargin backends (default: GPU ones usable)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rep", type=int, default=50)
    parser.add_argument("--no-csv", action="store_true")
    args = parser.parse_args(argv)
    import torch

    import xmargin

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (use --device cpu to check the script)")
        return 0
    shapes = shape_triples(args.shapes, DEFAULT_SHAPES)
    probe = torch.zeros(1, 1, device=args.device)
    backends = args.backends
    if backends is None:
        backends = [b for b in ("triton", "cupy") if b in xmargin.backends.available(probe)]
    rows = run(shapes, backends, args.device, args.rep)
    print_table(
        rows,
        [
            ("backend", "backend", ""),
            ("N", "N", "d"),
            ("C", "C", "d"),
            ("T", "T", "d"),
            ("mode", "mode", ""),
            ("ms", "ms", ".3f"),
            ("speedup_vs_torch", "vs torch", ".1f"),
            ("gbps", "GB/s", ".0f"),
            ("pct_copy_bw", "% copy", ".0f"),
            ("parity", "parity", ""),
        ],
    )
    for shape, goal in GOALS.items():
        for r in rows:
            if (r["N"], r["C"], r["T"]) == shape and r["backend"] in backends:
                print(
                    f"goal {shape} {r['mode']} {r['backend']}: >= {goal}x, measured {r['speedup_vs_torch']:.1f}x"
                )
    if not args.no_csv and args.device == "cuda":
        path = RESULTS / f"{rows[0]['device']}-multilabel_hinge_gpu.csv"  # beside the suite's
        write_csv(path, rows, key=("device", "backend", "loss", "N", "C", "T", "mode"))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
