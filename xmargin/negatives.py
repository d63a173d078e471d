"""Hard-negative mining: each row's highest-scoring classes that are not among its targets.

Pure array-API code (no framework import): the result lives in the scores' namespace and on
their device, eager or traced (``jax.jit``), and Dask arrays are mapped row chunk by row chunk.
"""

from __future__ import annotations

import numbers
import operator
import sys
from typing import Any

from ._errors import XMarginTypeError, XMarginValueError
from ._interop import is_dask, is_jax, is_torch, native
from ._xp import (
    as_array,
    astype,
    check_float,
    check_integer,
    detach,
    device,
    index_dtype,
    namespace_of,
    on_host,
    same_namespace,
    shape_str,
)
from .losses._rowwise import (
    check_index_dtype,
    check_target_rows,
    index_target,
    index_values,
)

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
    out = _mine(xp, x, t, k, fn)
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


def _mine(xp: Namespace, x: Array, t: Array, k: int, fn: str) -> Array:
    """The first k classes of each row in the order (is positive, −score, index), -1 from the
    row's negative count on; ``t`` in [-1, C) (or beyond C in a row that is NaN anyway).

    Host arrays (NumPy, torch CPU) go through zero-copy NumPy views: positives marked by one
    scatter of the N·K targets, the top k by partial selection (:func:`_top_numpy`), without
    the two (N, C) sorts of the array-API path (10x faster at (64, 159))."""
    n, c = x.shape
    if not on_host(x):
        return _select(xp, x, _positives(xp, t, n, c, fn), k)
    import numpy as np

    from ._interop import from_numpy_like, to_numpy

    xn, tn = to_numpy(x), to_numpy(t)
    xpn = namespace_of(fn, "input", xn)
    valid, _ = positive_slots(xpn, tn, c)
    is_pos = np.zeros((n, c), dtype=bool)
    is_pos[np.broadcast_to(np.arange(n)[:, None], tn.shape)[valid], tn[valid]] = True
    out = _select(xpn, xn, is_pos, k)
    return from_numpy_like(np.ascontiguousarray(out), x)


def positive_slots(xp: Namespace, t: Array, c: int) -> tuple[Array, Array]:
    """(N, K) bool, whether slot k of target row n holds a positive (an entry before the
    row's first negative value, below C), and the slot numbers (1, K) in the index dtype."""
    n, kt = t.shape
    dev = device(t)
    slots = xp.arange(kt, dtype=index_dtype(xp), device=dev)[None, :]
    if kt == 0:
        return xp.zeros((n, 0), dtype=xp.bool, device=dev), slots
    first_neg = xp.min(xp.where(t < 0, slots, kt), axis=1, keepdims=True)
    return (slots < first_neg) & (t < c), slots


def _positives(xp: Namespace, t: Array, n: int, c: int, fn: str = "mine_negatives") -> Array:
    """(N, C) bool: class c is a positive of row n (an entry of t[n] before its first -1)."""
    idt = index_dtype(xp)
    every = xp.broadcast_to(xp.arange(c, dtype=idt, device=device(t))[None, :], (n, c))
    return _member(xp, t, n, c, every, fn)


def _member(xp: Namespace, t: Array, n: int, c: int, cls: Array, fn: str) -> Array:
    """(N, Q) bool: class cls[n, q] (in [0, C)) is a positive of row n.

    Row n's positives become keys n·(C + 1) + t (invalid slots n·(C + 1) + C, matching no
    class), so that sorting each row sorts the flattened keys globally; one ``searchsorted``
    of every key n·(C + 1) + cls then finds the classes present, without an (N, K, C) mask."""
    dev = device(t)
    kt = t.shape[1]
    if kt == 0 or n == 0:
        return xp.zeros(tuple(cls.shape), dtype=xp.bool, device=dev)
    # the keys in the namespace's widest index dtype (int32 targets would overflow from
    # N·(C + 1) >= 2**31, e.g. 2148 rows of 10**6 classes)
    idt = index_dtype(xp)
    if n * (c + 1) > xp.iinfo(idt).max:
        raise XMarginValueError(
            f"{fn}: N·(C + 1) = {n * (c + 1)} search keys exceed {idt}, this "
            "namespace's index dtype (JAX without x64: enable jax_enable_x64, or mine fewer "
            "rows per call)"
        )
    t = astype(xp, t, idt)
    valid, _ = positive_slots(xp, t, c)
    base = xp.arange(n, dtype=idt, device=dev)[:, None] * (c + 1)
    keys = xp.reshape(xp.sort(base + xp.where(valid, t, c), axis=1), (-1,))
    queries = xp.reshape(base + astype(xp, cls, idt), (-1,))
    at = astype(xp, xp.searchsorted(keys, queries), idt)
    at = xp.where(at < n * kt, at, n * kt - 1)  # past the end: compare with the last key
    return xp.reshape(xp.take(keys, at) == queries, tuple(cls.shape))


