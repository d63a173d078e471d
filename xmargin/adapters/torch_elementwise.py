"""torch glue of the compiled CPU fast paths of soft_margin_loss, multilabel_soft_margin_loss,
multi_margin_loss, hinge_embedding_loss and margin_ranking_loss.

On eager CPU tensors outside any transform, these losses run a Numba kernel on zero-copy NumPy
views of the tensors (:mod:`xmargin.losses.soft_margin` and its siblings): one pass over the
data writes the loss and, when autograd will need it, the gradient already scaled by the
reduction. :class:`_HostLoss` is the single autograd node around it: backward multiplies the
saved gradient by ``grad_output`` (and returns it as it is for ``grad_output == 1``, the common
``loss.backward()``). Everything else takes the generic array-API path, which torch
differentiates itself: ``torch.compile``, ``torch.func`` transforms, forward-mode AD, CUDA,
half precision, tensor subclasses, broadcasting arguments, targets or weights that require
grad. A second derivative (``create_graph=True``) differentiates the generic formula again
inside backward, so double backward gives PyTorch's numbers (and the row-wise
multi_margin_loss raises, as its generic path does).

An old-style Function (``forward(ctx, ...)``): ``apply`` then binds no signature, which
new-style ones with ``setup_context`` do on every call; the transforms that would need the
new style never reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .torch import forward_ad_active, functorch_active

FAST_TYPES = (torch.Tensor, torch.nn.Parameter)
FAST_DTYPES = (torch.float32, torch.float64)


def _plain(t: Any) -> bool:
    return (
        type(t) in FAST_TYPES
        and t.device.type == "cpu"
        and t.layout is torch.strided
        and not t.is_neg()
        and not t.is_conj()
    )


def eligible(x: Any, *others: Any) -> bool:
    """Whether the fast path applies: eager float32/float64 CPU scores of a plain tensor type,
    no transform, no forward AD, not tracing; the other arguments (targets, weights: None for
    absent) plain CPU tensors that do not require grad (their gradient is the generic path's)."""
    if torch.compiler.is_compiling() or functorch_active() or forward_ad_active():
        return False
    if not (_plain(x) and x.dtype in FAST_DTYPES):
        return False
    return all(o is None or (_plain(o) and not o.requires_grad) for o in others)


def needs_grad(x: torch.Tensor | None) -> bool:
    return x is not None and x.requires_grad and torch.is_grad_enabled()


def as_numpy(t: torch.Tensor, dtype: torch.dtype | None = None) -> np.ndarray:
    """A C-contiguous NumPy view of the CPU tensor ``t`` (converted to ``dtype`` first)."""
    t = t.detach()
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if not t.is_contiguous():
        t = t.contiguous()
    return t.numpy()


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
    """A new CPU tensor and its NumPy view, for a kernel to write into."""
    t = torch.empty(shape, dtype=dtype)
    return t, t.numpy()


def from_numpy(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def _scaled(g: torch.Tensor | None, grad_out: torch.Tensor) -> torch.Tensor | None:
    if g is None:
        return None
    if grad_out.dim() == 0:
        # the saved gradient itself for loss.backward(): autograd copies it if it must
        return g if grad_out.item() == 1.0 else g * grad_out
    return g * grad_out.reshape(tuple(grad_out.shape) + (1,) * (g.dim() - grad_out.dim()))


class _HostLoss(torch.autograd.Function):
    """``apply(x1, x2, run, generic)``: ``run()`` -> (loss, grad of x1, grad of x2), the
    gradients (None where not wanted) already scaled by the reduction; ``generic(x1, x2)`` the
    same loss by differentiable torch operations, for a second derivative."""

    @staticmethod
    def forward(ctx, x1, x2, run, generic):
        out, g1, g2 = run()
        ctx.generic = generic
        ctx.save_for_backward(x1, x2, g1, g2)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x1, x2, g1, g2 = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a gradient that is itself differentiable
            wanted = [t for t in (x1, x2) if t is not None and t.requires_grad]
            with torch.enable_grad():
                out = ctx.generic(x1, x2)
            grads = iter(torch.autograd.grad(out, wanted, grad_out, create_graph=True,
                                             allow_unused=True))  # fmt: skip
            g1, g2 = (next(grads) if t is not None and t.requires_grad else None
                      for t in (x1, x2))  # fmt: skip
            return g1, g2, None, None
        return _scaled(g1, grad_out), _scaled(g2, grad_out), None, None


def value_or_node(
    run: Callable[[], tuple[torch.Tensor, Any, Any]],
    generic: Callable[[Any, Any], torch.Tensor],
    x: torch.Tensor,
    autograd: bool,
    want: bool,
) -> tuple[torch.Tensor, tuple]:
    """(loss, grads) of a loss of one score argument: ``run()`` at once where no autograd node
    is needed (its gradient returned when ``want``), else the loss as one autograd node."""
    if not autograd:
        out, grad, _ = run()
        return out, ((grad,) if want else ())
    return apply(run, generic, x), ()


def apply(
    run: Callable[[], tuple[torch.Tensor, Any, Any]],
    generic: Callable[[Any, Any], torch.Tensor],
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss ``run()`` computes, as one autograd node over the scores ``x1`` (and ``x2``)."""
    return _HostLoss.apply(x1, x2, run, generic)
