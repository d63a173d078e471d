"""``python -m benchmarks.train``: train on real multi-label data with xmargin's losses.

    python -m benchmarks.train --quick    # under 2 minutes on 2 CPU cores
    python -m benchmarks.train            # more epochs

A linear model and a small MLP (one hidden layer of 64 ReLU units) on CAL500 and bibtex, read
from ``../shared/data`` (a generated look-alike stands in, with a notice, when a file is
missing), with a fixed train/test split (75/25, seed 0). Each is trained with
``multilabel_margin_loss`` (targets as -1-padded index lists) and with
``multilabel_soft_margin_loss`` (multi-hot targets), by minibatch SGD with momentum, in each
framework present: NumPy (gradients from ``xmargin.value_and_grad``, backpropagated by hand),
torch (autograd through xmargin's op) and CuPy on a GPU. Same initial weights, same batches,
same hyper-parameters everywhere.

Reported on the test set, by scikit-learn's definitions: label ranking loss (the fraction of
(true, false) label pairs ordered wrongly, a tie counting as wrong), coverage error (how deep
in the ranking one must go to cover all true labels) and Hamming loss with a label predicted
when its score is > 0 (probability > 0.5 for the logistic loss); and precision@1/3/5
(:func:`xmargin.metrics.precision_at_k`, ties to the lower class index). Output: a table, a
PNG of the learning curves (test ranking loss per epoch) and ``train-<machine>[-quick].*`` in
``benchmarks/output`` (``benchmarks/results`` with ``--save``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._common import machine_name, out_dir, print_table, write_csv
from .data import Dataset, load, split

HIDDEN = 64
BATCH = 64
MOMENTUM = 0.9
LR = {"margin": 0.1, "soft": 1.0}  # tuned once on both data sets (linear and MLP alike)
LOSSES = {"margin": "multilabel_margin_loss", "soft": "multilabel_soft_margin_loss"}
# the runs of each model: (loss, negatives), the hinge with every negative (PyTorch's), with
# each row's k hardest (negatives=k), and with every negative weighted by inverse label
# frequency (neg_weight); the logistic loss for comparison
RUNS = [("margin", "all"), ("margin", "top-5"), ("margin", "top-20"), ("margin", "inv-freq"),
        ("soft", "all")]  # fmt: skip


def loss_options(loss: str, negatives: str, Y_train: np.ndarray) -> dict[str, Any]:
    """The loss's keyword arguments for a run (NumPy; moved to the framework by the caller).

    ``inv-freq``: v_j ∝ 1 / (n_j + 1) with n_j the training samples holding label j, scaled to
    mean 1 (the loss keeps its scale): a frequent label, as a negative, weighs less."""
    if loss != "margin" or negatives == "all":
        return {}
    if negatives.startswith("top-"):
        return {"negatives": int(negatives[4:])}
    v = 1.0 / (Y_train.sum(axis=0) + 1.0)
    return {"neg_weight": (v / v.mean()).astype(np.float32)}


# --------------------------------------------------------------------------------------------
# metrics (NumPy, on the test set)
# --------------------------------------------------------------------------------------------
def ranking_loss(scores: np.ndarray, Y: np.ndarray) -> float:
    """scikit-learn's label ranking loss: per sample, the fraction of (true, false) label
    pairs with the false one scored at least as high (a tie counts as wrong); samples with no
    such pair count 0."""
    from sklearn.metrics import label_ranking_loss

    return float(label_ranking_loss(Y, scores))


def metrics(scores: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    """The test-set metrics: scikit-learn's ranking loss, coverage error and Hamming loss (a
    label predicted where its score is > 0), xmargin's precision@k (scikit-learn has none for
    multi-label indicator targets)."""
    from sklearn.metrics import coverage_error, hamming_loss

    from xmargin.metrics import precision_at_k

    return {
        "ranking_loss": ranking_loss(scores, Y),
        "coverage": float(coverage_error(Y, scores)),
        "p@1": float(precision_at_k(scores, Y, 1)),
        "p@3": float(precision_at_k(scores, Y, 3)),
        "p@5": float(precision_at_k(scores, Y, 5)),
        "hamming@0": float(hamming_loss(Y.astype(bool), scores > 0)),
    }


# --------------------------------------------------------------------------------------------
# models and training
# --------------------------------------------------------------------------------------------
def init_params(d: int, labels: int, model: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def dense(fan_in, fan_out):
        return (rng.normal(size=(fan_in, fan_out)) * np.sqrt(1.0 / fan_in)).astype(np.float32)

    if model == "linear":
        return {"W": dense(d, labels), "b": np.zeros(labels, np.float32)}
    return {"W1": dense(d, HIDDEN), "b1": np.zeros(HIDDEN, np.float32),
            "W2": dense(HIDDEN, labels), "b2": np.zeros(labels, np.float32)}  # fmt: skip


@dataclass
class Problem:
    data: Dataset
    X_train: np.ndarray
    X_test: np.ndarray
    Y_train: np.ndarray
    Y_test: np.ndarray
    T_train: np.ndarray  # (n, K) -1-padded index targets, K = most labels in a sample
    batches: list[np.ndarray] = field(default_factory=list)


def prepare(ds: Dataset, epochs: int, seed: int = 0) -> Problem:
    import xmargin

    train, test = split(len(ds.X), seed=seed)
    X = ds.X.astype(np.float32)
    mu, sd = X[train].mean(axis=0), X[train].std(axis=0) + 1e-6  # standardise on train stats
    X = (X - mu) / sd
    width = int(ds.Y.sum(axis=1).max())
    T = xmargin.targets.from_multihot(ds.Y, width=width)
    rng = np.random.default_rng(seed + 1)
    batches = []
    for _ in range(epochs):  # the same batches for every framework
        order = rng.permutation(len(train))
        batches.append([order[i : i + BATCH] for i in range(0, len(order), BATCH)])
    return Problem(ds, X[train], X[test], ds.Y[train], ds.Y[test], T[train], batches)


def train_array(prob: Problem, model: str, loss: str, xp: Any, epochs: int, to_device, to_host,
                options: dict[str, Any]):  # fmt: skip
    """NumPy or CuPy: gradients from value_and_grad, backpropagated by hand, SGD + momentum."""
    import xmargin

    params = {
        k: to_device(v)
        for k, v in init_params(prob.X_train.shape[1], prob.Y_train.shape[1], model).items()
    }
    velocity = {k: xp.zeros_like(v) for k, v in params.items()}
    X, Xt = to_device(prob.X_train), to_device(prob.X_test)
    target = to_device(prob.T_train if loss == "margin" else prob.Y_train.astype(np.float32))
    vg = xmargin.value_and_grad(getattr(xmargin, LOSSES[loss]))
    kw = {k: (to_device(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    curve, times = [], []

    def forward(p, x):
        if model == "linear":
            return x @ p["W"] + p["b"], None
        h = xp.maximum(x @ p["W1"] + p["b1"], 0)
        return h @ p["W2"] + p["b2"], h

    for epoch in range(epochs):
        start = time.perf_counter()
        for idx in prob.batches[epoch]:
            i = to_device(idx)
            xb = X[i]
            scores, h = forward(params, xb)
            _, g = vg(scores, target[i], **kw)  # d loss / d scores
            if model == "linear":
                grads = {"W": xb.T @ g, "b": g.sum(axis=0)}
            else:
                gh = (g @ params["W2"].T) * (h > 0)
                grads = {"W2": h.T @ g, "b2": g.sum(axis=0), "W1": xb.T @ gh, "b1": gh.sum(axis=0)}
            for k in params:
                velocity[k] = MOMENTUM * velocity[k] + grads[k]
                params[k] = params[k] - LR[loss] * velocity[k]
        if xp.__name__.startswith("cupy"):
            xp.cuda.Device().synchronize()
        times.append(time.perf_counter() - start)
        curve.append(ranking_loss(to_host(forward(params, Xt)[0]), prob.Y_test))
    return to_host(forward(params, Xt)[0]), curve, times


def train_torch(prob: Problem, model: str, loss: str, epochs: int, device: str,
                options: dict[str, Any]):  # fmt: skip
    """torch: autograd through xmargin's losses, torch.optim.SGD with the same settings."""
    import torch

    import xmargin

    init = init_params(prob.X_train.shape[1], prob.Y_train.shape[1], model)
    params = {k: torch.tensor(v, device=device, requires_grad=True) for k, v in init.items()}
    opt = torch.optim.SGD(list(params.values()), lr=LR[loss], momentum=MOMENTUM, dampening=0.0)
    X = torch.tensor(prob.X_train, device=device)
    Xt = torch.tensor(prob.X_test, device=device)
    target = torch.tensor(
        prob.T_train if loss == "margin" else prob.Y_train.astype(np.float32), device=device
    )
    fn = getattr(xmargin, LOSSES[loss])
    kw = {k: (torch.tensor(v, device=device) if isinstance(v, np.ndarray) else v)
          for k, v in options.items()}  # fmt: skip

    def forward(x):
        if model == "linear":
            return x @ params["W"] + params["b"]
        return torch.relu(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]

    curve, times = [], []
    for epoch in range(epochs):
        start = time.perf_counter()
        for idx in prob.batches[epoch]:
            i = torch.as_tensor(idx, device=device)
            opt.zero_grad(set_to_none=True)
            fn(forward(X[i]), target[i], **kw).backward()
            opt.step()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        with torch.no_grad():
            curve.append(ranking_loss(forward(Xt).cpu().numpy(), prob.Y_test))
    with torch.no_grad():
        return forward(Xt).cpu().numpy(), curve, times


