"""Keras 3 losses: ``keras.losses.Loss`` subclasses computed by xmargin.

For ``model.compile(loss=...)`` on Keras' **torch** and **jax** backends, which hand the loss
the torch tensors or JAX arrays xmargin already takes (gradients flow through xmargin's torch
autograd and JAX ``custom_vjp`` glue). On the TensorFlow backend building one raises a
``TypeError``: xmargin does not take TensorFlow tensors.

Keras' conventions, not PyTorch's:

* ``call(y_true, y_pred)``: targets first.
* Each loss returns one value per sample and Keras reduces them (``reduction=``:
  ``"sum_over_batch_size"`` by default, ``"sum"``, ``"mean_with_sample_weight"``, ``None``),
  applying ``sample_weight``. For the element-wise losses (:class:`SoftMarginLoss`,
  :class:`HingeEmbeddingLoss`) the value of a sample is the mean over its last axis, as for
  ``keras.losses.Hinge``; so the default reduction gives PyTorch's ``mean``, while ``"sum"``
  sums per-sample means (not PyTorch's sum over elements).
* :class:`MultiLabelMarginLoss` and :class:`MultiMarginLoss` take class indices as
  ``y_true`` and keep their integer dtype (Keras would cast targets to the loss dtype; class
  indices above 2**24 do not survive float32). Float targets are refused, as by the
  functional forms.
* :class:`MarginRankingLoss` takes ``y_pred`` of shape (..., 2), the two scores of each pair,
  and ``y_true`` of shape (...) holding 1 or -1.
* ``get_config``/``from_config`` round-trip every option (a ``weight`` is stored as a list);
  the classes are registered as Keras serializables (package ``"xmargin"``), so a saved
  model that uses one loads again.

Select the Keras backend before Keras is first imported (``KERAS_BACKEND=torch`` or ``jax``).

>>> import numpy as np
>>> import xmargin.keras
>>> loss = xmargin.keras.MultiLabelMarginLoss()
>>> y_pred = np.array([[0.1, 0.2, 0.4, 0.8]], dtype="float32")
>>> round(float(loss(np.array([[3, 0, -1, 1]]), y_pred)), 5)   # PyTorch's documented example
0.85
"""

from __future__ import annotations

from typing import Any

try:
    import keras
    from keras import ops
except ImportError as exc:  # Keras without a usable backend raises here too
    raise ImportError(
        "xmargin.keras needs Keras 3 on its torch or jax backend (pip install keras; set "
        f"KERAS_BACKEND=torch or KERAS_BACKEND=jax before keras is imported): {exc}"
    ) from exc

from . import losses as _f
from ._errors import XMarginTypeError, XMarginValueError
from ._xp import check_p, check_real
from .backends import check_backend_name

__all__ = [
    "HingeEmbeddingLoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "SoftMarginLoss",
]

SUPPORTED_BACKENDS = ("torch", "jax")


def _reduce(losses: Any, sample_weight: Any, reduction: Any, dtype: Any) -> Any:
    # Keras' own reduction (sample weights, dtype) for the losses that bypass its
    # __call__ to keep integer targets
    from keras.src.losses.loss import reduce_weighted_values

    return reduce_weighted_values(
        losses, sample_weight=sample_weight, reduction=reduction, dtype=dtype
    )