def _select(xp: Namespace, x: Array, is_pos: Array, k: int) -> Array:
    """The first k classes of each row in the order (is positive, −score, index), -1 from the
    row's negative count on."""
    n, c = x.shape
    dev = device(x)
    idt = index_dtype(xp)
    top = None
    if type(x).__module__.split(".")[0] == "numpy" and n and 4 * k <= c:
        top = _top_numpy(x, is_pos, k)
    elif is_torch(x) and n and 4 * k <= c:
        top = _top_torch(x, is_pos, k)
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


def _top_torch(x: Any, is_pos: Any, k: int) -> Any:
    """The generic order's first k < C columns with ``torch.topk`` (partial selections, no
    sort of the row): the first topk finds each row's k-th largest key v and every key > v
    (its values are exact whatever order it gives tied entries); a second topk, of negated
    column indices, finds the lowest-index non-positive columns with key == v, of which the
    row needs k − #{key > v}; the 2k candidates are put in order (chosen first, −score,
    index) by three stable sorts of 2k entries."""
    import torch

    n, c = x.shape
    key = torch.where(is_pos, -torch.inf, torch.where(torch.isnan(x), torch.inf, x))
    top = torch.topk(key, k, dim=1)
    kth = top.values[:, k - 1 : k]
    above = top.values > kth  # every key > v of the row is among the top k
    need = k - above.sum(dim=1, keepdim=True)
    tie = (key == kth) & ~is_pos
    cols = torch.arange(c, device=x.device)
    lowest = -torch.topk(torch.where(tie, -cols, -(c + 1)), k, dim=1).values  # ascending
    take = (torch.arange(k, device=x.device) < need) & (lowest < c)
    cand = torch.cat([top.indices, lowest.clamp(max=c - 1)], dim=1)
    chosen = torch.cat([above, take], dim=1)
    score = torch.cat([top.values, kth.expand(n, k)], dim=1)
    order = torch.sort(cand, dim=1, stable=True).indices  # index, then −score, then chosen
    for key_of in (lambda s, ch: -s, lambda s, ch: (~ch).to(torch.int8)):
        cand, chosen, score = (torch.gather(a, 1, order) for a in (cand, chosen, score))
        order = torch.sort(key_of(score, chosen), dim=1, stable=True).indices
    return torch.gather(cand, 1, order)[:, :k]


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


# --------------------------------------------------------------------------------------------
# multilabel_margin_loss(..., negatives=...): the hinge on the gathered (N, K + M) problem
# --------------------------------------------------------------------------------------------
def check_negatives(fn: str, negatives: Any, n: int, matrix: bool) -> int | Array:
    """``negatives`` (not None) checked for its type and shape: an int k >= 1, or an integer
    array of candidate classes, (N, M) for (N, C) scores ((M,) for a (C,) vector). Its values
    are checked (or made NaN rows) by :func:`candidates`."""
    if isinstance(negatives, numbers.Number):  # (a bool is refused by _check_k)
        if isinstance(negatives, numbers.Integral):
            return _check_k_named(fn, negatives)
        raise XMarginTypeError(
            f"{fn}: argument 'negatives' must be None, an int k >= 1 or an integer array of "
            f"candidate classes, got {type(negatives).__name__} {negatives!r}"
        )
    arr = native(as_array(fn, "negatives", negatives))
    shape = tuple(arr.shape)
    want = f"(N, M) with N = {n}" if matrix else "(M,)"
    if (matrix and (len(shape) != 2 or shape[0] != n)) or (not matrix and len(shape) != 1):
        raise XMarginValueError(
            f"{fn}: argument 'negatives' must be an int k or an array of candidate classes of "
            f"shape {want} (-1 for padding), got shape {shape_str(shape)}"
        )
    check_integer(fn, "negatives", namespace_of(fn, "negatives", arr), arr, "class indices")
    return arr


def _check_k_named(fn: str, k: Any) -> int:
    try:
        return _check_k(fn, k)
    except (XMarginTypeError, XMarginValueError) as exc:  # the loss calls it 'negatives'
        raise type(exc)(str(exc).replace("argument 'k'", "argument 'negatives'")) from None


def candidates(
    fn: str, xp: Namespace, input: Array, x: Array, t: Array, negatives: int | Array
) -> Array:
    """Each row's negative classes as (N, M) indices, distinct, none of them a positive of
    the row, -1 in the other slots; -2 in every slot of a row holding an out-of-range
    candidate that was not checked (value checks off, ``jax.jit``): the loss makes it NaN.
    ``x`` (N, C) scores, ``t`` (N, K) targets in the index dtype (out-of-range values
    allowed: their row is NaN anyway)."""
    n, c = x.shape
    if isinstance(negatives, int):  # (a bad row's mined set does not matter: it is NaN)
        return _mine(xp, detach(x), t, negatives, fn)
    return candidate_rows(fn, xp, input, t, negatives, n, c)


