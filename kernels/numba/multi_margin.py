"""Numba CPU kernel of multi_margin_loss (device code only; the launch, threads and support
rules live in ``xmargin/losses/multi_margin.py``).

For each row r in [r0, r1) with scores x (C,) in float32 or float64 and its class y = t[r]:

    loss[r] = w_y · Σ_{j ≠ y} h_j^p,   h_j = max(0, margin − x_y + x_j)   (strictly positive)

(the raw loss, before the 1/C) and, when asked, the gradient row times ``factor`` (the
reduction's 1/C or 1/(N·C)): ``w_y·[h_j > 0]`` (p = 1) or ``2·w_y·h_j`` (p = 2) for j ≠ y, and
minus their sum at y, written once. ``margin − x_y + x_j`` is formed in the scores' dtype, as
PyTorch does (so ties at the margin are its ties: a zero hinge has zero gradient); the sums
accumulate in float64. Rules (DESIGN.md §3): a row with a NaN score and C ≥ 2 classes gets NaN
loss and an all-NaN gradient row, as does a row flagged in ``bad`` (a target the caller found
outside [0, C); its index has been replaced by a valid one).
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sums(buf):
    """(Σ buf, Σ buf²), reassociated into vector lanes (NaN and inf keep their meaning)."""
    s1 = 0.0
    s2 = 0.0
    for j in range(buf.shape[0]):
        v = buf[j]
        s1 += v
        s2 += v * v
    return s1, s2


@njit(cache=True, nogil=True, error_model="numpy")
def _hinges(xr, y, m, zero, buf):
    """buf[j] = max(0, m + x_j) for j ≠ y (strict: 0 at a tie and for NaN), 0 at y; returns
    the number of positive hinges and whether the row holds a NaN."""
    count = 0
    nan = False
    for j in range(xr.shape[0]):
        xj = xr[j]
        z = m + xj
        on = (z > zero) & (j != y)
        buf[j] = float(z) if on else 0.0
        count += 1 if on else 0
        nan |= xj != xj
    return count, nan


@njit(cache=True, nogil=True, error_model="numpy")
def _grad_row(buf, y, p, coef, gr):
    """gr[j] = coef·(p = 1: [h_j > 0], p = 2: 2·h_j) for every j (0 at y: h_y = 0)."""
    if p == 1:
        for j in range(buf.shape[0]):
            gr[j] = coef if buf[j] > 0.0 else 0.0
    else:
        for j in range(buf.shape[0]):
            gr[j] = 2.0 * coef * buf[j]


@njit(cache=True, nogil=True, error_model="numpy")
def multi_margin(x, t, bad, w, margin, zero, p, factor, loss, grad, want_grad, r0, r1):
    """Rows [r0, r1) of x (N, C); t (N,) int64 classes in [0, C); bad (N,) bool or (0,) for
    none; w (C,) float64 class weights or (0,) for none; margin and zero as scalars of x's
    dtype; loss (N,) float64 out; grad (N, C) out in x's dtype (written when want_grad)."""
    c = x.shape[1]
    has_bad = bad.shape[0] > 0
    has_w = w.shape[0] > 0
    buf = np.empty(c, np.float64)
    nan = math.nan
    for r in range(r0, r1):
        xr = x[r]
        y = t[r]
        count, has_nan = _hinges(xr, y, margin - xr[y], zero, buf)
        if (has_bad and bad[r]) or (has_nan and c > 1):
            loss[r] = nan
            if want_grad:
                grad[r, :] = nan
            continue
        s1, s2 = _sums(buf)
        wy = float(w[y]) if has_w else 1.0
        loss[r] = (s1 if p == 1 else s2) * wy
        if want_grad:
            coef = wy * factor
            gr = grad[r]
            _grad_row(buf, y, p, coef, gr)
            # the true class: minus the sum of the others (in float64)
            gr[y] = -(count * coef if p == 1 else 2.0 * coef * s1)
    return 0
