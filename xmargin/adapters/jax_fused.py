"""JAX glue of :func:`xmargin.fused_linear_multilabel_margin_loss`: a ``custom_vjp`` over
hidden, weight (and bias) whose backward runs the chunked pass with the cotangent as per-row
scales (``jax.grad``, ``jax.jit``; the chunk loop is unrolled at trace time)."""

from __future__ import annotations

from typing import Any

import jax


def fused_loss(prob: Any) -> Any:
    has_bias = prob.bias is not None

    def value(*arrays: Any) -> Any:
        rows, _ = prob.with_arrays(*_three(arrays)).run(want_grad=False)
        return prob.reduce(rows)

    def fwd(*arrays: Any) -> tuple[Any, Any]:
        return value(*arrays), arrays

    def bwd(arrays: Any, g: Any) -> tuple[Any, ...]:
        scale = jax.numpy.reshape(g, (-1,)) * (1.0 / prob.c)
        if prob.red == "mean" and prob.n:
            scale = scale / prob.n
        if prob.red != "none":
            scale = jax.numpy.broadcast_to(scale, (prob.n,))
        _, grads = prob.with_arrays(*_three(arrays)).run(want_grad=True, row_scale=scale)
        return tuple(grads[: 3 if has_bias else 2])

    def _three(arrays: tuple) -> tuple:
        return arrays if has_bias else (*arrays, None)

    f = jax.custom_vjp(value)
    f.defvjp(fwd, bwd)
    return f(prob.hidden, prob.weight, *((prob.bias,) if has_bias else ()))
