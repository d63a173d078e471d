"""soft_margin_loss and multilabel_soft_margin_loss: logistic losses, stable for any |x|."""

from __future__ import annotations

from typing import Any

from .._errors import XMarginValueError
from .._xp import (
    apply_reduction,
    astype,
    check_broadcasts_to,
    check_float,
    check_real_dtype,
    compute_dtype,
    expand_to,
    mean,
    namespace_of,
    native,
    numel,
    reduction_scale,
    requires_grad,
    resolve_reduction,
    same_namespace,
    shape_str,
)
from ._checks import warn_if_01_labels, warn_if_pm1_labels

Array = Any


def softplus(xp: Any, z: Array) -> Array:
    """log(1 + exp(z)), exact and finite for every finite z (logaddexp(0, z))."""
    return xp.logaddexp(xp.zeros_like(z), z)


def sigmoid(xp: Any, z: Array) -> Array:
    """1 / (1 + exp(-z)) without overflow: exp(-softplus(-z))."""
    return xp.exp(-softplus(xp, -z))


def soft_margin_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Two-class logistic loss ``log(1 + exp(-y·x))`` for labels ``y`` in {-1, +1}.

    Same call and results as ``torch.nn.functional.soft_margin_loss`` on any array-API array,
    but exact and finite for large ``|x|`` (PyTorch overflows to inf at y·x = -1000). ``target``
    may have any real dtype and must broadcast to ``input``'s shape; the loss has ``input``'s
    dtype. A target of {0, 1} labels warns (use :func:`xmargin.targets.to_pm1`).

    >>> import numpy as np, xmargin
    >>> x = np.array([0.0, 2.0, -1000.0]); y = np.array([1.0, 1.0, 1.0])
    >>> xmargin.soft_margin_loss(x, y, reduction="none").round(4).tolist()
    [0.6931, 0.1269, 1000.0]
    """
    return _soft_margin_loss(input, target, size_average, reduce, reduction)[0]


def _soft_margin_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    argnums: tuple[int, ...] = (),
) -> tuple[Array, tuple[Array, ...]]:
    fn = "soft_margin_loss"
    red = resolve_reduction(fn, size_average, reduce, reduction)
    input = native(input)
    xp = namespace_of(fn, "input", input)
    check_float(fn, "input", xp, input)
    if requires_grad(target):  # PyTorch's rule (its derivative for 'target' is not defined)
        raise XMarginValueError(
            f"{fn}: argument 'target' requires grad, but the function 'soft_margin_loss' is not "
            "differentiable with respect to argument 'target' (as in PyTorch); pass "
            "target.detach()"
        )
    target = same_namespace(fn, xp, "input", input, "target", target)
    check_real_dtype(fn, "target", xp, target)
    shape = tuple(input.shape)
    check_broadcasts_to(fn, "target", tuple(target.shape), shape)

    cd = compute_dtype(xp, input.dtype)
    x, y = astype(xp, input, cd), astype(xp, target, cd)
    warn_if_01_labels(fn, xp, y)
    z = -y * x
    loss = astype(xp, apply_reduction(xp, softplus(xp, z), red), input.dtype)
    if not argnums:
        return loss, ()
    # d/dx log(1 + exp(-y·x)) = -y·σ(-y·x)
    g = -y * sigmoid(xp, z) * reduction_scale(red, numel(shape))
    return loss, (astype(xp, expand_to(xp, g, shape), input.dtype),)


def multilabel_soft_margin_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Array:
    """Per-class logistic loss averaged over the C classes, for labels in {0, 1}.

    ``loss_n = -(1/C) Σ_c w_c [y_c log σ(x_c) + (1 − y_c) log σ(−x_c)]`` over the last axis of
    ``input`` (shape (..., C); any leading dims, C >= 1), as
    ``torch.nn.functional.multilabel_soft_margin_loss``. ``target`` and ``weight`` must broadcast
    to ``input``'s shape (PyTorch would also broadcast ``input`` up and then sum over the wrong
    axis; xmargin refuses that). Exact and finite for any ``|x|``. A target holding -1 warns (use
    :func:`xmargin.targets.to_01`).

    >>> import numpy as np, xmargin
    >>> x = np.array([[2.0, -1.0, 0.5]]); y = np.array([[1, 0, 1]])
    >>> round(float(xmargin.multilabel_soft_margin_loss(x, y)), 6)
    0.304756
    """
    return _multilabel_soft_margin_loss(input, target, weight, size_average, reduce, reduction)[0]


def _multilabel_soft_margin_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    argnums: tuple[int, ...] = (),
) -> tuple[Array, tuple[Array, ...]]:
    fn = "multilabel_soft_margin_loss"
    # PyTorch refuses reduction="elementwise_mean" here (its other losses accept it)
    red = resolve_reduction(fn, size_average, reduce, reduction, elementwise_mean=False)
    input = native(input)
    xp = namespace_of(fn, "input", input)
    check_float(fn, "input", xp, input)
    shape = tuple(input.shape)
    if len(shape) == 0 or shape[-1] == 0:
        raise XMarginValueError(
            f"{fn}: argument 'input' must have shape (..., C) with C >= 1 classes on the last "
            f"axis, got shape {shape_str(shape)}"
        )
    target = same_namespace(fn, xp, "input", input, "target", target)
    check_real_dtype(fn, "target", xp, target)
    check_broadcasts_to(fn, "target", tuple(target.shape), shape)
    if weight is not None:
        weight = same_namespace(fn, xp, "input", input, "weight", weight)
        check_real_dtype(fn, "weight", xp, weight)
        check_broadcasts_to(fn, "weight", tuple(weight.shape), shape)

    cd = compute_dtype(xp, input.dtype)
    x, y = astype(xp, input, cd), astype(xp, target, cd)
    warn_if_pm1_labels(fn, xp, y)
    c = shape[-1]
    elem = y * softplus(xp, -x) + (1.0 - y) * softplus(xp, x)
    w = None if weight is None else astype(xp, weight, cd)
    if w is not None:
        elem = elem * w
    per_sample = mean(xp, elem, axis=-1)  # finite wherever the true mean is
    loss = astype(xp, apply_reduction(xp, per_sample, red), input.dtype)
    if not argnums:
        return loss, ()
    g = (sigmoid(xp, x) - y) * (reduction_scale(red, numel(shape[:-1])) / c)
    if w is not None:
        g = g * w
    return loss, (astype(xp, expand_to(xp, g, shape), input.dtype),)
