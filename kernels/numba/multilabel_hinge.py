"""Numba CPU kernel of the pairwise multilabel hinge (device code only; the launch, threads and
support rules live in ``xmargin/backends/numba.py``).

For each row r in [r0, r1) with scores x (C,), targets t (K,) and T the number of entries before
the first negative target (the positive slots, duplicates included), the kernel computes

    loss[r] = Σ_{k < T} W_k · Σ_{j negative} ω_j · max(0, margin − x[t_k] + x_j)^p

and, when asked, grad[r] = factor · scale[r] · d loss[r] / d x[r], written once, in one pass over the
row. Sums accumulate in float64 whatever the scores' dtype (float32 or float64 here; the loss
layer hands half precision over as float32). The weights are W_k = weight[r, t_k] and
ω_j = neg_weight[r, j] (1 without), each a flat float64 array with a row stride: 0 for a (C,)
weight shared by every row, C for an (N, C) one. A negative with ω_j = 0 forms no pair: it is
set to −inf in the row's float64 copy, like the positives, so that it drops out of every path
below (no hinge, no 0·inf, bin 0 of the search). Per row, by its own T:

* T ≤ ``direct_max``: the direct O(T·C) loop, slot by slot over the row's negatives (the
  positives and NaN-free masking go into one float64 copy of the row, with positives at −inf so
  that no branch is needed: z = (margin − x_k) + x_j is −inf there). LLVM vectorises the class
  loop (``fastmath`` reassociation only: NaN and inf keep their IEEE meaning).
* T = 1 (one positive: multi-class-like rows) with C > 1: the same direct loop fused with the
  row's copy and the gradient write, one pass over the scores and no scratch.
  Both loops come in two copies, with and without ω, so that the unweighted one is unchanged.
* larger T: the sorted search of DESIGN.md §5 in O(T log T + C log T). Thresholds
  τ_0 ≤ … ≤ τ_{T−1} (τ = x[t_k] − margin) with weights, A0[v] = Σ_{k<v} W_k and gaps
  δ_u = τ_u − τ_{u−1}. Every class j is placed by binary search, v_j = #{τ < x_j}, and its sums
  are taken from its largest violated threshold, d_j = x_j − τ_{v_j−1} > 0, so that nothing
  cancels at large scores:

      Σ_{k<v} W_k (x_j − τ_k)   = A0[v]·d_j + S1[v],         S1[v] = Σ_{u<v} δ_u·A0[u]
      Σ_{k<v} W_k (x_j − τ_k)²  = A0[v]·d_j² + 2·d_j·S1[v] + S2[v],
                                  S2[v] = Σ_{u<v} (2·δ_u·S1[u] + δ_u²·A0[u])

  Class j's loss term and gradient are multiplied by ω_j: the gradient of negative j is
  ω_j·A0[v] (p = 1) or 2·ω_j·(A0[v]·d_j + S1[v]) (p = 2). A histogram of v (Σ ω_j and
  Σ ω_j·d_j per bin: counts and sums of d without neg weights) gives the positives': with
  above_u = Σ_{j : v_j > u} ω_j,

      d loss / d x[t_u] = −W_u·above_u                                                   (p = 1)
      d loss / d x[t_u] = −2·W_u·(Σ_{v>u} Σ_{j: v_j=v} ω_j·d_j + Σ_{m>u} δ_m·above_m)   (p = 2)

Rules (DESIGN.md §3, §5): a zero hinge (x_j = τ_k) counts nowhere and has zero gradient; a row
holding any target outside [-1, C) (also after its first negative value) gets NaN loss and an
all-NaN gradient row; a row with a NaN score, a positive and a negative gets NaN loss and
gradient, one with a NaN but no positive or no negative 0 (a negative of weight 0 is still a
negative there); infinite scores give the definition's values (0·inf from a count or gap of 0
is taken as 0: no pair). Duplicate target slots add up in their class. Memory: O(C + K)
scratch per call, nothing of size T·C.
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
def _direct(xr, vr, mk, wk, n_slots, p, want_grad, g, gp):
    """O(T·C): every negative class (xr, −inf at positives and at negatives of weight 0)
    against every slot's margin − x_k (mk) and weight (wk), each pair times the negative's
    weight vr[j] (the row's neg weights; none if vr is empty). Adds into the float64 row
    gradient g and slot gradients gp; returns the loss."""
    c = xr.shape[0]
    has_neg = vr.shape[0] > 0
    loss = 0.0
    for k in range(n_slots):
        m = mk[k]
        w = wk[k]
        part = 0.0
        cnt = 0.0
        if has_neg:
            # the same loop with ω_j (an own copy: the unweighted one keeps its speed)
            for j in range(c):
                z = m + xr[j]
                h = z if z > 0.0 else 0.0
                vj = vr[j]
                if p == 1:
                    part += vj * h
                    if want_grad:
                        on = vj if z > 0.0 else 0.0
                        g[j] += w * on
                        cnt += on
                else:
                    # the gradient also when not asked for (into scratch): with a second use
                    # of vh, fastmath cannot reassociate vh·h into vj·(h·h), so the loss has
                    # the same bits with and without want_grad
                    vh = vj * h
                    part += vh * h
                    g[j] += 2.0 * w * vh
                    cnt += vh
        else:
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


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def _single(x, r, c0, m, w, vr, p, want_grad, grad, f):
    """The direct loop for a row with one positive slot (class c0, m = margin − x[c0]), fused
    with the float64 copy of the row and the gradient write: one pass over the scores, the
    gradient written straight in x's dtype (f: the row's factor). The arithmetic is the direct
    loop's (z = m + x_j, a pair counts iff z > 0), each pair times vr[j] (none if vr is
    empty). Returns (loss without w, the (weighted) count or Σh behind the positive's
    gradient, whether the row holds a NaN)."""
    c = x.shape[1]
    has_neg = vr.shape[0] > 0
    part = 0.0
    cnt = 0.0
    has_nan = False
    if has_neg:
        for j in range(c):
            xj = np.float64(x[r, j])
            has_nan |= xj != xj
            vj = vr[j]
            # neither the positive nor a negative of weight 0 forms a pair
            z = m + xj if j != c0 and vj != 0.0 else -math.inf
            h = z if z > 0.0 else 0.0
            if p == 1:
                part += vj * h
                on = vj if z > 0.0 else 0.0
                cnt += on
                if want_grad:
                    grad[r, j] = (w * on) * f
            else:
                vh = vj * h
                part += vh * h
                cnt += vh
                if want_grad:
                    grad[r, j] = (2.0 * w * vh) * f
        return part, cnt, has_nan
    for j in range(c):
        xj = np.float64(x[r, j])
        has_nan |= xj != xj
        z = m + xj if j != c0 else -math.inf  # the positive is no negative of itself
        h = z if z > 0.0 else 0.0
        if p == 1:
            part += h
            on = 1.0 if z > 0.0 else 0.0
            cnt += on
            if want_grad:
                grad[r, j] = (w * on) * f
        else:
            part += h * h
            cnt += h
            if want_grad:
                grad[r, j] = (2.0 * w * h) * f
    return part, cnt, has_nan


@njit(cache=True, nogil=True)
def _sorted(xr, vr, thr, wk, n_slots, p, want_grad, g, gp, ts, ws, tab, gap, bins, dist, hist):
    """O(T log T + C log T): the sorted search of the module docstring, in three passes over
    the classes so that each is free of loop-carried dependencies: (1) every class's bin by
    a branch-free binary search (independent searches overlap in the CPU), (2) the sums from
    one packed table row per bin, (3) the histogram of bins (gradient only), spread over four
    copies so that neighbouring classes in one bin do not wait on each other's stores. With
    neg weights (vr not empty), class j's sums and histogram entries are weighted by vr[j]
    (a negative of weight 0 sits at −inf in xr: bin 0, which adds nothing and is never read)."""
    c = xr.shape[0]
    has_neg = vr.shape[0] > 0
    order = np.argsort(thr[:n_slots], kind="mergesort")
    for u in range(n_slots):
        ts[u] = thr[order[u]]
        ws[u] = wk[order[u]]
    # tab[v] = (largest threshold below bin v, A0[v], S1[v], S2[v]); bin 0 has none
    for q in range(4):
        tab[0, q] = 0.0
    for u in range(n_slots):
        gap[u] = ts[u] - ts[u - 1] if u > 0 and ts[u] != ts[u - 1] else 0.0
        tab[u + 1, 0] = ts[u]
        tab[u + 1, 1] = tab[u, 1] + ws[u]
        tab[u + 1, 2] = tab[u, 2] + _times(gap[u], tab[u, 1])
        tab[u + 1, 3] = (
            tab[u, 3] + 2.0 * _times(gap[u], tab[u, 2]) + _times(gap[u] * gap[u], tab[u, 1])
        )
    # pad the thresholds with +inf to a power of two minus one: every probe of the search
    # is in bounds
    top = 1
    while top <= n_slots:
        top <<= 1
    for u in range(n_slots, top - 1):
        ts[u] = math.inf
    # (1) bins: v_j = #{τ < x_j} (positives sit at −inf: 0), by a binary search run level by
    # level over all classes: each level is one branch-free pass (a search per class takes
    # data-dependent branches that mispredict half the time on fresh rows: 5x slower)
    for j in range(c):
        bins[j] = 0
    step = top >> 1
    while step > 0:
        for j in range(c):
            v = bins[j]
            bins[j] = v + step * (ts[v + step - 1] < xr[j])
        step >>= 1
    # (2) sums from the largest violated threshold (bin 0: nothing, and no 0·inf)
    loss = 0.0
    for j in range(c):
        v = bins[j]
        d = xr[j] - tab[v, 0] if v > 0 else 0.0
        a0 = tab[v, 1]
        s1 = tab[v, 2]
        lin = a0 * d + s1
        term = lin if p == 1 else a0 * d * d + 2.0 * _times(d, s1) + tab[v, 3]
        dg = a0 if p == 1 else 2.0 * lin
        if has_neg:  # bin 0 (also ω_j = 0) has term = dg = 0: no 0·inf
            vj = vr[j]
            term *= vj
            dg *= vj
        loss += term
        if want_grad:
            g[j] += dg
            dist[j] = d
    if not want_grad:
        return loss
    # (3) the histogram of bins (counts and distances), then the positives' gradients
    for q in range(4):
        for v in range(n_slots + 1):
            hist[q, v, 0] = 0.0
            hist[q, v, 1] = 0.0
    if has_neg:  # Σ ω_j and Σ ω_j·d_j per bin (ω_j > 0 above bin 0, where d_j = 0)
        for j in range(c):
            v = bins[j]
            q = j & 3
            vj = vr[j]
            hist[q, v, 0] += vj
            hist[q, v, 1] += vj * dist[j]
    else:
        for j in range(c):
            v = bins[j]
            q = j & 3
            hist[q, v, 0] += 1.0
            hist[q, v, 1] += dist[j]
    above = 0.0  # Σ_{v > u} hist[v]
    spread_d = 0.0  # Σ_{v > u} hist_d[v]
    far = 0.0  # Σ_{m > u} δ_m · above_m
    for u in range(n_slots - 1, -1, -1):
        for q in range(4):
            above += hist[q, u + 1, 0]
            spread_d += hist[q, u + 1, 1]
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
    weight,  # flat float64 weights of positives, (C,) or (N·C,), or (0,) for none
    w_stride,  # weight's row stride: 0 for (C,), C for (N, C)
    neg,  # flat float64 weights of negatives, (C,) or (N·C,), or (0,) for none
    v_stride,  # neg's row stride: 0 for (C,), C for (N, C)
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
    has_neg = neg.shape[0] > 0
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
    ts = np.empty(2 * kcols + 1, np.float64)  # sorted thresholds, +inf padded (search)
    ws = np.empty(kcols, np.float64)
    tab = np.empty((kcols + 1, 4), np.float64)
    gap = np.empty(kcols, np.float64)
    bins = np.empty(c, np.int64)
    dist = np.empty(c, np.float64)
    hist = np.empty((4, kcols + 1, 2), np.float64)
    for r in range(r0, r1):
        w_off = r * w_stride
        # the row's neg weights as a view (a C-contiguous slice: the loops over it vectorise,
        # an index neg[v_off + j] of unknown sign would not); empty without
        v_off = r * v_stride
        vr = neg[v_off : v_off + c]
        # -- the targets: any value outside [-1, C) anywhere in the row (a min/max reduction
        # that vectorises: PyTorch's (N, C) layout makes this the longest read of a small-T
        # row), then T, the index of the first negative value -----------------------------
        lo = 0
        hi = -1
        for k in range(kcols):
            v = t[r, k]
            lo = min(lo, v)
            hi = max(hi, v)
        bad = lo < -1 or hi >= c
        n_slots = kcols
        if not bad:
            for k in range(kcols):
                if t[r, k] < 0:
                    n_slots = k
                    break
        if bad:
            loss[r] = nan
            if want_grad:
                for j in range(c):
                    grad[r, j] = nan
            continue
        if n_slots == 1 and c > 1:
            # one positive (multi-class-like rows, PyTorch's (N, C) layout with one label):
            # a single fused pass, no scratch
            c0 = t[r, 0]
            w0 = weight[w_off + c0] if has_weight else 1.0
            f = scale[r] * factor if has_scale else factor
            m0 = margin - np.float64(x[r, c0])
            part, cnt, has_nan = _single(x, r, c0, m0, w0, vr, p, want_grad, grad, f)
            if has_nan:  # the NaN rule: a positive and C − 1 > 0 negatives
                loss[r] = nan
                if want_grad:
                    for j in range(c):
                        grad[r, j] = nan
                continue
            loss[r] = w0 * part
            if want_grad:
                grad[r, c0] = (-w0 * cnt if p == 1 else -2.0 * w0 * cnt) * f
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
            has_nan |= xj != xj
            xr[j] = -inf if is_pos[j] else xj
            g[j] = 0.0
        if has_neg:
            for j in range(c):
                if vr[j] == 0.0:
                    xr[j] = -inf  # no pair: out of the sums and the histogram
        for k in range(n_slots):
            xk = np.float64(x[r, cls[k]])
            mk[k] = margin - xk  # z = (margin − x_k) + x_j: PyTorch's order
            thr[k] = -mk[k]  # exactly x_k − margin (negation is exact)
            wk[k] = weight[w_off + cls[k]] if has_weight else 1.0
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
        if n_slots <= direct_max:
            total = _direct(xr, vr, mk, wk, n_slots, p, want_grad, g, gp)
        else:
            total = _sorted(
                xr, vr, thr, wk, n_slots, p, want_grad, g, gp, ts, ws, tab, gap, bins,
                dist, hist,
            )  # fmt: skip
        loss[r] = total
        if want_grad:
            for k in range(n_slots):
                g[cls[k]] += gp[k]  # duplicates of a class add up
            f = scale[r] * factor if has_scale else factor
            for j in range(c):
                grad[r, j] = g[j] * f
