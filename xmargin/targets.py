"""Converters between the target formats and label conventions of the losses.

Two formats for multi-label targets:

* **multi-hot** (N, C) of {0, 1}: what ``multilabel_soft_margin_loss`` takes;
* **index** (N, K) of class indices padded with -1: what ``multilabel_margin_loss`` takes
  (K = C in PyTorch; any K in xmargin, so K ≪ C keeps memory small when labels are many).

Two label conventions for binary targets: {0, 1} and {-1, +1}. ``soft_margin_loss``,
``hinge_embedding_loss`` and ``margin_ranking_loss`` expect {-1, +1}; a {0, 1} target is a
classic silent bug there (0 is not a negative), so those losses warn and :func:`to_pm1` converts.
``multilabel_soft_margin_loss`` expects {0, 1}; :func:`to_01` converts.

Every helper works on any array-API namespace and keeps the input's namespace and device. Value
checks (labels not in the expected set, rows longer than ``width``) read values and so follow
``xmargin.options(check_values=...)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj
from array_api_compat import device as _device

from ._config import check_values_enabled, readable
from ._errors import XMarginTypeError, XMarginValueError
from ._xp import index_dtype, numel, shape_str
from .backends.portable import multiplicities
from .losses._checks import check_index_range, fit_indices, out_of_range

__all__ = ["from_multihot", "pad", "to_01", "to_multihot", "to_pm1"]

Array = Any


def _namespace(fn: str, name: str, a: Any) -> Any:
    if not is_array_api_obj(a):
        raise XMarginTypeError(
            f"{fn}: argument '{name}' must be an array, got {type(a).__module__}."
            f"{type(a).__qualname__}"
        )
    return array_namespace(a)


def _check_values_in(fn: str, name: str, xp: Any, a: Array, allowed: tuple[int, int]) -> None:
    if not check_values_enabled(a) or numel(tuple(a.shape)) == 0 or a.dtype == xp.bool:
        return
    ok = (a == allowed[0]) | (a == allowed[1])
    every = xp.all(ok)
    if readable(every) and not bool(every):
        flat_ok = xp.reshape(ok, (-1,))
        first = int(xp.argmax(xp.astype(~flat_ok, xp.int8)))
        value = xp.reshape(a, (-1,))[first]
        raise XMarginValueError(
            f"{fn}: argument '{name}' must hold only the labels {allowed[0]} and {allowed[1]}, found "
            f"{float(value):g} at flat position {first}"
        )


def to_pm1(y01: Array) -> Array:
    """{0, 1} labels -> {-1, +1} labels (``2·y − 1``), keeping the dtype (bool gives int64).

    >>> import numpy as np
    >>> to_pm1(np.array([0, 1, 1])).tolist()
    [-1, 1, 1]
    """
    xp = _namespace("to_pm1", "y01", y01)
    if y01.dtype == xp.bool:
        y01 = xp.astype(y01, index_dtype(xp))
    _check_values_in("to_pm1", "y01", xp, y01, (0, 1))
    return 2 * y01 - 1


def to_01(ypm1: Array) -> Array:
    """{-1, +1} labels -> {0, 1} labels (``(y + 1) / 2``), keeping the dtype.

    >>> import numpy as np
    >>> to_01(np.array([-1.0, 1.0])).tolist()
    [0.0, 1.0]
    """
    xp = _namespace("to_01", "ypm1", ypm1)
    _check_values_in("to_01", "ypm1", xp, ypm1, (-1, 1))
    if xp.isdtype(ypm1.dtype, "integral"):
        return (ypm1 + 1) // 2
    return (ypm1 + 1) / 2


def from_multihot(multi_hot: Array, width: int | None = None) -> Array:
    """(N, C) or (C,) multi-hot {0, 1} -> (N, width or C) class indices padded with -1 (int64).

    The positives of each row come in increasing class order, then -1. ``width`` defaults to C
    (PyTorch's target layout); a smaller ``width`` saves memory when rows have few labels, and a
    row with more positives than ``width`` is an error. Where values cannot be checked (value
    checks off, JAX tracing, lazy Dask arrays) such a row keeps its first ``width`` classes.

    >>> import numpy as np
    >>> from_multihot(np.array([[0, 1, 0, 1], [1, 0, 0, 0]])).tolist()
    [[1, 3, -1, -1], [0, -1, -1, -1]]
    >>> from_multihot(np.array([[0, 1, 0, 1]]), width=2).tolist()
    [[1, 3]]
    """
    fn = "from_multihot"
    xp = _namespace(fn, "multi_hot", multi_hot)
    if multi_hot.ndim not in (1, 2):
        raise XMarginValueError(
            f"{fn}: argument 'multi_hot' must have shape (C,) or (N, C), got "
            f"{shape_str(tuple(multi_hot.shape))}"
        )
    vector = multi_hot.ndim == 1
    mh = multi_hot[None, :] if vector else multi_hot
    n, c = mh.shape
    if width is None:
        width = c
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 0:
        raise XMarginValueError(f"{fn}: argument 'width' must be an integer >= 0, got {width!r}")
    width = int(width)
    _check_values_in(fn, "multi_hot", xp, mh, (0, 1))
    dev = _device(mh)
    positive = (mh != 0) if mh.dtype != xp.bool else mh
    idx = index_dtype(xp)
    counts = xp.sum(xp.astype(positive, idx), axis=1)
    if check_values_enabled(mh) and n and c and width < c and readable(xp.max(counts)):
        longest = int(xp.max(counts))
        if longest > width:
            raise XMarginValueError(
                f"{fn}: a row has {longest} positive labels but argument 'width' is {width}; "
                f"pass width >= {longest}"
            )
    # a stable sort puts each row's positive classes first, in increasing order
    order = xp.argsort(xp.astype(~positive, xp.int8), axis=1, stable=True)
    if width > c:
        fill = xp.full((n, width - c), -1, dtype=order.dtype, device=dev)
        order = xp.concat([order, fill], axis=1)
    order = xp.astype(order[:, :width], idx)
    slot = xp.reshape(xp.arange(width, dtype=idx, device=dev), (1, width))
    out = xp.where(slot < counts[:, None], order, -1)
    return out[0, :] if vector else out


def to_multihot(index_targets: Array, num_classes: int, *, dtype: Any = None) -> Array:
    """(N, K) or (K,) class indices padded with -1 -> (N, C) or (C,) multi-hot {0, 1}.

    Entries after a row's first negative value are ignored, as ``multilabel_margin_loss`` does;
    every value must lie in [-1, num_classes) (read in its own dtype: a uint64 2**64 - 1 is out
    of range, not a -1). With value checks off a row ends at an out-of-range value, as at a -1.
    ``dtype`` defaults to the default integer dtype.

    >>> import numpy as np
    >>> to_multihot(np.array([[3, 0, -1, 1], [2, 2, -1, -1]]), 4).tolist()
    [[1, 0, 0, 1], [0, 0, 1, 0]]
    """
    fn = "to_multihot"
    xp = _namespace(fn, "index_targets", index_targets)
    if not xp.isdtype(index_targets.dtype, "integral"):
        raise XMarginTypeError(
            f"{fn}: argument 'index_targets' must have an integer dtype, got {index_targets.dtype}"
        )
    if index_targets.ndim not in (1, 2):
        raise XMarginValueError(
            f"{fn}: argument 'index_targets' must have shape (K,) or (N, K), got "
            f"{shape_str(tuple(index_targets.shape))}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise XMarginTypeError(f"{fn}: argument 'num_classes' must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise XMarginValueError(f"{fn}: argument 'num_classes' must be >= 1, got {num_classes}")
    num_classes = int(num_classes)
    if check_values_enabled(index_targets):
        check_index_range(
            fn, xp, index_targets, -1, num_classes, "class indices", name="index_targets"
        )
    vector = index_targets.ndim == 1
    t = index_targets[None, :] if vector else index_targets
    # unchecked: an out-of-range value (read in its own dtype) is dropped like a -1
    t = xp.where(
        out_of_range(xp, t, -1, num_classes),
        -1,
        fit_indices(xp, t, -1, num_classes, index_dtype(xp)),
    )
    if dtype is None:
        dtype = xp.__array_namespace_info__().default_dtypes(device=_device(t))["integral"]
    out = xp.astype(multiplicities(xp, t, num_classes) > 0, dtype)
    return out[0, :] if vector else out


def pad(
    ragged_lists: Sequence[Sequence[int]], width: int | None = None, like: Array | None = None
) -> Array:
    """Ragged per-sample label lists -> (N, width) int64 array padded with -1.

    ``width`` defaults to the longest row (at least 1). The result lives in the namespace and on
    the device of ``like`` (any array), NumPy by default; this is the one host-to-device copy of
    targets that xmargin makes for you.

    >>> pad([[1, 5], [0], []]).tolist()
    [[1, 5], [0, -1], [-1, -1]]
    """
    fn = "pad"
    if isinstance(ragged_lists, (str, bytes)) or not isinstance(ragged_lists, Sequence):
        raise XMarginTypeError(
            f"{fn}: argument 'ragged_lists' must be a sequence of sequences of class indices, "
            f"got {type(ragged_lists).__name__}"
        )
    rows = []
    for i, row in enumerate(ragged_lists):
        try:
            if isinstance(row, (str, bytes)) or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in row
            ):
                raise TypeError("non-integer")
            values = [int(v) for v in row]
        except TypeError:
            raise XMarginTypeError(
                f"{fn}: row {i} of argument 'ragged_lists' must be a sequence of int class "
                f"indices, got {row!r}"
            ) from None
        bad = [v for v in values if v < 0]
        if bad:
            raise XMarginValueError(
                f"{fn}: row {i} of argument 'ragged_lists' holds the negative label {bad[0]}; "
                "class indices must be >= 0 (-1 is the padding)"
            )
        rows.append(values)
    longest = max((len(r) for r in rows), default=0)
    if width is None:
        width = max(longest, 1)
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 0:
        raise XMarginValueError(f"{fn}: argument 'width' must be an integer >= 0, got {width!r}")
    if longest > width:
        raise XMarginValueError(
            f"{fn}: a row of argument 'ragged_lists' has {longest} labels but 'width' is "
            f"{width}; pass width >= {longest}"
        )
    host = np.full((len(rows), int(width)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        host[i, : len(r)] = r
    if like is None:
        return host
    xp = _namespace(fn, "like", like)
    return xp.asarray(host, dtype=index_dtype(xp), device=_device(like))
