"""The ``reference`` backend: the pairwise multilabel hinge as a NumPy CPU kernel.

It reads NumPy arrays and torch CPU tensors (the latter through zero-copy DLPack views). Loss
and gradient come out of one pass, in O(C log T + T log T) time per sample and O(N·C) extra
memory, accumulating in float64 whatever the input dtype.

Method, for one sample with scores x (C,), T positive slots t_1..t_T (duplicates included) and
the row's weights (a (C,) weight is every row's, an (N, C) one row n's own):

1. Thresholds thr_k = x[t_k] − margin with weights W_k = weight[t_k] (1 without weight), sorted
   ascending: τ_0 ≤ … ≤ τ_{T−1} (T log T); A0[v] = Σ_{k<v} W_k, gaps δ_u = τ_u − τ_{u−1}.
2. Every class j is placed among the sorted thresholds: v_j = #{k : τ_k < x_j} (C log T, a
   branch-free binary search over all classes at once). The hinge W_k·max(0, x_j − τ_k) is
   strictly positive for exactly the v_j smallest thresholds. Positive classes are set to −inf
   for this step: they land below every threshold and drop out of every sum. So are negatives
   of neg_weight V_j = 0: they form no pair, even where their hinge would be infinite.
3. Sums are taken from the largest violated threshold, d_j = x_j − τ_{v_j−1} ≥ 0, so that no
   large terms cancel (scores of 1e6 keep full float64 accuracy):

       Σ_{k<v} W_k (x_j − τ_k)   = A0[v]·d_j + S1[v],      S1[v] = Σ_{u<v} δ_u·A0[u]
       Σ_{k<v} W_k (x_j − τ_k)²  = A0[v]·d_j² + 2·d_j·S1[v] + S2[v],
                                   S2[v] = Σ_{u<v} (2·δ_u·S1[u] + δ_u²·A0[u])

   (every term ≥ 0 for non-negative weights). The loss is their sum over the negatives j, each
   times V_j (1 without neg_weight); the gradient of a negative is V_j·A0[v] (p = 1) or
   2·V_j·(A0[v]·d_j + S1[v]) (p = 2).
4. A histogram of v (counts, and the sums of d; with neg_weight the sums of V_j and V_j·d_j)
   gives the positives' gradients: with above_u = Σ_{j : v_j > u} V_j (a suffix sum;
   x_j > τ_u ⇔ v_j > u; a count without neg_weight),

       d loss / d x[t_u] = −W_u·above_u                                                (p = 1)
       d loss / d x[t_u] = −2·W_u·(Σ_{v>u} Σ_{j: v_j=v} V_j·d_j + Σ_{m>u} δ_m·above_m)  (p = 2)

   Duplicate slots add up in their class.

float32 scores are compared with thresholds rounded down to float32, which changes no
comparison (no float32 lies strictly between the two) and halves the memory traffic.

A zero hinge (x_j = τ_k) counts nowhere, so it has zero gradient, as in PyTorch. Infinite
scores give the definition's results (an infinite hinge gives an infinite loss; a class that
violates nothing adds nothing). Rows with a NaN score, a positive and a negative (one of
neg_weight 0 included) give NaN loss and gradient (DESIGN.md §3); so do rows holding a target
outside [-1, C) (the kernel contract).
The thread pool is rebuilt in a forked child (a pool's threads do not survive ``fork``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._interop import array_kind
from . import _host
from ._common import kernel_contract, on_host

__all__ = ["hinge", "hinge_numpy"]

# Scores per chunk of work and per thread-pool task. NumPy releases the GIL inside each
# operation, so two threads overlap well once operations are long enough; on a 2-core x86
# machine 128k beat 16k, 32k, 64k and 256k (interleaved runs at (N, C, T) = (256, 1000, 5),
# (256, 4000, 200), (128, 4000, 2000)). XMARGIN_NUM_THREADS sets the pool size (1: no pool);
# the pool is shared with the numba backend and rebuilt in a forked child (``_threads``).
_CHUNK_ELEMS = 1 << 17


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


def _times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a·b with 0 where either factor is 0: a count or gap of 0 means no pair at all, even
    next to an infinite gap (IEEE would make 0·inf NaN)."""
    with np.errstate(invalid="ignore"):
        return np.where((a == 0) | (b == 0), 0.0, a * b)


