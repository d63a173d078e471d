"""The benchmark suite behind ``python -m benchmarks``: cases, implementations, parity, timing,
goals.

A *case* is one loss on one data set, in several seeds (scores and targets built once per
device); an *implementation* is one way to compute it (PyTorch eager, torch.compile, an xmargin
backend, xmargin on NumPy arrays), with the default thread counts or with one thread (the
"[1 thread]" rows: torch's intra-op threads and xmargin's pool, ``XMARGIN_NUM_THREADS``). For
every case the suite first checks each implementation against PyTorch eager in float64 on the
same values, then times ``fwd`` (the loss, no autograd) and ``fwd+bwd`` (the loss and its
gradient: ``loss.backward()``, or ``value_and_grad`` on NumPy) with :func:`._common.time_rounds`
(``torch.utils.benchmark.Timer`` blocks interleaved round by round on the CPU,
``triton.testing.do_bench`` on a GPU), rotating the seeds call by call. "vs torch" compares
with torch at the same thread count, round by round. Every row carries its provenance.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._common import one_thread, paired_ratio, provenance, thread_limit, time_rounds, utc_now

# the goal shapes of issue 11 first, then DESIGN.md §8's wide ones
GRID_FULL = [
    (8, 16, 2),  # the fixed cost of a call
    (256, 1000, 1),
    (256, 1000, 5),
    (256, 4000, 200),
    (128, 4000, 2000),
    (4096, 4096, 64),
    (64, 100000, 16),
    (64, 1000000, 32),  # extreme label counts (K << C)
]
SWEEP_FULL = {"N": 128, "C": 4000, "T": [5, 20, 50, 200, 2000]}
GRID_QUICK = [(8, 16, 2), (256, 1000, 1), (256, 1000, 5), (256, 4000, 200)]
SWEEP_QUICK = {"N": 128, "C": 2000, "T": [2, 16, 128]}
GRID_GPU = [(4096, 4096, 4), (4096, 4096, 16), (4096, 4096, 64), (4096, 4096, 256), (4096, 32768, 16),
            (256, 4000, 2000), (64, 100000, 16), (64, 1000000, 32)]  # fmt: skip
SWEEP_GPU = {"N": 4096, "C": 4096, "T": [4, 16, 64, 256]}
DATASETS = ["CAL500", "bibtex"]
OTHER_LOSSES = [
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multi_margin_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
]
SEEDS = 3  # distinct inputs per case, rotated call by call
# the goals of issue 11, fwd+bwd with one thread: torch[1 thread]'s time over numba[1 thread]'s
# (at (8, 16, 2): xmargin's fixed cost at most 2.5x torch's, a speed-up of at least 0.4x); and
# NumPy's value_and_grad at least as fast as xmargin's torch path (same backend, one thread)
GOALS: list[tuple[str, tuple, float]] = [
    ("fixed cost", (8, 16, 2), 0.4),
    ("(256, 1000, 1)", (256, 1000, 1), 8.0),
    ("bibtex", "bibtex", 8.0),
    ("(256, 1000, 5)", (256, 1000, 5), 15.0),
    ("(256, 4000, 200)", (256, 4000, 200), 60.0),
    ("(128, 4000, 2000)", (128, 4000, 2000), 100.0),
    ("(4096, 4096, 64)", (4096, 4096, 64), 30.0),
]
GOAL_BACKEND = "numba"
NUMPY_GOAL = 1.0
# torch.compile lowers multilabel_margin_loss to an O(N·C²) computation: on the CPU only small
# problems finish in reasonable time
COMPILE_CPU_MAX_WORK = 3e8
# on a GPU the same lowering materialises an (N, C, C) intermediate: 4096·4096·4096 float32 is
# 256 GiB (seen on an H200, 2026-11-26: CUDA out of memory). Left out beyond 2e9 elements (8 GB)
COMPILE_GPU_MAX_WORK = 2e9
# the portable backend sorts (N, 2C) rows (array API, torch's threads; about 20 s per call at
# (4096, 4096)): left out on the CPU from this many scores on
PORTABLE_CPU_MAX_ELEMS = 1e7
# from this many classes on, xmargin gets (N, T) targets (K << C), PyTorch its (N, C) layout
NARROW_TARGETS_MIN_C = 10**6
# parity is checked on every seed while N·C·max(T, 1) stays below this, else on the first
PARITY_ALL_SEEDS_MAX_WORK = 1e6


@dataclass
class Case:
    loss: str
    label: str  # "grid", "sweep", "CAL500", "bibtex", "other"
    N: int
    C: int
    T: float  # mean positives per row (multilabel_margin_loss), else 0
    inputs: list[tuple]  # per seed: torch tensors in float32, the loss's positional arguments
    kwargs: dict = field(default_factory=dict)
    bytes_fwd: int = 0  # what must move: inputs read, loss written
    bytes_grad: int = 0  # plus the gradient written
    xmargin_inputs: list[tuple] | None = None  # for xmargin, when they differ (narrow targets)

    @property
    def args(self) -> tuple:
        return self.inputs[0]


@dataclass
class Impl:
    name: str
    fwd: Callable[[], Any]
    fwd_bwd: Callable[[], Any]
    check: Callable[[int], Any]  # seed index -> (loss, grads), for the parity check
    threads: int | None = None  # 1: one thread (torch and xmargin); None: the defaults
    base: str = "torch"  # what "vs torch" compares with (torch at the same thread count)


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------
def _targets_from_multihot(Y, width):
    import torch

    import xmargin

    return torch.from_numpy(xmargin.targets.from_multihot(Y, width=width))


def multilabel_cases(shapes, sweep, datasets, device: str, seeds: int = SEEDS) -> list[Case]:
    """The (N, C, T) grid, the T sweep at fixed (N, C) (labelled "sweep" unless also in the
    grid; ``None``: no sweep) and the real data sets' targets (random scores), ``seeds``
    inputs each."""
    import torch

    from ._common import multilabel_problem
    from .data import load

    swept = [(sweep["N"], sweep["C"], t) for t in sweep["T"]] if sweep else []
    cases = []
    for n, c, t in dict.fromkeys([*shapes, *swept]):  # ordered, without repeats
        inputs = [multilabel_problem(n, c, t, device=device, seed=s) for s in range(seeds)]
        label = "grid" if (n, c, t) in shapes else "sweep"
        narrow = ([(x, y[:, :t].contiguous()) for x, y in inputs]
                  if c >= NARROW_TARGETS_MIN_C else None)  # fmt: skip
        cases.append(Case("multilabel_margin_loss", label, n, c, t, inputs,
                          bytes_fwd=n * c * 4 + n * t * 8 + n * 4, bytes_grad=n * c * 4,
                          xmargin_inputs=narrow))  # fmt: skip
    for name in datasets:
        ds = load(name)
        n, c = ds.Y.shape
        target = _targets_from_multihot(ds.Y, c).to(device)
        inputs = [(torch.randn(n, c, generator=torch.Generator().manual_seed(s)).to(device),
                   target) for s in range(seeds)]  # fmt: skip
        t_mean = round(float(ds.labels_per_sample.mean()), 2)
        cases.append(Case("multilabel_margin_loss", name, n, c, t_mean, inputs,
                          bytes_fwd=int(n * c * 4 + ds.Y.sum() * 8 + n * 4), bytes_grad=n * c * 4))  # fmt: skip
    return cases


def other_cases(n: int, c: int, device: str, seeds: int = SEEDS,
                losses: list[str] | None = None) -> list[Case]:  # fmt: skip
    import torch

    def make(seed: int) -> dict[str, tuple]:
        g = torch.Generator().manual_seed(seed)

        def randn(*shape):
            return torch.randn(*shape, generator=g).to(device)

        def pm1(*shape):
            return (torch.randint(0, 2, shape, generator=g) * 2 - 1).float().to(device)

        return {
            "soft_margin_loss": (randn(n, c), pm1(n, c)),
            "multilabel_soft_margin_loss": (randn(n, c), (pm1(n, c) + 1) / 2),
            "multi_margin_loss": (randn(n, c), torch.randint(0, c, (n,), generator=g).to(device)),
            "hinge_embedding_loss": (randn(n, c), pm1(n, c)),
            "margin_ranking_loss": (randn(n, c), randn(n, c), pm1(n, c)),
        }

    per_seed = [make(s) for s in range(seeds)]
    b = n * c * 4
    traffic = {  # (bytes_fwd, bytes_grad)
        "soft_margin_loss": (2 * b, b), "multilabel_soft_margin_loss": (2 * b, b),
        "multi_margin_loss": (b + n * 8, b), "hinge_embedding_loss": (2 * b, b),
        "margin_ranking_loss": (3 * b, 2 * b),
    }  # fmt: skip
    kwargs = {"hinge_embedding_loss": {"margin": 0.5}, "margin_ranking_loss": {"margin": 0.1}}
    return [
        Case(loss, "other", n, c, 0, [s[loss] for s in per_seed], kwargs.get(loss, {}),
             bytes_fwd=traffic[loss][0], bytes_grad=traffic[loss][1])
        for loss in (losses or OTHER_LOSSES)
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# implementations
# --------------------------------------------------------------------------------------------
def _grad_args(case: Case) -> list[int]:
    return [0, 1] if case.loss == "margin_ranking_loss" else [0]


def _parity(got, case: Case, ref, rtol: float = 2e-4) -> str:
    """Compare (loss, grads) with the float64 reference; float32 near-ties may flip one hinge
    count (PyTorch rounds margin - x_t + x_j in float32)."""
    import torch

    loss, grads = got
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


def _reference(case: Case, seed: int):
    import torch
    import torch.nn.functional as F

    args = [a.double() if a.is_floating_point() else a for a in case.inputs[seed]]
    leaves = [args[i].detach().cpu().requires_grad_() for i in _grad_args(case)]
    cpu_args = [a.cpu() for a in args]
    for i, leaf in zip(_grad_args(case), leaves, strict=True):
        cpu_args[i] = leaf
    loss = getattr(F, case.loss)(*cpu_args, **case.kwargs)
    grads = torch.autograd.grad(loss, leaves)
    return loss.detach(), [g.detach() for g in grads]


class _Rotation:
    """The next seed's inputs on each call."""

    def __init__(self, inputs: list[tuple]):
        self.inputs, self.i = inputs, 0

    def __call__(self) -> tuple:
        self.i = (self.i + 1) % len(self.inputs)
        return self.inputs[self.i]


