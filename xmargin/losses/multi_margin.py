"""multi_margin_loss: the Weston–Watkins multi-class hinge."""

from __future__ import annotations

from typing import Any

from .._config import options
from .._errors import XMarginValueError
from .._interop import compute_dtype, is_dask, namespace
from .._xp import astype, device, reduction_scale, same_namespace, shape_str
from ..backends._host import BLOCK, host_array, host_kind, launch, numba_kernels
from ._dask import rowwise_dask
from ._public import public_loss
from ._rowwise import (
    check_index_dtype,
    class_weight,
    finish,
    index_target,
    index_values,
    nan_where,
    row_options,
    run_core,
    scores_as_matrix,
)

Array = Any


def _multi_margin_loss(
    input: Array,
    target: Array,
    p: int = 1,
    margin: float = 1.0,
    weight: Array | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    argnums: tuple[int, ...] = (),
    fast: bool = True,
) -> tuple[Array, tuple[Array, ...]]:
    """Multi-class hinge ``(1/C) Σ_{j≠y} w_y · max(0, margin − x_y + x_j)^p``.

    As ``torch.nn.functional.multi_margin_loss``: ``input`` is 0-d, (C,) or (N, C) (N may be
    0), ``target`` holds one class index per sample (shape (N,), or 0-d/(1,) for a single
    sample) of any integer dtype, ``p`` is 1 or 2 and ``weight`` (C,) weighs each sample by its
    true class. Differences: a NaN score gives a NaN loss (PyTorch: 0), the mean over N = 0
    samples is NaN, and float16/bfloat16 work (float32 accumulation).

    >>> import numpy as np, xmargin
    >>> x = np.array([[0.1, 0.2, 0.4, 0.8]]); y = np.array([3])
    >>> round(float(xmargin.multi_margin_loss(x, y)), 6)   # PyTorch's documented example
    0.325
    """
    fn = "multi_margin_loss"
    red, p, margin = row_options(fn, size_average, reduce, reduction, p, margin)
    input, xp, n, c = scores_as_matrix(fn, input)
    target = index_target(fn, target)
    t_shape = tuple(target.shape)
    if not (t_shape == (n,) or (n == 1 and t_shape == ())):
        raise XMarginValueError(
            f"{fn}: argument 'target' must hold one class index per sample (target tensor "
            "should be 1-D with size equal to the number of input samples (batch size). "
            f"Expected target size [{n}], but got {shape_str(t_shape)}. Input has shape "
            f"{shape_str(tuple(input.shape))}.)"
        )
    cd = compute_dtype(xp, input.dtype)
    w = class_weight(fn, xp, input, weight, c, cd)
    check_index_dtype(fn, target)
    if is_dask(input):  # lazily, batch chunk by batch chunk
        target = same_namespace(fn, xp, "input", input, "target", target)
        return rowwise_dask(
            _multi_margin_loss, input, target, n=n, c=c, t_shape=(n,), reduction=red,
            matrix_out=len(t_shape) > 0, weight=w, argnums=argnums,
            options={"p": p, "margin": margin},
        )  # fmt: skip

    if fast:
        out = _multi_margin_fast(
            input, target, weight, w, n, c, len(t_shape) > 0, p, margin, red, bool(argnums)
        )
        if out is not None:
            return out

    t, bad = index_values(
        fn, xp, input, target, (n,), 0, c, f"class indices of an input with C = {c}"
    )
    x = xp.reshape(astype(xp, input, cd), (n, c))
    dev = device(x)
    classes = xp.reshape(xp.arange(c, dtype=t.dtype, device=dev), (1, c))
    is_y = classes == t[:, None]
    w_y = None if w is None else xp.take(w, t, axis=0)

    def core(x: Array, t: Array, is_y: Array, w_y: Any, bad: Any, want_grad: bool):
        x_y = xp.take_along_axis(x, t[:, None], axis=1)
        z = margin - x_y + x
        active = (z > 0) & ~is_y  # strictly positive hinge: zero hinge, zero gradient
        h = xp.where(active, z, 0.0)
        loss = xp.sum(h if p == 1 else h * h, axis=1)
        if w_y is not None:
            loss = loss * w_y
        grad = None
        if want_grad:
            g = xp.astype(active, x.dtype) if p == 1 else 2.0 * h
            if w_y is not None:
                g = g * w_y[:, None]
            grad = g - xp.where(is_y, xp.sum(g, axis=1, keepdims=True), 0.0)
        # NaN propagates: any NaN score in a row of C >= 2 classes enters its loss
        nan_rows = xp.any(xp.isnan(x), axis=1) & (c > 1)
        return nan_where(xp, nan_rows if bad is None else nan_rows | bad, loss, grad)

    loss_raw, grad_raw = run_core(core, x, (t, is_y, w_y, bad), want_grad=bool(argnums))
    return finish(
        xp, loss_raw, grad_raw, c=c, reduction=red, matrix_out=len(t_shape) > 0, input=input
    )


