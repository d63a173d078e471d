"""The ``portable`` backend: the pairwise multilabel hinge in pure array-API code.

It runs on every namespace and device (NumPy, CuPy, torch CPU/CUDA, JAX, Dask chunks,
array-api-strict) and never builds an (N, T, C) or (N, C, C) intermediate: memory is O(N·C) and
time O(N·C·log C) (sorts).

Method (DESIGN.md §5). For sample n with scores x (C,) and positive multiplicities m (C,)
(how often each class occurs among the targets before the first negative value), let
w_c = m_c · weight_c and thr_c = x_c − margin. The loss is

    L = Σ_{c} w_c Σ_{j negative} max(0, x_j − thr_c)^p.

Sort the 2C keys [x_0 … x_{C−1}, thr_0 … thr_{C−1}] stably, class keys first, so a threshold
equal to a score sorts after it (the hinge is strictly positive only for thr < x_j). Let
τ_0 ≤ τ_1 ≤ … be the thresholds of the positive classes (w ≠ 0 slots; one more sort, of
values only), δ_q = τ_q − τ_{q−1} their gaps and A0 the running sum of w. Every sum is taken
from the largest violated threshold, d_j = x_j − τ_{r_j−1} with r_j the number of positive
thresholds below x_j, so that no large terms cancel (scores of 1e6 keep full accuracy):

    Σ_c w_c max(0, x_j − thr_c)   = A0·d_j + S1,            S1 = Σ_{q<r_j} δ_q·A0_q
    Σ_c w_c max(0, x_j − thr_c)²  = A0·d_j² + 2·d_j·S1 + S2, S2 = Σ_{q<r_j} (2·δ_q·S1_q + δ_q²·A0_q)

(running sums over the sorted row; every term ≥ 0 for non-negative weights) and the loss is
their sum over the negative classes j. Gradients:

    dL/dx_j (j negative)  = A0                        (p = 1)   or 2·(A0·d_j + S1)   (p = 2)
    dL/dx_c (c positive)  = −w_c · B0_c               (p = 1)   or −2·w_c·G_c        (p = 2)

with B0_c the count of negatives above thr_c and G_c = Σ_{x_j > thr_c} (x_j − thr_c) =
Σ d_j + Σ_q δ_q·B0_q over the negatives and positive thresholds above thr_c: suffix sums of
the same sorted row. A second argsort (of the permutation) maps the sorted quantities back to
classes. Negative weights v (``neg_weight``, (C,) or (N, C)) multiply each negative's sum
and its gradient, and B0_c, G_c become Σ v_j and Σ v_j·(x_j − thr_c) over the same negatives;
a negative of weight 0 is left out of the sorted sums like a positive. Multiplicities come from one flat sort of integer keys ``row·(C+1) + target`` and two
``searchsorted`` calls, exact for duplicates. Sums accumulate in float64 where the device has
it (float32 otherwise). A row holding a target outside [-1, C) gets NaN loss and gradient.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, is_torch_array
from array_api_compat import device as _device

from .._xp import index_dtype
from ._common import kernel_contract

__all__ = ["accumulation_dtype", "hinge", "multiplicities"]

_INT32_KEYS = 2**31 - 1  # largest key with 32-bit indices (a module constant for the tests)

Array = Any


def accumulation_dtype(xp: Any, x: Array) -> Any:
    """float64 where the namespace supports it on ``x``'s device, else float32."""
    if is_torch_array(x) and x.device.type == "mps":
        return xp.float32
    try:
        kinds = xp.__array_namespace_info__().dtypes(device=_device(x), kind="real floating")
    except Exception:  # older namespaces without the inspection API
        return xp.float64
    return xp.float64 if "float64" in kinds else xp.float32


