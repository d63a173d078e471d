"""Numba CPU kernels of soft_margin_loss and multilabel_soft_margin_loss (device code only; the
launch, threads and support rules live in ``xmargin/losses/soft_margin.py``).

Both losses are built from ``softplus(z) = log(1 + e^z)`` and ``σ(z)``, which share one
exponential and one ``log1p`` per element:

    e = exp(−|z|) ∈ [0, 1],   softplus(z) = max(z, 0) + log1p(e),
    σ(z) = 1/(1 + e) for z ≥ 0, e/(1 + e) for z < 0,

exact and finite for every finite z (no exp of a positive number is ever taken). ``exp`` and
``log1p`` are written out here (Cody–Waite reduction and a degree-13 Taylor polynomial for exp,
fdlibm's log1p for the log), branch-free, so that LLVM vectorises the element loop: Numba
without Intel's SVML calls the scalar libm per element, ~10x slower. Both are accurate to
about one ulp of float64, are computed in float64 whatever the scores' dtype (float32 results
are rounded once) and propagate NaN; exp(−a) is 0 for a ≥ 746 and a correctly scaled subnormal
above 708.

Kernels (``x``, ``y``, outputs: C-contiguous arrays of one dtype, float32 or float64; rows or
elements [i0, i1) only, so that the caller may split the work across threads):

* :func:`soft_margin` (flat): ``loss = softplus(−y·x)``, ``grad = −y·σ(−y·x)·scale``;
* :func:`multilabel_soft_margin` (rows of C): ``loss[r] = mean_c w_c·(y·softplus(−x) +
  (1 − y)·softplus(x))`` accumulated in float64 (a row whose float64 sum overflows is summed
  again divided by C first), ``grad = w·((1 − y)·σ(x) − y·σ(−x))·scale`` (= w·(σ(x) − y)·scale
  without its cancellation at confident positives, as PyTorch's logsigmoid gradient).

Both also count the label values the convention checks need (soft_margin: labels in {0, 1} and
zeros; multilabel: −1 labels), in the same pass.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # 32 significant bits: k·_LN2_HI is exact for |k| < 2**21
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951
_TWO_M54 = 5.551115123125783e-17  # 2**-54
# fdlibm's log1p/log minimax coefficients (|error| < 2**-58.45 on its reduced range)
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
# 1/k! for the Taylor polynomial of exp on |r| <= ln2/2 (truncation error < 2**-57)
_E2 = 1.0 / 2.0
_E3 = 1.0 / 6.0
_E4 = 1.0 / 24.0
_E5 = 1.0 / 120.0
_E6 = 1.0 / 720.0
_E7 = 1.0 / 5040.0
_E8 = 1.0 / 40320.0
_E9 = 1.0 / 362880.0
_E10 = 1.0 / 3628800.0
_E11 = 1.0 / 39916800.0
_E12 = 1.0 / 479001600.0
_E13 = 1.0 / 6227020800.0

_MATH = {"contract"}  # FMA contraction only: NaN, inf and signed zeros keep their meaning


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 ``bits`` (a register move, vectorisable)."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(bits), codegen


@njit(cache=True, nogil=True, fastmath=_MATH, error_model="numpy")
def exp_neg(a):
    """exp(−a) for a ≥ 0 (float64): 0 for a ≥ 746 or inf, NaN for NaN."""
    ac = a if a < 746.0 else 746.0  # NaN goes to 746 here and is restored at the end
    k = math.floor(ac * _INV_LN2 + 0.5)  # exp(−ac) = 2**−k · exp(r)
    kf = float(k)
    r = (kf * _LN2_HI - ac) + kf * _LN2_LO  # |r| <= ln2/2
    p = _E13
    p = p * r + _E12
    p = p * r + _E11
    p = p * r + _E10
    p = p * r + _E9
    p = p * r + _E8
    p = p * r + _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + 1.0
    p = p * r + 1.0
    # 2**−k with k in [0, 1077]: below 2**−1022 in two steps, the last rounding once
    sub = k > 1022
    bits = ((1077 if sub else 1023) - k) << 52
    out = p * _f64_from_bits(bits) * (_TWO_M54 if sub else 1.0)
    return out if a == a else a


@njit(cache=True, nogil=True, fastmath=_MATH, error_model="numpy")
def log1p_unit(e, u, inv_u):
    """log1p(e) for e in [0, 1], given u = 1 + e and inv_u = 1/u (fdlibm's log1p)."""
    big = u > _SQRT2  # reduce u to [sqrt(2)/2, sqrt(2)]: u = 2**k·(1 + f), both steps exact
    f = u * 0.5 - 1.0 if big else u - 1.0
    kf = 1.0 if big else 0.0
    c = (e - (u - 1.0)) * inv_u  # the rounding error of u = 1 + e, relative to u
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    return kf * _LN2_HI - ((hfsq - (s * (hfsq + t2 + t1) + (kf * _LN2_LO + c))) - f)


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the low 32 bits of the int64 ``bits``."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return types.float32(bits), codegen


# float32 versions: the same algorithms in float32 arithmetic (16 lanes), with cephes' expf
# polynomial and fdlibm's logf/log1pf coefficients (about one float32 ulp each)
_F = np.float32
_F_INV_LN2 = _F(1.44269504088896341)
_F_LN2_HI = _F(0.693359375)  # 9 significant bits: k·_F_LN2_HI is exact
_F_LN2_LO = _F(-2.12194440e-4)
_F_P0 = _F(1.9875691500e-4)
_F_P1 = _F(1.3981999507e-3)
_F_P2 = _F(8.3334519073e-3)
_F_P3 = _F(4.1665795894e-2)
_F_P4 = _F(1.6666665459e-1)
_F_P5 = _F(5.0000001201e-1)
_F_LOG_HI = _F(6.9313812256e-01)
_F_LOG_LO = _F(9.0580006145e-06)
_F_LG1 = _F(0.66666662693)
_F_LG2 = _F(0.40000972152)
_F_LG3 = _F(0.28498786688)
_F_LG4 = _F(0.24279078841)
_F_SQRT2 = _F(1.41421356)
_F_TWO_M24 = _F(2.0**-24)
_F_ZERO = _F(0.0)
_F_HALF = _F(0.5)
_F_ONE = _F(1.0)
_F_TWO = _F(2.0)
_F_CLAMP = _F(105.0)


@njit(cache=True, nogil=True, fastmath=_MATH, error_model="numpy")
def exp_neg32(a):
    """exp(−a) for a float32 a ≥ 0: 0 for a ≥ 105 or inf, NaN for NaN."""
    ac = a if a < _F_CLAMP else _F_CLAMP
    k = math.floor(ac * _F_INV_LN2 + _F_HALF)
    kf = _F(k)
    r = (kf * _F_LN2_HI - ac) + kf * _F_LN2_LO  # _F_LN2_HI + _F_LN2_LO = ln2
    z = r * r
    p = _F_P0
    p = p * r + _F_P1
    p = p * r + _F_P2
    p = p * r + _F_P3
    p = p * r + _F_P4
    p = p * r + _F_P5
    p = p * z + r + _F_ONE
    sub = k > 126  # 2**−k below 2**−126 in two steps
    bits = ((151 if sub else 127) - k) << 23
    out = p * _f32_from_bits(bits) * (_F_TWO_M24 if sub else _F_ONE)
    return out if a == a else a


@njit(cache=True, nogil=True, fastmath=_MATH, error_model="numpy")
def log1p_unit32(e, u, inv_u):
    """log1p(e) for a float32 e in [0, 1], given u = 1 + e and inv_u = 1/u (fdlibm's
    log1pf)."""
    big = u > _F_SQRT2
    f = u * _F_HALF - _F_ONE if big else u - _F_ONE
    kf = _F_ONE if big else _F_ZERO
    c = (e - (u - _F_ONE)) * inv_u
    hfsq = _F_HALF * f * f
    s = f / (_F_TWO + f)
    z = s * s
    w = z * z
    t1 = w * (_F_LG2 + w * _F_LG4)
    t2 = z * (_F_LG1 + w * _F_LG3)
    return kf * _F_LOG_HI - ((hfsq - (s * (hfsq + t2 + t1) + (kf * _F_LOG_LO + c))) - f)


@njit(cache=True, nogil=True, fastmath=_MATH, error_model="numpy", inline="always")
def softplus_sigmoid32(z):
    """(softplus(z), σ(z)) in float32, NaN for NaN."""
    e = exp_neg32(abs(z))
    u = _F_ONE + e
    inv_u = _F_ONE / u
    sp = (z if z > _F_ZERO else _F_ZERO) + log1p_unit32(e, u, inv_u)
    sig = inv_u if z >= _F_ZERO else e * inv_u
    return (sp if z == z else z), sig


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _softplus_parts32(x):
    e = exp_neg32(abs(x))
    u = _F_ONE + e
    inv_u = _F_ONE / u
    return log1p_unit32(e, u, inv_u), e, inv_u


@njit(cache=True, nogil=True, fastmath=_MATH, error_model="numpy", inline="always")
def softplus_sigmoid(z):
    """(softplus(z), σ(z)) in float64, NaN for NaN."""
    e = exp_neg(abs(z))
    u = 1.0 + e
    inv_u = 1.0 / u
    sp = (z if z > 0.0 else 0.0) + log1p_unit(e, u, inv_u)
    sig = inv_u if z >= 0.0 else e * inv_u
    return (sp if z == z else z), sig


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _softplus_parts(x):
    """(log1p(exp(−|x|)), exp(−|x|), 1/(1 + exp(−|x|))): what softplus(±x) and σ(x) share."""
    e = exp_neg(abs(x))
    u = 1.0 + e
    inv_u = 1.0 / u
    return log1p_unit(e, u, inv_u), e, inv_u


@njit(cache=True, nogil=True, error_model="numpy")
def soft_margin(x, y, loss, grad, scale, want_grad, i0, i1):
    """Elements [i0, i1) of flat x, y: loss = softplus(−y·x) and, if want_grad,
    grad = −y·σ(−y·x)·scale (float64 scale). Returns (#labels in {0, 1}, #zero labels)."""
    # views from 0: indices LLVM knows to be non-negative (no wraparound branch: vectorised)
    xs, ys, ls = x[i0:i1], y[i0:i1], loss[i0:i1]
    n01 = 0
    n0 = 0
    if want_grad:
        gs = grad[i0:i1]
        for i in range(xs.shape[0]):
            yi = float(ys[i])
            sp, sig = softplus_sigmoid(-(yi * float(xs[i])))
            ls[i] = sp
            gs[i] = -yi * sig * scale
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    else:
        for i in range(xs.shape[0]):
            yi = float(ys[i])
            sp, _ = softplus_sigmoid(-(yi * float(xs[i])))
            ls[i] = sp
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    return n01, n0


@njit(cache=True, nogil=True, error_model="numpy")
def _msm_terms(xr, yr, buf):
    """buf = y·softplus(−x) + (1 − y)·softplus(x) of one row (the weights are applied in the
    float64 sum); returns the number of −1 labels."""
    neg1 = 0
    for j in range(xr.shape[0]):
        xi = float(xr[j])
        yi = float(yr[j])
        lg, _, _ = _softplus_parts(xi)
        sp_pos = (xi if xi > 0.0 else 0.0) + lg  # softplus(x)
        sp_neg = (-xi if xi < 0.0 else 0.0) + lg  # softplus(−x)
        buf[j] = yi * sp_neg + (1.0 - yi) * sp_pos
        neg1 += 1 if yi == -1.0 else 0
    return neg1


@njit(cache=True, nogil=True, error_model="numpy")
def _msm_terms_grad(xr, yr, w, buf, gr, scale):
    """:func:`_msm_terms` and gr = w·(σ(x) − y)·scale."""
    neg1 = 0
    for j in range(xr.shape[0]):
        xi = float(xr[j])
        yi = float(yr[j])
        lg, e, inv_u = _softplus_parts(xi)
        sp_pos = (xi if xi > 0.0 else 0.0) + lg
        sp_neg = (-xi if xi < 0.0 else 0.0) + lg
        buf[j] = yi * sp_neg + (1.0 - yi) * sp_pos
        # σ(x) − y as (1 − y)·σ(x) − y·σ(−x): no cancellation for confident positives
        s_pos = inv_u if xi >= 0.0 else e * inv_u
        s_neg = e * inv_u if xi >= 0.0 else inv_u
        g = (1.0 - yi) * s_pos - yi * s_neg
        gr[j] = g * w[j] * scale
        neg1 += 1 if yi == -1.0 else 0
    return neg1


@njit(cache=True, nogil=True, error_model="numpy")
def soft_margin32(x, y, loss, grad, scale, want_grad, i0, i1):
    """:func:`soft_margin` for float32 arrays, in float32 arithmetic (float32 ``scale``)."""
    xs, ys, ls = x[i0:i1], y[i0:i1], loss[i0:i1]
    n01 = 0
    n0 = 0
    if want_grad:
        gs = grad[i0:i1]
        for i in range(xs.shape[0]):
            yi = ys[i]
            sp, sig = softplus_sigmoid32(-(yi * xs[i]))
            ls[i] = sp
            gs[i] = -yi * sig * scale
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    else:
        for i in range(xs.shape[0]):
            yi = ys[i]
            sp, _ = softplus_sigmoid32(-(yi * xs[i]))
            ls[i] = sp
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    return n01, n0


@njit(cache=True, nogil=True, error_model="numpy")
def _msm_terms32(xr, yr, buf):
    """:func:`_msm_terms` in float32 arithmetic, terms stored in float64."""
    neg1 = 0
    for j in range(xr.shape[0]):
        xi = xr[j]
        yi = yr[j]
        lg, _, _ = _softplus_parts32(xi)
        sp_pos = (xi if xi > _F_ZERO else _F_ZERO) + lg
        sp_neg = (-xi if xi < _F_ZERO else _F_ZERO) + lg
        buf[j] = yi * sp_neg + (_F_ONE - yi) * sp_pos
        neg1 += 1 if yi == -1.0 else 0
    return neg1


@njit(cache=True, nogil=True, error_model="numpy")
def _msm_terms_grad32(xr, yr, w, buf, gr, scale):
    """:func:`_msm_terms_grad` in float32 arithmetic (float32 weights and ``scale``)."""
    neg1 = 0
    for j in range(xr.shape[0]):
        xi = xr[j]
        yi = yr[j]
        lg, e, inv_u = _softplus_parts32(xi)
        sp_pos = (xi if xi > _F_ZERO else _F_ZERO) + lg
        sp_neg = (-xi if xi < _F_ZERO else _F_ZERO) + lg
        buf[j] = yi * sp_neg + (_F_ONE - yi) * sp_pos
        s_pos = inv_u if xi >= _F_ZERO else e * inv_u
        s_neg = e * inv_u if xi >= _F_ZERO else inv_u
        g = (_F_ONE - yi) * s_pos - yi * s_neg
        gr[j] = g * w[j] * scale
        neg1 += 1 if yi == -1.0 else 0
    return neg1


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sum(buf, w, factor):
    """Σ (buf·factor)·w in float64 (reassociated into vector lanes; NaN and inf keep their
    meaning)."""
    total = 0.0
    for j in range(buf.shape[0]):
        total += buf[j] * factor * float(w[j])
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def _row_mean(buf, w, c):
    """The weighted mean of a row's terms, finite wherever the true mean is: a float64 sum
    that overflows is taken again with every term divided by C first."""
    total = _sum(buf, w, 1.0)
    return _sum(buf, w, 1.0 / c) if math.isinf(total) else total / c


@njit(cache=True, nogil=True, error_model="numpy")
def multilabel_soft_margin(x, y, w, loss, grad, scale, want_grad, r0, r1):
    """Rows [r0, r1) of (N, C) float64 x, y with (C,) float64 weights w (ones for none):
    loss[r] = the row's mean over classes, and, if want_grad, grad = w·(σ(x) − y)·scale (the
    reduction's factor times 1/C). Returns the number of −1 labels."""
    c = x.shape[1]
    buf = np.empty(c, np.float64)
    neg1 = 0
    for r in range(r0, r1):
        if want_grad:
            neg1 += _msm_terms_grad(x[r], y[r], w, buf, grad[r], scale)
        else:
            neg1 += _msm_terms(x[r], y[r], buf)
        loss[r] = _row_mean(buf, w, c)
    return neg1


@njit(cache=True, nogil=True, error_model="numpy")
def multilabel_soft_margin32(x, y, w, loss, grad, scale, want_grad, r0, r1):
    """:func:`multilabel_soft_margin` for float32 arrays (float32 ``w`` and ``scale``): the
    terms in float32 arithmetic, their sums in float64."""
    c = x.shape[1]
    buf = np.empty(c, np.float64)
    neg1 = 0
    for r in range(r0, r1):
        if want_grad:
            neg1 += _msm_terms_grad32(x[r], y[r], w, buf, grad[r], scale)
        else:
            neg1 += _msm_terms32(x[r], y[r], buf)
        loss[r] = _row_mean(buf, w, c)
    return neg1
