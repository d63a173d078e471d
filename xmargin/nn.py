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

from . import _specs

__all__ = [*_specs.NAMES, "FusedLinearMultiLabelMarginLoss"]


class _Loss(_specs.FromSpec, torch.nn.Module):
    """Base of the losses, built from their specs: the options as attributes (``reduction``
    with PyTorch's legacy ``size_average``/``reduce`` mapped to it with PyTorch's warning),
    the arrays (``weight``) as buffers, the options but arrays shown by ``extra_repr``."""

    # the options' types, for type checkers (each loss has some of them)
    reduction: str
    margin: float
    p: int
    weight: torch.Tensor | None
    backend: str | None

    def _setup(self, arguments: dict[str, Any]) -> None:
        super().__init__()
        for key, value in self._spec.checked(type(self).__name__, arguments).items():
            if key in _specs.ARRAYS:
                if value is not None and not isinstance(value, torch.Tensor):
                    value = torch.as_tensor(value, dtype=torch.get_default_dtype())
                self.register_buffer(key, value)
            else:
                setattr(self, key, value)

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        options = {key: getattr(self, key) for key in self._spec.options}
        return self._spec.functional(*inputs.values(), **options)

    def extra_repr(self) -> str:
        shown = [key for key in self._spec.options if key not in _specs.ARRAYS]
        return ", ".join(f"{key}={getattr(self, key)!r}" for key in shown)


class SoftMarginLoss(_Loss, spec=_specs.SPEC["SoftMarginLoss"]):
    """:func:`xmargin.soft_margin_loss` as a module (``torch.nn.SoftMarginLoss``)."""


class MultiLabelSoftMarginLoss(_Loss, spec=_specs.SPEC["MultiLabelSoftMarginLoss"]):
    """:func:`xmargin.multilabel_soft_margin_loss` as a module
    (``torch.nn.MultiLabelSoftMarginLoss``); ``weight`` is a buffer."""


class MultiMarginLoss(_Loss, spec=_specs.SPEC["MultiMarginLoss"]):
    """:func:`xmargin.multi_margin_loss` as a module (``torch.nn.MultiMarginLoss``);
    ``weight`` is a buffer."""


class MultiLabelMarginLoss(_Loss, spec=_specs.SPEC["MultiLabelMarginLoss"]):
    """:func:`xmargin.multilabel_margin_loss` as a module (``torch.nn.MultiLabelMarginLoss``,
    plus xmargin's keyword-only ``margin``, ``p``, ``weight`` (a buffer: the weight of each
    class as a positive) and ``backend``)."""

    def extra_repr(self) -> str:
        # PyTorch's own options always, xmargin's where they differ from PyTorch's behaviour
        parts = [f"reduction={self.reduction!r}"]
        if self.margin != 1.0 or self.p != 1:
            parts += [f"margin={self.margin!r}", f"p={self.p!r}"]
        if self.negatives is not None:
            neg = self.negatives
            parts.append(f"negatives={neg!r}" if isinstance(neg, int) else "negatives=<array>")
        if self.backend is not None:
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)


class HingeEmbeddingLoss(_Loss, spec=_specs.SPEC["HingeEmbeddingLoss"]):
    """:func:`xmargin.hinge_embedding_loss` as a module (``torch.nn.HingeEmbeddingLoss``)."""


class MarginRankingLoss(_Loss, spec=_specs.SPEC["MarginRankingLoss"]):
    """:func:`xmargin.margin_ranking_loss` as a module (``torch.nn.MarginRankingLoss``); call
    as ``loss(input1, input2, target)``."""


class FusedLinearMultiLabelMarginLoss(torch.nn.Module):
    """A linear layer and the pairwise hinge of its output, fused: ``forward(hidden, target)``
    is :func:`xmargin.fused_linear_multilabel_margin_loss` (never the (N, C) scores), the layer
    being ``torch.nn.Linear(in_features, num_classes, bias)`` (same parameters, same
    initialisation; ``logits(hidden)`` gives its scores, for evaluation).

    The loss options are those of the function (``class_weight`` and ``neg_weight`` are
    buffers). Label-parallel: with ``group``, this rank's module owns ``local_classes``
    classes from ``class_start`` on, of ``num_classes`` in all.

    >>> import torch, xmargin.nn
    >>> _ = torch.manual_seed(0)
    >>> head = xmargin.nn.FusedLinearMultiLabelMarginLoss(8, 1000, negatives=20)
    >>> loss = head(torch.randn(4, 8), torch.tensor([[3, 17, -1], [5, -1, -1], [1, 2, 3], [9, 9, 9]]))
    >>> loss.backward()
    >>> head.weight.grad.shape
    torch.Size([1000, 8])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        bias: bool = True,
        reduction: str = "mean",
        *,
        margin: float = 1.0,
        p: int = 1,
        class_weight: Any = None,
        neg_weight: Any = None,
        negatives: Any = None,
        chunk_size: int | None = None,
        backend: str | None = None,
        group: Any = None,
        class_start: int = 0,
        local_classes: int | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        local = num_classes if local_classes is None else local_classes
        # torch.nn.Linear's parameters and initialisation, for this rank's classes
        linear = torch.nn.Linear(in_features, local, bias=bias, device=device, dtype=dtype)
        self.weight = linear.weight
        self.bias = linear.bias
        self.in_features, self.num_classes = in_features, num_classes
        self.reduction, self.margin, self.p = reduction, margin, p
        self.negatives, self.chunk_size, self.backend = negatives, chunk_size, backend
        self.group, self.class_start = group, class_start
        for name, value in (("class_weight", class_weight), ("neg_weight", neg_weight)):
            if value is not None and not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value, dtype=dtype or torch.get_default_dtype())
            self.register_buffer(name, value)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The layer's scores (N, C_local): ``hidden @ weight.T + bias``."""
        return torch.nn.functional.linear(hidden, self.weight, self.bias)

    def forward(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from .fused import fused_linear_multilabel_margin_loss

        sharded = self.group is not None
        return fused_linear_multilabel_margin_loss(
            hidden, self.weight, target, self.bias, self.reduction, margin=self.margin,
            p=self.p, class_weight=self.class_weight, neg_weight=self.neg_weight,
            negatives=self.negatives, chunk_size=self.chunk_size, backend=self.backend,
            group=self.group, class_start=self.class_start,
            num_classes=self.num_classes if sharded else None,
        )  # fmt: skip

    def extra_repr(self) -> str:
        parts = [f"in_features={self.in_features}", f"num_classes={self.num_classes}",
                 f"bias={self.bias is not None}", f"reduction={self.reduction!r}"]  # fmt: skip
        if self.margin != 1.0 or self.p != 1:
            parts += [f"margin={self.margin!r}", f"p={self.p!r}"]
        if self.negatives is not None:
            neg = self.negatives
            parts.append(f"negatives={neg!r}" if isinstance(neg, int) else "negatives=<array>")
        return ", ".join(parts)
