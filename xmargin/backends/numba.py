"""The ``numba`` backend: the compiled CPU kernel of ``kernels/numba/multilabel_hinge.py``.

The default for NumPy arrays and torch CPU tensors (read and written through zero-copy DLPack
views). Loss and gradient (scaled per row by ``grad_scale``, written once) come out of one
pass over each row, accumulating in float64. ``weight`` and ``neg_weight`` go to the kernel as
flat float64 arrays with a row stride (0 for (C,), C for (N, C)); without ``neg_weight`` the
kernel runs its unweighted loops (one thread: the same time as before the argument existed,
within noise, at (256, 1000, 5) and (64, 4000, 200)); with it, the direct loop takes ~1.3x
and the sorted search ~1.05x.

Launch heuristics, chosen where they are measured (2-core x86 machine, one thread, fresh rows
each call; ``/tmp``-style scripts reproduced by ``python -m benchmarks.multilabel_hinge_cpu``):

* ``DIRECT_MAX``: a row with T ≤ 56 positive slots takes the direct O(T·C) loop (vectorised
  over classes, no sort, no search, ~0.16 ns per (slot, class) pair); above it the sorted
  O(C log T) search wins. Measured direct / sorted time at C = 4000: 0.69 at T = 32, 0.95 at
  48, 1.09 at 64, 1.77 at 128 (at C = 1000: 0.83, 0.97, 1.27 at T = 48, 64, 128).
* Threads: rows go to the shared pool (``_threads``) in blocks of about ``BLOCK_WORK`` = 0.5 ms
  of estimated single-thread work (``_work_per_row``); smaller problems run on the calling
  thread. Measured on 2 cores, fresh rows: a pool round trip costs ~0.1 ms, so two threads
  lose below ~0.5 ms of work (0.5x at (256, 1000, 5) = 0.3 ms) and win above ~1 ms (1.8x at
  (1024, 1000, 5) = 1.4 ms, 1.75x at (64, 4000, 200) = 3 ms, 1.96x at (256, 4000, 200)).

The kernel is compiled on first use per (score dtype, target dtype) and cached on disk
(Numba's ``cache=True``: next to the kernel source, or in ``NUMBA_CACHE_DIR``); later
processes load it in a fraction of a second.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from types import ModuleType
from typing import Any

import numpy as np

from .._interop import array_kind
from .._resources import kernels_dir
from . import _host
from ._common import kernel_contract, on_host

__all__ = ["hinge", "hinge_numpy", "launch"]

DIRECT_MAX = 56
BLOCK_WORK = 500_000  # ns of estimated single-thread work per pool task

_KERNELS: ModuleType | None = None
_EMPTY = np.empty(0, np.float64)
_NO_GRAD = {"f": np.empty((0, 0), np.float32), "d": np.empty((0, 0), np.float64)}


def load_kernels(stem: str) -> ModuleType:
    """``kernels/numba/<stem>.py``, imported once from the installed package or the source
    checkout, registered in ``sys.modules`` (Numba's on-disk cache locates functions by their
    module)."""
    name = f"xmargin._kernels.numba.{stem}"
    module = sys.modules.get(name)
    if module is None:
        path = kernels_dir() / "numba" / f"{stem}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"xmargin: cannot load the Numba kernels from {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


def _kernels() -> ModuleType:
    """The pairwise hinge's device code (imported once)."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = load_kernels("multilabel_hinge")
    return _KERNELS


def _work_per_row(c: int, k: int) -> int:
    """Estimated single-thread time of one row in nanoseconds (measured rates of the two
    paths: ~0.15 ns per (slot, class) pair plus ~0.6 ns per class for the direct loop, ~1.2 ns
    per search level plus ~2 ns per class for the sorted search). T is not known before the
    row is read: K target columns stand for it, except in PyTorch's (N, C) layout (K ≥ C/2),
    mostly -1 padding, where rows are taken to have a few (8) positives."""
    slots = min(max(k, 1), 8) if 2 * k >= c else max(k, 1)
    if slots <= DIRECT_MAX:
        return int(c * (0.15 * slots + 0.6)) + 1
    return int(c * (1.2 * slots.bit_length() + 2.0)) + 1


def _row_weights(a: Any | None, n: int, c: int, name: str) -> tuple[np.ndarray, int]:
    """A weight of the contract as the kernel reads it: (flat float64, row stride), with
    (empty, 0) for None. Its shape is checked here, since the kernel does not bound-check."""
    if a is None:
        return _EMPTY, 0
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.shape == (c,):
        return a, 0
    if a.shape == (n, c):
        return a.reshape(-1), c
    raise ValueError(f"numba hinge: {name} must have shape ({c},) or ({n}, {c}), got {a.shape}")


