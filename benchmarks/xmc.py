"""``python -m benchmarks.xmc``: the fused linear + hinge at extreme label counts.

    python -m benchmarks.xmc --quick          # C = 10**5 only (about a minute on 2 cores)
    python -m benchmarks.xmc                  # C = 10**5 and 10**6 (CPU); larger on a GPU
    python -m benchmarks.xmc --train          # the short training run (precision@k rising)

Synthetic extreme multi-label data: N = 256 rows, D = 256 features, labels drawn from a Zipf
law over C classes (popularity ∝ 1/(rank + 1)^1.1, ~5 labels per row, at least 1). Each
contender runs the loss's forward and backward with respect to hidden, weight and bias:

* ``fused``: :func:`xmargin.fused_linear_multilabel_margin_loss` (default chunks; the
  ``+top20`` row with ``negatives=20``);
* ``xmargin``: ``xmargin.multilabel_margin_loss(F.linear(h, W, b), t)`` with (N, K) targets;
* ``torch``: ``F.multilabel_margin_loss(F.linear(h, W, b), t_full)``, PyTorch's (N, C) int64
  targets (skipped where (N, C) would not fit the machine's memory budget).

Each measurement runs in a fresh subprocess (so that peak memory is that call's): wall time of
fwd+bwd (median, min–max of ``--rounds`` after one warm-up) and peak memory *beyond the inputs
and the parameter gradients* (which a training step holds either way; gradients are set to
None before each step, as ``optimizer.zero_grad()`` does, so the step's own gradient buffers
become ``.grad``): the peak over the measured rounds (after a warm-up round: compiled kernels
are not the loss's memory) minus the memory held before them and minus the gradients' size;
on the CPU the process's peak RSS (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``),
on a GPU ``torch.cuda.max_memory_allocated``. PyTorch's (N, C) int64 targets count as its
extra memory (the others take (N, K)). Output: a table,
``xmc-<machine>.csv``/``.md``/``.png`` in ``benchmarks/output`` (``benchmarks/results`` with
``--save``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from ._common import machine_name, out_dir, print_table, provenance, write_csv

N, D, LABELS = 256, 256, 5
CONTENDERS = ["fused", "fused+top20", "xmargin", "torch"]
TORCH_MEMORY_BUDGET = 0.6  # of the machine's memory: PyTorch's (N, C) path must fit in it


def zipf_targets(n: int, c: int, labels: float, seed: int = 0) -> np.ndarray:
    """(N, K) -1-padded label lists: ~``labels`` per row (Poisson, at least 1), classes drawn
    without repetition from a Zipf law over ``c`` classes."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, c + 1) ** 1.1
    pop /= pop.sum()
    # rng.choice(c, p=pop)'s own method (the same draws), with the CDF built once, not per call
    cdf = np.cumsum(pop)
    cdf /= cdf[-1]
    counts = np.maximum(1, rng.poisson(labels, n))
    t = -np.ones((n, int(counts.max())), np.int64)
    for i, m in enumerate(counts):
        row: set[int] = set()
        while len(row) < m:  # (the head of a Zipf law repeats: draw until m distinct)
            row.update(cdf.searchsorted(rng.random(m - len(row)), side="right").tolist())
        t[i, :m] = sorted(row)
    return t


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # (kB)
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the process's peak RSS (VmHWM) to its current RSS, which is returned (Linux:
    writing 5 to /proc/self/clear_refs); bytes."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_bytes("VmRSS")


def _peak_rss() -> int:
    """The process's peak RSS since the last reset, in bytes."""
    return _status_bytes("VmHWM")


