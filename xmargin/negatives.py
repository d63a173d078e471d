"""Hard-negative mining: each row's highest-scoring classes that are not among its targets.

Pure array-API code (no framework import): the result lives in the scores' namespace and on
their device, eager or traced (``jax.jit``), and Dask arrays are mapped row chunk by row chunk.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any

from ._errors import XMarginTypeError, XMarginValueError
from ._interop import is_dask, native
from ._xp import (
    astype,
    check_float,
    device,
    index_dtype,
    namespace_of,
    same_namespace,
    shape_str,
)
from .losses._rowwise import check_index_dtype, check_target_rows, index_target, index_values

__all__ = ["mine_negatives"]

Array = Any
Namespace = Any


def mine_negatives(input: Array, target: Array, k: int) -> Array:
    """The indices of each row's ``k`` highest-scoring negative classes.

    ``input`` holds scores (N, C) (or (C,), giving a (k,) result); ``target`` is in
    :func:`xmargin.multilabel_margin_loss`'s format: (N, K) integer class indices (K any), the
    positives of a row being its entries before the first negative value (duplicates allowed),
    every value, also after that terminator, in [-1, C). The negatives of a row are the classes
    that are not among its positives; a row without positives has every class as a negative.

    Returns (N, k) indices in the index dtype (int64; int32 on JAX without x64), in the
    scores' namespace and on their device: the row's negatives in descending order of score,
    ties broken towards the lower class index, with -1 in the trailing slots of a row that has
    fewer than ``k`` negatives. A NaN score ranks as +inf (it is mined first: a NaN row stays
    NaN in a loss on the mined classes). ``k`` is a Python int >= 1 (static under
    ``jax.jit``).

    With value checks on (:func:`xmargin.set_options`), an out-of-range target raises, at the
    cost of one read of a flag (a device sync on a GPU). Where values cannot be read
    (``jax.jit``, Dask, checks off) a row holding an out-of-range target gets -1 in every slot.

    Cost: O(N·K log K + N·C log(N·K)) to mark the positives (one sorted search of every class
    among the rows' sorted positives, no (N, K, C) intermediate) plus two stable sorts of each
    row, O(N·C log C); NumPy, for k <= C/4, selects in O(N·C + N·k log k) instead
    (``argpartition`` with the boundary ties resolved exactly). Working memory O(N·C).
    Under JAX without x64 the search keys need N·(C + 1) < 2**31.

    >>> import numpy as np, xmargin
    >>> x = np.array([[0.1, 0.9, 0.4, 0.9, 0.2], [0.5, 0.5, 0.5, 0.0, 1.0]])
    >>> t = np.array([[1, -1, 4], [4, 2, 0]])   # row 0: positive {1}; row 1: {4, 2, 0}
    >>> xmargin.mine_negatives(x, t, 3)
    array([[ 3,  2,  4],
           [ 1,  3, -1]])
    """
    fn = "mine_negatives"
    k = _check_k(fn, k)
    input = native(input)
    xp = namespace_of(fn, "input", input)
    check_float(fn, "input", xp, input)
    shape = tuple(input.shape)
    if len(shape) not in (1, 2) or shape[-1] == 0:
        raise XMarginValueError(
            f"{fn}: argument 'input' must be a (C,) vector or an (N, C) matrix of scores with "
            f"C >= 1, got shape {shape_str(shape)}"
        )
    matrix = len(shape) == 2
    n, c = shape if matrix else (1, shape[0])
    target = index_target(fn, target)
    t_shape = tuple(target.shape)
    check_target_rows(fn, target, n, shape)
    check_index_dtype(fn, target)
    kt = t_shape[-1] if t_shape else 1
    if is_dask(input):
        target = same_namespace(fn, xp, "input", input, "target", target)
        return _dask(input, target, n=n, c=c, kt=kt, k=k, matrix=matrix)
    t, bad_rows = index_values(
        fn, xp, input, target, (n, kt), -1, c, f"targets of an input with C = {c}"
    )
    x = xp.reshape(input, (n, c))
    out = _select(xp, x, _positives(xp, t, n, c), k)
    if bad_rows is not None:  # (unreadable or unchecked values) the loss's NaN row, as -1s
        out = xp.where(bad_rows[:, None], -1, out)
    return out if matrix else xp.reshape(out, (k,))


def _check_k(fn: str, k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise XMarginTypeError(
            f"{fn}: argument 'k' must be an int >= 1 (negatives per row), got "
            f"{type(k).__name__} {k!r}"
        )
    k = operator.index(k)
    if k < 1:
        raise XMarginValueError(
            f"{fn}: argument 'k' must be an int >= 1 (negatives per row), got {k}"
        )
    return k


def _positives(xp: Namespace, t: Array, n: int, c: int) -> Array:
    """(N, C) bool: class c is a positive of row n (an entry of t[n] before its first -1).

    Row n's positives become keys n·(C + 1) + t (invalid slots n·(C + 1) + C, matching no
    class), so that sorting each row sorts the flattened keys globally; one ``searchsorted``
    of every key n·(C + 1) + c then finds the classes present, without an (N, K, C) mask."""
    dev = device(t)
    kt = t.shape[1]
    if kt == 0 or n == 0:
        return xp.zeros((n, c), dtype=xp.bool, device=dev)
    # the keys in the namespace's widest index dtype (int32 targets would overflow from
    # N·(C + 1) >= 2**31, e.g. 2148 rows of 10**6 classes)
    idt = index_dtype(xp)
    if n * (c + 1) > xp.iinfo(idt).max:
        raise XMarginValueError(
            f"mine_negatives: N·(C + 1) = {n * (c + 1)} search keys exceed {idt}, this "
            "namespace's index dtype (JAX without x64: enable jax_enable_x64, or mine fewer "
            "rows per call)"
        )
    t = astype(xp, t, idt)
    slots = xp.arange(kt, dtype=idt, device=dev)
    first_neg = xp.min(xp.where(t < 0, slots[None, :], kt), axis=1)
    valid = slots[None, :] < first_neg[:, None]
    base = xp.arange(n, dtype=idt, device=dev)[:, None] * (c + 1)
    keys = xp.reshape(xp.sort(base + xp.where(valid, t, c), axis=1), (-1,))
    queries = xp.reshape(base + xp.arange(c, dtype=idt, device=dev)[None, :], (-1,))
    at = astype(xp, xp.searchsorted(keys, queries), idt)
    at = xp.where(at < n * kt, at, n * kt - 1)  # past the end: compare with the last key
    return xp.reshape(xp.take(keys, at) == queries, (n, c))


def _select(xp: Namespace, x: Array, is_pos: Array, k: int) -> Array:
    """The first k classes of each row in the order (is positive, −score, index), -1 from the
    row's negative count on."""
    n, c = x.shape
    dev = device(x)
    idt = index_dtype(xp)
    top = None
    if type(x).__module__.split(".")[0] == "numpy" and n and 4 * k <= c:
        top = _top_numpy(x, is_pos, k)
    if top is None:
        # NaN ranks as +inf; stable sorts keep equal scores in index order
        key = -xp.where(xp.isnan(x), xp.inf, x)
        order = xp.argsort(key, axis=1, stable=True)
        flag = xp.take_along_axis(astype(xp, is_pos, xp.int8), order, axis=1)
        order = xp.take_along_axis(order, xp.argsort(flag, axis=1, stable=True), axis=1)
        top = astype(xp, order[:, : min(k, c)], idt)
        if k > c:
            top = xp.concat([top, xp.full((n, k - c), -1, dtype=idt, device=dev)], axis=1)
    negatives = c - xp.sum(astype(xp, is_pos, idt), axis=1)
    slots = xp.arange(k, dtype=idt, device=dev)
    return xp.where(slots[None, :] < negatives[:, None], top, -1)


