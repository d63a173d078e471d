"""A short comparison of xmargin's multilabel_margin_loss with PyTorch's on the CPU.

    python -m benchmarks [--quick]

For each (N, C, T) shape it checks parity with ``torch.nn.functional.multilabel_margin_loss``
on the same data, then times forward+backward of both (interleaved runs, median) and prints a
table with the speed-up. The full benchmark suite grows from this script.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def make_problem(n: int, c: int, t: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c)).astype(np.float32)
    target = np.full((n, c), -1, dtype=np.int64)
    for i in range(n):
        target[i, :t] = rng.choice(c, size=t, replace=False)
    return x, target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    import xmargin

    torch.set_num_threads(max(1, torch.get_num_threads()))
    shapes = (
        [(64, 1000, 5), (64, 1000, 100)]
        if args.quick
        else [
            (256, 1000, 5),
            (256, 4000, 200),
            (128, 4000, 2000),
        ]
    )
    repeats = 3 if args.quick else 5
    print(f"multilabel_margin_loss, fwd+bwd, float32, CPU ({torch.get_num_threads()} threads)")
    print(f"{'N':>6} {'C':>6} {'T':>6} {'torch ms':>10} {'xmargin ms':>11} {'speed-up':>9}")
    for n, c, t in shapes:
        x, target = make_problem(n, c, t)
        xt, tt = torch.from_numpy(x), torch.from_numpy(target)

        def run(fn, xt=xt, tt=tt):
            leaf = xt.clone().requires_grad_()
            loss = fn(leaf, tt)
            loss.backward()
            return loss.detach(), leaf.grad

        ours, theirs = run(xmargin.multilabel_margin_loss), run(F.multilabel_margin_loss)
        torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours[1], theirs[1], rtol=1e-4, atol=1e-6)
        times: dict[str, list[float]] = {"torch": [], "xmargin": []}
        for _ in range(repeats):
            for name, fn in (
                ("torch", F.multilabel_margin_loss),
                ("xmargin", xmargin.multilabel_margin_loss),
            ):
                start = time.perf_counter()
                run(fn)
                times[name].append((time.perf_counter() - start) * 1e3)
        a, b = statistics.median(times["torch"]), statistics.median(times["xmargin"])
        print(f"{n:>6} {c:>6} {t:>6} {a:>10.2f} {b:>11.2f} {a / b:>8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
