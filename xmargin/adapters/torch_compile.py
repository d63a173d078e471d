"""torch glue needed only under ``torch.compile``: the pairwise hinge as the op
``xmargin::pairwise_hinge`` (one opaque node with a fake implementation and a registered
backward, whatever the backend; ``torch.library.opcheck`` checks it) and the backend choice made
once at trace time.

A module of its own because ``torch.compiler.assume_constant_result`` imports
``torch._dynamo`` (about a second): eager calls never import it. It is imported while
``torch.compile`` traces (the import itself runs as plain Python), or by tests.
"""

from __future__ import annotations

from typing import Any

import torch

from .torch import accumulation_dtype, run_backend


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
    neg_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss_raw (N,) in float32/64, grad_raw (N, C) in x's dtype, or (0,) if not wanted).

    ``grad_scale`` (N,) multiplies the gradient rows (inside the kernel where supported).
    """
    loss, grad = run_backend(backend, x, t, weight, margin, p, want_grad, grad_scale, neg_weight)
    return loss, (x.new_empty((0,)) if grad is None else grad)


@pairwise_hinge.register_fake
def _pairwise_hinge_fake(
    x, t, margin, p, weight, want_grad, backend, grad_scale=None, neg_weight=None
):
    loss = x.new_empty((x.shape[0],), dtype=accumulation_dtype(x.dtype))
    return loss, (x.new_empty(x.shape) if want_grad else x.new_empty((0,)))


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, t, margin, p, weight, want_grad, backend, _, neg_weight = inputs
    ctx.x_dtype = x.dtype
    ctx.recompute = not want_grad
    if ctx.recompute:  # the gradient comes from a second kernel pass in backward
        ctx.options = (margin, p, backend)
        ctx.save_for_backward(x, t, weight, neg_weight)
    else:
        ctx.save_for_backward(output[1])


def _backward(ctx: Any, grad_loss: torch.Tensor, _grad_of_grad: Any) -> tuple:
    if ctx.recompute:
        x, t, weight, neg_weight = ctx.saved_tensors
        margin, p, backend = ctx.options
        _, gx = pairwise_hinge(x, t, margin, p, weight, True, backend, grad_loss, neg_weight)
    else:
        (grad,) = ctx.saved_tensors
        gx = grad_loss.unsqueeze(-1) * grad
    return gx.to(ctx.x_dtype), None, None, None, None, None, None, None, None


pairwise_hinge.register_autograd(_backward, setup_context=_setup_context)
