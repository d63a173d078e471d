"""torch glue: autograd, forward-mode AD and vmap for the row-wise losses, and the pairwise
hinge as a ``torch.library`` op for ``torch.compile``.

Eagerly, a row-wise core (the pairwise hinge of whichever backend the registry picked, or
multi_margin_loss's torch core) runs inside :class:`_Rowwise`, a plain
``torch.autograd.Function`` with ``setup_context``, so that it also works under ``torch.func``:
``grad``/``vjp``/``jacrev`` use the analytic gradient, ``jvp``/``jacfwd`` and
``torch.autograd.forward_ad`` use ``jvp = Σ_j grad[n, j] · tangent[n, j]`` per row, and
``vmap`` folds the batch dimensions into the rows (every core is row-wise).

Under ``torch.compile`` the hinge is the op ``xmargin::pairwise_hinge`` instead (in
:mod:`xmargin.adapters.torch_compile`, which eager calls never import: it loads
``torch._dynamo``).

Two ways to get the gradient, chosen per backend and dtype (``Backend.recomputes_grad``):

* the built-in backends (CPU and GPU) compute it in the same pass as the loss when autograd
  will need it, and backward only scales it by ``grad_output`` (one element-wise pass): their
  cost is per-row work (sorting, searching), not bytes, so a second kernel pass would cost
  more than the scaling (measured on an H200: docs/gpu-notes.md);
* half-precision scores on the GPU backends, and a backend whose kernel is bound by memory
  traffic (``grad_in_backward``), take a second kernel pass in backward instead
  (``Backend.recomputes_grad``): a half gradient kept from forward would be rounded before
  ``grad_output`` scales it (zeros under loss scaling, overflow unscaled). Forward
  reads the scores once for the loss, and backward runs the kernel again with
  ``grad_output`` as a per-row factor, reading the scores and writing the gradient once
  (three passes over N·C instead of four). Inside torch.func transforms the gradient is
  always formed in forward (backward must stay torch operations that vmap can batch).

The gradient of a hinge is piecewise constant (p = 1) or its derivative is not provided
(p = 2), so, as for PyTorch's own multilabel_margin_loss, there is no double backward: a
second differentiation raises instead of returning a zero Hessian.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .._errors import XMarginTypeError
from .._interop import compute_dtype
from .._xp import apply_reduction
from ..backends._registry import numba_serves as _numba_serves

Core = Callable[..., tuple[Any, Any]]


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return compute_dtype(torch, dtype)


def run_backend(
    backend: str,
    x: torch.Tensor,
    t: torch.Tensor,
    weight: torch.Tensor | None,
    margin: float,
    p: int,
    want_grad: bool,
    grad_scale: torch.Tensor | float | None = None,
    neg_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The registered backend's hinge on torch tensors: loss_raw (N,) in float32/64 and, if
    wanted, grad_raw (N, C) in x's dtype, scaled per row by ``grad_scale`` (N,) if given."""
    from ..backends import get

    chosen = get(backend)
    hinge = chosen.load()
    kw = {"margin": margin, "p": p, "weight": weight, "want_grad": want_grad}
    if neg_weight is not None:
        kw["neg_weight"] = neg_weight
    scaled_inside = grad_scale is not None and want_grad and chosen.scales_grad
    if scaled_inside:
        if isinstance(grad_scale, (int, float)) and chosen.name != "numba":
            # the GPU kernels take a per-row factor: a constant one, expanded (no copy)
            grad_scale = torch.full((1,), float(grad_scale), dtype=accumulation_dtype(x.dtype),
                                    device=x.device).expand(x.shape[0])  # fmt: skip
        kw["grad_scale"] = grad_scale
    loss, grad = hinge(x, t, **kw)
    acc = accumulation_dtype(x.dtype)
    if loss.dtype != acc:
        loss = loss.to(acc)
    if grad is None:
        return loss, None
    if grad_scale is not None and not scaled_inside:
        if isinstance(grad_scale, torch.Tensor):
            grad_scale = grad_scale.unsqueeze(-1)
        grad = grad * grad_scale
    return loss, (grad if grad.dtype == x.dtype else grad.to(x.dtype))