class _Thresholds:
    """The sorted thresholds of a block of rows and their sums (step 1 of the method)."""

    def __init__(self, x: np.ndarray, t: np.ndarray, margin: float, p: int, weight: Any):
        b, c = x.shape
        self.rows = rows = np.arange(b)
        # a row holding a target outside [-1, C) anywhere is NaN (the kernel contract); its
        # values are read as the terminator so that nothing is indexed out of bounds
        invalid = (t < -1) | (t >= c)
        self.bad = invalid.any(axis=1)
        if self.bad.any():
            t = np.where(invalid, -1, t)
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
        if weight is None:
            w_slot = np.where(valid, 1.0, 0.0)
        else:  # (C,): every row's weights; (N, C): the block's own rows
            w_t = weight[tc] if weight.ndim == 1 else np.take_along_axis(weight, tc, axis=1)
            w_slot = np.where(valid, w_t, 0.0)
        # equal thresholds may come in any order: each sees the same scores above it
        self.order = np.argsort(thr, axis=1)
        self.ts = ts = np.take_along_axis(thr, self.order, axis=1)
        self.ws = ws = np.take_along_axis(w_slot, self.order, axis=1)
        # gaps between neighbouring thresholds (0 for equal ones, also equal infinities)
        gap = np.zeros((b, k))
        with np.errstate(invalid="ignore"):
            np.subtract(ts[:, 1:], ts[:, :-1], out=gap[:, 1:], where=ts[:, 1:] != ts[:, :-1])
        self.gap = gap
        # per bin v (v thresholds below): A0 = Σ W over them, S1/S2 as in the module doc; the
        # columns beyond a row's last real threshold (padding) are never read
        a0 = np.zeros((b, k + 1))
        np.cumsum(ws, axis=1, out=a0[:, 1:])
        s1 = np.zeros((b, k + 1))
        with np.errstate(invalid="ignore", over="ignore"):
            np.cumsum(gap * a0[:, :k], axis=1, out=s1[:, 1:])
        self.prefix = [a0, s1]
        if p == 2:
            s2 = np.zeros((b, k + 1))
            with np.errstate(invalid="ignore", over="ignore"):
                np.cumsum(2.0 * _times(gap, s1[:, :k]) + gap * gap * a0[:, :k], axis=1,
                          out=s2[:, 1:])  # fmt: skip
            self.prefix.append(s2)
        # the largest violated threshold of bin v (bin 0 has none: never read)
        top = np.zeros((b, k + 1))
        top[:, 1:] = ts
        self.top = top
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


