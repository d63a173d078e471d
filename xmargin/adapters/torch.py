"""torch glue: the pairwise hinge as a ``torch.library`` op, and autograd for row-wise cores.

``xmargin::pairwise_hinge`` wraps whichever backend the registry picked (by name), so that
``torch.compile(fullgraph=True)`` sees one opaque op with a fake (meta) implementation and a
registered backward, whatever the backend; ``torch.library.opcheck`` checks it.

Two ways to get the gradient, chosen per backend (``Backend.grad_in_backward``):

* CPU backends compute it in the same pass as the loss when autograd will need it, and
  backward only scales it by ``grad_output`` (compute is what costs there);
* GPU backends are bound by memory traffic: forward reads the scores once for the loss, and
  backward runs the kernel again with ``grad_output`` as a per-row factor, reading the scores
  and writing the gradient once (three passes over N·C instead of four).

The gradient of a hinge is piecewise constant (p = 1) or its derivative is not provided
(p = 2), so, as for PyTorch's own multilabel_margin_loss, there is no double backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

Core = Callable[..., tuple[Any, Any]]


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.compiler.assume_constant_result
def backend_while_compiling(backend: str | None, x: torch.Tensor) -> str:
    """The backend name for ``x``, resolved once at trace time: torch.compile cannot trace the
    registry's context variables, and the choice is fixed for the compiled graph anyway."""
    from ..backends import resolve

    return resolve(backend, x).name


@torch.library.custom_op("xmargin::pairwise_hinge", mutates_args=())
def pairwise_hinge(
    x: torch.Tensor,
    t: torch.Tensor,
    margin: float,
    p: int,
    weight: torch.Tensor | None,
    want_grad: bool,
    backend: str,
    grad_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss_raw (N,) in float32/64, grad_raw (N, C) in x's dtype, or (0,) if not wanted).

    ``grad_scale`` (N,) multiplies the gradient rows (inside the kernel where supported).
    """
    from ..backends import get

    chosen = get(backend)
    hinge = chosen.load()
    kw = {"margin": margin, "p": p, "weight": weight, "want_grad": want_grad}
    scaled_inside = grad_scale is not None and want_grad and chosen.grad_in_backward
    if scaled_inside:
        kw["grad_scale"] = grad_scale
    loss, grad = hinge(x, t, **kw)
    loss = loss.to(accumulation_dtype(x.dtype))
    if not want_grad:
        return loss, x.new_empty((0,))
    if grad_scale is not None and not scaled_inside:
        grad = grad * grad_scale.unsqueeze(-1)
    return loss, grad.to(x.dtype)


@pairwise_hinge.register_fake
def _pairwise_hinge_fake(x, t, margin, p, weight, want_grad, backend, grad_scale=None):
    loss = x.new_empty((x.shape[0],), dtype=accumulation_dtype(x.dtype))
    return loss, (x.new_empty(x.shape) if want_grad else x.new_empty((0,)))


def grad_in_backward(backend: str) -> bool:
    """Whether ``backend`` recomputes in backward instead of keeping a forward gradient."""
    from ..backends import get

    return get(backend).grad_in_backward


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, t, margin, p, weight, want_grad, backend, _ = inputs
    ctx.x_dtype = x.dtype
    ctx.recompute = not want_grad
    if ctx.recompute:  # the gradient comes from a second kernel pass in backward
        ctx.options = (margin, p, backend)
        ctx.save_for_backward(x, t, weight)
    else:
        ctx.save_for_backward(output[1])


def _backward(ctx: Any, grad_loss: torch.Tensor, _grad_of_grad: Any) -> tuple:
    if ctx.recompute:
        x, t, weight = ctx.saved_tensors
        margin, p, backend = ctx.options
        _, gx = pairwise_hinge(x, t, margin, p, weight, True, backend, grad_loss)
    else:
        (grad,) = ctx.saved_tensors
        gx = grad_loss.unsqueeze(-1) * grad
    return gx.to(ctx.x_dtype), None, None, None, None, None, None, None


pairwise_hinge.register_autograd(_backward, setup_context=_setup_context)


class _RowwiseLoss(torch.autograd.Function):
    """Autograd for a row-wise core written with torch operations (multi_margin_loss)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, core: Core) -> torch.Tensor:
        loss, grad = core(x.detach(), want_grad=True)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (grad,) = ctx.saved_tensors
        return grad_output.unsqueeze(-1).to(grad.dtype) * grad, None


def rowwise(core: Core, x: torch.Tensor) -> torch.Tensor:
    """``core``'s loss with autograd attached (x: (N, C), the core's own dtype)."""
    return _RowwiseLoss.apply(x, core)