def candidate_rows(
    fn: str, xp: Namespace, input: Array, t: Array, negatives: Array, n: int, c: int
) -> Array:
    """:func:`candidates` for an (N, M) candidate array (``input``: the array whose namespace
    and device the candidates are brought to)."""
    clean_t = xp.where(t < c, t, -1)
    m = negatives.shape[-1]
    cand, bad = index_values(
        fn, xp, input, negatives, (n, m), -1, c, f"candidate classes of an input with C = {c}",
        name="negatives",
    )  # fmt: skip
    if m == 0 or n == 0:
        return cand
    # sorted, a repeat becomes -1; so does a positive of the row
    cand = xp.sort(cand, axis=1)
    repeat = xp.concat(
        [xp.zeros((n, 1), dtype=xp.bool, device=device(cand)), cand[:, 1:] == cand[:, :-1]],
        axis=1,
    )
    member = _member(xp, clean_t, n, c, xp.where(cand >= 0, cand, 0), fn)
    cand = xp.where((cand >= 0) & ~repeat & ~member, cand, -1)
    return cand if bad is None else xp.where(bad[:, None], -2, cand)


def gather_problem(
    xp: Namespace,
    x: Array,
    t: Array,
    cand: Array,
    w: Array | None,
    v: Array | None,
) -> tuple[Array, Array, Array | None, Array | None, Array]:
    """The (N, K + M) hinge problem of the positives and the candidates, for the kernels.

    Row n's scores are ``[x[t_n0], …, x[t_nK-1], x[s_n0], …, x[s_nM-1]]`` and its targets
    ``[0, …, K−1]`` up to its first negative value, then a marker column (-2, a NaN row, for a
    row that holds an out-of-range target or candidate). Slots that stand for no class (after
    the terminator, candidate padding) hold −inf: such a "negative" is below every threshold
    and forms no pair, whatever the positive's score, and −inf is no NaN. A row with no
    candidate keeps no positive either (its loss is 0 by definition; its NaN positive must not
    meet a −inf slot). Weights become per-slot (N, K + M) arrays: ``w`` of each positive's
    class, ``v`` of each candidate's. Returns (scores, targets, weights, neg weights, the
    class of every slot (-1: none), for :func:`scatter_rows`)."""
    n, c = x.shape
    kt, m = t.shape[1], cand.shape[1]
    dev = device(x)
    idt = index_dtype(xp)
    is_pos, slots = positive_slots(xp, t, c)
    bad_t = xp.any((t < -1) | (t >= c), axis=1)  # (all False for K = 0)
    pos_cls = xp.where(is_pos, t, -1)
    bad_rows = (bad_t | xp.any(cand == -2, axis=1)) if m else bad_t
    cand = xp.where(cand >= 0, cand, -1)
    has_cand = xp.any(cand >= 0, axis=1) if m else xp.zeros((n,), dtype=xp.bool, device=dev)
    cols = xp.concat([pos_cls, cand], axis=1)
    safe = xp.where(cols >= 0, cols, 0)
    xg = xp.where(cols >= 0, xp.take_along_axis(x, safe, axis=1), -xp.inf)
    marker = -1 - astype(xp, bad_rows, idt)[:, None]  # -2: a NaN row
    tg = xp.where(is_pos & has_cand[:, None], slots, -1)
    tg = xp.concat([astype(xp, tg, idt), marker], axis=1)

    def per_slot(weight: Array | None, keep: Array) -> Array | None:
        if weight is None:
            return None
        return xp.where(keep, xp.reshape(xp.take(weight, xp.reshape(safe, (-1,))), (n, kt + m)), 0)

    first = xp.concat([is_pos, xp.zeros((n, m), dtype=xp.bool, device=dev)], axis=1)
    wg = per_slot(w, first)
    vg = per_slot(v, ~first & (cols >= 0))
    return xg, tg, wg, vg, cols


def scatter_rows(xp: Namespace, cols: Array, g: Array, c: int) -> Array:
    """The adjoint of the gather: (N, C) zeros plus ``g`` (N, S) added at classes ``cols``
    (-1: nowhere; a class met twice, a duplicated target, adds up)."""
    n, s = g.shape
    keep = cols >= 0
    g = xp.where(keep, g, 0)
    col = xp.where(keep, cols, 0)
    dev = device(g)
    if is_torch(g):
        import torch

        out = torch.zeros((n, c), dtype=g.dtype, device=g.device)
        return out.scatter_add_(1, col.to(torch.int64), g)
    if is_jax(g):
        rows = xp.broadcast_to(xp.arange(n, dtype=col.dtype)[:, None], (n, s))
        return xp.zeros((n, c), dtype=g.dtype).at[rows, col].add(g)
    mod = type(g).__module__.split(".")[0]
    if mod in ("numpy", "cupy"):
        lib = sys.modules[mod]
        flat = (lib.arange(n, dtype=lib.int64)[:, None] * c + col).ravel()
        out = lib.bincount(flat, weights=g.ravel(), minlength=n * c)
        return out.reshape(n, c).astype(g.dtype)
    # any other namespace: one class-wide select per slot, O(N·C·S)
    classes = xp.arange(c, dtype=col.dtype, device=dev)[None, :]
    out = xp.zeros((n, c), dtype=g.dtype, device=dev)
    for j in range(s):
        out = out + xp.where(classes == col[:, j : j + 1], g[:, j : j + 1], 0)
    return out
