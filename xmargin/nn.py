"""``torch.nn.Module`` losses: drop-ins for ``torch.nn.<Loss>`` computed by xmargin.

The six classes take PyTorch's constructor arguments (and, for :class:`MultiLabelMarginLoss`,
xmargin's keyword-only extras) and call the functional form in ``forward``. Being modules,
they hold ``weight`` as a buffer (``state_dict()``, ``.to(device)``, ``.cuda()``,
``.double()`` move or cast it with the model; ``None`` when not given, as in PyTorch), print
their options (``extra_repr``), sit in ``nn.Sequential``/``nn.ModuleDict`` and compile with
``torch.compile``.

Which to use: these in torch training code (a loss that is part of a model, moved and saved
with it); the framework-free objects at the top level (``xmargin.MultiLabelMarginLoss``)
anywhere else, on NumPy, JAX, CuPy or Dask arrays. Importing this module imports torch.

Options are plain attributes, as in PyTorch (``loss.margin = 0.5`` takes effect at the next
call, where it is checked); they are validated when the module is built as well, so a bad
``reduction`` or ``p`` fails at once. A ``weight`` that is not a tensor (a list, a NumPy
array) is converted with ``torch.as_tensor`` to the default float dtype; PyTorch requires a
tensor.

>>> import torch, xmargin.nn
>>> crit = xmargin.nn.MultiLabelMarginLoss(margin=0.5, p=2)
>>> crit
MultiLabelMarginLoss(reduction='mean', margin=0.5, p=2)
>>> x = torch.tensor([[0.1, 0.2, 0.4, 0.8]], requires_grad=True)
>>> loss = crit(x, torch.tensor([[3, 0, -1, 1]]))
>>> round(loss.item(), 6)
0.2525
>>> loss.backward()
"""

from __future__ import annotations

from typing import Any

import torch

from . import losses as _f
from ._xp import check_p, check_real, resolve_reduction
from .backends import check_backend_name

__all__ = [
    "HingeEmbeddingLoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "SoftMarginLoss",
]


class _Loss(torch.nn.Module):
    """Base of the losses: ``reduction`` (PyTorch's legacy ``size_average``/``reduce`` mapped
    to it with PyTorch's warning) and the options shown by ``extra_repr``."""

    _shown: tuple[str, ...] = ("reduction",)
    reduction: str

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean"):
        super().__init__()
        self.reduction = resolve_reduction(type(self).__name__, size_average, reduce, reduction)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)


class _WeightedLoss(_Loss):
    """A loss with a per-class ``weight`` buffer (None when not given)."""

    weight: torch.Tensor | None

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        if weight is not None and not isinstance(weight, torch.Tensor):
            weight = torch.as_tensor(weight, dtype=torch.get_default_dtype())
        self.register_buffer("weight", weight)


class SoftMarginLoss(_Loss):
    """:func:`xmargin.soft_margin_loss` as a module (``torch.nn.SoftMarginLoss``)."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _f.soft_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_WeightedLoss):
    """:func:`xmargin.multilabel_soft_margin_loss` as a module
    (``torch.nn.MultiLabelSoftMarginLoss``); ``weight`` is a buffer."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _f.multilabel_soft_margin_loss(
            input, target, weight=self.weight, reduction=self.reduction
        )


class MultiMarginLoss(_WeightedLoss):
    """:func:`xmargin.multi_margin_loss` as a module (``torch.nn.MultiMarginLoss``);
    ``weight`` is a buffer."""

    _shown = ("p", "margin", "reduction")

    def __init__(
        self,
        p: int = 1,
        margin: float = 1.0,
        weight: Any = None,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(weight, size_average, reduce, reduction)
        self.p = check_p(type(self).__name__, p)
        self.margin = check_real(type(self).__name__, "margin", margin)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _f.multi_margin_loss(
            input, target, p=self.p, margin=self.margin, weight=self.weight,
            reduction=self.reduction,
        )  # fmt: skip


class MultiLabelMarginLoss(_WeightedLoss):
    """:func:`xmargin.multilabel_margin_loss` as a module (``torch.nn.MultiLabelMarginLoss``,
    plus xmargin's keyword-only ``margin``, ``p``, ``weight`` (a buffer: the weight of each
    class as a positive) and ``backend``)."""

    def __init__(
        self,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
        *,
        margin: float = 1.0,
        p: int = 1,
        weight: Any = None,
        backend: str | None = None,
    ):
        super().__init__(weight, size_average, reduce, reduction)
        name = type(self).__name__
        check_backend_name(name, backend)
        self.margin = check_real(name, "margin", margin)
        self.p = check_p(name, p)
        self.backend = backend

    def extra_repr(self) -> str:
        # PyTorch's own options always, xmargin's where they differ from PyTorch's behaviour
        parts = [f"reduction={self.reduction!r}"]
        if self.margin != 1.0 or self.p != 1:
            parts += [f"margin={self.margin!r}", f"p={self.p!r}"]
        if self.backend is not None:
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _f.multilabel_margin_loss(
            input, target, reduction=self.reduction, margin=self.margin, p=self.p,
            weight=self.weight, backend=self.backend,
        )  # fmt: skip


class HingeEmbeddingLoss(_Loss):
    """:func:`xmargin.hinge_embedding_loss` as a module (``torch.nn.HingeEmbeddingLoss``)."""

    _shown = ("margin", "reduction")

    def __init__(
        self,
        margin: float = 1.0,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self.margin = check_real(type(self).__name__, "margin", margin)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _f.hinge_embedding_loss(input, target, margin=self.margin, reduction=self.reduction)


class MarginRankingLoss(_Loss):
    """:func:`xmargin.margin_ranking_loss` as a module (``torch.nn.MarginRankingLoss``); call
    as ``loss(input1, input2, target)``."""

    _shown = ("margin", "reduction")

    def __init__(
        self,
        margin: float = 0.0,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self.margin = check_real(type(self).__name__, "margin", margin)

    def forward(
        self, input1: torch.Tensor, input2: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        return _f.margin_ranking_loss(
            input1, input2, target, margin=self.margin, reduction=self.reduction
        )
