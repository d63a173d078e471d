"""Shared plumbing of the two row-wise losses (multi_margin_loss, multilabel_margin_loss)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._config import check_values_enabled
from .._errors import XMarginValueError
from .._xp import (
    astype,
    check_float,
    check_integer,
    check_real_dtype,
    index_dtype,
    is_jax,
    namespace_of,
    requires_grad,
    same_namespace,
    shape_str,
)
from ._checks import check_index_range

Array = Any
Core = Callable[..., tuple[Array, Array | None]]


def scores_as_matrix(fn: str, input: Array) -> tuple[Any, int, int]:
    """Namespace, N and C of a 0-d, (C,) or (N, C) score array (C >= 1, N may be 0)."""
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
        return xp, shape[0], shape[1]
    return xp, 1, (shape[0] if shape else 1)


def index_target(fn: str, xp: Any, input: Array, target: Any) -> Array:
    """``target`` in ``input``'s namespace; its dtype is checked after the shapes (PyTorch's
    order), by :func:`check_index_dtype`."""
    return same_namespace(fn, xp, "input", input, "target", target)


def check_index_dtype(fn: str, xp: Any, target: Array) -> None:
    check_integer(fn, "target", xp, target, "class indices")


def class_weight(fn: str, xp: Any, input: Array, weight: Any, c: int, dtype: Any) -> Array | None:
    """A (C,) per-class weight in the compute dtype, or None."""
    if weight is None:
        return None
    weight = same_namespace(fn, xp, "input", input, "weight", weight)
    check_real_dtype(fn, "weight", xp, weight)
    if requires_grad(weight):
        raise XMarginValueError(
            f"{fn}: argument 'weight' requires grad, but the per-class weight is a constant here "
            "(as in PyTorch, whose backward would fail: the derivative for 'weight' is not "
            "implemented); pass weight.detach()"
        )
    if weight.ndim != 1:
        raise XMarginValueError(
            f"{fn}: weight must be one-dimensional: argument 'weight' must have shape (C,) = "
            f"({c},), got shape {shape_str(tuple(weight.shape))}"
        )
    if weight.shape[0] != c:
        raise XMarginValueError(
            f"{fn}: inconsistent weight size, expected {c} but got "
            f"{shape_str(tuple(weight.shape))} (argument 'weight' must have one entry per class)"
        )
    return astype(xp, weight, dtype)


def index_values(
    fn: str, xp: Any, target: Array, shape: tuple[int, ...], low: int, high: int, what: str
) -> tuple[Array, Array | None]:
    """``target`` as indices (int64; int32 on JAX without x64) of ``shape`` with every value
    in [low, high), and the rows (first
    axis) that held a value outside it, or None.

    With value checks on, an out-of-range value raises (naming it and its position). With
    them off, no sync happens: such values are replaced by ``low`` so that no backend ever
    indexes out of bounds, and the returned rows are to be made NaN by the caller.
    """
    t = xp.reshape(astype(xp, target, index_dtype(xp)), shape)
    if check_values_enabled(target) and check_index_range(fn, xp, target, low, high, what):
        return t, None
    bad = (t < low) | (t >= high)
    rows = bad if t.ndim == 1 else xp.any(bad, axis=1)
    return xp.where(bad, low, t), rows


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


def run_core(core: Core, x: Array, operands: tuple, want_grad: bool) -> tuple[Array, Array | None]:
    """Loss rows (and, if ``want_grad``, gradient rows) of ``core(x, *operands, want_grad)``,
    with the core's analytic gradient attached for autodiff: a torch autograd Function for
    tensors that require grad, a ``jax.custom_vjp`` for JAX arrays (so that ``jax.grad``,
    ``jit`` and ``vmap`` work)."""
    if want_grad:
        return core(x, *operands, want_grad=True)
    if requires_grad(x):
        from ..adapters.torch import rowwise

        return rowwise(lambda x, want_grad: core(x, *operands, want_grad=want_grad), x), None
    if is_jax(x):
        from ..adapters.jax import rowwise as jax_rowwise

        return jax_rowwise(core, x, *operands), None
    return core(x, *operands, want_grad=False)


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
    n = loss_raw.shape[0]
    per_sample = loss_raw / c
    if reduction == "none":
        loss = per_sample if matrix_out else xp.reshape(per_sample, ())
    elif reduction == "sum":
        loss = xp.sum(per_sample)
    else:
        loss = xp.sum(per_sample) / n if n else xp.sum(per_sample) * math.nan
    loss = astype(xp, loss, input.dtype)
    if grad_raw is None:
        return loss, ()
    scale = (1.0 / n if n else math.nan) if reduction == "mean" else 1.0
    grad = xp.reshape(grad_raw * (scale / c), tuple(input.shape))
    return loss, (astype(xp, grad, input.dtype),)
