"""Value checks shared by the losses. Each reads array values (a device sync on GPUs), so each
runs only while ``check_values`` is on (see :mod:`xmargin._config`)."""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .._config import check_values_enabled, readable
from .._errors import XMarginValueError
from .._xp import numel, warn_user


def warn_01_labels(fn: str) -> None:
    """The warning of :func:`warn_if_01_labels`, for a caller that counted the labels itself
    (the compiled fast paths count them in their one pass); only while checks are on."""
    if check_values_enabled():
        warn_user(
            f"{fn}: argument 'target' holds labels in {{0, 1}}, but {fn} expects labels in "
            "{-1, +1} (a 0 label is not a negative here). Convert with "
            "xmargin.targets.to_pm1(target).",
            UserWarning,
        )


def warn_pm1_labels(fn: str) -> None:
    """The warning of :func:`warn_if_pm1_labels`, for a caller that counted the labels."""
    if check_values_enabled():
        warn_user(
            f"{fn}: argument 'target' holds the label -1, but {fn} expects labels in {{0, 1}} "
            "(a -1 label is not a negative here). Convert with xmargin.targets.to_01(target).",
            UserWarning,
        )


def warn_if_01_labels(fn: str, xp: Any, y: Any) -> None:
    """±1 losses given {0, 1} labels (a 0 present): PyTorch computes something else silently."""
    if not check_values_enabled(y) or numel(tuple(y.shape)) == 0:
        return
    flag = xp.all((y == 0) | (y == 1)) & xp.any(y == 0)
    if readable(flag) and bool(flag):
        warn_01_labels(fn)


def warn_if_pm1_labels(fn: str, xp: Any, y: Any) -> None:
    """multilabel_soft_margin_loss given a −1 label: it expects {0, 1}."""
    if not check_values_enabled(y) or numel(tuple(y.shape)) == 0:
        return
    flag = xp.any(y == -1)
    if readable(flag) and bool(flag):
        warn_pm1_labels(fn)


def _comparable(xp: Any, t: Any) -> tuple[Any, bool]:
    """``t`` as an integer array whose comparisons with Python ints are exact, and whether it
    is a wrapped view (torch's uint64 seen as int64: values >= 2**63 show up negative).

    torch implements no comparison for uint16/32/64 and wraps negative Python ints against
    uint8 (``uint8 >= -1`` is False); those go to int64 first (exact for uint8/16/32)."""
    if type(t).__module__.split(".")[0] == "torch" and xp.isdtype(t.dtype, "unsigned integer"):
        import torch  # already imported: t is a tensor

        if t.dtype == torch.uint64:
            return t.view(torch.int64), True
        return t.to(torch.int64), False
    return t, False


def out_of_range(xp: Any, t: Any, low: int, high: int) -> Any:
    """Boolean mask of the values of the integer array ``t`` outside [low, high), computed in
    ``t``'s own dtype before any cast (a cast could wrap 2**64 - 1 to -1 or truncate 2**40)."""
    t, wrapped = _comparable(xp, t)
    info = xp.iinfo(t.dtype)
    bad = None
    if low > info.min:  # nothing below an unsigned dtype's 0
        bad = t < low
    if high <= info.max:  # comparing with a Python int the dtype cannot hold is not exact
        above = t >= high
        bad = above if bad is None else bad | above
    if wrapped:  # a torch uint64 value >= 2**63
        neg = t < 0
        bad = neg if bad is None else bad | neg
    if bad is None:
        return xp.zeros(tuple(t.shape), dtype=xp.bool, device=_device(t))
    return bad


def fit_indices(xp: Any, t: Any, low: int, high: int, dtype: Any) -> Any:
    """``t`` cast to the index ``dtype``, every value outside [low, high) still outside it.

    A cast that cannot hold every value of ``t``'s dtype (uint64 to int64, int64 to JAX's
    int32, ...) would wrap or truncate some of them into the valid range: those values are
    first replaced by ``high`` (out of range, and representable). Dtypes that fit cost nothing
    beyond the cast."""
    src, dst = xp.iinfo(t.dtype), xp.iinfo(dtype)
    if src.min >= dst.min and src.max <= dst.max:
        return t if t.dtype == dtype else xp.astype(t, dtype)
    view, _ = _comparable(xp, t)
    view = xp.where(out_of_range(xp, t, low, high), high, view)
    return xp.astype(view, dtype)


def check_index_range(
    fn: str, xp: Any, t: Any, low: int, high: int, what: str, name: str = "target"
) -> bool:
    """Every value of the integer array ``t`` must lie in [low, high); name the first culprit
    (in ``t``'s own dtype: a uint64 2**64 - 1 is reported as such, never as -1).

    Returns False, without checking, where the values cannot be read (inside ``jax.jit``).
    """
    if numel(tuple(t.shape)) == 0:
        return True
    bad = out_of_range(xp, t, low, high)
    any_bad = xp.any(bad)  # one pass and one sync in the common case
    if not readable(any_bad):  # traced (jit): nothing to read; the caller makes NaN rows instead
        return False
    if not bool(any_bad):
        return True
    flat = xp.reshape(bad, (-1,))
    first = int(xp.argmax(xp.astype(flat, xp.int8)))
    pos: list[int] = []
    rest = first
    for size in reversed(tuple(t.shape)):
        pos.append(rest % size)
        rest //= size
    pos.reverse()
    value = xp.reshape(t, (-1,))[first]
    try:
        value = int(value)
    except (RuntimeError, OverflowError):  # int() of torch's uint64 >= 2**63
        value = int(value.item())
    where = "[" + ", ".join(str(i) for i in pos) + "]"
    raise XMarginValueError(
        f"{fn}: argument '{name}' is out of range: {name}{where} = {value}, but {what} must lie "
        f"in [{low}, {high})"
    )
