"""Host (CPU) plumbing of the compiled fast paths of the five losses other than the pairwise
hinge: which arrays qualify, loading ``kernels/numba/<stem>.py``, C-contiguous NumPy views,
splitting work across the shared thread pool. The per-loss fast paths themselves live with
their losses (``xmargin/losses``), which import this module lazily. The pairwise hinge's CPU
backends (``numba``, ``reference``) share the last two and the targets' integer dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._loaded import loaded
from .._xp import compiling

BLOCK = 1 << 18  # elements per task when a kernel is split across the shared thread pool

_MISSING = object()
_KERNELS: dict[str, Any] = {}


def numba_kernels(stem: str) -> Any:
    """``kernels/numba/<stem>.py``, imported once (from the installed package or the source
    checkout), or None where Numba does not import (the generic path is used then). Numba
    compiles each kernel on first use per dtype and caches it on disk (``cache=True``)."""
    module = _KERNELS.get(stem, _MISSING)
    if module is not _MISSING:
        return module
    from .numba import load_kernels, status

    module = None
    if status() is None:
        try:
            module = load_kernels(stem)
        except Exception:  # a Numba that imports but cannot build these kernels
            module = None
    _KERNELS[stem] = module
    return module


def host_kind(x: Any, *others: Any) -> str | None:
    """Which fast path applies: "numpy" for float32/float64 NumPy arrays (the other arguments
    NumPy arrays or None), "torch" for tensors the torch one takes
    (:func:`xmargin.adapters.torch_elementwise.eligible`), None for neither."""
    if compiling():  # torch.compile traces the generic path (and inductor fuses it)
        return None
    module = type(x).__module__
    if module == "numpy":
        import numpy as np

        if type(x) is not np.ndarray or (x.dtype != np.float32 and x.dtype != np.float64):
            return None
        return "numpy" if all(o is None or type(o) is np.ndarray for o in others) else None
    if module.startswith("torch") and loaded("torch") is not None:
        from ..adapters.torch_elementwise import eligible

        return "torch" if eligible(x, *others) else None
    return None


def host_array(a: Any, dtype: Any = None) -> Any:
    """``a`` as a C-contiguous, writable NumPy array (of ``dtype``): itself when it is one
    (read-only arrays are copied: one kernel signature fewer)."""
    import numpy as np

    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()


def integer_targets(t: Any, c: int, keep: tuple = ("int64",)) -> Any:
    """Targets ``t`` of C classes as a NumPy array of a dtype in ``keep`` (the kernel's
    integer dtypes): as they are, or as int64, unsigned 64-bit values first clamped to C (those
    of 2**63 and above would wrap to negatives, which read as a row's end, instead of staying
    invalid)."""
    import numpy as np

    t = np.asarray(t)
    if t.dtype not in keep:
        if t.dtype.kind == "u" and t.dtype.itemsize == 8:
            t = np.minimum(t, np.uint64(c))
        t = t.astype(np.int64)
    return t


def launch(task: Callable[[int, int], Any], n: int, block: int) -> list:
    """``task(i0, i1)`` over [0, n) in blocks of ``block`` (several run on the shared thread
    pool); the results in order."""
    if n <= block:
        return [task(0, n)]
    from ..backends import _threads

    starts = range(0, n, block)
    out: list = [None] * len(starts)

    def one(k: int) -> None:
        out[k] = task(starts[k], min(n, starts[k] + block))

    _threads.run(one, range(len(starts)))
    return out


def no_grad(np: Any, dtype: Any, ndim: int) -> Any:
    """An empty array standing for "no gradient" (one kernel signature for both cases)."""
    return np.empty((0,) * ndim, dtype=dtype)
