"""hinge_embedding_loss and margin_ranking_loss: element-wise hinges with PyTorch broadcasting."""

from __future__ import annotations

from typing import Any

from .._config import options
from .._errors import XMarginValueError
from .._interop import compute_dtype, native
from .._xp import (
    apply_reduction,
    astype,
    broadcast_shapes,
    check_float,
    check_real,
    check_real_dtype,
    expand_to,
    namespace_of,
    numel,
    reduction_scale,
    resolve_reduction,
    same_namespace,
    shape_str,
    sum_to_shape,
)
from ..backends._host import BLOCK, host_array, host_kind, launch, numba_kernels
from ._checks import warn_01_labels, warn_if_01_labels
from ._public import public_loss

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


def _hinge_embedding_loss(
    input: Array,
    target: Array,
    margin: float = 1.0,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    argnums: tuple[int, ...] = (),
    fast: bool = True,
) -> tuple[Array, tuple[Array, ...]]:
    """``x`` where ``y = 1``, ``max(0, margin − x)`` where ``y = −1`` (PyTorch's formula).

    As ``torch.nn.functional.hinge_embedding_loss``: ``input`` and ``target`` broadcast; a label
    that is neither 1 nor −1 gets both terms, as in PyTorch. A target of {0, 1} labels warns
    (use :func:`xmargin.targets.to_pm1`).

    >>> import numpy as np, xmargin
    >>> d = np.array([0.3, 0.3, 2.0]); y = np.array([1, -1, -1])
    >>> xmargin.hinge_embedding_loss(d, y, reduction="none").round(4).tolist()
    [0.3, 0.7, 0.0]
    """
    fn = "hinge_embedding_loss"
    red = resolve_reduction(fn, size_average, reduce, reduction)
    margin = check_real(fn, "margin", margin)
    input = native(input)
    xp = namespace_of(fn, "input", input)
    check_float(fn, "input", xp, input)
    target = same_namespace(fn, xp, "input", input, "target", target)
    check_real_dtype(fn, "target", xp, target)
    shape = _broadcast(fn, input=tuple(input.shape), target=tuple(target.shape))
    if fast and tuple(input.shape) == tuple(target.shape):
        out = _hinge_embedding_fast(input, target, margin, shape, red, bool(argnums))
        if out is not None:
            return out

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


hinge_embedding_loss = public_loss(_hinge_embedding_loss)


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
    fast: bool = True,
) -> tuple[Array, tuple[Array, ...]]:
    """``max(0, −y·(x1 − x2) + margin)``: ``y = 1`` ranks ``x1`` above ``x2``, ``y = −1`` below.

    As ``torch.nn.functional.margin_ranking_loss``: the three arguments must have the same
    number of dimensions and broadcast. The computation runs in the promoted dtype of ``input1``
    and ``input2``; ``target`` (any real dtype) is cast to it. A target of {0, 1} labels warns.

    >>> import numpy as np, xmargin
    >>> a = np.array([1.0, 0.2]); b = np.array([0.5, 0.4]); y = np.array([1.0, 1.0])
    >>> xmargin.margin_ranking_loss(a, b, y, margin=0.1, reduction="none").round(4).tolist()
    [0.0, 0.3]
    """
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
    if fast and tuple(input1.shape) == tuple(input2.shape) == tuple(target.shape):
        out = _margin_ranking_fast(input1, input2, target, margin, shape, red, argnums)
        if out is not None:
            return out

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


margin_ranking_loss = public_loss(_margin_ranking_loss)


# --------------------------------------------------------------------------------------------
# CPU fast paths: the compiled kernels of kernels/numba/hinge.py on NumPy arrays and eager
# torch CPU tensors of one shape (see soft_margin.py); None: the generic path applies.
# --------------------------------------------------------------------------------------------
def _warn_if(fn: str, counts: list, size: int) -> None:
    """The {0, 1}-label warning, from the kernel's label counts."""
    if size and sum(c[0] for c in counts) == size and sum(c[1] for c in counts) > 0:
        warn_01_labels(fn)