def _reduce_rows(loss_raw: torch.Tensor, c: int, reduction: str, matrix_out: bool, dtype):
    """1/C and the reduction of raw loss rows (float32/64), in the output dtype, without a host
    sync (:func:`xmargin._xp.apply_reduction`; float32 rows cannot overflow their sum: a mean
    of them is one sum)."""
    n = loss_raw.shape[0]
    if reduction == "mean" and n and dtype != torch.float64:
        out = loss_raw.sum() / (n * c)
    else:
        out = apply_reduction(torch, loss_raw, reduction, divisor=c)
        out = out if matrix_out or reduction != "none" else out.reshape(())
    return out if out.dtype == dtype else out.to(dtype)


class _HingeLoss(torch.autograd.Function):
    """Eager torch, no transform: the pairwise hinge of one backend and its reduction as one
    autograd node (the thin path). Forward runs the kernel with the gradient already scaled by
    the reduction's 1/C or 1/(N·C) (written once, in the kernel where it can); backward
    multiplies by ``grad_output``. A backend flagged ``grad_in_backward`` (``recompute``) skips
    the gradient in forward and runs the kernel again in backward with the full per-row scale. An old-style
    Function: ``apply`` binds no signature (new-style ones inspect it on every call)."""

    @staticmethod
    def forward(ctx, x, t, weight, neg_weight, options):
        margin, p, reduction, backend, recompute, matrix_out, dtype, numpy_hinge, scales, _ = (
            options
        )
        n, c = x.shape
        factor = 1.0 / (n * c) if reduction == "mean" and n else 1.0 / c
        need = options[-1]  # x requires grad and grad mode is on (checked before apply)
        want = need and not recompute
        if numpy_hinge is not None and x.device.type == "cpu":
            # a CPU kernel on zero-copy NumPy views: no framework round trips
            kw = {"grad_scale": factor} if want and scales else {}
            if neg_weight is not None:
                kw["neg_weight"] = neg_weight.numpy()
            loss_np, grad_np = numpy_hinge(
                x.detach().numpy(), t.numpy(), margin=margin, p=p,
                weight=None if weight is None else weight.numpy(), want_grad=want, **kw,
            )  # fmt: skip
            if want and not scales:
                grad_np *= factor
            out = torch.from_numpy(
                np.asarray(apply_reduction(None, loss_np, reduction, divisor=c, eager=True))
            )
            out = out if matrix_out or reduction != "none" else out.reshape(())
            out = out if out.dtype == dtype else out.to(dtype)
            grad = None if grad_np is None else torch.from_numpy(grad_np)
        else:
            loss_raw, grad = run_backend(
                backend, x, t, weight, margin, p, want, factor if want else None, neg_weight
            )
            out = _reduce_rows(loss_raw, c, reduction, matrix_out, dtype)
        if need:
            ctx.options = (margin, p, backend, factor, reduction, x.dtype)
            ctx.save_for_backward(
                grad if want else None, x if recompute else None, t, weight, neg_weight
            )
            ctx.recompute = recompute
            ctx.x = x  # for the create_graph guard only (its values are never read)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        grad, x, t, weight, neg_weight = ctx.saved_tensors
        margin, p, backend, factor, reduction, x_dtype = ctx.options
        if ctx.recompute:
            n = x.shape[0]
            scale = grad_out.to(accumulation_dtype(x_dtype)).reshape(-1).expand(n) * factor
            _, out = run_backend(
                backend, x, t, weight, margin, p, True, scale.contiguous(), neg_weight
            )
        elif reduction == "none":
            out = grad * grad_out.reshape(-1, 1).to(grad.dtype)
        else:
            out = grad * grad_out.to(grad.dtype)
        if torch.is_grad_enabled():  # create_graph: a second derivative must raise, not be 0
            out = _NoSecondDerivative.apply(out, ctx.x)
        return out, None, None, None, None


