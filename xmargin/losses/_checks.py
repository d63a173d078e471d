"""Value checks shared by the losses. Each reads array values (a device sync on GPUs), so each
runs only while ``check_values`` is on (see :mod:`xmargin._config`)."""

from __future__ import annotations

from typing import Any

from .._config import check_values_enabled, readable
from .._errors import XMarginValueError
from .._xp import index_dtype, numel, warn_user


def warn_if_01_labels(fn: str, xp: Any, y: Any) -> None:
    """±1 losses given {0, 1} labels (a 0 present): PyTorch computes something else silently."""
    if not check_values_enabled(y) or numel(tuple(y.shape)) == 0:
        return
    flag = xp.all((y == 0) | (y == 1)) & xp.any(y == 0)
    if readable(flag) and bool(flag):
        warn_user(
            f"{fn}: argument 'target' holds labels in {{0, 1}}, but {fn} expects labels in "
            "{-1, +1} (a 0 label is not a negative here). Convert with "
            "xmargin.targets.to_pm1(target).",
            UserWarning,
        )


def warn_if_pm1_labels(fn: str, xp: Any, y: Any) -> None:
    """multilabel_soft_margin_loss given a −1 label: it expects {0, 1}."""
    if not check_values_enabled(y) or numel(tuple(y.shape)) == 0:
        return
    flag = xp.any(y == -1)
    if readable(flag) and bool(flag):
        warn_user(
            f"{fn}: argument 'target' holds the label -1, but {fn} expects labels in {{0, 1}} "
            "(a -1 label is not a negative here). Convert with xmargin.targets.to_01(target).",
            UserWarning,
        )


def check_index_range(fn: str, xp: Any, t: Any, low: int, high: int, what: str) -> bool:
    """Every value of the integer array ``t`` must lie in [low, high); name the first culprit.

    Returns False, without checking, where the values cannot be read (inside ``jax.jit``).
    """
    if numel(tuple(t.shape)) == 0:
        return True
    if xp.isdtype(t.dtype, "unsigned integer"):
        # torch compares unsigned tensors with negative Python ints after wrapping them
        t = xp.astype(t, index_dtype(xp))
    # two reductions and one sync in the common case; the culprit is looked for only on failure
    ok = (xp.min(t) >= low) & (xp.max(t) < high)
    if not readable(ok):  # traced (jit): nothing to read; the caller makes NaN rows instead
        return False
    if bool(ok):
        return True
    bad = (t < low) | (t >= high)
    flat = xp.reshape(bad, (-1,))
    first = int(xp.argmax(xp.astype(flat, xp.int8)))
    pos: list[int] = []
    rest = first
    for size in reversed(tuple(t.shape)):
        pos.append(rest % size)
        rest //= size
    pos.reverse()
    value = int(xp.reshape(t, (-1,))[first])
    where = "[" + ", ".join(str(i) for i in pos) + "]"
    raise XMarginValueError(
        f"{fn}: argument 'target' is out of range: target{where} = {value}, but {what} must lie "
        f"in [{low}, {high})"
    )
