"""Loss objects with PyTorch's class names and options (``xmargin.MultiLabelMarginLoss()``).

Each class is built from its declaration in ``xmargin._specs``: its constructor takes its
functional's options (names, defaults, order), checked when the object is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _specs

__all__ = list(_specs.NAMES)


class _Loss(_specs.FromSpec):
    """Callable loss with options fixed at construction and readable as attributes.

    Options are validated when the object is built (a bad ``reduction`` or ``p`` fails at
    once); ``size_average``/``reduce`` are mapped to ``reduction`` with PyTorch's
    UserWarning. Options are read-only: build a new object to change them.
    """

    __slots__ = ("_options",)

    if TYPE_CHECKING:  # (each class's own, written from its spec)

        def forward(self, *inputs: Any) -> Any: ...

    def _setup(self, arguments: dict[str, Any]) -> None:
        self._options: dict[str, Any] = self._spec.checked(type(self).__name__, arguments)

    def _forward(self, inputs: dict[str, Any]) -> Any:
        return self._spec.functional(*inputs.values(), **self._options)

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    def __getattr__(self, name: str) -> Any:
        options = object.__getattribute__(self, "_options")
        if name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_options" and not hasattr(self, "_options"):  # (once: built, unpickled)
            object.__setattr__(self, name, value)
            return
        raise AttributeError(
            f"{type(self).__name__}.{name} is read-only; build a new loss object instead"
        )

    def __repr__(self) -> str:
        parts = []
        for key, value in self._options.items():
            if key in _specs.ARRAYS and hasattr(value, "shape"):
                value = f"<array shape={tuple(value.shape)}>"
            else:
                value = repr(value)
            parts.append(f"{key}={value}")
        return f"{type(self).__name__}({', '.join(parts)})"


class SoftMarginLoss(_Loss, spec=_specs.SPEC["SoftMarginLoss"]):
    """Object form of :func:`xmargin.soft_margin_loss`.

    >>> import numpy as np, xmargin
    >>> loss = xmargin.SoftMarginLoss(reduction="sum")
    >>> loss
    SoftMarginLoss(reduction='sum')
    >>> round(float(loss(np.array([0.0, 0.0]), np.array([1.0, -1.0]))), 6)
    1.386294
    """

    __slots__ = ()


class MultiLabelSoftMarginLoss(_Loss, spec=_specs.SPEC["MultiLabelSoftMarginLoss"]):
    """Object form of :func:`xmargin.multilabel_soft_margin_loss`."""

    __slots__ = ()


class MultiMarginLoss(_Loss, spec=_specs.SPEC["MultiMarginLoss"]):
    """Object form of :func:`xmargin.multi_margin_loss`.

    >>> import xmargin
    >>> xmargin.MultiMarginLoss(p=2, margin=0.5)
    MultiMarginLoss(p=2, margin=0.5, weight=None, reduction='mean')
    """

    __slots__ = ()


class MultiLabelMarginLoss(_Loss, spec=_specs.SPEC["MultiLabelMarginLoss"]):
    """Object form of :func:`xmargin.multilabel_margin_loss` (with xmargin's extra options).

    >>> import numpy as np, xmargin
    >>> loss = xmargin.MultiLabelMarginLoss(margin=0.5, p=2)
    >>> loss  # doctest: +NORMALIZE_WHITESPACE
    MultiLabelMarginLoss(reduction='mean', margin=0.5, p=2, weight=None, neg_weight=None,
                         negatives=None, backend=None)
    >>> round(float(loss(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[3, 0]]))), 6)
    0.2525
    >>> hard = xmargin.MultiLabelMarginLoss(negatives=1)   # each row's hardest negative only
    >>> round(float(hard(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[3, 0, -1, 1]]))), 6)
    0.475
    """

    __slots__ = ()


class HingeEmbeddingLoss(_Loss, spec=_specs.SPEC["HingeEmbeddingLoss"]):
    """Object form of :func:`xmargin.hinge_embedding_loss`."""

    __slots__ = ()


class MarginRankingLoss(_Loss, spec=_specs.SPEC["MarginRankingLoss"]):
    """Object form of :func:`xmargin.margin_ranking_loss`; call as ``loss(input1, input2, y)``."""

    __slots__ = ()
