"""JAX glue: the row-wise cores (the pairwise hinge, the multi-class hinge) as ``custom_vjp``
functions, so that ``jax.grad`` uses the analytic gradient the backend computes in the same
pass as the loss, and ``jax.jit`` and ``jax.vmap`` trace through them.

A core is ``core(x, *operands, want_grad) -> (loss (N,), grad (N, C) | None)``; the operands
(targets, weights, flags) are passed explicitly rather than closed over, and get zero
cotangents (integer ones get ``float0``).
"""

from __future__ import annotations

import functools
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


# Defined once: ``core`` is a non-differentiable (static) argument, so that a call builds no
# new custom_vjp (each call's core is a fresh closure over its options; under jax.jit it is a
# trace-time constant).
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _loss(core: Callable[..., tuple[Any, Any]], x: Any, *ops: Any) -> Any:
    return core(x, *ops, want_grad=False)[0]


def _loss_fwd(core: Callable[..., tuple[Any, Any]], x: Any, *ops: Any) -> tuple[Any, Any]:
    value, grad = core(x, *ops, want_grad=True)
    return value, (grad, ops)


def _loss_bwd(core: Callable[..., tuple[Any, Any]], res: Any, g: Any) -> tuple[Any, ...]:
    grad, ops = res
    return (g[..., None] * grad, *(_zero_cotangent(o) for o in ops))


_loss.defvjp(_loss_fwd, _loss_bwd)


def rowwise(core: Callable[..., tuple[Any, Any]], x: Any, *operands: Any) -> Any:
    """``core``'s loss rows with the core's own gradient for reverse-mode autodiff."""
    return _loss(core, x, *operands)