def worker(contender: str, c: int, device: str, rounds: int) -> dict[str, Any]:
    """One contender at one C, in this (fresh) process: times and peak extra memory."""
    import torch
    import torch.nn.functional as F

    import xmargin

    torch.manual_seed(0)
    h = torch.randn(N, D, device=device, requires_grad=True)
    W = (torch.randn(c, D, device=device) * 0.05).requires_grad_()
    b = torch.zeros(c, device=device, requires_grad=True)
    t = torch.from_numpy(zipf_targets(N, c, LABELS)).to(device)
    if contender == "torch":  # PyTorch's layout: (N, C), -1 after the labels
        full = torch.full((N, c), -1, dtype=torch.int64, device=device)
        full[:, : t.shape[1]] = t

        def step():
            F.multilabel_margin_loss(F.linear(h, W, b), full).backward()
    elif contender == "xmargin":

        def step():
            xmargin.multilabel_margin_loss(F.linear(h, W, b), t).backward()
    else:
        negatives = 20 if contender == "fused+top20" else None

        def step():
            xmargin.fused_linear_multilabel_margin_loss(h, W, t, b, negatives=negatives).backward()

    gpu = device.startswith("cuda")
    step()  # warm-up: kernels compiled or loaded (their memory is not the loss's)
    for p in (h, W, b):
        p.grad = None  # (optimizer.zero_grad()'s default: the step's gradient becomes .grad)
    grad_bytes = sum(p.numel() * p.element_size() for p in (h, W, b))
    # the baseline: inputs (and caches); a step's peak is the baseline, its gradients (kept in
    # .grad, as a training step does either way) and the loss's extra memory
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_peak_rss()
    times = []
    for _ in range(rounds):
        for p in (h, W, b):
            p.grad = None
        start = time.perf_counter()
        step()
        if gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if gpu else _peak_rss()
    extra = peak - base - grad_bytes
    if contender == "torch":  # its (N, C) targets exist for this loss only ((N, K) for others)
        extra += full.numel() * full.element_size() - t.numel() * t.element_size()
    extra /= 2**20
    return {"ms": 1e3 * float(np.median(times)), "ms_min": 1e3 * min(times),
            "ms_max": 1e3 * max(times), "extra_mb": float(extra)}  # fmt: skip


def _fits(contender: str, c: int, device: str) -> str | None:
    """Why a contender is skipped at C (None: it runs)."""
    if contender != "torch" or device != "cpu":
        return None
    need = N * c * (8 + 4 + 4 + 4)  # targets int64, is_target, logits and their gradient
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > TORCH_MEMORY_BUDGET * have:
        return f"needs ~{need / 2**30:.1f} GiB for (N, C) arrays"
    return None


def run(classes: list[int], device: str, rounds: int) -> list[dict[str, Any]]:
    rows = []
    todo = [(c, name) for c in classes for name in CONTENDERS]
    for i, (c, name) in enumerate(todo, 1):
        why = _fits(name, c, device)
        bar = "#" * (20 * i // len(todo))
        print(f"\r[{bar:<20}] {i}/{len(todo)} {name} C={c}      ", end="", file=sys.stderr,
              flush=True)  # fmt: skip
        if why:
            rows.append({"classes": c, "contender": name, "skipped": why})
            continue
        # two fresh processes: the timed rounds with the default allocator, then one round
        # for memory with large blocks from mmap, returned to the system when freed, so that
        # RSS follows the live memory (glibc's heap keeps freed blocks: RSS would only grow;
        # but fresh pages cost page faults, hence not for the times)
        result: dict[str, Any] = {}
        for env, n_rounds, keys in ((None, rounds, ("ms", "ms_min", "ms_max")),
                                    ({"MALLOC_MMAP_THRESHOLD_": "65536"}, 1, ("extra_mb",))):  # fmt: skip
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.xmc", "--worker", name, str(c), "--device",
                 device, "--rounds", str(n_rounds)],
                capture_output=True, text=True, check=False,
                env=None if env is None else os.environ | env,
            )  # fmt: skip
            if out.returncode != 0:
                result = {"skipped": out.stderr.strip()[-200:]}
                break
            got = json.loads(out.stdout.splitlines()[-1])
            result.update({key: got[key] for key in keys})
        rows.append({"classes": c, "contender": name, **result})
    print(file=sys.stderr)
    for r in rows:  # ratios to the unfused torch path (or xmargin's where torch is skipped)
        ref = next((q for q in rows if q["classes"] == r["classes"] and "ms" in q
                    and q["contender"] == "torch"), None)  # fmt: skip
        if ref and "ms" in r:
            r["time_vs_torch"] = r["ms"] / ref["ms"]
            r["memory_vs_torch"] = r["extra_mb"] / max(ref["extra_mb"], 1e-9)
    return rows