def _torch_impl(name: str, fn: Callable, case: Case, inputs: list[tuple],
                threads: int | None = None) -> Impl:  # fmt: skip
    import torch

    grad_args = _grad_args(case)
    pick = _Rotation(inputs)

    def fwd():
        with torch.no_grad():
            return fn(*pick(), **case.kwargs)

    def fwd_bwd():
        args = list(pick())
        for i in grad_args:
            args[i] = args[i].detach().requires_grad_()
        fn(*args, **case.kwargs).backward()

    def run_once(seed: int):
        args = list(inputs[seed])
        leaves = [args[i].detach().clone().requires_grad_() for i in grad_args]
        for i, leaf in zip(grad_args, leaves, strict=True):
            args[i] = leaf
        loss = fn(*args, **case.kwargs)
        return loss.detach(), torch.autograd.grad(loss, leaves)

    base = "torch" if threads is None else one_thread("torch")
    return Impl(name, fwd, fwd_bwd, run_once, threads, base)


def _numpy_impl(case: Case, threads: int | None = None) -> Impl:
    """xmargin on NumPy arrays: the loss, and ``value_and_grad`` (default backend)."""
    import xmargin

    fn = getattr(xmargin, case.loss)
    inputs = [tuple(a.cpu().numpy() for a in args) for args in (case.xmargin_inputs or case.inputs)]
    vg = xmargin.value_and_grad(fn, argnums=tuple(_grad_args(case)))
    pick = _Rotation(inputs)
    name = "xmargin[numpy]" if threads is None else one_thread("xmargin[numpy]")
    base = "torch" if threads is None else one_thread("torch")
    return Impl(
        name,
        lambda: fn(*pick(), **case.kwargs),
        lambda: vg(*pick(), **case.kwargs),
        lambda seed: vg(*inputs[seed], **case.kwargs),
        threads,
        base,
    )