multi_margin_loss = public_loss(_multi_margin_loss)


# --------------------------------------------------------------------------------------------
# CPU fast path: the compiled kernel of kernels/numba/multi_margin.py on NumPy arrays and eager
# torch CPU tensors (see soft_margin.py); None: the generic path applies.
# --------------------------------------------------------------------------------------------
def _multi_margin_fast(
    input: Array,
    target: Array,
    weight: Any,
    w: Any,
    n: int,
    c: int,
    matrix_out: bool,
    p: int,
    margin: float,
    red: str,
    want: bool,
) -> Any:
    """(loss, grads) by the compiled kernel, or None. ``w``: the validated (C,) class weight in
    the compute dtype (``weight`` as given, for the generic path of a second derivative)."""
    fn = "multi_margin_loss"
    kind = host_kind(input, w)
    k = None if kind is None else numba_kernels("multi_margin")
    if k is None:
        return None
    import numpy as np

    xp = namespace(input)
    # the target's values: checked (raises) or flagged, exactly as on the generic path
    t, bad = index_values(
        fn, xp, input, target, (n,), 0, c, f"class indices of an input with C = {c}"
    )
    if kind == "numpy":
        x = host_array(input).reshape(n, c)
        t_np = host_array(t, np.int64)
        bad_np = np.empty(0, np.bool_) if bad is None else host_array(bad, np.bool_)
        w_np = np.empty(0) if w is None else host_array(w, np.float64)
    else:
        from ..adapters import torch_elementwise as te

        x = te.as_numpy(input).reshape(n, c)
        t_np = np.ascontiguousarray(te.as_numpy(t), dtype=np.int64)
        bad_np = np.empty(0, np.bool_) if bad is None else te.as_numpy(bad)
        w_np = np.empty(0) if w is None else np.ascontiguousarray(te.as_numpy(w), np.float64)
    dt = x.dtype.type  # margin − x_y + x_j in the scores' dtype, as PyTorch does
    m, zero = dt(margin), dt(0)
    factor = reduction_scale(red, n) / c
    block = max(1, BLOCK // c)

    def kernel(grad: Any) -> Any:
        loss = np.empty(n, np.float64)
        g = np.empty((0, 0), x.dtype) if grad is None else grad
        want_g = grad is not None
        launch(lambda r0, r1: k.multi_margin(x, t_np, bad_np, w_np, m, zero, p, factor, loss, g,
                                             want_g, r0, r1), n, block)  # fmt: skip
        return loss

    if kind == "numpy":
        grad = np.empty((n, c), x.dtype) if want else None
        loss_raw = kernel(grad)
        loss, _ = finish(np, loss_raw, None, c=c, reduction=red, matrix_out=matrix_out,
                         input=input)  # fmt: skip
        return loss, ((grad.reshape(tuple(input.shape)),) if grad is not None else ())

    autograd = not want and te.needs_grad(input)

    def run() -> tuple:
        grad, grad_np = te.empty((n, c), input.dtype) if want or autograd else (None, None)
        loss_raw = te.from_numpy(kernel(grad_np))
        loss, _ = finish(xp, loss_raw, None, c=c, reduction=red, matrix_out=matrix_out,
                         input=input)  # fmt: skip
        return loss, None if grad is None else grad.reshape(tuple(input.shape)), None

    def generic(a: Any, _: Any) -> Any:  # for a second derivative; values checked already
        with options(check_values=False):
            return _multi_margin_loss(a, target, p, margin, weight, reduction=red, fast=False)[0]

    return te.value_or_node(run, generic, input, autograd, want)
