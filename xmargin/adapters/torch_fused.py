"""torch glue of :func:`xmargin.fused_linear_multilabel_margin_loss`: one autograd node whose
forward forms the gradients of hidden, weight and bias with the loss (one pass over the
classes) and whose backward scales them by ``grad_output``; with ``reduction="none"`` the
backward runs a second pass with per-row scales (a (C, D) gradient cannot be rescaled per row
after the sum over rows)."""

from __future__ import annotations

from typing import Any

import torch

from .._config import functorch_active
from .._errors import XMarginTypeError
from .torch import _NoSecondDerivative


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, prob):
        ctx.prob = prob
        ctx.has_bias = bias is not None
        # an input that requires grad, for the create_graph guard (its values are never read)
        ctx.anchor = next(a for a in (hidden, weight, bias) if a is not None and a.requires_grad)
        if prob.red == "none":  # the gradient waits for the per-row grad_output
            rows, _ = prob.run(want_grad=False)
            ctx.save_for_backward(hidden, weight, bias)
            ctx.grads = None
        else:
            rows, grads = prob.run(want_grad=True, row_scale=prob.grad_scale())
            ctx.grads = grads
        return prob.reduce(rows)

    @staticmethod
    def backward(ctx, grad_out):
        prob = ctx.prob
        if getattr(ctx, "done", False):  # the gradients were handed over (and scaled) once
            raise XMarginTypeError(
                "fused_linear_multilabel_margin_loss: backward through the same loss twice "
                "(retain_graph=True) is not supported: its gradients are formed in forward "
                "and handed over once; compute the loss again"
            )
        ctx.done = prob.red != "none"
        if prob.red == "none":
            hidden, weight, bias = ctx.saved_tensors
            scale = grad_out.reshape(-1) / prob.c
            _, grads = prob.with_arrays(hidden, weight, bias).run(want_grad=True, row_scale=scale)
        elif grad_out.device.type == "cpu" and bool(grad_out == 1):  # (free to read: no sync)
            grads = ctx.grads  # loss.backward(): the gradients as formed, no (C, D) pass
        else:
            grads = tuple(None if g is None else g.mul_(grad_out.to(g.dtype)) for g in ctx.grads)
        if torch.is_grad_enabled():  # create_graph: a second derivative must raise, not be 0
            grads = tuple(
                None if g is None else _NoSecondDerivative.apply(g, ctx.anchor) for g in grads
            )
        # (no reference kept: autograd then hands the buffers over as .grad instead of cloning
        # them, which would hold a second (C, D) array)
        ctx.grads = None
        g_h, g_w, g_b = grads
        del grads
        return g_h, g_w, g_b if ctx.has_bias else None, None


@torch.compiler.disable  # (eager inside a compiled graph: the chunk loop is plain Python)
def fused_loss(prob: Any) -> torch.Tensor:
    """The reduced loss, with autograd where an input requires grad."""
    if functorch_active():
        raise XMarginTypeError(
            "fused_linear_multilabel_margin_loss: torch.func transforms (grad, vmap, jacrev, "
            "...) are not supported; use torch autograd (loss.backward()) or "
            "xmargin.value_and_grad"
        )
    inputs = (prob.hidden, prob.weight, prob.bias)
    if torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in inputs):
        return _Fused.apply(*inputs, prob)
    rows, _ = prob.run(want_grad=False)
    return prob.reduce(rows)
