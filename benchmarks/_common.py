"""Shared pieces of the benchmark scripts: data, provenance, timing, tables and CSV files.

Timing (DESIGN.md §8): on the CPU, ``torch.utils.benchmark.Timer`` measures blocks of calls
(``blocked_autorange``); the contenders take turns block by block over several rounds (so a
drift in machine load hits all of them), each round a fresh block per contender, the inputs
rotated call by call over several seeds. A row reports the median of its per-round medians with
the min–max over rounds. On a GPU each block is one ``triton.testing.do_bench`` (CUDA events
with the L2 cache flushed when Triton is missing).
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"  # committed: written with --save
OUTPUT = Path(__file__).resolve().parent / "output"  # git-ignored: every other run


def out_dir(save: bool) -> Path:
    """Where a run writes its tables and plots: ``benchmarks/results`` (committed) with
    ``--save``, else ``benchmarks/output`` (ignored by git), so that ``make demo`` leaves the
    committed results alone."""
    path = RESULTS if save else OUTPUT
    path.mkdir(parents=True, exist_ok=True)
    return path


THREADS_ENV = "XMARGIN_NUM_THREADS"
# the provenance columns of every result row (and the .md header)
PROVENANCE = ("xmargin_version", "git_commit", "torch_version", "numba_version",
              "triton_version", "numpy_version", "machine", "timestamp_utc")  # fmt: skip


def machine_name(device: str = "cpu") -> str:
    """A file-name-safe name for the machine's device: the GPU's name, or the CPU's."""
    name = None
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(torch.device(device))
    if not name:
        name = platform.processor() or platform.machine() or "cpu"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        name = f"{name} x{os.cpu_count()}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower()


