"""xmargin: margin-based classification losses on any array-API framework.

PyTorch's margin losses (same names, arguments and results) written once against the Python
array API, so the same call works on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict
arrays; the pairwise multilabel hinge runs through a registry of fast backends.

>>> import numpy as np, xmargin
>>> x = np.array([[0.1, 0.2, 0.4, 0.8]]); y = np.array([[3, 0, -1, 1]])
>>> round(float(xmargin.multilabel_margin_loss(x, y)), 6)
0.85

Importing xmargin imports NumPy and array-api-compat only; torch, CuPy, Triton, JAX and Dask
are imported when you pass their arrays or pick their backend.
"""

from __future__ import annotations

from . import backends, targets
from ._config import options, set_options
from ._errors import XMarginTypeError, XMarginValueError
from ._grad import value_and_grad
from .backends import use_backend
from .fused import fused_linear_multilabel_margin_loss
from .losses import (
    hinge_embedding_loss,
    margin_ranking_loss,
    multi_margin_loss,
    multilabel_margin_loss,
    multilabel_soft_margin_loss,
    soft_margin_loss,
)
from .modules import (
    HingeEmbeddingLoss,
    MarginRankingLoss,
    MultiLabelMarginLoss,
    MultiLabelSoftMarginLoss,
    MultiMarginLoss,
    SoftMarginLoss,
)
from .negatives import mine_negatives

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # the framework adapters, imported on first use (xmargin.nn imports torch, xmargin.keras
    # imports keras): ``import xmargin`` stays framework-free
    if name in ("nn", "keras", "metrics"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HingeEmbeddingLoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "SoftMarginLoss",
    "XMarginTypeError",
    "XMarginValueError",
    "backends",
    "fused_linear_multilabel_margin_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
    "mine_negatives",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "options",
    "set_options",
    "soft_margin_loss",
    "targets",
    "use_backend",
    "value_and_grad",
]
