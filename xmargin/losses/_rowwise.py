"""Shared plumbing of the two row-wise losses (multi_margin_loss, multilabel_margin_loss)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._config import check_values_enabled, readable
from .._errors import XMarginValueError
from .._interop import is_jax, is_torch, namespace, native
from .._xp import (
    apply_reduction,
    as_array,
    astype,
    check_float,
    check_integer,
    check_p,
    check_real,
    check_real_dtype,
    index_dtype,
    namespace_of,
    reduction_scale,
    requires_grad,
    resolve_reduction,
    same_namespace,
    shape_str,
)
from ._checks import check_index_range, fit_indices

Array = Any
Core = Callable[..., tuple[Array, Array | None]]


def row_options(
    fn: str, size_average: Any, reduce: Any, reduction: Any, p: Any, margin: Any
) -> tuple[str, int, float]:
    """The reduction, ``p`` and ``margin`` of a row-wise loss, checked in PyTorch's order."""
    red = resolve_reduction(fn, size_average, reduce, reduction)
    return red, check_p(fn, p), check_real(fn, "margin", margin)


def scores_as_matrix(fn: str, input: Array) -> tuple[Array, Any, int, int]:
    """A 0-d, (C,) or (N, C) score array (C >= 1, N may be 0) in native byte order, its
    namespace, N and C."""
    input = native(input)
    xp = namespace_of(fn, "input", input)
    check_float(fn, "input", xp, input)
    shape = tuple(input.shape)
    if len(shape) > 2 or (len(shape) >= 1 and shape[-1] == 0):
        raise XMarginValueError(
            f"{fn}: argument 'input' must be a 0-d scalar, a (C,) vector or an (N, C) matrix "
            f"with C >= 1 (Expected non-empty vector or matrix with optional 0-dim batch size, "
            f"but got: {shape_str(shape)})"
        )
    if len(shape) == 2:
        return input, xp, shape[0], shape[1]
    return input, xp, 1, (shape[0] if shape else 1)


def index_target(fn: str, target: Any) -> Array:
    """``target`` as an array of its own namespace (Python lists and numbers become NumPy
    arrays). It is converted to the scores' namespace only after its values have been checked
    or made safe in their own dtype (:func:`index_values`): a conversion may narrow them (JAX
    without x64 holds int64 values in int32). Its dtype is checked after the shapes (PyTorch's
    order), by :func:`check_index_dtype`."""
    return native(as_array(fn, "target", target))


def check_target_rows(fn: str, target: Array, n: int, input_shape: tuple[int, ...]) -> None:
    """PyTorch's shape rule for -1-padded index targets: (N, K) with the scores' N for (N, C)
    scores, (K,) or 0-d for a (C,) vector."""
    t_shape = tuple(target.shape)
    matrix = len(input_shape) == 2
    if (matrix and not (len(t_shape) == 2 and t_shape[0] == n)) or (
        not matrix and len(t_shape) > 1
    ):
        expected = f"(N, K) with N = {n}" if matrix else "(K,) or 0-d"
        raise XMarginValueError(
            f"{fn}: inconsistent target size: {shape_str(t_shape)} for input of size: "
            f"{shape_str(input_shape)}; argument 'target' must have shape {expected} "
            "(class indices padded with -1)"
        )


def check_index_dtype(fn: str, target: Array) -> None:
    check_integer(fn, "target", namespace(target), target, "class indices")


