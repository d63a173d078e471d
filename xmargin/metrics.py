"""Ranking metrics that scikit-learn lacks, on any array-API namespace.

For the ranking loss, coverage error, label ranking average precision, nDCG@k and Hamming loss
use scikit-learn (``sklearn.metrics.label_ranking_loss`` and friends, on NumPy arrays);
xmargin offers only what it has no equivalent of: precision@k, the usual metric of extreme
multi-label classification, computed where the scores live (CPU or GPU, eager or traced).
"""

from __future__ import annotations

import operator
from typing import Any

from ._errors import XMarginTypeError, XMarginValueError
from ._interop import namespace
from ._xp import device, shape_str

__all__ = ["precision_at_k"]

Array = Any


def precision_at_k(scores: Array, labels: Array, k: int) -> Array:
    """Mean over samples of the fraction of the ``k`` highest-scoring classes that are true
    labels: ``P@k = (1/N) Σ_n (1/k) · #{true labels of n among its top k}``.

    ``scores`` (N, C) real, ``labels`` (N, C) indicator matrix (0/1, bool or any real dtype: a
    label is true where it is nonzero), as scikit-learn's ``y_true`` (from index lists:
    :func:`xmargin.targets.to_multihot`). Ties are broken by the lower class index. The
    denominator is ``k`` whatever the number of true labels (the extreme-classification
    convention; ``k`` > C counts every class in the top). A sample with a NaN score gets NaN,
    so does the mean; N = 0 gives NaN. Returns a 0-d array in the scores' namespace, device
    and floating dtype.

    >>> import numpy as np
    >>> from xmargin.metrics import precision_at_k
    >>> s = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.8, 0.1]])
    >>> y = np.array([[1, 0, 0, 1], [0, 0, 1, 0]])
    >>> float(precision_at_k(s, y, 1)), float(precision_at_k(s, y, 2))
    (0.5, 0.5)
    """
    fn = "precision_at_k"
    try:
        k = operator.index(k)
    except TypeError:
        raise XMarginTypeError(
            f"{fn}: argument 'k' must be an int, got {type(k).__name__} {k!r}"
        ) from None
    if k < 1:
        raise XMarginValueError(f"{fn}: argument 'k' must be >= 1, got {k}")
    xp = namespace(scores)
    if len(scores.shape) != 2 or tuple(labels.shape) != tuple(scores.shape):
        raise XMarginValueError(
            f"{fn}: arguments 'scores' and 'labels' must both have shape (N, C), got "
            f"{shape_str(tuple(scores.shape))} and {shape_str(tuple(labels.shape))}"
        )
    if not xp.isdtype(scores.dtype, "real floating"):
        raise XMarginTypeError(
            f"{fn}: argument 'scores' must have a real floating dtype, got {scores.dtype}"
        )
    if namespace(labels) is not xp:
        raise XMarginTypeError(
            f"{fn}: argument 'labels' must be an array of the scores' namespace "
            f"({xp.__name__}), got {type(labels).__name__}"
        )
    n, c = scores.shape
    top = min(k, c)
    # descending and stable: among equal scores the lower class index comes first
    order = xp.argsort(scores, axis=1, descending=True, stable=True)[:, :top]
    hits = xp.take_along_axis(labels != 0, order, axis=1)
    per_row = xp.sum(xp.astype(hits, scores.dtype), axis=1) / k
    nan_row = xp.any(xp.isnan(scores), axis=1)
    nan = xp.asarray(xp.nan, dtype=scores.dtype, device=device(scores))
    per_row = xp.where(nan_row, nan, per_row)
    if n == 0:
        return nan
    return xp.mean(per_row)