class _Loss(keras.losses.Loss):
    """Base: checks the Keras backend, stores the options and serialises them."""

    _options: tuple[str, ...] = ()
    _default_name = ""

    def __init__(self, *, reduction: Any = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None):  # fmt: skip
        backend = keras.backend.backend()
        if backend not in SUPPORTED_BACKENDS:
            raise XMarginTypeError(
                f"xmargin.keras.{type(self).__name__}: Keras backend {backend!r} is not "
                f"supported; xmargin's losses run on Keras' {' and '.join(SUPPORTED_BACKENDS)} "
                "backends (set KERAS_BACKEND before keras is imported)"
            )
        super().__init__(name=name or self._default_name, reduction=reduction, dtype=dtype)

    def _weight_tensor(self) -> Any:
        weight = getattr(self, "weight", None)
        return None if weight is None else ops.convert_to_tensor(weight, dtype=self.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in self._options:
            value = getattr(self, key)
            if key == "weight" and value is not None:
                value = [float(v) for v in ops.convert_to_numpy(value).reshape(-1)]
            config[key] = value
        return config


class _IndexTargetLoss(_Loss):
    """A loss whose ``y_true`` holds class indices: passed on in its integer dtype."""

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            return _reduce(self.call(y_true, y_pred), sample_weight, self.reduction, self.dtype)


def _serializable(cls: type) -> type:
    return keras.saving.register_keras_serializable(package="xmargin")(cls)


@_serializable
class MultiLabelMarginLoss(_IndexTargetLoss):
    """:func:`xmargin.multilabel_margin_loss` per sample: ``y_true`` (N, K) class indices
    padded with -1, ``y_pred`` (N, C) scores; ``margin``, ``p``, ``weight`` (C,) and
    ``backend`` as in the functional form."""

    _options = ("margin", "p", "weight", "backend")
    _default_name = "multilabel_margin_loss"

    def __init__(self, margin: float = 1.0, p: int = 1, weight: Any = None,
                 backend: str | None = None, **kwargs: Any):  # fmt: skip
        super().__init__(**kwargs)
        name = type(self).__name__
        check_backend_name(name, backend)
        self.margin = check_real(name, "margin", margin)
        self.p = check_p(name, p)
        self.weight = weight
        self.backend = backend

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return _f.multilabel_margin_loss(
            y_pred, y_true, reduction="none", margin=self.margin, p=self.p,
            weight=self._weight_tensor(), backend=self.backend,
        )  # fmt: skip


@_serializable
class MultiMarginLoss(_IndexTargetLoss):
    """:func:`xmargin.multi_margin_loss` per sample: ``y_true`` (N,) class indices, ``y_pred``
    (N, C) scores."""

    _options = ("p", "margin", "weight")
    _default_name = "multi_margin_loss"

    def __init__(self, p: int = 1, margin: float = 1.0, weight: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.p = check_p(name, p)
        self.margin = check_real(name, "margin", margin)
        self.weight = weight

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return _f.multi_margin_loss(
            y_pred, y_true, p=self.p, margin=self.margin, weight=self._weight_tensor(),
            reduction="none",
        )  # fmt: skip


@_serializable
class MultiLabelSoftMarginLoss(_Loss):
    """:func:`xmargin.multilabel_soft_margin_loss` per sample: ``y_true`` (N, C) of 0/1,
    ``y_pred`` (N, C) logits."""

    _options = ("weight",)
    _default_name = "multilabel_soft_margin_loss"

    def __init__(self, weight: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.weight = weight

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return _f.multilabel_soft_margin_loss(
            y_pred, y_true, weight=self._weight_tensor(), reduction="none"
        )


def _per_sample(elementwise: Any) -> Any:
    """An element-wise loss as one value per sample: the mean over the last axis (Keras'
    convention), unless the values are one per sample already (1-D)."""
    return elementwise if len(elementwise.shape) <= 1 else ops.mean(elementwise, axis=-1)


@_serializable
class SoftMarginLoss(_Loss):
    """:func:`xmargin.soft_margin_loss`, averaged over the last axis per sample: ``y_true``
    of 1/-1, ``y_pred`` the scores."""

    _default_name = "soft_margin_loss"

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return _per_sample(_f.soft_margin_loss(y_pred, y_true, reduction="none"))


@_serializable
class HingeEmbeddingLoss(_Loss):
    """:func:`xmargin.hinge_embedding_loss`, averaged over the last axis per sample:
    ``y_true`` of 1/-1, ``y_pred`` the distances."""

    _options = ("margin",)
    _default_name = "hinge_embedding_loss"

    def __init__(self, margin: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.margin = check_real(type(self).__name__, "margin", margin)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return _per_sample(
            _f.hinge_embedding_loss(y_pred, y_true, margin=self.margin, reduction="none")
        )


@_serializable
class MarginRankingLoss(_Loss):
    """:func:`xmargin.margin_ranking_loss` per pair: ``y_pred`` (..., 2) holds the two scores
    of each pair, ``y_true`` (...) 1 where the first should rank higher, -1 where the second."""

    _options = ("margin",)
    _default_name = "margin_ranking_loss"

    def __init__(self, margin: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.margin = check_real(type(self).__name__, "margin", margin)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if len(y_pred.shape) == 0 or y_pred.shape[-1] != 2:
            raise XMarginValueError(
                f"xmargin.keras.{type(self).__name__}: argument 'y_pred' must have shape "
                f"(..., 2) (the two scores of each pair), got {tuple(y_pred.shape)}"
            )
        return _f.margin_ranking_loss(
            y_pred[..., 0], y_pred[..., 1], y_true, margin=self.margin, reduction="none"
        )