def class_weight(
    fn: str, xp: Any, input: Array, weight: Any, c: int, dtype: Any, name: str = "weight"
) -> Array | None:
    """A (C,) per-class weight (argument ``name``) in the compute dtype, or None."""
    if weight is None:
        return None
    weight = same_namespace(fn, xp, "input", input, name, weight)
    check_real_dtype(fn, name, xp, weight)
    if requires_grad(weight):
        raise XMarginValueError(
            f"{fn}: argument '{name}' requires grad, but the per-class weight is a constant "
            "here (as in PyTorch, whose backward would fail: the derivative for 'weight' is not "
            f"implemented); pass {name}.detach()"
        )
    if weight.ndim != 1:
        raise XMarginValueError(
            f"{fn}: {name} must be one-dimensional: argument '{name}' must have shape (C,) = "
            f"({c},), got shape {shape_str(tuple(weight.shape))}"
        )
    if weight.shape[0] != c:
        raise XMarginValueError(
            f"{fn}: inconsistent {name} size, expected {c} but got "
            f"{shape_str(tuple(weight.shape))} (argument '{name}' must have one entry per class)"
        )
    return astype(xp, weight, dtype)


def check_weight_values(fn: str, xp: Any, w: Array, name: str) -> Array | None:
    """Every weight of ``w`` must be finite and >= 0. With value checks on, where values can be
    read, the first culprit raises; otherwise (checks off, ``jax.jit``) nothing is read and the
    0-d flag "some weight is bad" comes back, for the caller to make every row NaN (None: all
    checked)."""
    bad = xp.any(~xp.isfinite(w) | (w < 0))
    if not check_values_enabled(w) or not readable(bad):
        return bad
    if not bool(bad):
        return None
    flags = ~xp.isfinite(w) | (w < 0)
    first = int(xp.argmax(astype(xp, flags, xp.int8)))
    raise XMarginValueError(
        f"{fn}: argument '{name}' must hold finite weights >= 0, got {name}[{first}] = "
        f"{float(w[first])}"
    )


def _as_indices(
    fn: str,
    xp: Any,
    input: Array,
    target: Array,
    low: int,
    high: int,
    what: str | None,
    name: str = "target",
) -> tuple[Array, bool]:
    """``target`` in ``input``'s namespace and index dtype, out-of-range values kept out of
    range through every cast (:func:`fit_indices`); unless ``what`` (how an error names the
    values) is None, values read first (in their own dtype) and an out-of-range one raised.
    Returns the indices and whether they were checked (False also where values cannot be
    read, inside ``jax.jit``)."""
    idx = index_dtype(xp)
    xp_t = namespace(target)
    if xp_t is not xp and xp_t.iinfo(target.dtype).bits > xp.iinfo(idx).bits:
        # the conversion itself would narrow (int64 into JAX's int32 without x64): check, or
        # keep out-of-range values out of range, in the target's own namespace first
        checked = what is not None and check_index_range(
            fn, xp_t, target, low, high, what, name
        )
        if not checked:
            width = xp_t.int32 if xp.iinfo(idx).bits == 32 else xp_t.int64
            target = fit_indices(xp_t, target, low, high, width)
        return same_namespace(fn, xp, "input", input, name, target), checked
    # convert first (device and namespace errors before any value is read)
    target = same_namespace(fn, xp, "input", input, name, target)
    checked = what is not None and check_index_range(fn, xp, target, low, high, what, name)
    return (target if checked else fit_indices(xp, target, low, high, idx)), checked


def index_values(
    fn: str,
    xp: Any,
    input: Array,
    target: Array,
    shape: tuple[int, ...],
    low: int,
    high: int,
    what: str,
    name: str = "target",
) -> tuple[Array, Array | None]:
    """``target`` (an integer array of any namespace; an error calls it argument ``name``) as
    indices of ``input``'s namespace and
    device, in its index dtype (int64; int32 on JAX without x64), of ``shape``; and the rows
    (first axis) holding a value outside [low, high), or None.

    With value checks on, an out-of-range value raises, naming it and its position, read in
    the target's own dtype before any cast. With them off (or where values cannot be read) no
    sync happens: such values are replaced by ``max(low, 0)`` and their rows returned, for the
    caller to make NaN.
    """
    check = check_values_enabled(target)
    t, checked = _as_indices(fn, xp, input, target, low, high, what if check else None, name)
    t = xp.reshape(astype(xp, t, index_dtype(xp)), shape)
    if checked:
        return t, None
    bad = (t < low) | (t >= high)
    rows = bad if t.ndim == 1 else xp.any(bad, axis=1)
    return xp.where(bad, max(low, 0), t), rows