@kernel_contract(example=True)
def hinge_numpy(
    x: np.ndarray,
    t: np.ndarray,
    *,
    margin: float,
    p: int,
    weight: np.ndarray | None,
    want_grad: bool,
    neg_weight: np.ndarray | None = None,
    grad_scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The compiled kernel on NumPy arrays: ``x`` floating (float16 is read as float32), ``t``
    integers of any dtype, ``weight`` and ``neg_weight`` of any floating dtype (read as
    float64). Returns ``loss_raw`` (N,) float64 and ``grad_raw`` (N, C) in ``x``'s dtype
    (float32 for float16), times ``grad_scale`` if given: an (N,) factor per row or one number
    for every row."""
    n, c = x.shape
    if x.dtype != np.float64 and x.dtype != np.float32:
        x = x.astype(np.float32)
    x = np.ascontiguousarray(x)
    t = np.ascontiguousarray(_host.integer_targets(t, c, ("int64", "int32")))
    w, w_stride = _row_weights(weight, n, c, "weight")
    v, v_stride = _row_weights(neg_weight, n, c, "neg_weight")
    factor = 1.0
    scale = _EMPTY
    if grad_scale is not None and np.ndim(grad_scale) == 0:
        factor = float(grad_scale)
    elif grad_scale is not None:
        scale = np.ascontiguousarray(np.broadcast_to(np.asarray(grad_scale, np.float64), (n,)))
    loss, grad = launch(
        x, t, w, float(margin), p, want_grad, scale, factor, w_stride=w_stride, v=v,
        v_stride=v_stride,
    )  # fmt: skip
    return loss, (grad if want_grad else None)


def launch(
    x: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
    margin: float,
    p: int,
    want_grad: bool,
    scale: np.ndarray,
    factor: float,
    grad: np.ndarray | None = None,
    *,
    w_stride: int = 0,
    v: np.ndarray = _EMPTY,
    v_stride: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel on arrays already in its layout (C-contiguous float32/64 scores, int32/64
    targets, flat float64 ``w`` (weights of positives), ``v`` (of negatives) and ``scale``, or
    empty; ``w_stride`` and ``v_stride`` the weights' row strides, 0 for (C,), C for (N, C)):
    (loss (N,) float64, grad (N, C) or (0, 0)), the gradient written into ``grad`` if given
    (C-contiguous, x's dtype). Small problems run on the calling thread; large ones in row
    blocks on the shared pool."""
    n, c = x.shape
    loss = np.empty(n, dtype=np.float64)
    if grad is None:
        grad = np.empty((n, c) if want_grad else (0, 0), dtype=x.dtype)
    kernel = (_KERNELS or _kernels()).hinge_rows

    def task(r0: int, r1: int) -> None:
        kernel(
            x, t, w, w_stride, v, v_stride, margin, p, want_grad, scale, factor, loss, grad, r0,
            r1, DIRECT_MAX,
        )  # fmt: skip

    _host.launch(task, n, max(1, BLOCK_WORK // _work_per_row(c, t.shape[1])))
    return loss, grad


def launch_plain(
    x: np.ndarray,
    t: np.ndarray,
    margin: float,
    p: int,
    factor: float,
    grad: np.ndarray | None,
) -> np.ndarray:
    """The kernel without weight or per-row scale on small problems, straight into ``grad``
    (the torch fast path's own buffer), or through :func:`launch`; returns the loss rows."""
    n, c = x.shape
    want = grad is not None
    if n * _work_per_row(c, t.shape[1]) > BLOCK_WORK:
        return launch(x, t, _EMPTY, margin, p, want, _EMPTY, factor, grad)[0]
    loss = np.empty(n, dtype=np.float64)
    out = grad if want else _NO_GRAD[x.dtype.char]
    (_KERNELS or _kernels()).hinge_rows(
        x, t, _EMPTY, 0, _EMPTY, 0, margin, p, want, _EMPTY, factor, loss, out, 0, n, DIRECT_MAX
    )
    return loss


hinge = on_host(hinge_numpy)


@functools.cache
def status() -> str | None:
    """None when Numba imports here, else why not (dispatch then falls back to reference).
    Found once per process (a package lookup costs more than a small call)."""
    if importlib.util.find_spec("numba") is None:
        return "numba is not installed (pip install numba); using reference instead"
    try:
        import numba  # noqa: F401
    except Exception as exc:  # e.g. built against another NumPy
        return f"numba does not import ({type(exc).__name__}: {exc}); using reference instead"
    return None


# --------------------------------------------------------------------------------------------
# support rules (read by the registry)
# --------------------------------------------------------------------------------------------
def supports(x: Any) -> str | None:
    """None when this backend runs on scores ``x``, else why not."""
    kind = array_kind(x)
    if kind in (("numpy", "cpu"), ("torch", "cpu")):
        return None
    return f"numba runs on NumPy arrays and torch CPU tensors, got {kind[0]} on {kind[1]}"