def implementations(case: Case, device: str, backends: list[str], with_compile: bool,
                    one_thread_rows: bool = True, with_numpy: bool = True) -> list[Impl]:  # fmt: skip
    """torch (and torch[1 thread] on the CPU), torch.compile where it is tolerable, xmargin's
    backends (multilabel_margin_loss; numba and reference also with one thread) or xmargin on
    torch tensors (the other losses), and xmargin on NumPy arrays (CPU)."""
    import torch
    import torch.nn.functional as F

    import xmargin

    cpu = device == "cpu"
    single = cpu and one_thread_rows
    eager = getattr(F, case.loss)
    impls = [_torch_impl("torch", eager, case, case.inputs)]
    if single:
        impls.append(_torch_impl(one_thread("torch"), eager, case, case.inputs, threads=1))
    work = case.N * case.C * case.C
    if with_compile and (
        case.loss != "multilabel_margin_loss"
        or work <= (COMPILE_CPU_MAX_WORK if cpu else COMPILE_GPU_MAX_WORK)
    ):
        # default threads only: Inductor's CPU code fixes its OpenMP thread count when it
        # compiles, so a one-thread row would need a second compilation
        impls.append(_torch_impl("torch.compile", torch.compile(eager), case, case.inputs))
    if case.loss == "multilabel_margin_loss":
        ours = case.xmargin_inputs or case.inputs
        for b in backends:
            if b == "portable" and cpu and case.N * case.C > PORTABLE_CPU_MAX_ELEMS:
                continue  # O(N·C log C) sorts of (N, 2C) rows: tens of seconds per call here
            fn = functools.partial(xmargin.multilabel_margin_loss, backend=b)
            impls.append(_torch_impl(b, fn, case, ours))
            if single and b != "portable":  # portable runs on torch's threads: not repeated
                impls.append(_torch_impl(one_thread(b), fn, case, ours, threads=1))
    else:
        fn = getattr(xmargin, case.loss)
        impls.append(_torch_impl("xmargin[torch]", fn, case, case.inputs))
        if single:
            impls.append(_torch_impl(one_thread("xmargin[torch]"), fn, case, case.inputs, 1))
    if cpu and with_numpy:
        impls.append(_numpy_impl(case))
        if single:
            impls.append(_numpy_impl(case, threads=1))
    return impls


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on a terminal, a line per step otherwise (CI logs)."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.quiet = quiet

    def step(self, what: str) -> None:
        self.done += 1
        if self.quiet:
            return
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


