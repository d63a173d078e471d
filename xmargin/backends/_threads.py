"""The thread pool the CPU backends share for row blocks, and its fork safety.

Both CPU kernels release the GIL (NumPy inside each operation; the Numba kernel is
``nogil``), so Python threads over blocks of rows use every core without any threading layer
that spins (Numba's OpenMP layer busy-waits under load and its workqueue layer aborts on
concurrent calls). A process forked after using the pool (Linux's default ``multiprocessing``
start method, DataLoader workers) has the pool object but none of its threads: the child
forgets it and builds its own on first use instead of waiting forever.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None


def num_threads() -> int:
    """``XMARGIN_NUM_THREADS`` if set (1: no pool), else the cores, at most 8."""
    raw = os.environ.get("XMARGIN_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, min(os.cpu_count() or 1, 8))


def pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(num_threads(), thread_name_prefix="xmargin")
    return _POOL


def run(task: Callable[[int], None], starts: Iterable[int]) -> None:
    """``task(start)`` for every start, on the pool when there are several and threads allowed."""
    starts = list(starts)
    if len(starts) > 1 and num_threads() > 1:
        for _ in pool().map(task, starts):
            pass
    else:
        for s in starts:
            task(s)


def _forget_pool_after_fork() -> None:
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)
