"""What the backends' launches share: the kernel contract's documentation (written once and
appended to each backend's ``hinge``, whose own docstring keeps what is specific to it), the
``hinge`` of a backend built on a NumPy kernel, and the small arguments of the GPU launches
(weights, gradient scales) as torch tensors in the accumulation dtype.

Dtype rules live in :mod:`xmargin._interop` (``compute_dtype``), conversions between
frameworks too (``as_torch``, ``on_host_arrays``); the host side of the NumPy kernels
(C-contiguous views, integer targets, row blocks on the thread pool) in ``_host.py``.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

from .._interop import as_torch, on_host_arrays

__all__ = ["CONTRACT", "GPU_NOTES", "kernel_contract", "on_host", "torch_acc"]

HingeFn = Callable[..., tuple[Any, Any]]
_F = TypeVar("_F", bound=Callable[..., Any])

CONTRACT = """\
The kernel contract (docs/architecture.md): ``x`` (N, C) floating scores, ``t`` (N, K) integer
targets of any value; the positives of a row are its entries before the first negative one
(duplicates count). A row holding any value outside [-1, C), also after its first negative
entry, gets loss NaN and, when ``want_grad``, an all-NaN gradient row; other rows are
unaffected, and nothing is read or written out of bounds whatever ``t`` holds. ``weight`` and
``neg_weight`` are None, (C,) (shared by every row) or (N, C) (row n's own), finite and ≥ 0, in
the accumulation dtype: pair (positive t_k, negative j) of row n adds
``weight[n, t_k] · neg_weight[n, j] · max(0, margin − x[n, t_k] + x[n, j])^p`` (one term per
target slot, so duplicates add up); a negative of ``neg_weight`` 0 forms no pair at all (0 in
the loss and the gradient, also beside an infinite hinge) but is still a negative for the NaN
rule. ``loss_raw``
(N,) is each row's sum before the 1/C, ``grad_raw`` (N, C) its gradient (None without
``want_grad``), 0 at a zero hinge. Infinite scores follow the definition in IEEE arithmetic (an
infinite hinge is +inf, a pair that does not count adds nothing); a row with a NaN score, a
positive and a negative is NaN."""

GPU_NOTES = """\
``loss_raw`` is float32 (float64 for float64 scores), ``grad_raw`` has the scores' dtype; both
are arrays of the scores' framework on the scores' device. ``grad_scale``, (N,) or a number,
multiplies each gradient row inside the kernel (autograd's grad_output, value_and_grad's 1/C or
1/(N·C), without another pass over C), in float32 before the gradient is rounded to a half
dtype; a NaN row's gradient is not scaled. A raw half gradient (no scale) is what the dtype can
hold: float16 overflows to −inf for a positive with more than 65504 negatives above it.
``t`` (N, K) int32 or int64: the kernel checks its values (one pass over the K entries of each
row, int64 compared as 64-bit), so the caller need not."""

# PyTorch's documented example of MultiLabelMarginLoss, as raw sums (before the 1/C)
EXAMPLE = """\
>>> import numpy as np
>>> loss, grad = {name}(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[3, 0, -1, 1]]),
...     margin=1.0, p=1, weight=None, want_grad=True)
>>> round(float(loss[0]) / 4, 6), (grad[0] / 4).tolist()
(0.85, [-0.5, 0.5, 0.5, -0.5])"""


def kernel_contract(*notes: str, example: bool = False) -> Callable[[_F], _F]:
    """Decorates a backend's hinge: its docstring (what is specific to the backend) followed by
    the shared ``notes``, :data:`CONTRACT` and, with ``example``, PyTorch's example called on
    the function itself (a doctest of each backend that carries it)."""

    def decorate(fn: _F) -> _F:
        parts = [inspect.cleandoc(fn.__doc__ or ""), *notes, CONTRACT]
        if example:
            parts.append(EXAMPLE.format(name=fn.__name__))
        fn.__doc__ = "\n\n".join(part for part in parts if part)
        return fn

    return decorate


def on_host(hinge_numpy: HingeFn) -> HingeFn:
    """The ``hinge`` of a backend whose kernel ``hinge_numpy`` takes NumPy arrays: it takes CPU
    arrays of any framework (torch), read and written through zero-copy NumPy views, and
    returns results in ``x``'s namespace (:func:`xmargin._interop.on_host_arrays`); its
    signature is ``hinge_numpy``'s."""

    @functools.wraps(hinge_numpy, assigned=("__module__",))
    def hinge(x: Any, t: Any, **options: Any) -> tuple[Any, Any | None]:
        return on_host_arrays(hinge_numpy, x, t, **options)

    hinge.__qualname__ = hinge.__name__
    hinge.__doc__ = (
        f"``{hinge_numpy.__name__}`` on NumPy arrays or CPU arrays of another framework (torch), "
        "read and written through zero-copy views; results come back in ``x``'s namespace."
    )
    return hinge


def torch_acc(a: Any, dtype: Any, device: Any, n: int | None = None) -> Any:
    """A small argument of a GPU launch as a contiguous torch tensor of the accumulation
    ``dtype`` on ``device``: a (C,) weight, or with ``n`` a ``grad_scale`` broadcast to (N,),
    from a tensor, a CuPy array (zero-copy view) or a number (``value_and_grad`` folds the
    reduction's 1/C or 1/(N·C) in as a Python float)."""
    import torch

    if isinstance(a, numbers.Real):
        return torch.full((n if n is not None else 1,), float(a), dtype=dtype, device=device)
    out = as_torch(a).to(device=device, dtype=dtype)
    return (out.expand(n) if n is not None else out).contiguous()