def _checks(
    case: Case, impls: list[Impl], seconds: dict[str, float] | None = None
) -> dict[str, str]:
    """Parity of every implementation with PyTorch float64, on every seed of a small case and
    on the first seed of a large one. PyTorch's own float32 kernels accumulate in float32
    (relative errors near 1e-3 at C = 1e5); xmargin's backends accumulate in float64 and are
    held to 2e-4. torch[1 thread] runs torch's kernel: its check is torch's. ``seconds``
    receives how long each implementation's first check took (a fwd+bwd)."""
    work = case.N * case.C * max(case.T, 1)
    seeds = range(len(case.inputs) if work <= PARITY_ALL_SEEDS_MAX_WORK else 1)
    refs = [_reference(case, s) for s in seeds]
    out: dict[str, str] = {}
    for impl in impls:
        if impl.name == one_thread("torch") and "torch" in out:
            out[impl.name] = out["torch"]
            if seconds is not None and "torch" in seconds:
                seconds[impl.name] = seconds["torch"]
            continue
        verdict = "ok"
        for s, ref in zip(seeds, refs, strict=True):
            try:
                start = time.perf_counter()
                with thread_limit(impl.threads):
                    got = impl.check(s)
                if seconds is not None and s == 0:
                    seconds[impl.name] = time.perf_counter() - start
            except Exception as exc:  # an implementation that cannot run says so in the table
                verdict = f"error: {type(exc).__name__}: {str(exc)[:60]}"
                break
            verdict = _parity(got, case, ref, 2e-3 if impl.name.startswith("torch") else 2e-4)
            if verdict != "ok":
                verdict += f" (seed {s})" if len(refs) > 1 else ""
                break
        out[impl.name] = verdict
    return out


