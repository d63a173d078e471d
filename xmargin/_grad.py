"""``value_and_grad``: analytic gradients of every loss, without a framework's autograd."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._errors import XMarginTypeError, XMarginValueError
from ._xp import detach
from .losses._public import LOSSES

__all__ = ["value_and_grad"]

# public function -> (implementation returning (loss, grads), positions of score arguments):
# filled by each loss's definition (xmargin/losses/_public.py)
_IMPLS = LOSSES


def value_and_grad(
    fn: Callable[..., Any], argnums: int | tuple[int, ...] = 0
) -> Callable[..., tuple[Any, Any]]:
    """Wrap a loss so that it returns ``(loss, gradient)`` with analytic gradients.

    ``fn`` is one of the six xmargin losses (or a loss object such as
    ``xmargin.MultiLabelMarginLoss(margin=0.5)``). The returned function takes the same
    arguments and returns the loss and its gradient with respect to the positional argument
    ``argnums`` (default 0, the scores), or a tuple of gradients for a tuple ``argnums`` (scores
    only: ``(0, 1)`` for ``margin_ranking_loss``). Gradients are arrays of the argument's
    namespace, device, dtype and shape; for ``reduction="none"`` they are those of
    ``loss.sum()``. Works on NumPy, CuPy, torch, array-api-strict, ... without any autograd; for
    torch tensors the result is detached from autograd.

    >>> import numpy as np, xmargin
    >>> x = np.array([[0.1, 0.2, 0.4, 0.8]]); y = np.array([[3, 0, -1, 1]])
    >>> loss, g = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(x, y)
    >>> round(float(loss), 6), g.tolist()
    (0.85, [[-0.5, 0.5, 0.5, -0.5]])
    >>> a, b, t = np.array([1.0, 0.2]), np.array([0.5, 0.4]), np.array([1.0, 1.0])
    >>> loss, (ga, gb) = xmargin.value_and_grad(xmargin.margin_ranking_loss, argnums=(0, 1))(
    ...     a, b, t, margin=0.1)
    >>> ga.tolist(), gb.tolist()
    ([0.0, -0.5], [0.0, 0.5])
    """
    bound_options: dict[str, Any] = {}
    functional = fn
    spec = getattr(type(fn), "_spec", None)
    if spec is not None and hasattr(fn, "_options"):  # a loss object (xmargin.modules)
        functional, bound_options = spec.functional, dict(fn._options)
    if functional not in _IMPLS:
        raise XMarginTypeError(
            "value_and_grad: argument 'fn' must be one of the xmargin losses "
            f"({', '.join(sorted(f.__name__ for f in _IMPLS))}) or a loss object, got {fn!r}"
        )
    impl, score_args = _IMPLS[functional]
    single = isinstance(argnums, int) and not isinstance(argnums, bool)
    nums = (argnums,) if single else argnums
    if (
        not isinstance(nums, tuple)
        or not nums
        or any(not isinstance(i, int) or isinstance(i, bool) or i not in score_args for i in nums)
    ):
        raise XMarginValueError(
            f"value_and_grad: argument 'argnums' must be one of {score_args} or a non-empty tuple "
            f"of them (the positions of the score arguments of {functional.__name__}), got "
            f"{argnums!r}"
        )
    signature = inspect.signature(functional)
    n_positional = len(score_args) + 1  # scores then target

    def wrapped(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if bound_options:
            if len(args) != n_positional or kwargs:
                raise XMarginTypeError(
                    f"value_and_grad: a loss object takes exactly {n_positional} positional "
                    f"arguments, got {len(args)} positional and {sorted(kwargs)} keyword"
                )
            kwargs = bound_options
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise XMarginTypeError(f"{functional.__name__}: {exc}") from exc
        call_args = [detach(a) for a in bound.args]
        call_kwargs = {k: detach(v) for k, v in bound.kwargs.items()}
        loss, grads = impl(*call_args, **call_kwargs, argnums=nums)
        return loss, (grads[0] if single else tuple(grads))

    wrapped.__name__ = f"value_and_grad({functional.__name__})"
    wrapped.__doc__ = f"(loss, gradient) of {functional.__name__}; see xmargin.value_and_grad."
    return wrapped