def frameworks(requested: list[str] | None) -> list[str]:
    found = ["numpy"]
    try:
        import torch

        found.append("torch")
        if torch.cuda.is_available():
            found.append("torch-cuda")
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            found.append("cupy")
    except Exception:
        pass
    return [f for f in found if requested is None or f in requested]


def plot(curves: dict, path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'xmargin[bench]')")
        return False
    panels = sorted({(d, m) for d, m, _, _, _ in curves})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    styles = {"numpy": "-", "torch": "--", "torch-cuda": ":", "cupy": "-."}
    for ax, (d, m) in zip(axes[0], panels, strict=True):
        for (dd, mm, loss, negs, fw), curve in curves.items():
            if (dd, mm) == (d, m):
                run = loss if negs == "all" else f"{loss} {negs}"
                ax.plot(range(1, len(curve) + 1), curve, styles.get(fw, "-"), label=f"{run} / {fw}",
                        color=f"C{RUNS.index((loss, negs))}")  # fmt: skip
        ax.set_title(f"{d}, {m}")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("test ranking loss")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="fewer epochs (< 2 min)")
    parser.add_argument("--epochs", type=int, help="epochs for every data set")
    parser.add_argument("--datasets", nargs="*", default=["CAL500", "bibtex"])
    parser.add_argument("--frameworks", nargs="*", help="numpy, torch, torch-cuda, cupy")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--save", action="store_true",
                        help="write to benchmarks/results (committed) instead of "
                        "benchmarks/output (ignored by git)")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.perf_counter()

    fws = frameworks(args.frameworks)
    rows, curves = [], {}
    for name in args.datasets:
        ds = load(name)
        print(ds.describe())
        epochs = (
            args.epochs
            or {"CAL500": 15 if args.quick else 60, "bibtex": 4 if args.quick else 20}[name]
        )
        prob = prepare(ds, epochs)
        for model in ("linear", "mlp"):
            for loss, negs in RUNS:
                options = loss_options(loss, negs, prob.Y_train)
                for fw in fws:
                    if fw == "numpy":
                        scores, curve, times = train_array(
                            prob, model, loss, np, epochs, np.asarray, np.asarray, options
                        )
                    elif fw == "cupy":
                        import cupy

                        scores, curve, times = train_array(
                            prob, model, loss, cupy, epochs, cupy.asarray, cupy.asnumpy, options
                        )
                    else:
                        scores, curve, times = train_torch(
                            prob, model, loss, epochs, "cuda" if fw == "torch-cuda" else "cpu",
                            options,
                        )  # fmt: skip
                    m = metrics(scores, prob.Y_test)
                    rows.append({"dataset": name, "model": model, "loss": LOSSES[loss],
                                 "negatives": negs if loss == "margin" else "-", "framework": fw,
                                 "epochs": epochs, "s_per_epoch": float(np.median(times)), **m})  # fmt: skip
                    curves[(name, model, loss, negs, fw)] = curve
                    print(f"  {name} {model} {LOSSES[loss]} ({negs}) {fw}: "
                          f"{np.median(times):.3f} s/epoch, ranking loss {m['ranking_loss']:.4f}, "
                          f"p@1 {m['p@1']:.3f}")  # fmt: skip
    print()
    print_table(rows, [("dataset", "data", ""), ("model", "model", ""), ("loss", "loss", ""),
                       ("negatives", "negatives", ""), ("framework", "framework", ""), ("s_per_epoch", "s/epoch", ".3f"),
                       ("ranking_loss", "rank loss", ".4f"), ("coverage", "coverage", ".1f"),
                       ("p@1", "p@1", ".3f"), ("p@3", "p@3", ".3f"), ("p@5", "p@5", ".3f"),
                       ("hamming@0", "hamming@0", ".4f")])  # fmt: skip
    if not args.no_save:
        name = machine_name("cpu")
        stem = f"train-{name}" + ("-quick" if args.quick else "")
        where = out_dir(args.save)
        write_csv(where / f"{stem}.csv", rows,
                  key=("dataset", "model", "loss", "negatives", "framework"))  # fmt: skip
        lines = ["| data | model | loss | negatives | framework | s/epoch | ranking loss | coverage | p@1 | p@3 | p@5 | Hamming (score > 0) |",
                 "|" + "---|" * 12]  # fmt: skip
        for r in rows:
            lines.append(f"| {r['dataset']} | {r['model']} | {r['loss']} | {r['negatives']} | {r['framework']} | "
                         f"{r['s_per_epoch']:.3f} | {r['ranking_loss']:.4f} | {r['coverage']:.1f} | "
                         f"{r['p@1']:.3f} | {r['p@3']:.3f} | {r['p@5']:.3f} | {r['hamming@0']:.4f} |")  # fmt: skip
        (where / f"{stem}.md").write_text("\n".join(lines) + "\n")
        saved = [f"{stem}.csv", f"{stem}.md"]
        if plot(curves, where / f"{stem}.png"):
            saved.append(f"{stem}.png")
        print("wrote " + ", ".join(f"benchmarks/{where.name}/{s}" for s in saved))
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
