"""Row-wise losses (multilabel_margin_loss, multi_margin_loss) on Dask arrays.

The element-wise losses are plain array-API code and stay lazy on Dask by themselves. The
row-wise ones need the whole class axis of a row at once, so they run chunk by chunk along the
batch axis (``dask.array.blockwise``; the class axis is made one chunk, the batch chunks are
kept): each chunk is computed eagerly by the same function on the chunk's own arrays (NumPy
chunks go to the ``reference`` backend by automatic dispatch), with value checks off (a bad
target gives a NaN row, as in any lazy or traced context). Building the result computes
nothing; ``reduction="none"`` keeps the input's batch chunks and ``"mean"``/``"sum"`` reduce
across them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._xp import reduction_scale

Array = Any


def rowwise_dask(
    impl: Callable[..., tuple[Array, tuple[Array, ...]]],
    input: Array,
    target: Array,
    *,
    n: int,
    c: int,
    t_shape: tuple[int, ...],
    reduction: str,
    matrix_out: bool,
    weight: Array | None,
    argnums: tuple[int, ...],
    options: dict[str, Any],
    neg_weight: Array | None = None,
    candidates: Array | None = None,
) -> tuple[Array, tuple[Array, ...]]:
    """``impl`` (the eager implementation of a row-wise loss) mapped over batch chunks;
    ``neg_weight`` (C,) is passed whole to every chunk like ``weight``, ``candidates``
    (N, M) (``negatives=`` of multilabel_margin_loss) chunk by chunk like the target."""
    import dask.array as da
    import numpy as np

    from .._config import options as scoped_options
    from .._interop import compute_dtype

    want_grad = bool(argnums)
    x = da.reshape(input, (n, c)).rechunk({1: -1})
    rows = x.chunks[0]
    t = da.reshape(da.asarray(target), t_shape)
    t = t.rechunk((rows,) + ((-1,) if t.ndim == 2 else ()))
    t_index = "ik" if t.ndim == 2 else "i"
    shared = {
        name: da.asarray(a).rechunk(-1)
        for name, a in (("weight", weight), ("neg_weight", neg_weight))
        if a is not None
    }
    cand = None
    if candidates is not None:
        cand = da.reshape(da.asarray(candidates), (n, -1)).rechunk((rows, -1))
    dtype = input.dtype
    # chunks hand back float32 (float64 for float64 input) so the reduction across rows and
    # the gradient's scaling accumulate as the eager path does; one cast to dtype at the end
    acc = np.dtype(compute_dtype(np, dtype))

    def block(xb, tb, *ops):
        kw = dict(zip(shared, ops[len(ops) - len(shared) :], strict=True))
        if cand is not None:
            kw["negatives"] = ops[0]
        with scoped_options(check_values=False):
            loss, grads = impl(xb, tb, reduction="none", argnums=argnums, **kw, **options)
        loss = np.reshape(np.asarray(loss), (-1,)).astype(acc)
        if not want_grad:
            return loss
        g = np.reshape(np.asarray(grads[0]), (len(loss), -1)).astype(acc)
        return np.concatenate([loss[:, None], g], axis=1)

    args = [x, "ij", t, t_index] + ([] if cand is None else [cand, "im"])
    for a in shared.values():
        args += [a, "j"]
    if want_grad:
        out = da.blockwise(block, "ij", *args, dtype=acc, concatenate=True,
                           adjust_chunks={"j": c + 1}, meta=np.empty((0, 0), acc))  # fmt: skip
        per_row, grad = out[:, 0], out[:, 1:]
    else:
        per_row = da.blockwise(block, "i", *args, dtype=acc, concatenate=True,
                               meta=np.empty((0,), acc))  # fmt: skip
        grad = None

    if reduction == "none":
        loss = per_row if matrix_out else da.reshape(per_row, ())
    elif reduction == "sum":
        loss = per_row.sum()
    else:  # (no overflow rescue: one lazy sum, as it always was on Dask)
        loss = per_row.sum() / n if n else per_row.sum() * math.nan
    loss = loss.astype(dtype)
    if grad is None:
        return loss, ()
    scale = reduction_scale(reduction, n)
    return loss, (da.reshape(grad * scale, input.shape).astype(dtype),)
