"""soft_margin_loss and multilabel_soft_margin_loss: logistic losses, stable for any |x|."""

from __future__ import annotations

from typing import Any

from .._config import options
from .._errors import XMarginValueError
from .._interop import compute_dtype, native
from .._xp import (
    apply_reduction,
    astype,
    check_broadcasts_to,
    check_float,
    check_real_dtype,
    expand_to,
    mean,
    namespace_of,
    numel,
    reduction_scale,
    requires_grad,
    resolve_reduction,
    same_namespace,
    shape_str,
)
from ..backends._host import BLOCK, host_array, host_kind, launch, no_grad, numba_kernels
from ._checks import warn_01_labels, warn_if_01_labels, warn_if_pm1_labels, warn_pm1_labels
from ._public import public_loss

Array = Any


def softplus(xp: Any, z: Array) -> Array:
    """log(1 + exp(z)), exact and finite for every finite z (logaddexp(0, z))."""
    return xp.logaddexp(xp.zeros_like(z), z)


def sigmoid(xp: Any, z: Array) -> Array:
    """1 / (1 + exp(-z)) without overflow: exp(-softplus(-z))."""
    return xp.exp(-softplus(xp, -z))


def _soft_margin_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    argnums: tuple[int, ...] = (),
    fast: bool = True,
) -> tuple[Array, tuple[Array, ...]]:
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
    if fast and tuple(target.shape) == shape:
        out = _soft_margin_fast(input, target, shape, red, bool(argnums))
        if out is not None:
            return out

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


soft_margin_loss = public_loss(_soft_margin_loss)


def _multilabel_soft_margin_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    argnums: tuple[int, ...] = (),
    fast: bool = True,
) -> tuple[Array, tuple[Array, ...]]:
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
    if fast and tuple(target.shape) == shape:
        out = _multilabel_soft_margin_fast(input, target, weight, shape, red, bool(argnums))
        if out is not None:
            return out

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
    # σ(x) − y as (1 − y)·σ(x) − y·σ(−x): no cancellation for confident positives (x ≫ 0,
    # y = 1), as PyTorch's logsigmoid gradient
    g = (1.0 - y) * sigmoid(xp, x) - y * sigmoid(xp, -x)
    g = g * (reduction_scale(red, numel(shape[:-1])) / c)
    if w is not None:
        g = g * w
    return loss, (astype(xp, expand_to(xp, g, shape), input.dtype),)


multilabel_soft_margin_loss = public_loss(_multilabel_soft_margin_loss)


# --------------------------------------------------------------------------------------------
# CPU fast paths: compiled Numba kernels (kernels/numba/) on NumPy arrays and, through zero-copy
# views, on eager torch CPU tensors (xmargin/adapters/torch_elementwise.py). Shared by the
# element-wise losses and multi_margin_loss. Anything unusual (other namespaces, devices or
# dtypes, broadcasting arguments, transforms, tracing, a target that requires grad) returns
# None: the generic path above handles it and raises its errors.
# --------------------------------------------------------------------------------------------
def _soft_margin_kernel(x: Any, y: Any, loss: Any, grad: Any, scale: float) -> bool:
    """The kernel over flat float32/64 arrays of one dtype; whether the labels are all in
    {0, 1} with a 0 among them (the convention warning)."""
    import numpy as np

    k = numba_kernels("soft_margin")
    want = grad is not None
    g = grad if want else no_grad(np, x.dtype, 1)
    # float32 in float32 arithmetic (its scale too), float64 in float64
    f32 = x.dtype == np.float32
    kernel, factor = (k.soft_margin32, np.float32(scale)) if f32 else (k.soft_margin, scale)
    counts = launch(lambda i0, i1: kernel(x, y, loss, g, factor, want, i0, i1), x.size, BLOCK)
    return x.size > 0 and sum(c[0] for c in counts) == x.size and sum(c[1] for c in counts) > 0


def _warn_01(fn: str) -> None:

    warn_01_labels(fn)


