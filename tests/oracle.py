"""A literal-loop transcription of DESIGN.md §3 in Python floats: small and obviously right.

Every function takes nested Python lists (or NumPy arrays, read element by element) and returns
per-sample losses and gradients *after* the 1/C, as lists of floats.
"""

from __future__ import annotations

import math


def _rows(x):
    return [[float(v) for v in row] for row in x]


def multilabel_margin(x, t, *, margin=1.0, p=1, weight=None):
    """Per-sample losses and d loss_n / d x_n for the pairwise multilabel hinge."""
    losses, grads = [], []
    for xs, ts in zip(_rows(x), [[int(v) for v in row] for row in t], strict=True):
        c = len(xs)
        positives = []
        for v in ts:
            if v < 0:
                break
            positives.append(v)
        negatives = [j for j in range(c) if j not in positives]
        loss, grad = 0.0, [0.0] * c
        for k in positives:
            wk = 1.0 if weight is None else float(weight[k])
            for j in negatives:
                z = margin - xs[k] + xs[j]
                if z > 0:
                    loss += wk * z**p
                    d = wk * (1.0 if p == 1 else 2.0 * z)
                    grad[j] += d
                    grad[k] -= d
        if positives and negatives and any(math.isnan(v) for v in xs):
            loss, grad = math.nan, [math.nan] * c
        losses.append(loss / c)
        grads.append([g / c for g in grad])
    return losses, grads


def multi_margin(x, y, *, margin=1.0, p=1, weight=None):
    """Per-sample losses and gradients of the Weston–Watkins multi-class hinge."""
    losses, grads = [], []
    for xs, yi in zip(_rows(x), [int(v) for v in y], strict=True):
        c = len(xs)
        wy = 1.0 if weight is None else float(weight[yi])
        loss, grad = 0.0, [0.0] * c
        for j in range(c):
            if j == yi:
                continue
            z = margin - xs[yi] + xs[j]
            if z > 0:
                loss += wy * z**p
                d = wy * (1.0 if p == 1 else 2.0 * z)
                grad[j] += d
                grad[yi] -= d
        if c > 1 and any(math.isnan(v) for v in xs):
            loss, grad = math.nan, [math.nan] * c
        losses.append(loss / c)
        grads.append([g / c for g in grad])
    return losses, grads


def softplus(z: float) -> float:
    """log(1 + e^z) in Python floats without overflow."""
    if math.isnan(z):
        return math.nan
    return z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))


def sigmoid(z: float) -> float:
    return math.exp(-softplus(-z))


def soft_margin(x, y):
    """Element-wise losses and gradients of log(1 + exp(-y·x)) (flat lists)."""
    loss = [softplus(-yi * xi) for xi, yi in zip(x, y, strict=True)]
    grad = [-yi * sigmoid(-yi * xi) for xi, yi in zip(x, y, strict=True)]
    return loss, grad


def multilabel_soft_margin(x, y, weight=None):
    """Per-sample losses and gradients (rows of C)."""
    losses, grads = [], []
    for n, (xs, ys) in enumerate(zip(_rows(x), _rows(y), strict=True)):
        c = len(xs)
        ws = [1.0] * c if weight is None else [float(v) for v in weight[n]]
        # each term divided by C first (a sum of terms near the float maximum overflows where
        # the mean does not); the gradient as (1 − y)·σ(x) − y·σ(−x), exact for confident
        # positives (σ(x) − y cancels there)
        loss = sum(
            w * (yy * softplus(-xx) + (1 - yy) * softplus(xx)) / c
            for xx, yy, w in zip(xs, ys, ws, strict=True)
        )
        losses.append(loss)
        grads.append(
            [w * ((1 - yy) * sigmoid(xx) - yy * sigmoid(-xx)) / c
             for xx, yy, w in zip(xs, ys, ws, strict=True)]
        )  # fmt: skip
    return losses, grads


def multilabel_margin_dense(x, t, *, margin=1.0, p=1, weight=None):
    """The same sums as :func:`multilabel_margin`, vectorised per row in float64 NumPy
    (a (T, C) matrix per sample) for sizes the literal loops are too slow for. Raw sums
    (before the 1/C), NaN rows left to the caller."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t)
    n, c = x.shape
    loss, grad = np.zeros(n), np.zeros((n, c))
    for i in range(n):
        row = t[i]
        stop = np.flatnonzero(row < 0)
        pos = row[: stop[0]] if stop.size else row
        neg = np.ones(c, dtype=bool)
        neg[pos] = False
        w = np.ones(len(pos)) if weight is None else np.asarray(weight, float)[pos]
        z = margin - x[i, pos][:, None] + x[i][None, :]  # (T, C)
        z = np.where(neg[None, :] & (z > 0), z, 0.0)
        loss[i] = (w[:, None] * z**p).sum()
        d = w[:, None] * (np.ones_like(z) if p == 1 else 2.0 * z) * (z > 0)
        grad[i] += d.sum(axis=0)
        np.add.at(grad[i], pos, -d.sum(axis=1))
    return loss, grad