def run_cases(cases: list[Case], *, device: str, backends: list[str], with_compile: bool,
              rounds: int = 3, max_rounds: int | None = None, budget_s: float | None = None,
              block_s: float = 0.1, run: str = "full", modes=("fwd", "fwd+bwd"),
              one_thread_rows: bool = True, with_numpy: bool = True, quiet: bool = False,
              prov: dict[str, str] | None = None) -> list[dict]:  # fmt: skip
    """Parity, then the interleaved timings of every implementation of every case: one row
    per (case, mode, implementation), with its provenance."""
    import xmargin

    from ._common import default_threads

    prov = dict(prov or provenance(device))
    defaults = default_threads()
    rows: list[dict] = []
    progress = Progress(len(cases) * len(modes), quiet)
    for case in cases:
        impls = implementations(case, device, backends, with_compile, one_thread_rows, with_numpy)
        check_s: dict[str, float] = {}
        checks = _checks(case, impls, check_s)
        impls = [i for i in impls if not checks[i.name].startswith("error")] or impls
        for mode in modes:
            fns = {i.name: (i.fwd if mode == "fwd" else i.fwd_bwd) for i in impls}
            threads = {i.name: i.threads for i in impls}
            # a fwd+bwd that took over a second in its parity check has been warmed up and
            # needs no block-size estimate: one call per block (saves a call per round 0)
            numbers = {k: 1 for k, v in check_s.items()
                       if mode == "fwd+bwd" and v >= max(1.0, block_s)}  # fmt: skip
            with xmargin.options(check_values=False):  # validated once above; no syncs in timing
                opts = dict(rounds=rounds, max_rounds=max_rounds, budget_s=budget_s,
                            block_s=block_s, device=device, numbers=numbers)  # fmt: skip
                # torch.compile's CPU code is slow and memory-hungry here: timed on its own so
                # that it does not disturb the interleaved runs of the others
                alone = [k for k in fns if k == "torch.compile" and device == "cpu"]
                timings = time_rounds({k: f for k, f in fns.items() if k not in alone},
                                      threads=threads, **opts)  # fmt: skip
                for k in alone:
                    timings.update(time_rounds({k: fns[k]}, threads=threads, **opts))
            nbytes = case.bytes_fwd + (case.bytes_grad if mode == "fwd+bwd" else 0)
            stamp = utc_now()
            for impl in impls:
                t = timings[impl.name]
                s = t.stats()
                base = timings.get(impl.base)
                ratio = paired_ratio(base.rounds_s, t.rounds_s) if base else None
                n_threads = impl.threads or (
                    defaults["xmargin"]
                    if (impl.name in backends and impl.name != "portable")
                    or impl.name.startswith("xmargin[numpy")
                    else defaults["torch"]
                )
                rows.append({
                    "device": device, "run": run, "backend": impl.name, "loss": case.loss,
                    "case": case.label, "N": case.N, "C": case.C, "T": case.T, "mode": mode,
                    "threads": n_threads, **s,
                    "speedup_vs_torch": ratio[0] if ratio else None,
                    "speedup_min": ratio[1] if ratio else None,
                    "speedup_max": ratio[2] if ratio else None,
                    "vs": impl.base,
                    "gbps": None if device == "cpu" else nbytes / (s["ms"] * 1e-3) / 1e9,
                    "parity": checks[impl.name], "seeds": len(case.inputs),
                    **prov, "timestamp_utc": stamp,
                })  # fmt: skip
            progress.step(f"{case.loss} {case.label} ({case.N}, {case.C}, {case.T}) {mode}")
    return rows


