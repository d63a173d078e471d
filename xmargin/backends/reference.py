"""The ``reference`` backend: the pairwise multilabel hinge as a NumPy CPU kernel.

It is the default for NumPy arrays and torch CPU tensors (which it reads and writes through
zero-copy DLPack views). Loss and gradient come out of one pass, in O(C log T + T log T) time
per sample and O(N·C) extra memory, accumulating in float64 whatever the input dtype.

Method, for one sample with scores x (C,) and T positive slots t_1..t_T (duplicates included):

1. Thresholds thr_k = x[t_k] − margin with weights W_k = weight[t_k] (1 without weight), sorted
   ascending (T log T), and their prefix sums A0 = ΣW, A1 = ΣW·thr (A2 = ΣW·thr² for p = 2).
2. Every class j is placed among the sorted thresholds: cnt_j = #{k : thr_k < x_j} (C log T,
   a branch-free binary search over all classes at once). The hinge W_k·max(0, x_j − thr_k)
   is strictly positive for exactly those k, so a negative class j has gradient A0[cnt_j]
   (p = 1) or 2·(A0·x_j − A1)[cnt_j] (p = 2). Positive classes are set to −inf for this
   step: they land below every threshold and drop out of every sum.
3. A histogram of cnt (with the sums of x, and of x² for p = 2) gives, for the k-th smallest
   threshold, the number of negatives above it and their sum: its suffix sums, since
   x_j > thr_k ⇔ cnt_j > k. From these, in O(T):

       loss                = Σ_k W_k·(Σ_{x_j > thr_k} x_j − thr_k·#{x_j > thr_k})   (p = 1)
       d loss / d x[t_k]   = −W_k·#{x_j > thr_k}                                      (p = 1)

   and the p = 2 forms with Σ x², Σ x. Duplicate slots add up in their class.

float32 scores are compared with thresholds rounded down to float32, which changes no
comparison (no float32 lies strictly between the two) and halves the memory traffic.

A zero hinge (x_j = thr_k) counts nowhere, so it has zero gradient, as in PyTorch. Rows with a
NaN score, a positive and a negative give NaN loss and gradient (DESIGN.md §3).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["hinge", "hinge_numpy"]

# Scores per chunk of work and per thread-pool task. NumPy releases the GIL inside each
# operation, so two threads overlap well once operations are long enough; on a 2-core x86
# machine 128k beat 16k, 32k, 64k and 256k (interleaved runs at (N, C, T) = (256, 1000, 5),
# (256, 4000, 200), (128, 4000, 2000)). XMARGIN_NUM_THREADS sets the pool size (1: no pool).
_CHUNK_ELEMS = 1 << 17

_POOL: ThreadPoolExecutor | None = None


def _num_threads() -> int:
    raw = os.environ.get("XMARGIN_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, min(os.cpu_count() or 1, 8))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_num_threads(), thread_name_prefix="xmargin-reference")
    return _POOL


def _round_down(thr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The largest ``dtype`` value <= each float64 threshold.

    For scores of ``dtype``, ``x > thr`` ⇔ ``x > round_down(thr)`` exactly (no value of
    ``dtype`` lies strictly between the two), so comparisons can run in float32 for float32
    scores without changing a single outcome.
    """
    if dtype == np.float64:
        return thr
    with np.errstate(over="ignore", invalid="ignore"):
        r = thr.astype(dtype)
        too_big = r > thr
    return np.where(too_big, np.nextafter(r, dtype.type(-np.inf)), r)


def _bins_below(ts: np.ndarray, x: np.ndarray, stride: np.ndarray) -> np.ndarray:
    """at[i, j] = stride[i] + #{k : ts[i, k] < x[i, j]}: each score's bin among its row's
    sorted thresholds (rows ascending, +inf padding allowed, ``ts`` and ``x`` of one dtype).

    A branch-free binary search over all scores at once (log2(T) gathers and compares); for
    T <= 8 a linear count takes fewer passes.
    """
    b, k = ts.shape
    if k <= 8:
        cnt = np.zeros(x.shape, dtype=np.int8)
        below = np.empty(x.shape, dtype=bool)
        for i in range(k):
            np.less(ts[:, i : i + 1], x, out=below)
            cnt += below.view(np.int8)
        return cnt + stride
    width = (1 << k.bit_length()) - 1  # pad to 2^m - 1 so every probe is in bounds
    padded = np.full((b, width), np.inf, dtype=ts.dtype)
    padded[:, :k] = ts
    flat = padded.ravel()
    base = (np.arange(b) * width - 1)[:, None]  # just before each row
    pos = np.repeat(base, x.shape[1], axis=1)
    cand = np.empty_like(pos)
    below = np.empty(x.shape, dtype=bool)
    step = (width + 1) // 2
    while step:
        np.add(pos, step, out=cand)
        np.less(flat[cand], x, out=below)  # fancy indexing: the fastest gather in NumPy
        pos += below * step
        step //= 2
    pos += stride - base
    return pos


