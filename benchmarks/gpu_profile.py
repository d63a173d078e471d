"""Where one call's time goes on a GPU: host or device.

    python -m benchmarks.gpu_profile [--shapes N,C,T ...] [--backends triton cupy]

For each shape, implementation (torch eager and xmargin's GPU backends) and mode (fwd,
fwd+bwd): the wall time per call (a host clock around a synchronized loop of calls), the
device time per call (the sum of the kernels, copies and fills CUPTI saw, through
``torch.profiler``), their ratio (busy: near 100% means the device is the limit, far under it
means the host is: Python, dispatch, launches), the launches per call and the costliest
kernels. This is what the event-timed benchmarks cannot tell apart: a CUDA event pair around a
call measures the host's gaps between its launches too.

``--device cpu`` runs the script's code on the CPU (Triton through its interpreter; no device
rows) to check the script itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from typing import Any

from ._common import multilabel_problem, shape_triples
from .suite import NARROW_TARGETS_MIN_C

DEFAULT_SHAPES = [(4096, 4096, 64), (4096, 32768, 16), (64, 1_000_000, 32), (4096, 4096, 4)]


def _device_events(prof) -> list[Any]:
    from torch.autograd import DeviceType

    return [e for e in prof.events() if e.device_type == DeviceType.CUDA]


def profile_call(go, device: str, calls: int = 10) -> dict[str, Any]:
    """Wall µs per call, device µs per call, launches per call, the top kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):  # compile, load, allocate
        go()
    sync()
    started = time.perf_counter()
    for _ in range(calls):
        go()
    sync()
    wall = (time.perf_counter() - started) / calls * 1e6
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            go()
        sync()
    per_kernel: dict[str, float] = defaultdict(float)
    for e in _device_events(prof):
        per_kernel[e.name] += e.time_range.elapsed_us() / calls
    busy = sum(per_kernel.values())
    launches = len(_device_events(prof)) / calls
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:3]
    return {"wall_us": wall, "device_us": busy, "launches": launches, "top": top}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--shapes", nargs="*", help="N,C,T triples")
    parser.add_argument("--backends", nargs="*", default=["triton", "cupy"])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    import torch
    import torch.nn.functional as F

    import xmargin

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_profile: no CUDA device here (use --device cpu to check the script)")
        return 2
    shapes = shape_triples(args.shapes, DEFAULT_SHAPES)
    impls = {"torch": F.multilabel_margin_loss}
    for b in args.backends:
        impls[b] = lambda a, y, b=b: xmargin.multilabel_margin_loss(a, y, backend=b)
    print(f"{'shape':>20} {'impl':>7} {'mode':>8} {'wall µs':>9} {'device µs':>9} {'busy':>5} "
          f"{'launch':>6}  costliest kernels (µs per call)")  # fmt: skip
    with xmargin.options(check_values=False):
        for n, c, t in shapes:
            x, full = multilabel_problem(n, c, t, device=args.device)
            # from 10^6 classes on xmargin gets (N, T) targets, PyTorch its (N, C) layout
            narrow = full[:, :t].contiguous() if c >= NARROW_TARGETS_MIN_C else full
            leaf = x.detach().clone().requires_grad_()
            for name, fn in impls.items():
                target = full if name == "torch" else narrow

                def fwd(fn=fn, x=x, target=target):
                    with torch.no_grad():
                        fn(x, target)

                def fwd_bwd(fn=fn, leaf=leaf, target=target):
                    leaf.grad = None
                    fn(leaf, target).backward()

                for mode, go in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
                    try:
                        r = profile_call(go, args.device)
                    except Exception as exc:  # reported, and the next one runs
                        print(f"{(n, c, t)!s:>20} {name:>7} {mode:>8} {type(exc).__name__}: "
                              f"{str(exc)[:120]}")  # fmt: skip
                        continue
                    busy = 100 * r["device_us"] / r["wall_us"]
                    top = ", ".join(f"{k[:40]} {v:.0f}" for k, v in r["top"])
                    print(f"{(n, c, t)!s:>20} {name:>7} {mode:>8} {r['wall_us']:9.0f} "
                          f"{r['device_us']:9.0f} {busy:4.0f}% {r['launches']:6.1f}  {top}",
                          flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
