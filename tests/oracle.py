"""A literal-loop transcription of DESIGN.md §3 in Python floats: small and obviously right.

Every function takes nested Python lists (or NumPy arrays, read element by element) and returns
per-sample losses and gradients *after* the 1/C, as lists of floats.
"""

from __future__ import annotations

import math


def _rows(x):
    return [[float(v) for v in row] for row in x]


def _row_weight(weight, n, c):
    """Row n's weights (a (C,) weight broadcast over rows, or row n of an (N, C) one)."""
    if weight is None:
        return [1.0] * c
    first = weight[0]
    rows = hasattr(first, "__len__")
    return [float(v) for v in (weight[n] if rows else weight)]


def mined(xs, positives, k):
    """Row ``xs``'s k highest-scoring negatives by a plain Python sort (ties: lower class index
    first; NaN ranks as +inf), as the list of classes."""

    def key(j):
        v = xs[j]
        return (-math.inf if math.isnan(v) else -v, j)

    order = sorted((j for j in range(len(xs)) if j not in positives), key=key)
    return order[:k]


def multilabel_margin(x, t, *, margin=1.0, p=1, weight=None, neg_weight=None, negatives=None):
    """Per-sample losses and d loss_n / d x_n for the pairwise multilabel hinge.

    ``weight`` and ``neg_weight`` are (C,) or (N, C) (row n's own weights); ``negatives`` is
    None (every non-positive class), an int k (the row's k hardest negatives, :func:`mined`) or
    one list of candidate classes per row (-1 anywhere is padding; positives of the row and
    repeats are ignored). A negative of weight 0 is not paired at all. The NaN rule looks at
    the positives and the chosen negatives only; a target outside [-1, C) makes the row NaN."""
    losses, grads = [], []
    for n, (xs, ts) in enumerate(zip(_rows(x), [[int(v) for v in row] for row in t], strict=True)):
        c = len(xs)
        w, v = _row_weight(weight, n, c), _row_weight(neg_weight, n, c)
        positives = []
        for tv in ts:
            if tv < 0:
                break
            positives.append(tv)
        if any(tv < -1 or tv >= c for tv in ts):
            losses.append(math.nan)
            grads.append([math.nan] * c)
            continue
        if negatives is None:
            chosen = [j for j in range(c) if j not in positives]
        elif isinstance(negatives, int):
            chosen = mined(xs, positives, negatives)
        else:
            row = [int(j) for j in negatives[n]]
            chosen = sorted({j for j in row if j >= 0 and j not in positives})
        loss, grad = 0.0, [0.0] * c
        for k in positives:
            for j in chosen:
                if v[j] == 0.0:
                    continue
                z = margin - xs[k] + xs[j]
                if z > 0:
                    loss += w[k] * v[j] * z**p
                    d = w[k] * v[j] * (1.0 if p == 1 else 2.0 * z)
                    grad[j] += d
                    grad[k] -= d
        involved = set(positives) | set(chosen)
        if positives and chosen and any(math.isnan(xs[j]) for j in involved):
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


def multilabel_margin_dense(x, t, *, margin=1.0, p=1, weight=None, neg_weight=None):
    """The same sums as :func:`multilabel_margin`, vectorised per row in float64 NumPy
    (a (T, C) matrix per sample) for sizes the literal loops are too slow for. Raw sums
    (before the 1/C), NaN rows left to the caller; ``weight`` and ``neg_weight`` (C,) or
    (N, C), finite scores (a pair of neg_weight 0 is dropped, as in the literal loop)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t)
    n, c = x.shape
    loss, grad = np.zeros(n), np.zeros((n, c))
    weights = [None if a is None else np.broadcast_to(np.asarray(a, float), (n, c))
               for a in (weight, neg_weight)]  # fmt: skip
    for i in range(n):
        row = t[i]
        stop = np.flatnonzero(row < 0)
        pos = row[: stop[0]] if stop.size else row
        neg = np.ones(c, dtype=bool)
        neg[pos] = False
        w = np.ones(len(pos)) if weights[0] is None else weights[0][i][pos]
        v = np.ones(c) if weights[1] is None else weights[1][i]
        neg &= v != 0
        z = margin - x[i, pos][:, None] + x[i][None, :]  # (T, C)
        z = np.where(neg[None, :] & (z > 0), z, 0.0)
        wv = w[:, None] * v[None, :]
        loss[i] = (wv * z**p).sum()
        d = wv * (np.ones_like(z) if p == 1 else 2.0 * z) * (z > 0)
        grad[i] += d.sum(axis=0)
        np.add.at(grad[i], pos, -d.sum(axis=1))
    return loss, grad