def index_values_unchecked(
    fn: str, xp: Any, input: Array, target: Array, shape: tuple[int, ...], low: int, high: int
) -> Array:
    """``target`` as indices (as :func:`index_values`) for a kernel that flags out-of-range
    rows itself (NaN loss): no value is read; pair it with :func:`check_on_nan`."""
    t, _ = _as_indices(fn, xp, input, target, low, high, None)
    return xp.reshape(astype(xp, t, index_dtype(xp)), shape)


def check_on_nan(
    fn: str, target: Array, low: int, high: int, what: str
) -> Callable[[], None] | None:
    """The value check of the targets given to such a kernel, to run only if the loss has a
    NaN (or None, checks being off).

    A kernel that makes a row NaN for every target outside [low, high) proves, by a loss
    without NaN, that every target was in range: the check reads the targets only when the
    loss has a NaN (a bad target, or a NaN score), so value checks cost one look at the loss,
    not a pass over N·K targets. The check reads the original target in its own dtype and
    raises naming the first bad value, as :func:`index_values` does.
    """
    if not check_values_enabled(target):
        return None
    xp_t = namespace(target)

    def verify() -> None:
        check_index_range(fn, xp_t, target, low, high, what)

    return verify


def nan_where(
    xp: Any, rows: Array | None, loss: Array, grad: Array | None
) -> tuple[Array, Array | None]:
    """Set the loss and gradient rows flagged in ``rows`` (N,) to NaN (None: no rows)."""
    if rows is None:
        return loss, grad
    loss = xp.where(rows, math.nan, loss)
    if grad is not None:
        grad = xp.where(rows[:, None], math.nan, grad)
    return loss, grad


def run_core(
    core: Core,
    x: Array,
    rows: tuple,
    shared: tuple = (),
    *,
    want_grad: bool,
    recompute: bool = False,
) -> tuple[Array, Array | None]:
    """Loss rows (and, if ``want_grad``, gradient rows) of
    ``core(x, *rows, *shared, want_grad)``, with the core's analytic gradient attached for
    autodiff: a torch autograd Function (reverse and forward mode, torch.func) for tensors
    that need derivatives, a ``jax.custom_vjp`` for JAX arrays (so that ``jax.grad``, ``jit``
    and ``vmap`` work). ``rows`` are row-aligned operands (first axis N), ``shared`` the
    others (weights). ``recompute``: under torch autograd, a loss-only forward and a second,
    scaled core call in backward (the core then takes ``grad_scale``)."""
    if want_grad:
        return core(x, *rows, *shared, want_grad=True)
    if is_torch(x):
        from ..adapters.torch import needs_autodiff, rowwise

        if needs_autodiff(x):
            return rowwise(core, x, rows, shared, recompute=recompute), None
    elif is_jax(x):
        from ..adapters.jax import rowwise as jax_rowwise

        return jax_rowwise(core, x, *rows, *shared), None
    return core(x, *rows, *shared, want_grad=False)


def finish(
    xp: Any,
    loss_raw: Array,
    grad_raw: Array | None,
    *,
    c: int,
    reduction: str,
    matrix_out: bool,
    input: Array,
) -> tuple[Array, tuple[Array, ...]]:
    """1/C, the reduction and the output dtype and shape, for loss and gradient."""
    loss = apply_reduction(xp, loss_raw / c, reduction)
    if reduction == "none" and not matrix_out:
        loss = xp.reshape(loss, ())
    loss = astype(xp, loss, input.dtype)
    if grad_raw is None:
        return loss, ()
    scale = reduction_scale(reduction, loss_raw.shape[0])
    grad = xp.reshape(grad_raw * (scale / c), tuple(input.shape))
    return loss, (astype(xp, grad, input.dtype),)