def _suffix_after(h: np.ndarray) -> np.ndarray:
    """out[:, k] = Σ_{v > k} h[:, v]: what lies above the k-th smallest threshold."""
    return np.cumsum(h[:, ::-1], axis=1)[:, ::-1][:, 1:]


class _Thresholds:
    """The sorted thresholds of a block of rows and their prefix sums (steps 1 of the method)."""

    def __init__(self, x: np.ndarray, t: np.ndarray, margin: float, p: int, weight: Any):
        b, c = x.shape
        self.rows = rows = np.arange(b)
        # the positives are the entries before each row's first negative value; only the first
        # max(T) columns can hold any (PyTorch's (N, C) layout is mostly padding)
        negative = t < 0
        n_pos = np.where(negative.any(axis=1), negative.argmax(axis=1), t.shape[1])
        self.k = k = int(n_pos.max()) if b else 0
        t = t[:, :k]
        self.valid = valid = np.arange(k) < n_pos[:, None]
        self.tc = tc = np.where(valid, t, 0)
        thr = np.take_along_axis(x, tc, axis=1).astype(np.float64) - margin
        thr = np.where(valid, thr, np.inf)  # padding sorts last and never counts
        w_slot = np.where(valid, 1.0 if weight is None else weight[tc], 0.0)
        # equal thresholds may come in any order: each sees the same scores above it
        self.order = np.argsort(thr, axis=1)
        self.ts = ts = np.take_along_axis(thr, self.order, axis=1)
        self.ws = ws = np.take_along_axis(w_slot, self.order, axis=1)
        used = ws != 0  # padding: weight 0 and threshold +inf; keep 0·inf out of the sums
        wt = np.multiply(ws, ts, out=np.zeros_like(ws), where=used)
        sums = [ws, wt]
        if p == 2:
            sums.append(np.multiply(wt, ts, out=np.zeros_like(ws), where=used))
        self.prefix = []  # prefix[m][i, v]: Σ over the v smallest thresholds of W·thr^m
        for s in sums:
            acc = np.zeros((b, k + 1))
            np.cumsum(s, axis=1, out=acc[:, 1:])
            self.prefix.append(acc)
        self.is_pos = np.zeros((b, c), dtype=bool)
        self.is_pos.ravel()[(tc + (rows * c)[:, None])[valid]] = True
        self.n_pos = n_pos
        self.n_neg = c - self.is_pos.sum(axis=1)