# --------------------------------------------------------------------------------------------
# goals
# --------------------------------------------------------------------------------------------
def _rounds(r: dict) -> list[float]:
    """The per-round medians of a row (its ``round_ms`` column), in seconds."""
    return [float(v) * 1e-3 for v in str(r["round_ms"]).split()]


def _find(rows: list[dict], where, backend: str) -> dict | None:
    for r in rows:
        if (
            r["loss"] != "multilabel_margin_loss"
            or r["mode"] != "fwd+bwd"
            or r["backend"] != backend
        ):
            continue
        if (
            (r["case"] == where)
            if isinstance(where, str)
            else (r["case"] in ("grid", "sweep") and (r["N"], r["C"], r["T"]) == where)
        ):
            return r
    return None


def goals(rows: list[dict], backend: str = GOAL_BACKEND) -> list[dict]:
    """The issue's goals measured in ``rows`` (fwd+bwd): the one-thread speed-up of ``backend``
    over torch (median and min–max of the per-round ratios), the default-vs-default one beside
    it, and NumPy's value_and_grad against xmargin's torch path (one thread). Goals whose case
    was not run are left out."""
    out = []
    for label, where, goal in GOALS:
        torch1 = _find(rows, where, one_thread("torch"))
        ours1 = _find(rows, where, one_thread(backend))
        if torch1 is None or ours1 is None:
            continue
        one = paired_ratio(_rounds(torch1), _rounds(ours1))
        torch_d, ours_d = _find(rows, where, "torch"), _find(rows, where, backend)
        dflt = paired_ratio(_rounds(torch_d), _rounds(ours_d)) if torch_d and ours_d else None
        np1 = _find(rows, where, one_thread("xmargin[numpy]"))
        npr = paired_ratio(_rounds(ours1), _rounds(np1)) if np1 else None
        out.append({
            "case": label, "N": ours1["N"], "C": ours1["C"], "T": ours1["T"],
            "goal": goal, "torch_1t_ms": torch1["ms"], "ours_1t_ms": ours1["ms"],
            "ratio": one[0], "ratio_min": one[1], "ratio_max": one[2],
            "met": "yes" if one[0] >= goal else "no",
            "ratio_default": dflt[0] if dflt else None,
            "ratio_default_min": dflt[1] if dflt else None,
            "ratio_default_max": dflt[2] if dflt else None,
            "numpy_ratio": npr[0] if npr else None,
            "numpy_ratio_min": npr[1] if npr else None,
            "numpy_ratio_max": npr[2] if npr else None,
            "numpy_met": None if npr is None else ("yes" if npr[0] >= NUMPY_GOAL else "no"),
            "parity": "ok" if torch1["parity"] == ours1["parity"] == "ok" else
                      f"{torch1['parity']} / {ours1['parity']}",
        })  # fmt: skip
    return out


def _range(r: dict, key: str) -> str:
    if r.get(key) is None:
        return "–"
    return f"{r[key]:.2g}x ({r[key + '_min']:.2g}–{r[key + '_max']:.2g})"


def goals_lines(goal_rows: list[dict], backend: str = GOAL_BACKEND) -> list[str]:
    """The goals as a Markdown table (also readable as plain text)."""
    lines = [
        f"| case | N | C | T | goal: torch[1 thread] / {one_thread(backend)} | torch[1 thread] ms "
        f"| {one_thread(backend)} ms | measured (median, min–max) | met | default vs default "
        f"| NumPy value_and_grad vs torch path (1 thread, goal ≥ {NUMPY_GOAL:g}x) | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for g in goal_rows:
        goal = f"≥ {g['goal']:g}x" + (" (≤ 2.5x torch's time)" if g["case"] == "fixed cost" else "")
        lines.append(
            f"| {g['case']} | {g['N']} | {g['C']} | {g['T']:g} | {goal} | {g['torch_1t_ms']:.3g} | "
            f"{g['ours_1t_ms']:.3g} | {_range(g, 'ratio')} | {g['met']} | "
            f"{_range(g, 'ratio_default')} | {_range(g, 'numpy_ratio')} | {g['numpy_met'] or '–'} |"
        )
    return lines