def _hinge_embedding_fast(
    input: Array, target: Array, margin: float, shape: tuple, red: str, want: bool
) -> Any:
    fn = "hinge_embedding_loss"
    kind = host_kind(input, target)
    k = None if kind is None else numba_kernels("hinge")
    if k is None:
        return None
    import numpy as np

    if kind == "numpy":
        x = host_array(input)
        y = host_array(target, x.dtype)
    else:
        from ..adapters import torch_elementwise as te

        x = te.as_numpy(input)
        y = te.as_numpy(target, input.dtype)
    dt = x.dtype.type  # the arithmetic is done in the scores' dtype, as PyTorch does
    m, zero, scale = dt(margin), dt(0), dt(reduction_scale(red, numel(shape)))
    xf, yf = x.reshape(-1), y.reshape(-1)

    def kernel(loss: Any, grad: Any) -> None:
        g = grad if grad is not None else np.empty(0, x.dtype)
        want_g = grad is not None

        def task(i0: int, i1: int) -> Any:
            return k.hinge_embedding(xf, yf, m, zero, scale, loss, g, want_g, i0, i1)

        counts = launch(task, xf.size, BLOCK)
        _warn_if(fn, counts, xf.size)

    if kind == "numpy":
        loss = np.empty(shape, x.dtype)
        grad = np.empty(shape, x.dtype) if want else None
        kernel(loss.reshape(-1), None if grad is None else grad.reshape(-1))
        return apply_reduction(np, loss, red), ((grad,) if want else ())

    autograd = not want and te.needs_grad(input)

    def run() -> tuple:
        loss, loss_np = te.empty(shape, input.dtype)
        grad, grad_np = te.empty(shape, input.dtype) if want or autograd else (None, None)
        kernel(loss_np.reshape(-1), None if grad_np is None else grad_np.reshape(-1))
        return apply_reduction(None, loss, red, eager=True), grad, None

    def generic(a: Any, _: Any) -> Any:  # for a second derivative; values checked already
        with options(check_values=False):
            return _hinge_embedding_loss(a, target, margin, reduction=red, fast=False)[0]

    return te.value_or_node(run, generic, input, autograd, want)


def _margin_ranking_fast(
    input1: Array,
    input2: Array,
    target: Array,
    margin: float,
    shape: tuple,
    red: str,
    argnums: tuple[int, ...],
) -> Any:
    fn = "margin_ranking_loss"
    if input1.dtype != input2.dtype:
        return None
    kind = host_kind(input1, target)  # both scores may require grad: checked one by one
    if kind != host_kind(input2, target):
        return None
    k = None if kind is None else numba_kernels("hinge")
    if k is None:
        return None
    import numpy as np

    if kind == "numpy":
        a = host_array(input1)
        b = host_array(input2)
        y = host_array(target, a.dtype)
    else:
        from ..adapters import torch_elementwise as te

        a = te.as_numpy(input1)
        b = te.as_numpy(input2)
        y = te.as_numpy(target, input1.dtype)
    dt = a.dtype.type  # the arithmetic is done in the scores' dtype, as PyTorch does
    m, zero = dt(margin), dt(0)
    scale = dt(reduction_scale(red, numel(shape)))
    af, bf, yf = a.reshape(-1), b.reshape(-1), y.reshape(-1)

    def kernel(loss: Any, g1: Any, g2: Any) -> None:
        # the kernel writes its first gradient always and the second one when n_grads is 2
        first, s1, second, s2 = g1, scale, g2, -scale
        if first is None:
            first, s1, second, s2 = g2, -scale, None, scale
        n_grads = (first is not None) + (second is not None)
        empty = np.empty(0, a.dtype)
        first = empty if first is None else first
        second = empty if second is None else second
        counts = launch(lambda i0, i1: k.margin_ranking(af, bf, yf, m, zero, loss, first, s1,
                                                        second, s2, n_grads, i0, i1),
                        af.size, BLOCK)  # fmt: skip
        _warn_if(fn, counts, af.size)

    if kind == "numpy":
        loss = np.empty(shape, a.dtype)
        grads = [np.empty(shape, a.dtype) if i in argnums else None for i in (0, 1)]
        kernel(loss.reshape(-1), *(None if g is None else g.reshape(-1) for g in grads))
        return apply_reduction(np, loss, red), tuple(grads[i] for i in argnums)

    wants = [i in argnums for i in (0, 1)]
    autograd = not argnums and (te.needs_grad(input1) or te.needs_grad(input2))
    if autograd:
        wants = [te.needs_grad(input1), te.needs_grad(input2)]

    def run() -> tuple:
        loss, loss_np = te.empty(shape, input1.dtype)
        grads = [te.empty(shape, input1.dtype) if w else (None, None) for w in wants]
        kernel(loss_np.reshape(-1), *(None if g is None else g.reshape(-1) for _, g in grads))
        return apply_reduction(None, loss, red, eager=True), grads[0][0], grads[1][0]

    if not autograd:
        out, g1, g2 = run()
        return out, tuple((g1, g2)[i] for i in argnums)

    def generic(a: Any, b: Any) -> Any:  # for a second derivative; values checked already
        with options(check_values=False):
            return _margin_ranking_loss(a, b, target, margin, reduction=red, fast=False)[0]

    return te.apply(run, generic, input1, input2), ()
