"""The reference backend against PyTorch on the CPU: fwd+bwd of multilabel_margin_loss.

    python -m benchmarks.multilabel_hinge_cpu [--repeats R] [--shapes N,C,T ...]

Same float32 data for both, PyTorch's (N, C) -1-padded target layout. Parity is checked on that
data before timing, against PyTorch in float64 on the same values (xmargin compares exactly;
PyTorch's float32 kernel rounds margin − x_t + x_j, which flips a few near-ties at large T).
The two are timed in interleaved runs (so drifts in machine load hit both) and the median of
each is reported with the speed-up. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

GOALS = {(256, 1000, 5): 1.0, (256, 4000, 200): 20.0, (128, 4000, 2000): 100.0}


def make_problem(n: int, c: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores N(0, 1) and T distinct positives per row, in PyTorch's (N, C) target layout."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c)).astype(np.float32)
    target = np.full((n, c), -1, dtype=np.int64)
    target[:, :t] = np.argsort(rng.random((n, c)), axis=1)[:, :t]
    return x, target


def fwd_bwd(fn, x, target):
    leaf = x.detach().clone().requires_grad_()
    loss = fn(leaf, target)
    loss.backward()
    return loss.detach(), leaf.grad


def measure(n: int, c: int, t: int, repeats: int) -> dict:
    import torch
    import torch.nn.functional as F

    import xmargin

    x_np, t_np = make_problem(n, c, t)
    x, target = torch.from_numpy(x_np), torch.from_numpy(t_np)
    ours = lambda a, b: xmargin.multilabel_margin_loss(a, b, backend="reference")  # noqa: E731
    loss_a, grad_a = fwd_bwd(ours, x, target)
    loss_b, grad_b = fwd_bwd(F.multilabel_margin_loss, x.double(), target)
    torch.testing.assert_close(loss_a.double(), loss_b, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad_a.double(), grad_b, rtol=1e-6, atol=1e-9)
    times: dict[str, list[float]] = {"torch": [], "reference": []}
    fwd_bwd(ours, x, target)  # warm-up (thread pool, caches)
    for _ in range(repeats):
        for name, fn in (("torch", F.multilabel_margin_loss), ("reference", ours)):
            start = time.perf_counter()
            fwd_bwd(fn, x, target)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    spread = {k: (min(v) * 1e3, max(v) * 1e3) for k, v in times.items()}
    return {
        "shape": (n, c, t),
        "ms": med,
        "spread": spread,
        "speedup": med["torch"] / med["reference"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multilabel_hinge_cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", nargs="*", default=None, help="N,C,T triples")
    args = parser.parse_args(argv)
    import torch

    shapes = (
        [tuple(int(v) for v in s.split(",")) for s in args.shapes] if args.shapes else list(GOALS)
    )
    print(
        f"multilabel_margin_loss fwd+bwd, float32, CPU, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), median of {args.repeats} interleaved runs"
    )
    print(
        f"{'N':>5} {'C':>6} {'T':>5} {'torch ms':>10} {'reference ms':>13} {'speed-up':>9} {'goal':>6}"
    )
    for shape in shapes:
        r = measure(*shape, repeats=args.repeats)
        goal = GOALS.get(shape)
        print(
            f"{shape[0]:>5} {shape[1]:>6} {shape[2]:>5} {r['ms']['torch']:>10.2f} "
            f"{r['ms']['reference']:>13.2f} {r['speedup']:>8.1f}x "
            f"{'' if goal is None else f'>={goal:g}x':>6}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
