"""Numba CPU kernel of the pairwise multilabel hinge (device code only; the launch, threads and
support rules live in ``xmargin/backends/numba.py``).

For each row r in [r0, r1) with scores x (C,), targets t (K,) and T the number of entries before
the first negative target (the positive slots, duplicates included), the kernel computes

    loss[r] = Σ_{k < T} W_k · Σ_{j negative} max(0, margin − x[t_k] + x_j)^p

and, when asked, grad[r] = factor · scale[r] · d loss[r] / d x[r], written once, in one pass over the
row. Sums accumulate in float64 whatever the scores' dtype (float32 or float64 here; the loss
layer hands half precision over as float32). Per row, by its own T:

* T ≤ ``direct_max``: the direct O(T·C) loop, slot by slot over the row's negatives (the
  positives and NaN-free masking go into one float64 copy of the row, with positives at −inf so
  that no branch is needed: z = (margin − x_k) + x_j is −inf there). LLVM vectorises the class
  loop (``fastmath`` reassociation only: NaN and inf keep their IEEE meaning).
* larger T: the sorted search of DESIGN.md §5 in O(T log T + C log T). Thresholds
  τ_0 ≤ … ≤ τ_{T−1} (τ = x[t_k] − margin) with weights, A0[v] = Σ_{k<v} W_k and gaps
  δ_u = τ_u − τ_{u−1}. Every class j is placed by binary search, v_j = #{τ < x_j}, and its sums
  are taken from its largest violated threshold, d_j = x_j − τ_{v_j−1} > 0, so that nothing
  cancels at large scores:

      Σ_{k<v} W_k (x_j − τ_k)   = A0[v]·d_j + S1[v],         S1[v] = Σ_{u<v} δ_u·A0[u]
      Σ_{k<v} W_k (x_j − τ_k)²  = A0[v]·d_j² + 2·d_j·S1[v] + S2[v],
                                  S2[v] = Σ_{u<v} (2·δ_u·S1[u] + δ_u²·A0[u])

  The gradient of negative j is A0[v] (p = 1) or 2·(A0[v]·d_j + S1[v]) (p = 2). A histogram
  of v (counts, and sums of d) gives the positives': with above_u = #{j : v_j > u},

      d loss / d x[t_u] = −W_u·above_u                                               (p = 1)
      d loss / d x[t_u] = −2·W_u·(Σ_{v>u} Σ_{j: v_j=v} d_j + Σ_{m>u} δ_m·above_m)   (p = 2)

Rules (DESIGN.md §3, §5): a zero hinge (x_j = τ_k) counts nowhere and has zero gradient; a row
holding any target outside [-1, C) (also after its first negative value) gets NaN loss and an
all-NaN gradient row; a row with a NaN score, a positive and a negative gets NaN loss and
gradient, one with a NaN but no positive or no negative 0; infinite scores give the
definition's values (0·inf from a count or gap of 0 is taken as 0: no pair). Duplicate target
slots add up in their class. Memory: O(C + K) scratch per call, nothing of size T·C.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _times(a, b):
    """a·b, 0 where either is 0 (a count or gap of 0 means no pair, even beside an inf)."""
    if a == 0.0 or b == 0.0:
        return 0.0
    return a * b


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def _direct(xr, mk, wk, n_slots, p, want_grad, g, gp):
    """O(T·C): every negative class (xr, −inf at positives) against every slot's margin − x_k
    (mk) and weight (wk). Adds into the float64 row gradient g and slot gradients gp; returns
    the loss."""
    c = xr.shape[0]
    loss = 0.0
    for k in range(n_slots):
        m = mk[k]
        w = wk[k]
        part = 0.0
        cnt = 0.0
        for j in range(c):
            z = m + xr[j]
            h = z if z > 0.0 else 0.0
            if p == 1:
                part += h
                if want_grad:
                    on = 1.0 if z > 0.0 else 0.0
                    g[j] += w * on
                    cnt += on
            else:
                part += h * h
                if want_grad:
                    g[j] += 2.0 * w * h
                    cnt += h
        loss += w * part
        if want_grad:
            gp[k] = -w * cnt if p == 1 else -2.0 * w * cnt
    return loss


@njit(cache=True, nogil=True)
def _sorted(xr, thr, wk, n_slots, p, want_grad, g, gp, ts, ws, a0, s1, s2, gap, hist, hist_d):
    """O(T log T + C log T): the sorted search of the module docstring."""
    c = xr.shape[0]
    order = np.argsort(thr[:n_slots], kind="mergesort")
    for u in range(n_slots):
        ts[u] = thr[order[u]]
        ws[u] = wk[order[u]]
    a0[0] = 0.0
    s1[0] = 0.0
    s2[0] = 0.0
    for u in range(n_slots):
        gap[u] = ts[u] - ts[u - 1] if u > 0 and ts[u] != ts[u - 1] else 0.0
        a0[u + 1] = a0[u] + ws[u]
        s1[u + 1] = s1[u] + _times(gap[u], a0[u])
        s2[u + 1] = s2[u] + 2.0 * _times(gap[u], s1[u]) + _times(gap[u] * gap[u], a0[u])
    if want_grad:
        for v in range(n_slots + 1):
            hist[v] = 0.0
            hist_d[v] = 0.0
    loss = 0.0
    for j in range(c):
        xj = xr[j]
        # v = #{τ < xj}: binary search over the sorted thresholds (positives sit at −inf: 0)
        lo = 0
        hi = n_slots
        while lo < hi:
            mid = (lo + hi) >> 1
            if ts[mid] < xj:
                lo = mid + 1
            else:
                hi = mid
        v = lo
        if v == 0:
            continue
        d = xj - ts[v - 1]
        lin = a0[v] * d + s1[v]
        if p == 1:
            loss += lin
        else:
            loss += a0[v] * d * d + 2.0 * _times(d, s1[v]) + s2[v]
        if want_grad:
            g[j] += a0[v] if p == 1 else 2.0 * lin
            hist[v] += 1.0
            hist_d[v] += d
    if want_grad:
        above = 0.0  # Σ_{v > u} hist[v]
        spread_d = 0.0  # Σ_{v > u} hist_d[v]
        far = 0.0  # Σ_{m > u} δ_m · above_m
        for u in range(n_slots - 1, -1, -1):
            above += hist[u + 1]
            spread_d += hist_d[u + 1]
            if p == 1:
                gp[order[u]] = -ws[u] * above
            else:
                gp[order[u]] = -2.0 * ws[u] * (spread_d + far) if above > 0.0 else 0.0
            far += _times(gap[u], above)
    return loss


@njit(cache=True, nogil=True)
def hinge_rows(
    x,  # (N, C) scores, float32 or float64, C-contiguous
    t,  # (N, K) targets, int32 or int64, C-contiguous, any values
    weight,  # (C,) float64 per-class weights of positives, or (0,) for none
    margin,  # hinge margin (float)
    p,  # 1: hinge, 2: squared hinge
    want_grad,  # also write the gradient
    scale,  # (N,) float64 factor of each gradient row, or (0,) for none
    factor,  # a factor of every gradient row (the reduction's 1/C or 1/(N·C))
    loss,  # (N,) float64 out: the raw loss of each row (before the 1/C)
    grad,  # (N, C) out in x's dtype (written only when want_grad)
    r0,  # first row of this call
    r1,  # one past the last row
    direct_max,  # rows with T <= direct_max take the direct loop, others the sorted search
):
    c = x.shape[1]
    kcols = t.shape[1]
    has_weight = weight.shape[0] > 0
    has_scale = scale.shape[0] > 0
    nan = math.nan
    inf = math.inf
    # scratch, reused row after row
    xr = np.empty(c, np.float64)  # the row in float64, positives at −inf
    is_pos = np.zeros(c, np.uint8)
    g = np.zeros(c, np.float64)
    cls = np.empty(kcols, np.int64)
    thr = np.empty(kcols, np.float64)
    mk = np.empty(kcols, np.float64)
    wk = np.empty(kcols, np.float64)
    gp = np.empty(kcols, np.float64)
    ts = np.empty(kcols, np.float64)
    ws = np.empty(kcols, np.float64)
    a0 = np.empty(kcols + 1, np.float64)
    s1 = np.empty(kcols + 1, np.float64)
    s2 = np.empty(kcols + 1, np.float64)
    gap = np.empty(kcols, np.float64)
    hist = np.empty(kcols + 1, np.float64)
    hist_d = np.empty(kcols + 1, np.float64)
    for r in range(r0, r1):
        # -- the targets: T, and any value outside [-1, C) anywhere in the row --------------
        n_slots = kcols
        bad = False
        for k in range(kcols):
            v = t[r, k]
            if v < -1 or v >= c:
                bad = True
                break
            if v < 0 and n_slots == kcols:
                n_slots = k
        if bad:
            loss[r] = nan
            if want_grad:
                for j in range(c):
                    grad[r, j] = nan
            continue
        # -- the positives, the row in float64, NaN ----------------------------------------
        distinct = 0
        for k in range(n_slots):
            ck = t[r, k]
            cls[k] = ck
            if is_pos[ck] == 0:
                is_pos[ck] = 1
                distinct += 1
        has_nan = False
        for j in range(c):
            xj = np.float64(x[r, j])
            if xj != xj:
                has_nan = True
            xr[j] = -inf if is_pos[j] else xj
        for k in range(n_slots):
            xk = np.float64(x[r, cls[k]])
            mk[k] = margin - xk  # z = (margin − x_k) + x_j: PyTorch's order
            thr[k] = -mk[k]  # exactly x_k − margin (negation is exact)
            wk[k] = weight[cls[k]] if has_weight else 1.0
            gp[k] = 0.0
        for k in range(n_slots):
            is_pos[cls[k]] = 0  # clean the marker for the next row
        n_neg = c - distinct
        if n_slots == 0 or n_neg == 0 or has_nan:
            # no pair, or the NaN rule: NaN with a positive and a negative, else an empty sum
            fill = nan if (has_nan and n_slots > 0 and n_neg > 0) else 0.0
            loss[r] = fill
            if want_grad:
                for j in range(c):
                    grad[r, j] = fill
            continue
        if want_grad:
            for j in range(c):
                g[j] = 0.0
        if n_slots <= direct_max:
            total = _direct(xr, mk, wk, n_slots, p, want_grad, g, gp)
        else:
            total = _sorted(
                xr, thr, wk, n_slots, p, want_grad, g, gp, ts, ws, a0, s1, s2, gap, hist, hist_d
            )
        loss[r] = total
        if want_grad:
            for k in range(n_slots):
                g[cls[k]] += gp[k]  # duplicates of a class add up
            f = scale[r] * factor if has_scale else factor
            for j in range(c):
                grad[r, j] = g[j] * f