def hinge_loss(
    x: torch.Tensor,
    t: torch.Tensor,
    weight: torch.Tensor | None,
    margin: float,
    p: int,
    reduction: str,
    backend: Any,
    matrix_out: bool,
    dtype: torch.dtype,
    neg_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reduced loss of ``backend``'s hinge on eager torch tensors, with autograd."""
    numpy_hinge = None if backend.load_numpy is None else backend.load_numpy()
    need = x.requires_grad and torch.is_grad_enabled()
    options = (margin, p, reduction, backend.name, backend.recomputes_grad(x.dtype), matrix_out, dtype,
               numpy_hinge, backend.scales_grad, need)  # fmt: skip
    return _HingeLoss.apply(x, t, weight, neg_weight, options)


def functorch_active() -> bool:
    """Inside a torch.func transform (grad, vmap, jvp, jacrev, ...)."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def forward_ad_active() -> bool:
    """Inside a ``torch.autograd.forward_ad.dual_level()`` block."""
    return torch.autograd.forward_ad._current_level >= 0


class _NoSecondDerivative(torch.autograd.Function):
    """The identity on a gradient, marked as depending on ``x``, whose derivative raises:
    the row-wise losses have no second derivative (neither has PyTorch's
    multilabel_margin_loss: "derivative for aten::multilabel_margin_loss_backward is not
    implemented"), and a silent zero Hessian would be wrong for p = 2."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, x):
        return grad.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def _refuse(*_):
        raise XMarginTypeError(
            "xmargin: the row-wise losses (multilabel_margin_loss, multi_margin_loss) have no "
            "second derivative (as in PyTorch: the derivative of their backward is not "
            "implemented); differentiate them once"
        )

    backward = jvp = _refuse


class _RowwiseCompiled(torch.autograd.Function):
    """A row-wise core ``core(x (N, C), *operands, want_grad[, grad_scale]) -> (loss (N,),
    grad (N, C) | None)`` with its analytic gradient, for autograd, forward AD and torch.func.

    ``apply(x, core, n_rows, recompute, *operands)``: the first ``n_rows`` operands are
    row-aligned (first axis N: targets, flags), the others shared by every row (weights) or
    None. ``recompute``: forward computes the loss only, backward calls the core again with
    ``grad_output`` as ``grad_scale`` (memory-bound GPU backends); otherwise the gradient is
    formed in forward and saved. Outputs: the loss rows and the gradient (empty when
    recomputed), which is not differentiable.
    """

    @staticmethod
    def forward(x, core, n_rows, recompute, *operands):
        loss, grad = core(x, *operands, want_grad=not recompute)
        return loss, (x.new_empty((0,)) if grad is None else grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, core, _, recompute, *operands = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.core, ctx.recompute, ctx.x_dtype = core, recompute, x.dtype
        ctx.n_operands = len(operands)
        if recompute:
            ctx.save_for_backward(x, *operands)
            ctx.save_for_forward(x, *operands)
        else:
            ctx.save_for_backward(x, output[1])
            ctx.save_for_forward(x, output[1])

    @staticmethod
    def backward(ctx, grad_loss, _grad_of_grad):
        if ctx.recompute:
            x, *operands = ctx.saved_tensors
            _, gx = ctx.core(x, *operands, want_grad=True, grad_scale=grad_loss)
        else:
            x, grad = ctx.saved_tensors
            gx = grad_loss.unsqueeze(-1).to(grad.dtype) * grad
        gx = gx.to(ctx.x_dtype)
        if torch.is_grad_enabled() or functorch_active() or forward_ad_active():
            # a graph of this backward is being built (create_graph, hessian, jacfwd of
            # jacrev): the saved gradient is not connected to x, so a second derivative
            # would silently come out 0; make it raise instead
            gx = _NoSecondDerivative.apply(gx, x)
        return (gx, None, None, None) + (None,) * ctx.n_operands

    @staticmethod
    def vmap(info, in_dims, x, core, n_rows, recompute, *operands):
        # every core is row-wise: vmapped batch dimensions become more rows
        return _vmap_rows(_Rowwise, info, in_dims, x, core, n_rows, *operands)


class _Rowwise(_RowwiseCompiled):
    """:class:`_RowwiseCompiled` with forward-mode AD (``jvp``), which torch.compile cannot
    trace: used eagerly."""

    @staticmethod
    def jvp(ctx, x_tangent, *_):
        # d loss_n = Σ_j (d loss_n / d x_nj) · dx_nj, with the loss's analytic gradient
        if ctx.recompute:
            x, *operands = ctx.saved_tensors
            _, grad = ctx.core(x, *operands, want_grad=True)
        else:
            x, grad = ctx.saved_tensors
        grad = _NoSecondDerivative.apply(grad, x)  # jacfwd(jacfwd(...)) raises, never 0
        acc = accumulation_dtype(grad.dtype)
        return (grad.to(acc) * x_tangent.to(acc)).sum(-1), None


def _vmap_rows(fn, info, in_dims, x, core, n_rows, *operands):
    """vmap rule of a row-wise Function ``fn``: the vmapped dimensions become more rows."""
    size = info.batch_size
    x_dim, op_dims = in_dims[0], in_dims[4:]

    def batch_first(a, dim):
        return a.movedim(dim, 0) if dim is not None else a.expand(size, *a.shape)

    if any(d is not None for d in op_dims[n_rows:]):  # a batched weight: row by row
        outs = [
            fn.apply(
                x if x_dim is None else x.select(x_dim, b), core, n_rows, False,
                *(o if d is None else o.select(d, b) for o, d in zip(operands, op_dims, strict=True)),
            )[0]
            for b in range(size)
        ]  # fmt: skip
        return (torch.stack(outs), x.new_empty((0,))), (0, None)
    xb = batch_first(x, x_dim)
    n = xb.shape[1]
    rows = []
    for o, d in zip(operands[:n_rows], op_dims[:n_rows], strict=True):
        if o is not None:
            o = batch_first(o, d)
            o = o.reshape(size * n, *o.shape[2:])
        rows.append(o)
    loss, grad = fn.apply(
        xb.reshape(size * n, *xb.shape[2:]), core, n_rows, False, *rows, *operands[n_rows:]
    )
    if grad.numel() == 0:
        return (loss.reshape(size, n), grad), (0, None)
    return (loss.reshape(size, n), grad.reshape(size, n, *xb.shape[2:])), (0, 0)


def rowwise(
    core: Core,
    x: torch.Tensor,
    rows: tuple = (),
    shared: tuple = (),
    *,
    recompute: bool = False,
) -> torch.Tensor:
    """``core``'s loss rows with autograd, forward AD and torch.func attached (x: (N, C) in
    the core's dtype). Under torch.func transforms the gradient is formed in forward."""
    recompute = recompute and not functorch_active()
    fn = _RowwiseCompiled if torch.compiler.is_compiling() else _Rowwise
    return fn.apply(x, core, len(rows), recompute, *rows, *shared)[0]


def plain_eager() -> bool:
    """Eager torch outside any transform and forward-AD level: the thin path applies."""
    return not (functorch_active() or forward_ad_active())


def needs_autodiff(x: torch.Tensor) -> bool:
    """Whether a result computed from ``x`` must carry derivatives: x requires grad (with grad
    mode on), a forward-AD level is open, or a torch.func transform is running."""
    if x.requires_grad and torch.is_grad_enabled():
        return True
    # torch.compile traces autograd itself (and its tracer may look like a transform)
    return not torch.compiler.is_compiling() and (forward_ad_active() or functorch_active())


_FAST_SCORES = (torch.float32, torch.float64)
_NP_SCORES = {torch.float32: np.float32, torch.float64: np.float64}


class _FastHingeLoss(torch.autograd.Function):
    """:class:`_HingeLoss` for the numba backend on contiguous CPU tensors without weight,
    with nothing but the kernel call around it (the common call's fixed cost is what this
    saves: every Python step inside an autograd Function costs about twice its own time).
    The gradient is written by the kernel into a torch-owned buffer, already scaled by the
    reduction; value checks look at the loss only (see :func:`fast_multilabel_margin_loss`)."""

    @staticmethod
    def forward(ctx, x, t, margin, p, reduction, launch, want):
        n, c = x.shape
        factor = 1.0 / (n * c) if reduction == "mean" and n else 1.0 / c
        grad = torch.empty((n, c), dtype=x.dtype) if want else None
        loss_np = launch(x.detach().numpy(), t.numpy(), margin, p, factor,
                         None if grad is None else grad.numpy())  # fmt: skip
        if want:
            # the gradient, and what a second backward through a retained graph needs to
            # compute it again, go on ctx as attributes (x's values are not saved: the
            # version counter below guards a recomputation)
            ctx.grad, ctx.reduction, ctx.x, ctx.t = grad, reduction, x, t
            ctx.args = (margin, p, factor, launch)
            ctx.versions = (x._version, t._version)
        value = apply_reduction(None, loss_np, reduction, divisor=c, eager=True)
        if reduction == "none":
            out = torch.from_numpy(value).to(x.dtype)
            nan = bool(np.isnan(value).any())
        else:
            out = torch.from_numpy(np.array(value, dtype=_NP_SCORES[x.dtype]))
            nan = value != value
        if nan:  # a NaN score, or (the kernel contract) a target outside [-1, C)
            from .._config import check_values_enabled

            if check_values_enabled():
                from array_api_compat import torch as xp

                from ..losses._checks import check_index_range

                check_index_range("multilabel_margin_loss", xp, t, -1, c,
                                  f"targets of an input with C = {c}")  # fmt: skip
        return out

    @staticmethod
    def backward(ctx, grad_out):
        grad, x = ctx.grad, ctx.x
        if grad is None:  # a second backward through a retained graph: compute it again
            grad = _FastHingeLoss._again(ctx)
        if ctx.reduction == "none":
            out = grad * grad_out.unsqueeze(-1)
        elif grad_out.item() == 1.0:  # loss.backward(): the kernel's gradient is final
            # handed over, so that autograd can keep it as x.grad instead of copying it
            out, ctx.grad = grad, None
        else:
            out = grad * grad_out
        if torch.is_grad_enabled():  # create_graph: a second derivative must raise, not be 0
            out = _NoSecondDerivative.apply(out, x)
        return out, None, None, None, None, None, None

    @staticmethod
    def _again(ctx) -> torch.Tensor:
        x, t = ctx.x, ctx.t
        for what, now, then in zip(("input", "target"), (x._version, t._version), ctx.versions,
                                   strict=True):  # fmt: skip
            if now != then:  # what autograd says of a modified saved tensor
                raise RuntimeError(
                    "multilabel_margin_loss: one of the variables needed for gradient "
                    f"computation has been modified by an inplace operation: the {what} of the "
                    f"loss is at version {now}; expected version {then} instead"
                )
        margin, p, factor, launch = ctx.args
        grad = torch.empty(x.shape, dtype=x.dtype)
        launch(x.detach().numpy(), t.numpy(), margin, p, factor, grad.numpy())
        return grad


def fast_multilabel_margin_loss(
    input: torch.Tensor, target: Any, reduction: Any, margin: Any, p: Any, backend: Any = None
) -> torch.Tensor | None:
    """The common eager call (CPU tensors, float32/64 scores, an int64 (N, K) target on the
    same device, a Python margin, no weight, automatic dispatch) in O(1) Python work: every
    condition is checked here and anything else returns None, for the general path to handle
    (and to raise its errors). Value checks look at the loss only (the kernel makes a row with
    a bad target NaN) and read the targets only when it has a NaN."""
    if not (
        type(target) is torch.Tensor
        and input.dtype in _FAST_SCORES
        and target.dtype is torch.int64
        and input.dim() == 2
        and target.dim() == 2
        and input.is_cpu
        and target.is_cpu
        and input.shape[0] == target.shape[0]
        and input.shape[1] > 0
        and (reduction == "mean" or reduction == "sum" or reduction == "none")
        and (p == 1 or p == 2)
        and type(p) is int
        and (type(margin) is float or type(margin) is int)
        and margin == margin
        and not torch.compiler.is_compiling()
        and not target.requires_grad
        and not functorch_active()
        and not forward_ad_active()
    ):
        return None
    if not (input.is_contiguous() and target.is_contiguous()):
        return None
    if not _numba_serves(backend, input):  # (a bad backend= raises its error here)
        return None
    want = input.requires_grad and torch.is_grad_enabled()  # (needs_input_grad ignores no_grad)
    return _FastHingeLoss.apply(input, target, float(margin), p, reduction, _launch_plain, want)


def _launch_plain(*args: Any) -> Any:
    """The numba backend's kernel entry (its module imported on first use)."""
    global _launch_plain
    from ..backends.numba import launch_plain

    _launch_plain = launch_plain
    return launch_plain(*args)