def _top_numpy(x: Any, is_pos: Any, k: int) -> Any:
    """The generic order's first k < C columns (before the -1s) in O(N·C + N·k log k).

    ``argpartition`` finds each row's k-th smallest key v (key = −score, +inf for positives)
    but splits ties at v arbitrarily, so the chosen set is rebuilt exactly: every key < v,
    then the lowest-index non-positives with key == v until there are k (fewer only where the
    row has fewer than k negatives: v = +inf). The chosen are then sorted by (key, index)."""
    import numpy as np  # (NumPy arrays only reach here)

    key = np.where(np.isnan(x), -np.inf, -x)
    key = np.where(is_pos, np.inf, key)
    kth = np.take_along_axis(key, np.argpartition(key, k - 1, axis=1)[:, k - 1 : k], axis=1)
    below = key < kth
    tie = (key == kth) & ~is_pos
    need = k - np.sum(below, axis=1, keepdims=True)
    chosen = below | (tie & (np.cumsum(tie, axis=1) <= need))
    # at most k chosen per row: all of them are among the k smallest of ~chosen
    cand = np.argpartition(~chosen, k - 1, axis=1)[:, :k]
    rank = np.lexsort(
        (
            cand,
            np.take_along_axis(key, cand, axis=1),
            np.take_along_axis(~chosen, cand, axis=1),
        ),
        axis=-1,
    )
    return np.take_along_axis(cand, rank, axis=1).astype(np.int64)


def _dask(input: Array, target: Array, *, n: int, c: int, kt: int, k: int, matrix: bool) -> Array:
    """Lazily, row chunk by row chunk (rows are independent; the class axis is one chunk)."""
    import dask.array as da
    import numpy as np

    from ._config import options

    x = da.reshape(input, (n, c)).rechunk({1: -1})
    rows = x.chunks[0]
    t = da.reshape(da.asarray(target), (n, kt)).rechunk((rows, -1))

    def block(xb: Any, tb: Any) -> Any:
        # values cannot be checked lazily: a bad target gives a row of -1s
        with options(check_values=False):
            return mine_negatives(xb, tb, k)

    out = da.blockwise(block, "ij", x, "ij", t, "ik", dtype=np.int64, concatenate=True,
                       adjust_chunks={"j": k}, meta=np.empty((0, 0), np.int64))  # fmt: skip
    return out if matrix else da.reshape(out, (k,))
