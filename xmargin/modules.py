"""Loss objects with PyTorch's class names and options (``xmargin.MultiLabelMarginLoss()``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._xp import check_p, check_real, resolve_reduction
from .backends import check_backend_name
from .losses import (
    hinge_embedding_loss,
    margin_ranking_loss,
    multi_margin_loss,
    multilabel_margin_loss,
    multilabel_soft_margin_loss,
    soft_margin_loss,
)

__all__ = [
    "HingeEmbeddingLoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "SoftMarginLoss",
]


class _Loss:
    """Callable loss with options fixed at construction and readable as attributes.

    Options are validated when the object is built (a bad ``reduction`` or ``p`` fails at
    once); ``size_average``/``reduce`` are mapped to ``reduction`` with PyTorch's
    UserWarning. Options are read-only: build a new object to change them.
    """

    _functional: Callable[..., Any]
    _option_names: tuple[str, ...] = ("reduction",)
    __slots__ = ("_options",)

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean"):
        name = type(self).__name__
        self._options: dict[str, Any] = {
            "reduction": resolve_reduction(name, size_average, reduce, reduction)
        }

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    def forward(self, input: Any, target: Any) -> Any:
        return type(self)._functional(input, target, **self._options)

    def __getattr__(self, name: str) -> Any:
        options = object.__getattribute__(self, "_options")
        if name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_options" and not hasattr(self, "_options"):
            object.__setattr__(self, name, value)
            return
        raise AttributeError(
            f"{type(self).__name__}.{name} is read-only; build a new loss object instead"
        )

    def __repr__(self) -> str:
        parts = []
        for key in self._option_names:
            value = self._options[key]
            if key == "weight" and hasattr(value, "shape"):
                value = f"<array shape={tuple(value.shape)}>"
            else:
                value = repr(value)
            parts.append(f"{key}={value}")
        return f"{type(self).__name__}({', '.join(parts)})"


class SoftMarginLoss(_Loss):
    """Object form of :func:`xmargin.soft_margin_loss`.

    >>> import numpy as np, xmargin
    >>> loss = xmargin.SoftMarginLoss(reduction="sum")
    >>> loss
    SoftMarginLoss(reduction='sum')
    >>> round(float(loss(np.array([0.0, 0.0]), np.array([1.0, -1.0]))), 6)
    1.386294
    """

    _functional = staticmethod(soft_margin_loss)
    __slots__ = ()


class MultiLabelSoftMarginLoss(_Loss):
    """Object form of :func:`xmargin.multilabel_soft_margin_loss`."""

    _functional = staticmethod(multilabel_soft_margin_loss)
    _option_names = ("weight", "reduction")
    __slots__ = ()

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self._options["weight"] = weight


class MultiMarginLoss(_Loss):
    """Object form of :func:`xmargin.multi_margin_loss`.

    >>> import xmargin
    >>> xmargin.MultiMarginLoss(p=2, margin=0.5)
    MultiMarginLoss(p=2, margin=0.5, weight=None, reduction='mean')
    """

    _functional = staticmethod(multi_margin_loss)
    _option_names = ("p", "margin", "weight", "reduction")
    __slots__ = ()

    def __init__(
        self,
        p: int = 1,
        margin: float = 1.0,
        weight: Any = None,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self._options.update(
            p=check_p("MultiMarginLoss", p),
            margin=check_real("MultiMarginLoss", "margin", margin),
            weight=weight,
        )


class MultiLabelMarginLoss(_Loss):
    """Object form of :func:`xmargin.multilabel_margin_loss` (with xmargin's extra options).

    >>> import numpy as np, xmargin
    >>> loss = xmargin.MultiLabelMarginLoss(margin=0.5, p=2)
    >>> loss
    MultiLabelMarginLoss(reduction='mean', margin=0.5, p=2, weight=None, backend=None)
    >>> round(float(loss(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[3, 0]]))), 6)
    0.2525
    """

    _functional = staticmethod(multilabel_margin_loss)
    _option_names = ("reduction", "margin", "p", "weight", "backend")
    __slots__ = ()

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
        super().__init__(size_average, reduce, reduction)
        name = "MultiLabelMarginLoss"
        check_backend_name(name, backend)
        self._options.update(
            margin=check_real(name, "margin", margin),
            p=check_p(name, p),
            weight=weight,
            backend=backend,
        )


class HingeEmbeddingLoss(_Loss):
    """Object form of :func:`xmargin.hinge_embedding_loss`."""

    _functional = staticmethod(hinge_embedding_loss)
    _option_names = ("margin", "reduction")
    __slots__ = ()

    def __init__(
        self,
        margin: float = 1.0,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self._options["margin"] = check_real("HingeEmbeddingLoss", "margin", margin)


class MarginRankingLoss(_Loss):
    """Object form of :func:`xmargin.margin_ranking_loss`; call as ``loss(input1, input2, y)``."""

    _functional = staticmethod(margin_ranking_loss)
    _option_names = ("margin", "reduction")
    __slots__ = ()

    def __init__(
        self,
        margin: float = 0.0,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(size_average, reduce, reduction)
        self._options["margin"] = check_real("MarginRankingLoss", "margin", margin)

    def forward(self, input1: Any, input2: Any, target: Any) -> Any:  # type: ignore[override]
        return margin_ranking_loss(input1, input2, target, **self._options)
