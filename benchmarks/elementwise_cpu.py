"""The element-wise losses and multi_margin_loss on the CPU against torch.nn.functional.

    python -m benchmarks.elementwise_cpu [--rounds R] [--inputs K] [--shape N C] [--losses ...]

For each loss, on the same float32 data: torch.nn.functional (one thread), xmargin on torch
tensors and on NumPy arrays, each through its compiled fast path ("fast") and through the
generic array-API path ("generic", what every call took before the fast paths), forward only
and forward + backward (torch autograd; ``xmargin.value_and_grad`` on NumPy). Every contender
runs once per round on each of K inputs, in rotating order, so that load drifts hit all of
them; the table gives the median and min–max per call and the ratio torch / contender (> 1:
faster than torch). xmargin's kernels run on one thread too (``XMARGIN_NUM_THREADS=1`` unless
``--xmargin-threads`` says otherwise). Parity against torch in float64 is checked on the same
data before timing. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

LOSSES = (
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multi_margin_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
)


def make_inputs(name: str, n: int, c: int, seed: int) -> tuple[list, list]:
    """(score arrays, other arguments) as float32/int64 NumPy arrays."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c)).astype(np.float32) * 2
    pm1 = np.where(rng.random((n, c)) < 0.5, -1.0, 1.0).astype(np.float32)
    if name == "soft_margin_loss" or name == "hinge_embedding_loss":
        return [np.abs(x) if name == "hinge_embedding_loss" else x], [pm1]
    if name == "multilabel_soft_margin_loss":
        return [x], [(pm1 + 1) / 2]
    if name == "multi_margin_loss":
        return [x], [rng.integers(0, c, size=n)]
    x2 = rng.normal(size=(n, c)).astype(np.float32) * 2
    return [x, x2], [pm1]


def contenders(name: str) -> dict[str, Callable]:
    """name -> f(scores, others, backward) running one call."""
    import torch.nn.functional as F

    import xmargin
    from xmargin._grad import _IMPLS

    public = getattr(xmargin, name)
    impl, _ = _IMPLS[public]
    ref = getattr(F, name)

    def torch_call(fn: Callable) -> Callable:
        def run(scores, others, backward):
            if backward:
                leaves = [s.detach().requires_grad_() for s in scores]
                fn(*leaves, *others).backward()
            else:
                fn(*scores, *others)

        return run

    def numpy_call(fast: bool) -> Callable:
        argnums = tuple(range(2 if name == "margin_ranking_loss" else 1))

        def run(scores, others, backward):
            if backward:
                impl(*scores, *others, argnums=argnums, fast=fast)
            elif fast:
                public(*scores, *others)
            else:
                impl(*scores, *others, fast=False)

        return run

    def generic_torch(*args):
        return impl(*args, fast=False)[0]

    return {
        "torch": torch_call(ref),
        "xm-torch fast": torch_call(public),
        "xm-torch generic": torch_call(generic_torch),
        "xm-numpy fast": numpy_call(True),
        "xm-numpy generic": numpy_call(False),
    }


def check_parity(name: str, scores: list, others: list) -> float:
    """Max relative error of xmargin (float32, torch and NumPy, value and gradient) against
    torch.nn.functional in float64."""
    import torch
    import torch.nn.functional as F

    import xmargin

    ref_in = [torch.from_numpy(s).double().requires_grad_() for s in scores]
    ref_others = [torch.from_numpy(o).double() if o.dtype.kind == "f" else torch.from_numpy(o)
                  for o in others]  # fmt: skip
    ref = getattr(F, name)(*ref_in, *ref_others)
    ref_grads = torch.autograd.grad(ref, ref_in)
    ours_in = [torch.from_numpy(s).requires_grad_() for s in scores]
    ours = getattr(xmargin, name)(*ours_in, *(torch.from_numpy(o) for o in others))
    grads = torch.autograd.grad(ours, ours_in)
    argnums = tuple(range(len(scores)))
    loss_np, grads_np = xmargin.value_and_grad(getattr(xmargin, name), argnums=argnums)(
        *scores, *others
    )
    worst = 0.0
    for a, b in [(ours, ref), (torch.as_tensor(loss_np), ref)] + [
        (g, r)
        for g, r in zip((*grads, *map(torch.as_tensor, grads_np)), ref_grads * 2, strict=True)
    ]:
        a, b = a.detach().double(), b.detach()
        scale = b.abs().max().clamp_min(1e-30)
        worst = max(worst, float((a - b).abs().max() / scale))
    return worst


def measure(name: str, n: int, c: int, rounds: int, n_inputs: int) -> list[dict]:
    import torch

    runs = contenders(name)
    data = []
    for k in range(n_inputs):
        scores, others = make_inputs(name, n, c, seed=k)
        data.append({
            "numpy": (scores, others),
            "torch": ([torch.from_numpy(s) for s in scores], [torch.from_numpy(o) for o in others]),
        })  # fmt: skip
    parity = check_parity(name, *data[0]["numpy"])
    rows = []
    for backward in (False, True):
        times: dict[str, list[float]] = {key: [] for key in runs}
        names = list(runs)
        for key in names:  # warm-up: compilation, caches, thread pool
            runs[key](*data[0]["torch" if "torch" in key else "numpy"], backward)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for d in data:
                for key in order:
                    args = d["torch" if "torch" in key else "numpy"]
                    start = time.perf_counter()
                    runs[key](*args, backward)
                    times[key].append(time.perf_counter() - start)
        med = {key: statistics.median(v) * 1e3 for key, v in times.items()}
        for key, v in times.items():
            rows.append({
                "loss": name, "pass": "fwd+bwd" if backward else "fwd", "contender": key,
                "ms": med[key], "min": min(v) * 1e3, "max": max(v) * 1e3,
                "vs_torch": med["torch"] / med[key], "parity": parity,
            })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.elementwise_cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--inputs", type=int, default=3, help="random inputs per loss")
    parser.add_argument("--shape", type=int, nargs=2, default=(4096, 1000), metavar=("N", "C"))
    parser.add_argument("--losses", nargs="*", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--xmargin-threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ["XMARGIN_NUM_THREADS"] = str(args.xmargin_threads)
    import torch

    torch.set_num_threads(1)
    n, c = args.shape
    print(
        f"element-wise losses, float32 ({n}, {c}), CPU, torch {torch.__version__} with 1 thread, "
        f"xmargin with {args.xmargin_threads}; {args.rounds} rounds x {args.inputs} inputs; "
        "median [min-max] ms per call; ratio = torch / contender"
    )
    print(f"{'loss':28s} {'pass':8s} {'contender':17s} {'ms':>8s} {'min-max':>17s} {'x torch':>8s}")
    for name in args.losses:
        rows = measure(name, n, c, args.rounds, args.inputs)
        for row in rows:
            print(
                f"{row['loss']:28s} {row['pass']:8s} {row['contender']:17s} {row['ms']:8.2f} "
                f"{row['min']:8.2f}-{row['max']:8.2f} {row['vs_torch']:8.2f}"
            )
        print(f"{name}: max relative error vs torch float64 (values, gradients) "
              f"{rows[0]['parity']:.1e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
