"""The benchmark suite behind ``python -m benchmarks``: cases, implementations, parity, timing.

A *case* is one loss on one data set (scores and targets built once per device); an
*implementation* is one way to compute it (PyTorch eager, torch.compile, an xmargin backend,
xmargin on NumPy arrays). For every case the suite first checks each implementation against
PyTorch eager in float64 on the same values, then times ``fwd`` (the loss, no autograd) and
``fwd+bwd`` (the loss and its gradient: ``loss.backward()``, or ``value_and_grad`` on NumPy).
CPU timings interleave the implementations run by run; GPU timings use CUDA events, flush the
L2 cache before each run and rotate over several copies of the inputs.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._common import summary, time_cuda

GRID_FULL = [
    (256, 1000, 5),
    (256, 4000, 200),
    (256, 4000, 2000),
    (4096, 4096, 64),
    (64, 100000, 16),
    (64, 1000000, 32),  # extreme label counts (K << C)
]
SWEEP_FULL = {"N": 256, "C": 4000, "T": [5, 20, 50, 200, 2000]}
GRID_QUICK = [(256, 1000, 5), (64, 100000, 16)]
SWEEP_QUICK = {"N": 128, "C": 2000, "T": [2, 16, 128]}
GRID_GPU = [(4096, 4096, 4), (4096, 4096, 16), (4096, 4096, 64), (4096, 4096, 256), (4096, 32768, 16),
            (256, 4000, 2000), (64, 100000, 16), (64, 1000000, 32)]  # fmt: skip
SWEEP_GPU = {"N": 4096, "C": 4096, "T": [4, 16, 64, 256]}
OTHER_LOSSES = [
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multi_margin_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
]
# torch.compile lowers multilabel_margin_loss to an O(N·C²) computation: on the CPU only small
# problems finish in reasonable time
COMPILE_CPU_MAX_WORK = 3e8
# the portable backend sorts (N, 2C) rows: left out on the CPU beyond this many scores
PORTABLE_CPU_MAX_ELEMS = 2e7
# from this many classes on, xmargin gets (N, T) targets (K << C), PyTorch its (N, C) layout
NARROW_TARGETS_MIN_C = 10**6


@dataclass
class Case:
    loss: str
    label: str  # "grid", "sweep", "CAL500", "bibtex", "other"
    N: int
    C: int
    T: float  # mean positives per row (multilabel_margin_loss), else 0
    args: tuple  # torch tensors in float32: the loss's positional arguments
    kwargs: dict = field(default_factory=dict)
    bytes_fwd: int = 0  # what must move: inputs read, loss written
    bytes_grad: int = 0  # plus the gradient written
    xmargin_args: tuple | None = None  # for xmargin, when they differ (narrow (N, K) targets)


@dataclass
class Impl:
    name: str
    fwd: Callable[[], Any]
    fwd_bwd: Callable[[], Any]
    check: Callable[[], str]  # parity with PyTorch float64: "ok" or what differs


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------
def _targets_from_multihot(Y, width):
    import torch

    import xmargin

    return torch.from_numpy(xmargin.targets.from_multihot(Y, width=width))


def multilabel_cases(shapes, sweep, datasets, device: str, seed: int = 0) -> list[Case]:
    """The (N, C, T) grid, the T sweep at fixed (N, C) (labelled "sweep" unless also in the
    grid) and the real data sets' targets (random scores)."""
    import torch

    from ._common import multilabel_problem
    from .data import load

    swept = [(sweep["N"], sweep["C"], t) for t in sweep["T"]]
    cases = []
    for n, c, t in dict.fromkeys([*shapes, *swept]):  # ordered, without repeats
        x, target = multilabel_problem(n, c, t, device=device, seed=seed)
        label = "grid" if (n, c, t) in shapes else "sweep"
        narrow = (x, target[:, :t].contiguous()) if c >= NARROW_TARGETS_MIN_C else None
        cases.append(Case("multilabel_margin_loss", label, n, c, t, (x, target),
                          bytes_fwd=n * c * 4 + n * t * 8 + n * 4, bytes_grad=n * c * 4,
                          xmargin_args=narrow))  # fmt: skip
    for name in datasets:
        ds = load(name)
        n, c = ds.Y.shape
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, c, generator=g).to(device)
        target = _targets_from_multihot(ds.Y, c).to(device)
        t_mean = round(float(ds.labels_per_sample.mean()), 2)
        cases.append(Case("multilabel_margin_loss", name, n, c, t_mean, (x, target),
                          bytes_fwd=int(n * c * 4 + ds.Y.sum() * 8 + n * 4), bytes_grad=n * c * 4))  # fmt: skip
    return cases


