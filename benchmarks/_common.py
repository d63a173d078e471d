"""Shared pieces of the benchmark scripts: data, timing, tables and CSV files."""

from __future__ import annotations

import csv
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


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
        import os

        name = f"{name} x{os.cpu_count()}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower()


def multilabel_problem(
    n: int, c: int, t: int, *, device: str = "cpu", seed: int = 0, dtype: str = "float32"
):
    """torch scores N(0, 1) and T distinct positives per row in PyTorch's (N, C) -1-padded
    layout (the layout torch.nn.functional.multilabel_margin_loss requires)."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=getattr(torch, dtype))
    target = torch.full((n, c), -1, dtype=torch.int64)
    if t:
        target[:, :t] = torch.rand(n, c, generator=g).argsort(dim=1)[:, :t]
    return x.to(device), target.to(device)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall-clock seconds of each function, run in turn ``repeats`` times (CPU)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def time_cuda(fn: Callable[[], Any], *, warmup: int = 10, rep: int = 50) -> list[float]:
    """Milliseconds of ``fn`` per run on the GPU, from CUDA events around each run, after
    ``warmup`` runs; the L2 cache is flushed before each run so no run starts warm."""
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


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` with ``columns`` = (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([("" if r.get(k) is None else format(r[k], f)) for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def write_csv(path: Path, rows: list[dict[str, Any]], key: tuple[str, ...]) -> None:
    """Merge ``rows`` into the CSV at ``path``: rows with the same ``key`` are replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old: list[dict[str, Any]] = []
    if path.exists():
        with path.open(newline="") as f:
            old = list(csv.DictReader(f))
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
