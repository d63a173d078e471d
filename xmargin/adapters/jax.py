"""JAX glue: the row-wise cores (the pairwise hinge, the multi-class hinge) as ``custom_vjp``
functions, so that ``jax.grad`` uses the analytic gradient the backend computes in the same
pass as the loss, and ``jax.jit`` and ``jax.vmap`` trace through them.

A core is ``core(x, *operands, want_grad) -> (loss (N,), grad (N, C) | None)``; the operands
(targets, weights, flags) are passed explicitly rather than closed over, and get zero
cotangents (integer ones get ``float0``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def _zero_cotangent(a: Any) -> Any:
    if a is None:
        return None
    if jax.numpy.issubdtype(a.dtype, jax.numpy.inexact):
        return jax.numpy.zeros_like(a)
    return np.zeros(a.shape, dtype=jax.dtypes.float0)


def rowwise(core: Callable[..., tuple[Any, Any]], x: Any, *operands: Any) -> Any:
    """``core``'s loss rows with the core's own gradient for reverse-mode autodiff."""

    @jax.custom_vjp
    def loss(x, *ops):
        return core(x, *ops, want_grad=False)[0]

    def fwd(x, *ops):
        value, grad = core(x, *ops, want_grad=True)
        return value, (grad, ops)

    def bwd(res, g):
        grad, ops = res
        return (g[..., None] * grad, *(_zero_cotangent(o) for o in ops))

    loss.defvjp(fwd, bwd)
    return loss(x, *operands)
