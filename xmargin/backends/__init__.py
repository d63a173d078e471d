"""Implementations of the pairwise multilabel hinge (DESIGN.md §5) and the choice among them.

Every backend implements one function, the kernel contract::

    hinge(x, t, *, margin, p, weight, want_grad) -> (loss_raw, grad_raw | None)

with ``x`` (N, C) scores, ``t`` (N, K) integer targets, ``loss_raw`` (N,) the per-sample sum
before the 1/C and ``grad_raw`` (N, C) its gradient. Targets are not cleaned beforehand (with
value checks off nothing reads them before the kernel): a row holding any value outside
[-1, C), also after its first -1, gets NaN loss and an all-NaN gradient row, and no backend
reads or writes out of bounds whatever the targets hold.
Reductions, validation, dtype casts and autograd live once, in the loss layer.

Known backends:

========== ==============================================================================
numba      compiled CPU kernel (Numba), O(T·C) or O(C log T) per sample by its own T; NumPy
           arrays and torch CPU tensors (zero-copy views); the CPU default
reference  NumPy CPU kernel, O(C log T) per sample; NumPy arrays and CPU tensors (DLPack)
portable   pure array-API code; any namespace and device (JAX, Dask, array-api-strict, ...)
triton     Triton GPU kernels; torch CUDA tensors (and CuPy arrays through DLPack)
cupy       CuPy raw-CUDA kernels; CuPy arrays (and torch CUDA tensors through DLPack)
========== ==============================================================================

Choosing one, first match wins: ``backend=`` on the call, then the innermost
:func:`use_backend` block (scoped per thread and per async task), then the environment variable
``XMARGIN_BACKEND``, then automatic dispatch on the scores' array type (DESIGN.md §6): NumPy and
torch CPU → ``numba`` (``reference`` where Numba cannot import); torch CUDA → ``triton``, else
``cupy``, else ``portable``; CuPy → ``cupy``, else ``triton``, else ``portable``; anything
else → ``portable``. A named backend that
is unknown, or cannot run on the given arrays, raises a ValueError that lists the valid choices
and says why.

Detection is lazy: it looks at the array's type and ``sys.modules`` and at whether a package is
installed (``importlib.util.find_spec``), never importing a framework just to check; results are
cached per array type and device kind.
"""

from __future__ import annotations

from ._registry import (
    Backend,
    BackendStatus,
    Explanation,
    available,
    check_backend_name,
    explain,
    get,
    register,
    resolve,
    unregister,
    use_backend,
)

__all__ = [
    "Backend",
    "BackendStatus",
    "Explanation",
    "available",
    "check_backend_name",
    "explain",
    "get",
    "register",
    "resolve",
    "unregister",
    "use_backend",
]