def _masked_scores(
    x: np.ndarray, is_pos: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``x`` in ``dtype`` with positive classes at -inf, and its rows' NaN flags."""
    xc = x.astype(dtype)
    has_nan = np.isnan(xc).any(axis=1)
    np.copyto(xc, -np.inf, where=is_pos)
    return xc, has_nan


def _search_path(x, th, p, cmp_dtype, grad_out):
    """Steps 2-3 by binary search: per class bins, then histogram suffix sums."""
    b, c = x.shape
    k = th.k
    ts_cmp = _round_down(th.ts, cmp_dtype)
    stride = (th.rows * (k + 1))[:, None]
    bins = b * (k + 1)
    hist = np.zeros(bins, dtype=np.int64)  # [i, v]: negatives of row i with v thresholds below
    hist_x = np.zeros(bins)  # ... the sum of their scores
    hist_xx = np.zeros(bins) if p == 2 else None  # ... and of their squares
    has_nan = np.zeros(b, dtype=bool)
    flat_a0, flat_a1 = th.prefix[0].ravel(), th.prefix[1].ravel()
    a0_out = None if grad_out is None else flat_a0.astype(grad_out.dtype)
    chunk = max(1, _CHUNK_ELEMS // max(b, 1))
    for j0 in range(0, c, chunk):
        j1 = min(c, j0 + chunk)
        xc, nan_here = _masked_scores(x[:, j0:j1], th.is_pos[:, j0:j1], cmp_dtype)
        has_nan |= nan_here
        at = _bins_below(ts_cmp, xc, stride)
        flat_at = at.ravel()
        hist += np.bincount(flat_at, minlength=bins)
        hist_x += np.bincount(flat_at, weights=xc.ravel(), minlength=bins)
        if hist_xx is not None:
            sq = np.square(xc, dtype=np.float64).ravel()
            hist_xx += np.bincount(flat_at, weights=sq, minlength=bins)
        if grad_out is None:
            continue
        if p == 1:  # d/dx_j = weighted count of thresholds below x_j
            grad_out[:, j0:j1] = a0_out[at]
        else:  # d/dx_j = 2 Σ W (x_j − thr) over thresholds below x_j (none in bin 0)
            with np.errstate(invalid="ignore"):  # 0·(-inf) in bin 0, discarded
                lin = flat_a0[at] * xc - flat_a1[at]
            grad_out[:, j0:j1] = np.where(at > stride, 2.0 * lin, 0.0)
    shape = (b, k + 1)
    above = [_suffix_after(hist.reshape(shape)), _suffix_after(hist_x.reshape(shape))]
    if hist_xx is not None:
        above.append(_suffix_after(hist_xx.reshape(shape)))
    return above, has_nan


def _block(x, t, margin, p, weight, loss_out, grad_out) -> None:
    """Loss (and gradient) of a block of rows; writes into the given output slices.

    Infinite scores give the IEEE results of the formulas: +inf where the hinge is infinite
    for p = 1; for p = 2 the expanded squares may give NaN instead (inf − inf).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        _block_impl(x, t, margin, p, weight, loss_out, grad_out)


def _block_impl(x, t, margin, p, weight, loss_out, grad_out) -> None:
    b, c = x.shape
    th = _Thresholds(x, t, margin, p, weight)
    cmp_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    above, has_nan = _search_path(x, th, p, cmp_dtype, grad_out)

    # the loss and the positives' gradients from what lies above each threshold
    n_above, sum_above = above[0], above[1]
    hit = n_above > 0  # also keeps inf·0 out: an unviolated threshold adds exactly 0
    ts = np.where(hit, th.ts, 0.0)
    spread = sum_above - ts * n_above  # Σ (x_j − thr_k) over x_j > thr_k
    if p == 1:
        per_slot = np.where(hit, th.ws * spread, 0.0)
        g_sorted = -th.ws * n_above
    else:
        squares = above[2] - 2.0 * ts * sum_above + ts * ts * n_above
        per_slot = np.where(hit, th.ws * squares, 0.0)
        g_sorted = np.where(hit, -2.0 * th.ws * spread, 0.0)
    loss = per_slot.sum(axis=1)
    # A NaN score poisons its row's sums. The rule (DESIGN.md §3): NaN where the row has a
    # positive and a negative, else the loss is an empty sum, 0.
    zero_rows = has_nan & ((th.n_pos == 0) | (th.n_neg == 0))
    nan_rows = has_nan & ~zero_rows
    loss[nan_rows], loss[zero_rows] = math.nan, 0.0
    loss_out[...] = loss
    if grad_out is None:
        return
    g_slot = np.empty_like(g_sorted)
    np.put_along_axis(g_slot, th.order, g_sorted, axis=1)
    cells = (th.tc + (th.rows * c)[:, None])[th.valid]
    add = np.bincount(cells, weights=g_slot[th.valid], minlength=b * c).reshape(b, c)
    np.add(grad_out, add, out=grad_out, casting="unsafe")  # duplicates of a class add up
    grad_out[nan_rows], grad_out[zero_rows] = math.nan, 0.0


def hinge_numpy(
    x: np.ndarray,
    t: np.ndarray,
    *,
    margin: float,
    p: int,
    weight: np.ndarray | None,
    want_grad: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The kernel contract of DESIGN.md §5 on NumPy arrays.

    ``x`` (N, C) floating, ``t`` (N, K) integers in [-1, C). Returns ``loss_raw`` (N,) float64
    and ``grad_raw`` (N, C) in ``x``'s dtype (float64 sums, rounded once at the end). Extra
    memory: O(N·K) for the thresholds plus O(chunk) scratch; nothing of size N·T·C.

    >>> import numpy as np
    >>> loss, grad = hinge_numpy(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[3, 0, -1, 1]]),
    ...                          margin=1.0, p=1, weight=None, want_grad=True)
    >>> round(float(loss[0]) / 4, 6), (grad[0] / 4).tolist()
    (0.85, [-0.5, 0.5, 0.5, -0.5])
    """
    n, c = x.shape
    t = np.asarray(t)
    if t.dtype != np.int64:
        t = t.astype(np.int64)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    loss = np.zeros(n, dtype=np.float64)
    grad = np.zeros((n, c), dtype=x.dtype) if want_grad else None
    if n == 0 or t.shape[1] == 0:
        return loss, grad
    rows = max(1, _CHUNK_ELEMS // max(c, 1))  # one task: whole rows, about a chunk of scores
    starts = range(0, n, rows)

    def run(r0: int) -> None:
        r1 = min(n, r0 + rows)
        out = None if grad is None else grad[r0:r1]
        _block(x[r0:r1], t[r0:r1], margin, p, w, loss[r0:r1], out)

    if len(starts) > 1 and _num_threads() > 1:
        list(_pool().map(run, starts))
    else:
        for r0 in starts:
            run(r0)
    return loss, grad


def hinge(
    x: Any,
    t: Any,
    *,
    margin: float,
    p: int,
    weight: Any | None,
    want_grad: bool,
) -> tuple[Any, Any | None]:
    """The kernel contract on NumPy arrays or CPU arrays of another framework (torch), read and
    written through zero-copy DLPack views; results come back in ``x``'s namespace."""
    from ..adapters.dlpack import from_numpy_like, to_numpy

    loss, grad = hinge_numpy(
        to_numpy(x),
        to_numpy(t),
        margin=margin,
        p=p,
        weight=None if weight is None else to_numpy(weight),
        want_grad=want_grad,
    )
    return from_numpy_like(loss, x), None if grad is None else from_numpy_like(grad, x)