# --------------------------------------------------------------------------------------------
# the training run
# --------------------------------------------------------------------------------------------
def train(c: int = 100_000, d: int = 64, n_train: int = 4096, n_test: int = 512,
          epochs: int = 5, negatives: int = 20) -> list[dict[str, Any]]:  # fmt: skip
    """A linear head trained with the fused loss and top-k negatives on synthetic extreme data
    whose labels follow the features: class j has a hidden embedding e_j; a row's features are
    the mean of its labels' embeddings plus noise. Reports test precision@1/3/5 per epoch."""
    import torch

    import xmargin
    import xmargin.nn
    from xmargin.metrics import precision_at_k

    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(c, d), dim=1)
    t_all = torch.from_numpy(zipf_targets(n_train + n_test, c, LABELS, seed=1))
    valid = t_all >= 0
    feats = (emb[t_all.clamp(min=0)] * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
    x_all = feats + 0.05 * torch.randn_like(feats)
    head = xmargin.nn.FusedLinearMultiLabelMarginLoss(d, c, negatives=negatives)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    x_test, t_test = x_all[n_train:], t_all[n_train:]
    y_test = xmargin.targets.to_multihot(t_test.numpy(), c)
    rows = []
    for epoch in range(epochs + 1):
        if epoch:
            start = time.perf_counter()
            for i in torch.randperm(n_train).split(256):
                opt.zero_grad(set_to_none=True)
                head(x_all[i], t_all[i]).backward()
                opt.step()
            took = time.perf_counter() - start
        with torch.no_grad():  # (test scores in chunks of rows: (512, C) at most)
            scores = head.logits(x_test).numpy()
        row = {"epoch": epoch, "s_per_epoch": took if epoch else 0.0}
        for k in (1, 3, 5):
            row[f"p@{k}"] = float(precision_at_k(scores, y_test, k))
        rows.append(row)
        print(f"  epoch {epoch}: p@1 {row['p@1']:.3f}  p@3 {row['p@3']:.3f}  "
              f"p@5 {row['p@5']:.3f}  ({row['s_per_epoch']:.1f} s)")  # fmt: skip
    return rows


def plot(rows: list[dict[str, Any]], path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'xmargin[bench]')")
        return False
    classes = sorted({r["classes"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(CONTENDERS)
    for i, name in enumerate(CONTENDERS):
        for ax, key, label in (
            (axes[0], "ms", "fwd+bwd ms"),
            (axes[1], "extra_mb", "peak extra MiB"),
        ):
            vals = [next((r.get(key, np.nan) for r in rows
                          if r["classes"] == c and r["contender"] == name), np.nan)
                    for c in classes]  # fmt: skip
            ax.bar(np.arange(len(classes)) + i * width, vals, width, label=name)
            ax.set_ylabel(label)
            ax.set_yscale("log")
            ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, [f"C={c:,}" for c in classes])
    axes[1].legend(fontsize=8)
    fig.suptitle(f"fused linear + hinge, N={N}, D={D}, ~{LABELS} Zipf labels per row")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.xmc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="C = 10**5 only")
    parser.add_argument("--classes", type=int, nargs="*", help="class counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="the short training run instead")
    parser.add_argument("--save", action="store_true", help="write to benchmarks/results")
    parser.add_argument("--worker", nargs=2, metavar=("CONTENDER", "C"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.device, args.rounds)))
        return 0
    where = out_dir(args.save)
    name = machine_name(args.device)
    if args.train:
        rows = train()
        write_csv(where / f"xmc-train-{name}.csv", rows, key=("epoch",))
        return 0
    gpu = args.device.startswith("cuda")
    classes = args.classes or ([100_000] if args.quick else
                               [100_000, 1_000_000] + ([4_000_000] if gpu else []))  # fmt: skip
    rows = run(classes, args.device, args.rounds)
    print_table(rows, [("classes", "C", ""), ("contender", "contender", ""), ("ms", "ms", ".1f"),
                       ("ms_min", "min", ".1f"), ("ms_max", "max", ".1f"),
                       ("extra_mb", "extra MiB", ".0f"), ("time_vs_torch", "time/torch", ".3f"),
                       ("memory_vs_torch", "mem/torch", ".4f"), ("skipped", "skipped", "")])  # fmt: skip
    prov = provenance(args.device)
    stem = f"xmc-{name}"
    write_csv(where / f"{stem}.csv", [r | prov for r in rows], key=("classes", "contender"))
    lines = ["| C | contender | fwd+bwd ms (min–max) | peak extra MiB | time / torch | memory / torch |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "ms" not in r:
            lines.append(f"| {r['classes']:,} | {r['contender']} | skipped: {r['skipped']} | | | |")
            continue
        lines.append(f"| {r['classes']:,} | {r['contender']} | {r['ms']:.0f} ({r['ms_min']:.0f}–"
                     f"{r['ms_max']:.0f}) | {r['extra_mb']:.0f} | {r.get('time_vs_torch', float('nan')):.3f} | "
                     f"{r.get('memory_vs_torch', float('nan')):.4f} |")  # fmt: skip
    (where / f"{stem}.md").write_text("\n".join(lines) + "\n")
    plot(rows, where / f"{stem}.png")
    print(f"wrote benchmarks/{where.name}/{stem}.csv, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