def _search_path(x, th, p, cmp_dtype, grad_out, neg_weight):
    """Steps 2-4 by binary search: per class bins and sums, then histogram suffix sums.
    ``neg_weight`` is None, (C,) or the block's (B, C) rows."""
    b, c = x.shape
    k = th.k
    ts_cmp = _round_down(th.ts, cmp_dtype)
    stride = (th.rows * (k + 1))[:, None]
    bins = b * (k + 1)
    # [i, v]: negatives of row i with v thresholds below (the sum of their neg weights), and
    # the sum of their (weighted) distances d to the largest of them; integer counts without
    # neg_weight keep that path exactly as it was
    hist = np.zeros(bins, dtype=np.int64 if neg_weight is None else np.float64)
    hist_d = np.zeros(bins)
    loss = np.zeros(b)
    has_nan = np.zeros(b, dtype=bool)
    flat_a0, flat_s1 = th.prefix[0].ravel(), th.prefix[1].ravel()
    flat_s2 = th.prefix[2].ravel() if p == 2 else None
    flat_top = th.top.ravel()
    chunk = max(1, _CHUNK_ELEMS // max(b, 1))
    for j0 in range(0, c, chunk):
        j1 = min(c, j0 + chunk)
        xc, nan_here = _masked_scores(x[:, j0:j1], th.is_pos[:, j0:j1], cmp_dtype)
        has_nan |= nan_here  # a NaN negative of weight 0 still counts for the NaN rule
        nw = None
        if neg_weight is not None:
            nw = neg_weight[..., j0:j1]  # (B, chunk), or (chunk,) shared by the rows
            # weight 0: no pair, so it sits at -inf like a positive (no 0·inf where its hinge
            # is infinite, nothing in the histogram's bins above 0)
            zero = nw == 0
            if zero.any():
                np.copyto(xc, -np.inf, where=zero)
        at = _bins_below(ts_cmp, xc, stride)
        hit = at > stride  # violates at least one threshold (positives sit at -inf: never)
        a0 = flat_a0[at]
        s1 = flat_s1[at]
        d = np.where(hit, xc - flat_top[at], 0.0)  # x − its largest violated threshold, > 0
        lin = a0 * d + s1  # Σ W (x − τ) over the violated thresholds
        per_class = lin if p == 1 else a0 * d * d + 2.0 * _times(d, s1) + flat_s2[at]
        if nw is not None:  # V_j > 0 wherever it hits: no 0·inf
            per_class = per_class * nw
        loss += np.where(hit, per_class, 0.0).sum(axis=1)
        flat_at = at.ravel()
        if nw is None:
            hist += np.bincount(flat_at, minlength=bins)
        else:
            hist += np.bincount(
                flat_at, weights=np.broadcast_to(nw, at.shape).ravel(), minlength=bins
            )
            d = d * nw
        if p == 2:
            hist_d += np.bincount(flat_at, weights=d.ravel(), minlength=bins)
        if grad_out is None:
            continue
        g = a0 if p == 1 else 2.0 * lin  # d/dx_j of the sums above
        if nw is not None:
            g = g * nw
        grad_out[:, j0:j1] = np.where(hit, g, 0.0)
    shape = (b, k + 1)
    above = _suffix_after(hist.reshape(shape))  # [i, u]: negatives above threshold u
    spread = None
    if p == 2:  # Σ (x_j − τ_u) over the negatives above τ_u, as sums of non-negative terms
        far = _times(th.gap, above)  # δ_m · above_m
        spread = _suffix_after(hist_d.reshape(shape)) + _suffix_after(
            np.concatenate([far, np.zeros((b, 1))], axis=1)
        )
    return loss, above, spread, has_nan


def _block(x, t, margin, p, weight, neg_weight, loss_out, grad_out) -> None:
    """Loss (and gradient) of a block of rows; writes into the given output slices. The
    weights are None, (C,) or the block's (B, C) rows."""
    with np.errstate(invalid="ignore", over="ignore"):
        _block_impl(x, t, margin, p, weight, neg_weight, loss_out, grad_out)


def _block_impl(x, t, margin, p, weight, neg_weight, loss_out, grad_out) -> None:
    b, c = x.shape
    th = _Thresholds(x, t, margin, p, weight)
    cmp_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    loss, n_above, spread, has_nan = _search_path(x, th, p, cmp_dtype, grad_out, neg_weight)
    # A NaN score poisons its row's sums. The rule (DESIGN.md §3): NaN where the row has a
    # positive and a negative, else the loss is an empty sum, 0.
    zero_rows = has_nan & ((th.n_pos == 0) | (th.n_neg == 0))
    nan_rows = (has_nan & ~zero_rows) | th.bad
    zero_rows &= ~th.bad
    loss[nan_rows], loss[zero_rows] = math.nan, 0.0
    loss_out[...] = loss
    if grad_out is None:
        return
    # the positives' gradients from what lies above each threshold
    g_sorted = -th.ws * n_above if p == 1 else np.where(n_above > 0, -2.0 * th.ws * spread, 0.0)
    g_slot = np.empty_like(g_sorted)
    np.put_along_axis(g_slot, th.order, g_sorted, axis=1)
    cells = (th.tc + (th.rows * c)[:, None])[th.valid]
    add = np.bincount(cells, weights=g_slot[th.valid], minlength=b * c).reshape(b, c)
    np.add(grad_out, add, out=grad_out, casting="unsafe")  # duplicates of a class add up
    grad_out[nan_rows], grad_out[zero_rows] = math.nan, 0.0


def _weights(a: Any, n: int, c: int, name: str) -> np.ndarray | None:
    """A weight argument as float64 NumPy, (C,) or (N, C) (exact for float32 weights)."""
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    if a.shape not in ((c,), (n, c)):
        raise ValueError(f"hinge_numpy: {name} must be (C,) or (N, C) = ({n}, {c}), got {a.shape}")
    return a


@kernel_contract(example=True)
def hinge_numpy(
    x: np.ndarray,
    t: np.ndarray,
    *,
    margin: float,
    p: int,
    weight: np.ndarray | None,
    want_grad: bool,
    neg_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The NumPy kernel on NumPy arrays: ``x`` floating, ``t`` integers of any dtype,
    ``weight`` and ``neg_weight`` None, (C,) or (N, C) (arrays, or CPU tensors NumPy reads).
    Returns ``loss_raw`` (N,) float64 and ``grad_raw`` (N, C) in ``x``'s dtype (float64 sums,
    rounded once at the end). Extra memory: O(N·K) for the thresholds plus O(chunk) scratch;
    nothing of size N·T·C."""
    n, c = x.shape
    t = _host.integer_targets(t, c)
    w, nw = _weights(weight, n, c, "weight"), _weights(neg_weight, n, c, "neg_weight")
    loss = np.zeros(n, dtype=np.float64)
    grad = np.zeros((n, c), dtype=x.dtype) if want_grad else None
    if n == 0 or t.shape[1] == 0:
        return loss, grad

    def rows(a: np.ndarray | None, r0: int, r1: int) -> np.ndarray | None:
        return a[r0:r1] if a is not None and a.ndim == 2 else a  # (C,) is every row's

    def task(r0: int, r1: int) -> None:
        out = None if grad is None else grad[r0:r1]
        _block(x[r0:r1], t[r0:r1], margin, p, rows(w, r0, r1), rows(nw, r0, r1), loss[r0:r1], out)

    # one task: whole rows, about a chunk of scores
    _host.launch(task, n, max(1, _CHUNK_ELEMS // max(c, 1)))
    return loss, grad


hinge = on_host(hinge_numpy)


# --------------------------------------------------------------------------------------------
# support rules (read by the registry)
# --------------------------------------------------------------------------------------------
def supports(x: Any) -> str | None:
    """None when this backend runs on scores ``x``, else why not."""
    kind = array_kind(x)
    if kind in (("numpy", "cpu"), ("torch", "cpu")):
        return None
    return f"reference runs on NumPy arrays and torch CPU tensors, got {kind[0]} on {kind[1]}"


def status() -> str | None:
    """None: NumPy is all it needs."""
    return None