def other_cases(n: int, c: int, device: str, seed: int = 0) -> list[Case]:
    import torch

    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device)

    def pm1(*shape):
        return (torch.randint(0, 2, shape, generator=g) * 2 - 1).float().to(device)

    b = n * c * 4
    return [
        Case("soft_margin_loss", "other", n, c, 0, (randn(n, c), pm1(n, c)), bytes_fwd=2 * b, bytes_grad=b),
        Case("multilabel_soft_margin_loss", "other", n, c, 0, (randn(n, c), (pm1(n, c) + 1) / 2),
             bytes_fwd=2 * b, bytes_grad=b),
        Case("multi_margin_loss", "other", n, c, 0, (randn(n, c), torch.randint(0, c, (n,), generator=g).to(device)),
             bytes_fwd=b + n * 8, bytes_grad=b),
        Case("hinge_embedding_loss", "other", n, c, 0, (randn(n, c), pm1(n, c)), {"margin": 0.5},
             bytes_fwd=2 * b, bytes_grad=b),
        Case("margin_ranking_loss", "other", n, c, 0, (randn(n, c), randn(n, c), pm1(n, c)), {"margin": 0.1},
             bytes_fwd=3 * b, bytes_grad=2 * b),
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# implementations
# --------------------------------------------------------------------------------------------
def _grad_args(case: Case) -> list[int]:
    return [0, 1] if case.loss == "margin_ranking_loss" else [0]


def _parity(fn, case: Case, ref, rtol: float = 2e-4) -> str:
    """Compare ``fn(*args)`` (loss, grads) with the float64 reference; float32 near-ties may
    flip one hinge count (PyTorch rounds margin - x_t + x_j in float32)."""
    import torch

    try:
        loss, grads = fn()
    except Exception as exc:  # an implementation that cannot run says so in the table
        return f"error: {type(exc).__name__}: {str(exc)[:60]}"
    ref_loss, ref_grads = ref
    loss = torch.as_tensor(loss).double().cpu()
    if not torch.allclose(loss, ref_loss, rtol=1e-4, atol=1e-6, equal_nan=True):
        return f"loss {loss.item():.6g} != {ref_loss.item():.6g}"
    for g, r in zip(grads, ref_grads, strict=True):
        g = torch.as_tensor(g).double().cpu()
        diff = (g - r).abs()
        step = r.abs().max().item() or 1.0
        if case.loss == "multilabel_margin_loss":
            step = 1.0 / (case.N * case.C)  # one hinge count after the mean and the 1/C
            # float32 sums of many 1/(N·C) steps are coarse (PyTorch accumulates in float32); a
            # near-tie flips one count
            bad = diff > rtol * r.abs() + 1e-3 * step
            flips = diff > 1.01 * step + rtol * r.abs()
            if bad.float().mean().item() > 1e-4 or flips.any().item():
                return f"grad differs at {int(bad.sum())} entries"
        elif not torch.allclose(g, r, rtol=1e-4, atol=1e-6 * step):
            return f"grad differs (max {diff.max().item():.3g})"
    return "ok"


def _reference(case: Case):
    import torch
    import torch.nn.functional as F

    args = [a.double() if a.is_floating_point() else a for a in case.args]
    leaves = [args[i].detach().cpu().requires_grad_() for i in _grad_args(case)]
    cpu_args = [a.cpu() for a in args]
    for i, leaf in zip(_grad_args(case), leaves, strict=True):
        cpu_args[i] = leaf
    loss = getattr(F, case.loss)(*cpu_args, **case.kwargs)
    grads = torch.autograd.grad(loss, leaves)
    return loss.detach(), [g.detach() for g in grads]


def _torch_impl(name: str, fn: Callable, case: Case, copies: list[tuple]) -> Impl:
    import torch

    grad_args = _grad_args(case)
    state = {"i": 0}

    def pick():
        state["i"] = (state["i"] + 1) % len(copies)
        return copies[state["i"]]

    def fwd():
        with torch.no_grad():
            return fn(*pick(), **case.kwargs)

    def fwd_bwd():
        args = list(pick())
        for i in grad_args:
            args[i] = args[i].detach().requires_grad_()
        fn(*args, **case.kwargs).backward()

    def run_once():
        args = list(copies[0])
        leaves = [args[i].detach().clone().requires_grad_() for i in grad_args]
        for i, leaf in zip(grad_args, leaves, strict=True):
            args[i] = leaf
        loss = fn(*args, **case.kwargs)
        return loss.detach(), torch.autograd.grad(loss, leaves)

    return Impl(name, fwd, fwd_bwd, lambda: run_once())


def _numpy_impl(case: Case) -> Impl:
    import xmargin

    fn = getattr(xmargin, case.loss)
    args = [a.cpu().numpy() for a in case.args]
    argnums = tuple(_grad_args(case))
    vg = xmargin.value_and_grad(fn, argnums=argnums)
    return Impl(
        "xmargin[numpy]",
        lambda: fn(*args, **case.kwargs),
        lambda: vg(*args, **case.kwargs),
        lambda: vg(*args, **case.kwargs),
    )


def implementations(
    case: Case, device: str, backends: list[str], with_compile: bool, copies: int
) -> list[Impl]:
    import torch
    import torch.nn.functional as F

    import xmargin

    sets = [case.args] + [tuple(a.clone() for a in case.args) for _ in range(copies - 1)]
    ours = case.xmargin_args or case.args
    our_sets = [ours] + [tuple(a.clone() for a in ours) for _ in range(copies - 1)]
    impls = [_torch_impl("torch", getattr(F, case.loss), case, sets)]
    work = case.N * case.C * case.C
    if with_compile and (
        device != "cpu" or case.loss != "multilabel_margin_loss" or work <= COMPILE_CPU_MAX_WORK
    ):
        impls.append(_torch_impl("torch.compile", torch.compile(getattr(F, case.loss)), case, sets))
    if case.loss == "multilabel_margin_loss":
        for b in backends:
            if b == "portable" and device == "cpu" and case.N * case.C > PORTABLE_CPU_MAX_ELEMS:
                continue  # O(N·C log C) sorts of (N, 2C) rows: minutes per call here
            fn = functools.partial(xmargin.multilabel_margin_loss, backend=b)
            impls.append(_torch_impl(b, fn, case, our_sets))
    else:
        impls.append(_torch_impl("xmargin[torch]", getattr(xmargin, case.loss), case, sets))
        if device == "cpu":
            impls.append(_numpy_impl(case))
    return impls


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on a terminal, a line per step otherwise (CI logs)."""

    def __init__(self, total: int):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.tty = sys.stderr.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {elapsed:5.0f}s {what}"
        if self.tty:
            sys.stderr.write("\r" + line[:120].ljust(120))
            if self.done == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def run_cases(cases: list[Case], *, device: str, backends: list[str], with_compile: bool,
              repeats: int, device_name: str, run: str) -> list[dict]:  # fmt: skip
    import xmargin

    from ._common import time_interleaved

    rows: list[dict] = []
    total = sum(2 for _ in cases)
    progress = Progress(total)
    for case in cases:
        ref = _reference(case)
        copies = (
            1 if device == "cpu" else max(2, math.ceil(2 * 64 * 2**20 / max(case.bytes_fwd, 1)))
        )
        impls = implementations(case, device, backends, with_compile, copies)
        # PyTorch's own float32 kernels accumulate in float32 (relative errors near 1e-3 at
        # C = 1e5); xmargin's backends accumulate in float64 and are held to 2e-4
        checks = {
            impl.name: _parity(
                impl.check, case, ref, 2e-3 if impl.name.startswith("torch") else 2e-4
            )
            for impl in impls
        }
        impls = [impl for impl in impls if not checks[impl.name].startswith("error")] or impls
        for mode in ("fwd", "fwd+bwd"):
            fns = {impl.name: (impl.fwd if mode == "fwd" else impl.fwd_bwd) for impl in impls}
            with xmargin.options(check_values=False):  # validated once above; no syncs in timing
                if device == "cpu":
                    # torch.compile's CPU code is slow and memory-hungry here: timed on its own
                    # so that it does not disturb the interleaved runs of the others
                    alone = {k: f for k, f in fns.items() if k == "torch.compile"}
                    together = {k: f for k, f in fns.items() if k not in alone}
                    samples = time_interleaved(together, repeats=repeats, warmup=1)
                    samples.update(time_interleaved(alone, repeats=repeats, warmup=1))
                    stats = {k: summary(s * 1e3 for s in v) for k, v in samples.items()}
                else:
                    stats = {
                        k: summary(time_cuda(f, warmup=3, rep=repeats)) for k, f in fns.items()
                    }
            base = stats.get("torch", {}).get("ms")
            nbytes = case.bytes_fwd + (case.bytes_grad if mode == "fwd+bwd" else 0)
            for name, s in stats.items():
                rows.append({
                    "device": device_name, "run": run, "backend": name, "loss": case.loss,
                    "case": case.label, "N": case.N, "C": case.C, "T": case.T, "mode": mode, **s,
                    "speedup_vs_torch": (base / s["ms"]) if base else None,
                    "gbps": None if device == "cpu" else nbytes / (s["ms"] * 1e-3) / 1e9,
                    "parity": checks[name],
                })  # fmt: skip
            progress.step(f"{case.loss} {case.label} ({case.N}, {case.C}, {case.T}) {mode}")
    return rows