def _soft_margin_fast(input: Array, target: Array, shape: tuple, red: str, want: bool) -> Any:
    """(loss, grads) by the compiled kernel, or None (the generic path applies)."""
    fn = "soft_margin_loss"
    kind = host_kind(input, target)
    if kind is None or numba_kernels("soft_margin") is None:
        return None
    scale = reduction_scale(red, numel(shape))
    if kind == "numpy":
        import numpy as np

        x = host_array(input)
        y = host_array(target, x.dtype)
        loss = np.empty(shape, x.dtype)
        grad = np.empty(shape, x.dtype) if want else None
        if _soft_margin_kernel(x.reshape(-1), y.reshape(-1), loss.reshape(-1),
                               None if grad is None else grad.reshape(-1), scale):  # fmt: skip
            _warn_01(fn)
        return apply_reduction(np, loss, red), ((grad,) if want else ())

    from ..adapters import torch_elementwise as te

    x = te.as_numpy(input)
    y = te.as_numpy(target, input.dtype)
    autograd = not want and te.needs_grad(input)

    def run() -> tuple:
        loss, loss_np = te.empty(shape, input.dtype)
        grad, grad_np = te.empty(shape, input.dtype) if want or autograd else (None, None)
        if _soft_margin_kernel(x.reshape(-1), y.reshape(-1), loss_np.reshape(-1),
                               None if grad_np is None else grad_np.reshape(-1), scale):  # fmt: skip
            _warn_01(fn)
        return apply_reduction(None, loss, red, eager=True), grad, None

    def generic(a: Any, _: Any) -> Any:  # for a second derivative; values checked already
        with options(check_values=False):
            return _soft_margin_loss(a, target, reduction=red, fast=False)[0]

    return te.value_or_node(run, generic, input, autograd, want)


def _multilabel_soft_margin_fast(
    input: Array, target: Array, weight: Any, shape: tuple, red: str, want: bool
) -> Any:
    """(loss, grads) by the compiled kernel, or None (the generic path applies). The weight
    must be None, one value per class ((C,), (1, C), ...) or one value."""
    fn = "multilabel_soft_margin_loss"
    c = shape[-1]
    if weight is not None:
        w_shape = tuple(weight.shape)
        per_class = len(w_shape) > 0 and w_shape[-1] == c and numel(w_shape) == c
        if not (per_class or numel(w_shape) == 1):
            return None
    kind = host_kind(input, target, weight)
    if kind is None or numba_kernels("soft_margin") is None:
        return None
    import numpy as np

    rows = numel(shape[:-1])
    scale = reduction_scale(red, rows) / c
    k = numba_kernels("soft_margin")
    if kind == "numpy":
        x = host_array(input).reshape(rows, c)
        y = host_array(target, x.dtype).reshape(rows, c)
        w = None if weight is None else host_array(weight, x.dtype)
    else:
        from ..adapters import torch_elementwise as te

        x = te.as_numpy(input).reshape(rows, c)
        y = te.as_numpy(target, input.dtype).reshape(rows, c)
        w = None if weight is None else te.as_numpy(weight, input.dtype)
    # per-class weights in the scores' dtype (the generic path's rounding); float32 scores
    # are computed in float32 arithmetic (weights and scale too), float64 ones in float64
    w = np.ones(c, x.dtype) if w is None else np.broadcast_to(w.reshape(-1), (c,)).copy()
    rows_kernel = k.multilabel_soft_margin
    if x.dtype == np.float32:
        rows_kernel, scale = k.multilabel_soft_margin32, np.float32(scale)
    block = max(1, BLOCK // c)

    def kernel(loss: Any, grad: Any) -> None:
        g = grad if grad is not None else no_grad(np, x.dtype, 2)
        want_g = grad is not None
        neg1 = launch(lambda r0, r1: rows_kernel(x, y, w, loss, g, scale, want_g, r0, r1), rows,
                      block)  # fmt: skip
        if sum(neg1) > 0:
            warn_pm1_labels(fn)

    if kind == "numpy":
        loss = np.empty(rows, x.dtype)
        grad = np.empty((rows, c), x.dtype) if want else None
        kernel(loss, grad)
        out = apply_reduction(np, loss.reshape(shape[:-1]), red)
        return out, ((grad.reshape(shape),) if grad is not None else ())

    autograd = not want and te.needs_grad(input)

    def run() -> tuple:
        loss, loss_np = te.empty(shape[:-1], input.dtype)
        grad, grad_np = te.empty(shape, input.dtype) if want or autograd else (None, None)
        kernel(loss_np.reshape(rows), None if grad_np is None else grad_np.reshape(rows, c))
        return apply_reduction(None, loss, red, eager=True), grad, None

    def generic(a: Any, _: Any) -> Any:  # for a second derivative; values checked already
        with options(check_values=False):
            return _multilabel_soft_margin_loss(a, target, weight, reduction=red, fast=False)[0]

    return te.value_or_node(run, generic, input, autograd, want)
