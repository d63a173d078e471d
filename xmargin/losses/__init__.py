"""The six losses: pure array-API code (validation, maths, reductions, analytic gradients)."""

from .hinge import hinge_embedding_loss, margin_ranking_loss
from .multi_margin import multi_margin_loss
from .multilabel_margin import multilabel_margin_loss
from .soft_margin import multilabel_soft_margin_loss, soft_margin_loss

__all__ = [
    "hinge_embedding_loss",
    "margin_ranking_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "soft_margin_loss",
]
