"""torch autograd glue for the row-wise cores (the pairwise hinge and the multi-class hinge).

A core is ``core(x, want_grad) -> (loss (N,), grad (N, C) | None)`` computing the analytic
gradient in the same pass as the loss. The autograd Function asks for it only when autograd
needs it, keeps it, and backward scales it by ``grad_output``: one pass over the scores instead
of two. The gradient of a loss is piecewise linear (p = 1) or its derivative is not provided
(p = 2), so backward is marked once-differentiable, as PyTorch's own multilabel_margin_loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

Core = Callable[..., tuple[Any, Any]]


class _RowwiseLoss(torch.autograd.Function):
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
