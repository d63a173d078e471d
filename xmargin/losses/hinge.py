"""hinge_embedding_loss and margin_ranking_loss: element-wise hinges with PyTorch broadcasting."""

from __future__ import annotations

from typing import Any

from .._errors import XMarginValueError
from .._xp import (
    apply_reduction,
    astype,
    broadcast_shapes,
    check_float,
    check_real,
    check_real_dtype,
    compute_dtype,
    expand_to,
    namespace_of,
    native,
    numel,
    reduction_scale,
    resolve_reduction,
    same_namespace,
    shape_str,
    sum_to_shape,
)
from ._checks import warn_if_01_labels

Array = Any


def _broadcast(fn: str, **shapes: tuple) -> tuple:
    out = broadcast_shapes(*shapes.values())
    if out is None:
        desc = ", ".join(f"{k}: {shape_str(v)}" for k, v in shapes.items())
        raise XMarginValueError(
            f"{fn}: arguments must broadcast to one shape, got shapes {desc} "
            "(The size of tensor a must match the size of tensor b at non-singleton dimensions)"
        )
    return out


def hinge_embedding_loss(
    input: Array,
    target: Array,
    margin: float = 1.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """``x`` where ``y = 1``, ``max(0, margin − x)`` where ``y = −1`` (PyTorch's formula).

    As ``torch.nn.functional.hinge_embedding_loss``: ``input`` and ``target`` broadcast; a label
    that is neither 1 nor −1 gets both terms, as in PyTorch. A target of {0, 1} labels warns
    (use :func:`xmargin.targets.to_pm1`).

    >>> import numpy as np, xmargin
    >>> d = np.array([0.3, 0.3, 2.0]); y = np.array([1, -1, -1])
    >>> xmargin.hinge_embedding_loss(d, y, reduction="none").round(4).tolist()
    [0.3, 0.7, 0.0]
    """
    return _hinge_embedding_loss(input, target, margin, size_average, reduce, reduction)[0]


def _hinge_embedding_loss(
    input: Array,
    target: Array,
    margin: float = 1.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    argnums: tuple[int, ...] = (),
) -> tuple[Array, tuple[Array, ...]]:
    fn = "hinge_embedding_loss"
    red = resolve_reduction(fn, size_average, reduce, reduction)
    margin = check_real(fn, "margin", margin)
    input = native(input)
    xp = namespace_of(fn, "input", input)
    check_float(fn, "input", xp, input)
    target = same_namespace(fn, xp, "input", input, "target", target)
    check_real_dtype(fn, "target", xp, target)
    shape = _broadcast(fn, input=tuple(input.shape), target=tuple(target.shape))

    cd = compute_dtype(xp, input.dtype)
    x, y = astype(xp, input, cd), astype(xp, target, cd)
    warn_if_01_labels(fn, xp, y)
    gap = margin - x
    # clip (not maximum) so that a tie gap == 0 passes the gradient, as PyTorch's clamp_min
    elem = xp.where(y != 1, xp.clip(gap, min=0.0), 0.0) + xp.where(y != -1, x, 0.0)
    loss = astype(xp, apply_reduction(xp, expand_to(xp, elem, shape), red), input.dtype)
    if not argnums:
        return loss, ()
    g = xp.astype(y != -1, cd) - xp.astype((y != 1) & (gap >= 0), cd)
    g = expand_to(xp, g * reduction_scale(red, numel(shape)), shape)
    return loss, (astype(xp, sum_to_shape(xp, g, tuple(input.shape)), input.dtype),)


def margin_ranking_loss(
    input1: Array,
    input2: Array,
    target: Array,
    margin: float = 0.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """``max(0, −y·(x1 − x2) + margin)``: ``y = 1`` ranks ``x1`` above ``x2``, ``y = −1`` below.

    As ``torch.nn.functional.margin_ranking_loss``: the three arguments must have the same
    number of dimensions and broadcast. The computation runs in the promoted dtype of ``input1``
    and ``input2``; ``target`` (any real dtype) is cast to it. A target of {0, 1} labels warns.

    >>> import numpy as np, xmargin
    >>> a = np.array([1.0, 0.2]); b = np.array([0.5, 0.4]); y = np.array([1.0, 1.0])
    >>> xmargin.margin_ranking_loss(a, b, y, margin=0.1, reduction="none").round(4).tolist()
    [0.0, 0.3]
    """
    return _margin_ranking_loss(input1, input2, target, margin, size_average, reduce, reduction)[0]


def _margin_ranking_loss(
    input1: Array,
    input2: Array,
    target: Array,
    margin: float = 0.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    argnums: tuple[int, ...] = (),
) -> tuple[Array, tuple[Array, ...]]:
    fn = "margin_ranking_loss"
    red = resolve_reduction(fn, size_average, reduce, reduction)
    margin = check_real(fn, "margin", margin)
    input1 = native(input1)
    xp = namespace_of(fn, "input1", input1)
    check_float(fn, "input1", xp, input1)
    input2 = same_namespace(fn, xp, "input1", input1, "input2", input2)
    check_float(fn, "input2", xp, input2)
    target = same_namespace(fn, xp, "input1", input1, "target", target)
    check_real_dtype(fn, "target", xp, target)
    if not input1.ndim == input2.ndim == target.ndim:
        raise XMarginValueError(
            f"{fn}: arguments 'input1', 'input2' and 'target' must have the same number of "
            f"dimensions ({fn} : All input tensors should have same dimension but got sizes: input1: "
            f"{shape_str(tuple(input1.shape))}, input2: {shape_str(tuple(input2.shape))}, "
            f"target: {shape_str(tuple(target.shape))})"
        )
    shape = _broadcast(
        fn, input1=tuple(input1.shape), input2=tuple(input2.shape), target=tuple(target.shape)
    )

    out_dtype = xp.result_type(input1.dtype, input2.dtype)
    cd = compute_dtype(xp, out_dtype)
    x1, x2, y = astype(xp, input1, cd), astype(xp, input2, cd), astype(xp, target, cd)
    warn_if_01_labels(fn, xp, y)
    z = -y * (x1 - x2) + margin
    elem = expand_to(xp, xp.clip(z, min=0.0), shape)
    loss = astype(xp, apply_reduction(xp, elem, red), out_dtype)
    if not argnums:
        return loss, ()
    g = expand_to(xp, xp.where(z >= 0, -y, 0.0) * reduction_scale(red, numel(shape)), shape)
    grads = []
    for i in argnums:
        arg, sign = (input1, 1.0) if i == 0 else (input2, -1.0)
        grads.append(astype(xp, sum_to_shape(xp, sign * g, tuple(arg.shape)), arg.dtype))
    return loss, tuple(grads)
