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

__all__ = list(_specs.NAMES)


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
        if self.backend is not None:
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)


class HingeEmbeddingLoss(_Loss, spec=_specs.SPEC["HingeEmbeddingLoss"]):
    """:func:`xmargin.hinge_embedding_loss` as a module (``torch.nn.HingeEmbeddingLoss``)."""


class MarginRankingLoss(_Loss, spec=_specs.SPEC["MarginRankingLoss"]):
    """:func:`xmargin.margin_ranking_loss` as a module (``torch.nn.MarginRankingLoss``); call
    as ``loss(input1, input2, target)``."""
