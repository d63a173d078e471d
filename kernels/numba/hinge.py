"""Numba CPU kernels of hinge_embedding_loss and margin_ranking_loss (device code only; the
launch, threads and support rules live in ``xmargin/losses/hinge.py``).

Element-wise over flat, C-contiguous arrays of one dtype (float32 or float64), elements
[i0, i1) only (the caller may split the work across threads). The arithmetic is done in that
dtype, step by step as PyTorch does it (``margin``, ``zero`` and the gradient ``scale`` are
passed as scalars of the dtype), so that values and ties at the margin are PyTorch's:

* :func:`hinge_embedding`: ``loss = where(y != 1, max(0, margin − x), 0) + where(y != −1, x,
  0)``; ``grad = ((y != −1) − ((y != 1) & (margin − x ≥ 0)))·scale`` (a tie passes the
  gradient, as PyTorch's ``clamp_min``; a NaN gap passes none);
* :func:`margin_ranking`: ``z = −y·(x1 − x2) + margin``, ``loss = max(0, z)``,
  ``grad1 = where(z ≥ 0, −y, 0)·scale1`` (and ``grad2`` with ``scale2 = −scale1``).

``max(0, ·)`` keeps NaN. Both also count the labels in {0, 1} and the zero labels (the
{0, 1}-label convention check) in the same pass.
"""

from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def hinge_embedding(x, y, margin, zero, scale, loss, grad, want_grad, i0, i1):
    """Elements [i0, i1); returns (#labels in {0, 1}, #zero labels)."""
    # views from 0: indices LLVM knows to be non-negative (no wraparound branch: vectorised)
    xs, ys, ls = x[i0:i1], y[i0:i1], loss[i0:i1]
    n01 = 0
    n0 = 0
    if want_grad:
        gs = grad[i0:i1]
        for i in range(xs.shape[0]):
            xi = xs[i]
            yi = ys[i]
            gap = margin - xi
            h = zero if gap < zero else gap  # max(0, gap), NaN kept
            ls[i] = (h if yi != 1.0 else zero) + (xi if yi != -1.0 else zero)
            up = scale if yi != -1.0 else zero
            down = scale if (yi != 1.0) & (gap >= zero) else zero
            gs[i] = up - down
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    else:
        for i in range(xs.shape[0]):
            xi = xs[i]
            yi = ys[i]
            gap = margin - xi
            h = zero if gap < zero else gap
            ls[i] = (h if yi != 1.0 else zero) + (xi if yi != -1.0 else zero)
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    return n01, n0


@njit(cache=True, nogil=True, error_model="numpy")
def margin_ranking(x1, x2, y, margin, zero, loss, g1, scale1, g2, scale2, n_grads, i0, i1):
    """Elements [i0, i1); ``n_grads``: 0 (loss only), 1 (and g1) or 2 (and g1, g2). Returns
    (#labels in {0, 1}, #zero labels)."""
    as_, bs, ys, ls = x1[i0:i1], x2[i0:i1], y[i0:i1], loss[i0:i1]
    n01 = 0
    n0 = 0
    if n_grads == 2:
        gas, gbs = g1[i0:i1], g2[i0:i1]
        for i in range(as_.shape[0]):
            yi = ys[i]
            z = -yi * (as_[i] - bs[i]) + margin
            ls[i] = zero if z < zero else z  # max(0, z), NaN kept
            on = z >= zero
            gas[i] = -yi * scale1 if on else zero
            gbs[i] = -yi * scale2 if on else zero
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    elif n_grads == 1:
        gas = g1[i0:i1]
        for i in range(as_.shape[0]):
            yi = ys[i]
            z = -yi * (as_[i] - bs[i]) + margin
            ls[i] = zero if z < zero else z
            gas[i] = -yi * scale1 if z >= zero else zero
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    else:
        for i in range(as_.shape[0]):
            yi = ys[i]
            z = -yi * (as_[i] - bs[i]) + margin
            ls[i] = zero if z < zero else z
            n0 += 1 if yi == 0.0 else 0
            n01 += 1 if (yi == 0.0) | (yi == 1.0) else 0
    return n01, n0