def multiplicities(xp: Any, t: Array, num_classes: int) -> Array:
    """(N, C) counts of each class among each row's targets before the first negative value.

    ``t`` is an (N, K) integer array whose values lie in [-1, C) (validated by the caller).
    Exact for duplicates; no scatter and no (N, K, C) one-hot: one flat sort of the keys
    ``row·(C+1) + target`` and two ``searchsorted``. With 32-bit indices (JAX without x64) the
    rows go in groups small enough for the keys to fit.
    """
    n, k = t.shape
    dev = _device(t)
    idx = index_dtype(xp)
    if n == 0 or k == 0:
        return xp.zeros((n, num_classes), dtype=idx, device=dev)
    stride = num_classes + 1
    limit = _INT32_KEYS if idx == xp.int32 else 2**63 - 1
    rows = max(1, min(n, (limit - stride) // stride))
    if rows < n:  # keys would overflow: one group of rows at a time
        parts = [multiplicities(xp, t[i : i + rows, :], num_classes) for i in range(0, n, rows)]
        return xp.concat(parts, axis=0)
    t = xp.astype(t, idx)
    # entries at and after the first negative value are not positives
    seen_neg = xp.cumulative_sum(xp.astype(t < 0, idx), axis=1)
    valid = (seen_neg == 0) & (t < num_classes)
    row = xp.reshape(xp.arange(n, dtype=idx, device=dev) * stride, (n, 1))
    keys = xp.where(valid, t, num_classes) + row  # sentinel C keeps invalid slots in their row
    flat = xp.sort(xp.reshape(keys, (n * k,)))
    queries = row + xp.reshape(xp.arange(num_classes, dtype=idx, device=dev), (1, num_classes))
    lo = xp.searchsorted(flat, queries, side="left")
    hi = xp.searchsorted(flat, queries, side="right")
    return xp.astype(hi - lo, idx)


@kernel_contract(example=True)
def hinge(
    x: Array,
    t: Array,
    *,
    margin: float,
    p: int,
    weight: Array | None,
    want_grad: bool,
    neg_weight: Array | None = None,
) -> tuple[Array, Array | None]:
    """Array-API code on arrays of any namespace and device: ``weight`` and ``neg_weight``
    (C,) or (N, C) weights of the positives and negatives, or None; ``loss_raw`` (N,) and
    ``grad_raw`` (N, C) in the accumulation dtype (:func:`accumulation_dtype`: float64 where
    the namespace has it on ``x``'s device, else float32)."""
    kw: dict[str, Any] = {"margin": margin, "p": p, "weight": weight, "neg_weight": neg_weight}
    if is_numpy_array(x):  # inf − inf and 0·inf in branches that where() discards
        with np.errstate(invalid="ignore", over="ignore"):
            return _hinge(x, t, want_grad=want_grad, **kw)
    return _hinge(x, t, want_grad=want_grad, **kw)


def _hinge(
    x: Array,
    t: Array,
    *,
    margin: float,
    p: int,
    weight: Array | None,
    neg_weight: Array | None,
    want_grad: bool,
) -> tuple[Array, Array | None]:
    xp = array_namespace(x, t)
    n, c = x.shape
    dev = _device(x)
    acc = accumulation_dtype(xp, x)
    xf = xp.astype(x, acc)
    nan = math.nan

    mult = multiplicities(xp, t, c)
    is_neg = mult == 0
    n_pos = xp.sum(mult, axis=1)
    n_neg = xp.sum(xp.astype(is_neg, index_dtype(xp)), axis=1)
    has_nan = xp.any(xp.isnan(xf), axis=1)
    bad = xp.any((t < -1) | (t >= c), axis=1) if t.shape[1] else xp.zeros((n,), dtype=xp.bool)
    nan_rows = (has_nan & (n_pos > 0) & (n_neg > 0)) | bad

    # NaN rows are overwritten at the end; keep NaN out of the sort and the running sums.
    xf = xp.where(has_nan[:, None], xp.zeros_like(xf), xf)
    is_pos = ~is_neg
    w = xp.astype(mult, acc)
    if weight is not None:
        w = w * xp.reshape(xp.astype(weight, acc), (-1, c))
    # a negative of weight 0 forms no pair: it leaves the sums like a positive (it stays a
    # negative for the NaN rule above)
    v = None if neg_weight is None else xp.reshape(xp.astype(neg_weight, acc), (-1, c))
    paired = is_neg if v is None else is_neg & (v != 0)
    thr = xf - margin
    zeros = xp.zeros((n, c), dtype=acc, device=dev)

    perm = xp.argsort(xp.concat([xf, thr], axis=1), axis=1, stable=True)

    def in_sorted_order(left: Array, right: Array) -> Array:
        return xp.take_along_axis(xp.concat([left, right], axis=1), perm, axis=1)

    def times(a: Array, b: Array) -> Array:
        """a·b, 0 where either is 0 (no pair at all, even beside an infinite gap)."""
        return xp.where((a == 0) | (b == 0), 0.0, a * b)

    vals = in_sorted_order(xf, thr)  # the sorted keys
    pt = in_sorted_order(xp.zeros((n, c), dtype=xp.bool, device=dev), is_pos)  # positive thr
    neg_s = in_sorted_order(paired, xp.zeros((n, c), dtype=xp.bool, device=dev))  # negatives
    # each negative's weight at its sorted slot (1 without neg_weight)
    vs = None if v is None else in_sorted_order(xp.broadcast_to(v, (n, c)), zeros)
    wv = in_sorted_order(zeros, w)
    # the positive thresholds in ascending order (+inf after them), and at every sorted slot
    # the number r of them up to it and the largest of them before it
    tau = xp.sort(xp.where(is_pos, thr, math.inf), axis=1)
    r = xp.cumulative_sum(xp.astype(pt, index_dtype(xp)), axis=1)
    before = r - xp.astype(pt, r.dtype)  # positive thresholds strictly before the slot
    prev = xp.take_along_axis(tau, xp.clip(before - 1, min=0), axis=1)
    has_prev = before > 0
    a0 = xp.cumulative_sum(wv, axis=1)  # Σ w up to the slot (0 added at class slots)
    a0_before = a0 - wv
    gap = xp.where(pt & has_prev & (vals != prev), vals - prev, 0.0)  # δ at positive slots
    step1 = xp.where(pt, times(gap, a0_before), 0.0)
    s1 = xp.cumulative_sum(step1, axis=1)
    violated = neg_s & has_prev
    d = xp.where(violated, vals - prev, 0.0)  # x_j − its largest violated threshold
    lin = xp.where(violated, a0 * d + s1, 0.0)  # Σ_c w_c (x_j − thr_c) over violated c
    if p == 1:
        per_slot = lin
    else:
        # S1 before each slot as an exclusive prefix sum (s1 − step1 is inf − inf = NaN once
        # an infinite gap, a positive at −inf, has entered s1)
        s1_before = xp.cumulative_sum(step1, axis=1, include_initial=True)[:, :-1]
        s2 = xp.cumulative_sum(
            xp.where(pt, 2.0 * times(gap, s1_before) + gap * gap * a0_before, 0.0), axis=1
        )
        per_slot = xp.where(violated, a0 * d * d + 2.0 * times(d, s1) + s2, 0.0)
    if vs is not None:  # Σ_j v_j · (the negative's sum over its violated thresholds)
        per_slot = xp.where(violated, vs * per_slot, 0.0)
    loss = xp.sum(per_slot, axis=1)
    loss = xp.where(nan_rows, xp.full((n,), nan, dtype=acc, device=dev), loss)
    if not want_grad:
        return loss, None

    inv = xp.argsort(perm, axis=1)  # sorted position of every key
    cls_pos, thr_pos = inv[:, :c], inv[:, c:]
    g_neg_s = a0 if p == 1 else 2.0 * lin
    if vs is not None:
        g_neg_s = vs * g_neg_s
    g_neg = xp.take_along_axis(xp.where(violated, g_neg_s, 0.0), cls_pos, axis=1)

    def after(v: Array) -> Array:
        """Σ of v over the slots strictly after each slot, summed from the right: exactly 0
        after the last nonzero term and finite before an infinite one (total − prefix is
        neither: it leaves ~1e-17 for 0 and makes inf − inf = NaN)."""
        rev = xp.cumulative_sum(xp.flip(v, axis=1), axis=1, include_initial=True)
        return xp.flip(rev[:, :-1], axis=1)

    negf = xp.astype(neg_s, acc)
    if vs is not None:  # the histogram counts each negative with its weight
        negf = xp.where(neg_s, vs, 0.0)
        d = negf * d
    b0 = after(negf)  # (weighted) negatives above each slot
    if p == 1:
        g_pos = -w * xp.take_along_axis(b0, thr_pos, axis=1)
    else:
        # Σ_{j above thr_c} v_j (x_j − thr_c) = Σ v_j·d_j + Σ_q δ_q · (Σ v above q)
        spread = after(d) + after(xp.where(pt, times(gap, b0), 0.0))
        g_pos = -2.0 * w * xp.take_along_axis(spread, thr_pos, axis=1)
        g_pos = xp.where(xp.take_along_axis(b0, thr_pos, axis=1) > 0, g_pos, 0.0)
    grad = g_neg + xp.where(is_neg, 0.0, g_pos)
    grad = xp.where(nan_rows[:, None], xp.full((n, c), nan, dtype=acc, device=dev), grad)
    return loss, grad


# --------------------------------------------------------------------------------------------
# support rules (read by the registry)
# --------------------------------------------------------------------------------------------
def status() -> str | None:
    """None: array-api-compat is all it needs."""
    return None


def supports(x: Any) -> str | None:
    """None: any array-API namespace and device."""
    return None
