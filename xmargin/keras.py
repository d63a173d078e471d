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

from inspect import Parameter
from typing import Any

try:
    import keras
    from keras import ops
except ImportError as exc:  # Keras without a usable backend raises here too
    raise ImportError(
        "xmargin.keras needs Keras 3 on its torch or jax backend (pip install keras; set "
        f"KERAS_BACKEND=torch or KERAS_BACKEND=jax before keras is imported): {exc}"
    ) from exc

from . import _specs
from ._errors import XMarginTypeError, XMarginValueError

__all__ = list(_specs.NAMES)

SUPPORTED_BACKENDS = ("torch", "jax")
# Keras' own constructor arguments, after the loss's options
_KERAS = tuple(
    Parameter(name, Parameter.KEYWORD_ONLY, default=default)
    for name, default in (("reduction", "sum_over_batch_size"), ("name", None), ("dtype", None))
)


def _options(spec: _specs.LossSpec) -> tuple[str, ...]:
    """The options a Keras loss keeps: the functional's but PyTorch's reductions (Keras has
    its own ``reduction``)."""
    return tuple(name for name in spec.options if name != "reduction")


def _reduce(losses: Any, sample_weight: Any, reduction: Any, dtype: Any) -> Any:
    # Keras' own reduction (sample weights, dtype) for the losses that bypass its
    # __call__ to keep integer targets
    from keras.src.losses.loss import reduce_weighted_values

    return reduce_weighted_values(
        losses, sample_weight=sample_weight, reduction=reduction, dtype=dtype
    )


def _per_sample(elementwise: Any) -> Any:
    """An element-wise loss as one value per sample: the mean over the last axis (Keras'
    convention), unless the values are one per sample already (1-D)."""
    return elementwise if len(elementwise.shape) <= 1 else ops.mean(elementwise, axis=-1)


class _Loss(_specs.FromSpec, keras.losses.Loss):
    """Base, built from the specs: checks the Keras backend; takes the functional's options
    but PyTorch's reductions (positional or keyword), then Keras' keyword-only ``reduction``,
    ``name`` and ``dtype``; stores and serialises them; keeps the dtype of class indices."""

    @classmethod
    def _init_parameters(cls, spec: _specs.LossSpec) -> list[Parameter]:
        kept = _options(spec)
        options = [p.replace(kind=Parameter.POSITIONAL_OR_KEYWORD)
                   for p in spec.parameters if p.name in kept]  # fmt: skip
        return [*options, *_KERAS]

    def _setup(self, arguments: dict[str, Any]) -> None:
        backend = keras.backend.backend()
        if backend not in SUPPORTED_BACKENDS:
            raise XMarginTypeError(
                f"xmargin.keras.{type(self).__name__}: Keras backend {backend!r} is not "
                f"supported; xmargin's losses run on Keras' {' and '.join(SUPPORTED_BACKENDS)} "
                "backends (set KERAS_BACKEND before keras is imported)"
            )
        own = {p.name: arguments.pop(p.name) for p in _KERAS}
        own["name"] = own["name"] or self._spec.functional.__name__
        super().__init__(**own)
        for key, value in self._spec.checked(type(self).__name__, arguments).items():
            setattr(self, key, value)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        if not self._spec.index_targets:
            return super().__call__(y_true, y_pred, sample_weight)
        # class indices passed on in their integer dtype (Keras would cast them to float)
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            return _reduce(self.call(y_true, y_pred), sample_weight, self.reduction, self.dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        values = self._spec.functional(y_pred, y_true, **self._call_options(), reduction="none")
        return _per_sample(values) if self._spec.elementwise else values

    def _call_options(self) -> dict[str, Any]:
        options = {key: getattr(self, key) for key in _options(self._spec)}
        for key in _specs.ARRAYS:
            if options.get(key) is not None:
                options[key] = ops.convert_to_tensor(options[key], dtype=self.dtype)
        return options

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in _options(self._spec):
            value = getattr(self, key)
            if key in _specs.ARRAYS and value is not None:
                value = [float(v) for v in ops.convert_to_numpy(value).reshape(-1)]
            config[key] = value
        return config


def _serializable(cls: type) -> type:
    return keras.saving.register_keras_serializable(package="xmargin")(cls)


@_serializable
class MultiLabelMarginLoss(_Loss, spec=_specs.SPEC["MultiLabelMarginLoss"]):
    """:func:`xmargin.multilabel_margin_loss` per sample: ``y_true`` (N, K) class indices
    padded with -1, ``y_pred`` (N, C) scores; ``margin``, ``p``, ``weight`` (C,) and
    ``backend`` as in the functional form."""


@_serializable
class MultiMarginLoss(_Loss, spec=_specs.SPEC["MultiMarginLoss"]):
    """:func:`xmargin.multi_margin_loss` per sample: ``y_true`` (N,) class indices, ``y_pred``
    (N, C) scores."""


@_serializable
class MultiLabelSoftMarginLoss(_Loss, spec=_specs.SPEC["MultiLabelSoftMarginLoss"]):
    """:func:`xmargin.multilabel_soft_margin_loss` per sample: ``y_true`` (N, C) of 0/1,
    ``y_pred`` (N, C) logits."""


@_serializable
class SoftMarginLoss(_Loss, spec=_specs.SPEC["SoftMarginLoss"]):
    """:func:`xmargin.soft_margin_loss`, averaged over the last axis per sample: ``y_true``
    of 1/-1, ``y_pred`` the scores."""


@_serializable
class HingeEmbeddingLoss(_Loss, spec=_specs.SPEC["HingeEmbeddingLoss"]):
    """:func:`xmargin.hinge_embedding_loss`, averaged over the last axis per sample:
    ``y_true`` of 1/-1, ``y_pred`` the distances."""


@_serializable
class MarginRankingLoss(_Loss, spec=_specs.SPEC["MarginRankingLoss"]):
    """:func:`xmargin.margin_ranking_loss` per pair: ``y_pred`` (..., 2) holds the two scores
    of each pair, ``y_true`` (...) 1 where the first should rank higher, -1 where the second."""

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if len(y_pred.shape) == 0 or y_pred.shape[-1] != 2:
            raise XMarginValueError(
                f"xmargin.keras.{type(self).__name__}: argument 'y_pred' must have shape "
                f"(..., 2) (the two scores of each pair), got {tuple(y_pred.shape)}"
            )
        return self._spec.functional(
            y_pred[..., 0], y_pred[..., 1], y_true, **self._call_options(), reduction="none"
        )