# --------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------
def git_commit(root: Path = ROOT) -> str:
    """The checkout's short commit hash, with "+dirty" when the tree has uncommitted changes;
    "unknown" outside a git checkout (an installed copy) or without git. ``$XMARGIN_GIT_COMMIT``
    names it where the checkout travelled without its history (a lent GPU machine)."""
    if os.environ.get("XMARGIN_GIT_COMMIT"):
        return os.environ["XMARGIN_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=20)  # fmt: skip
        if head.returncode or not head.stdout.strip():
            return "unknown"
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


def package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(device: str = "cpu") -> dict[str, str]:
    """What produced a result: versions, commit, machine and the time (UTC, ISO 8601)."""
    import xmargin

    return {
        "xmargin_version": xmargin.__version__,
        "git_commit": git_commit(),
        "torch_version": package_version("torch"),
        "numba_version": package_version("numba"),
        "triton_version": package_version("triton"),
        "numpy_version": package_version("numpy"),
        "machine": machine_name(device),
        "timestamp_utc": utc_now(),
    }


def default_threads() -> dict[str, int]:
    """The thread counts a "default" row runs with: torch's intra-op threads and xmargin's CPU
    pool (``XMARGIN_NUM_THREADS``, else the cores, at most 8)."""
    import torch

    from xmargin.backends import _threads

    return {"torch": torch.get_num_threads(), "xmargin": _threads.num_threads()}


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def shape_triples(values: list[str] | None, default: list) -> list:
    """``--shapes`` arguments ("N,C,T") as int tuples, or ``default`` when none are given."""
    return [tuple(int(v) for v in s.split(",")) for s in values] if values else list(default)


def multilabel_problem(
    n: int, c: int, t: int, *, device: str = "cpu", seed: int = 0, dtype: str = "float32"
):
    """torch scores N(0, 1) and T distinct positives per row (uniformly random) in PyTorch's
    (N, C) -1-padded layout (the layout torch.nn.functional.multilabel_margin_loss requires)."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=getattr(torch, dtype))
    target = torch.full((n, c), -1, dtype=torch.int64)
    if t:  # the t largest of uniform draws: a uniformly random t-subset, in random order
        target[:, :t] = torch.rand(n, c, generator=g).topk(t, dim=1).indices
    return x.to(device), target.to(device)


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def one_thread(name: str) -> str:
    """The name of an implementation's one-thread row: "torch[1 thread]",
    "xmargin[numpy, 1 thread]"."""
    return f"{name[:-1]}, 1 thread]" if name.endswith("]") else f"{name}[1 thread]"


@contextmanager
def thread_limit(n: int | None) -> Iterator[None]:
    """Run with ``n`` threads in torch (intra-op) and in xmargin's CPU pool (the
    ``XMARGIN_NUM_THREADS`` variable, read on each call); ``None``: as they are."""
    if n is None:
        yield
        return
    import torch

    old_env, old_torch = os.environ.get(THREADS_ENV), torch.get_num_threads()
    os.environ[THREADS_ENV] = str(n)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        if old_env is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = old_env


@dataclass
class Timing:
    """One contender's measurement: a median time per call for each round, every block's time
    per call (for the spread inside rounds) and the number of timed calls."""

    rounds_s: list[float] = field(default_factory=list)
    blocks_s: list[float] = field(default_factory=list)
    calls: int = 0

    def stats(self) -> dict[str, Any]:
        s = sorted(self.rounds_s)
        b = sorted(self.blocks_s)
        q = statistics.quantiles(b, n=4, method="inclusive") if len(b) > 1 else [b[0]] * 3
        return {
            "ms": statistics.median(s) * 1e3,
            "ms_min": s[0] * 1e3,
            "ms_max": s[-1] * 1e3,
            "iqr_ms": (q[2] - q[0]) * 1e3,
            "rounds": len(s),
            "calls": self.calls,
            "round_ms": " ".join(f"{v * 1e3:.4g}" for v in self.rounds_s),
        }


def _cpu_timer(fn: Callable[[], Any], threads: int):
    """A ``torch.utils.benchmark.Timer`` for ``fn()`` that estimates its block size (its own
    warm-up) in its first ``blocked_autorange`` only: later rounds reuse it, so an expensive
    call is not run twice per round."""
    import torch.utils.benchmark as tb

    class Timer(tb.Timer):
        number: int | None = None

        def _estimate_block_size(self, min_run_time: float) -> int:
            if self.number is None:
                self.number = super()._estimate_block_size(min_run_time)
            return self.number

    return Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)


def time_gpu(fn: Callable[[], Any], *, warmup_ms: float = 25, rep_ms: float = 100) -> list[float]:
    """Milliseconds of ``fn`` per run on the GPU: ``triton.testing.do_bench`` (L2 flushed
    before each run), or CUDA events (:func:`time_cuda`) when Triton is not installed."""
    try:
        from triton.testing import do_bench
    except ImportError:
        return time_cuda(fn, warmup=10, rep=50)
    times = do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="all")
    return [float(t) for t in (times if isinstance(times, list | tuple) else [times])]


def time_rounds(
    fns: dict[str, Callable[[], Any]],
    *,
    threads: dict[str, int | None] | None = None,
    rounds: int = 3,
    max_rounds: int | None = None,
    budget_s: float | None = None,
    block_s: float = 0.1,
    device: str = "cpu",
    numbers: dict[str, int] | None = None,
) -> dict[str, Timing]:
    """Time the contenders in turn, a block each per round, the order rotated each round.

    CPU: a block is ``Timer.blocked_autorange(min_run_time=block_s)`` (its first one estimates
    the block size, which warms up); ``threads[name]`` = 1 runs that contender with one thread
    (torch and xmargin), ``None`` with the defaults. GPU: a block is one :func:`time_gpu`.
    ``rounds`` rounds, or up to ``max_rounds`` while the slowest contender's first round times
    the rounds stay within ``budget_s``. ``numbers[name]``: calls per block, known already (an
    expensive call that has been run: 1), so that its first round skips the estimate.
    """
    threads = threads or {}
    names = list(fns)
    out = {name: Timing() for name in names}
    if device == "cpu":
        import torch

        default = torch.get_num_threads()
        timers = {k: _cpu_timer(f, threads.get(k) or default) for k, f in fns.items()}
        for k, number in (numbers or {}).items():
            if k in timers:
                timers[k].number = number

        def block(name: str) -> tuple[list[float], int]:
            with thread_limit(threads.get(name)):
                m = timers[name].blocked_autorange(min_run_time=block_s)
            return list(m.times), m.number_per_run * len(m.raw_times)

    else:

        def block(name: str) -> tuple[list[float], int]:
            ms = time_gpu(fns[name])
            return [v * 1e-3 for v in ms], len(ms)

    total, r = rounds, 0
    while r < total and names:
        k = r % len(names)
        for name in names[k:] + names[:k]:
            samples, calls = block(name)
            t = out[name]
            t.rounds_s.append(statistics.median(samples))
            t.blocks_s += samples
            t.calls += calls
        if r == 0 and max_rounds and budget_s:
            slowest = max(max(t.rounds_s[0], block_s) for t in out.values())
            total = max(rounds, min(max_rounds, int(budget_s // slowest)))
        r += 1
    return out


def paired_ratio(num: list[float], den: list[float]) -> tuple[float, float, float] | None:
    """num / den round by round (both measured in the same rounds): (median, min, max)."""
    ratios = [a / b for a, b in zip(num, den, strict=False) if b > 0]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function, one value per round (``repeats`` rounds, at least
    one), from :func:`time_rounds` on the CPU; ``warmup`` is kept for the callers' sake (the
    timer warms up on its own)."""
    del warmup
    return {k: t.rounds_s for k, t in time_rounds(fns, rounds=max(1, repeats)).items()}


def time_cuda(fn: Callable[[], Any], *, warmup: int = 10, rep: int = 50) -> list[float]:
    """Milliseconds of ``fn`` per run on the GPU, from CUDA events around each run, after
    ``warmup`` runs; the L2 cache is flushed before each run so no run starts warm (the
    fallback of :func:`time_gpu`)."""
    import torch

    cache = torch.empty(256 * 1024 * 1024 // 4, dtype=torch.int32, device="cuda")
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(rep)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(rep)]
    for i in range(rep):
        cache.zero_()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]


def summary(samples_ms: Iterable[float]) -> dict[str, float]:
    s = sorted(samples_ms)
    return {"ms": statistics.median(s), "ms_min": s[0], "ms_max": s[-1]}


# --------------------------------------------------------------------------------------------
# tables and files
# --------------------------------------------------------------------------------------------
def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` with ``columns`` = (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([("" if r.get(k) is None else format(r[k], f)) for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def write_csv(
    path: Path, rows: list[dict[str, Any]], key: tuple[str, ...], require: str | None = None
) -> None:
    """Merge ``rows`` into the CSV at ``path``: rows with the same ``key`` are replaced, and
    old rows without a value in the column ``require`` (if given) are dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old: list[dict[str, Any]] = []
    if path.exists():
        with path.open(newline="") as f:
            old = list(csv.DictReader(f))
    if require:
        old = [r for r in old if r.get(require)]
    fresh = {tuple(str(r[k]) for k in key) for r in rows}
    merged = [r for r in old if tuple(str(r.get(k)) for k in key) not in fresh] + rows
    fields: list[str] = []
    for r in merged:
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in merged:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
