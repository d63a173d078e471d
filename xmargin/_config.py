"""Process-wide and scoped options.

``check_values`` controls the checks that must read array *values* (target ranges, label
conventions). On a GPU each of them costs a device-to-host synchronisation, so a training loop
that has validated its data once can switch them off::

    import xmargin
    xmargin.set_options(check_values=False)          # for the whole process
    with xmargin.options(check_values=False):        # or for a block (thread/async-task local)
        ...

The environment variable ``XMARGIN_CHECK_VALUES=0`` sets the process default. Shape, dtype and
namespace checks are never switched off. Under ``torch.compile`` value checks are skipped (they
would break the graph); validate targets once outside the compiled function. With value checks off, an out-of-range target is not
reported; the affected sample's loss and gradient come out NaN instead (never an out-of-bounds
read and never a silently wrong number).
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["check_values_enabled", "options", "set_options"]


def _env_default() -> bool:
    raw = os.environ.get("XMARGIN_CHECK_VALUES", "1").strip().lower()
    return raw not in ("0", "false", "no", "off")


_GLOBAL = {"check_values": _env_default()}
_SCOPED: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "xmargin_check_values", default=None
)


def _as_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def set_options(*, check_values: bool | None = None) -> None:
    """Set process-wide defaults (see the module docstring).

    >>> import xmargin
    >>> xmargin.set_options(check_values=True)
    """
    if check_values is not None:
        _GLOBAL["check_values"] = _as_bool("check_values", check_values)


@contextmanager
def options(*, check_values: bool) -> Iterator[None]:
    """Scope an option to a ``with`` block; threads and async tasks do not see each other's.

    >>> import numpy as np, xmargin
    >>> with xmargin.options(check_values=False):
    ...     float(xmargin.multi_margin_loss(np.array([[0.0, 1.0]]), np.array([5])))
    nan
    """
    token = _SCOPED.set(_as_bool("check_values", check_values))
    try:
        yield
    finally:
        _SCOPED.reset(token)


def check_values_enabled() -> bool:
    """Whether value checks (which may synchronise a device) are on in this context.

    Always off while torch.compile traces: a check would read values (a graph break).
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.compiler.is_compiling():
        return False
    scoped = _SCOPED.get()
    return _GLOBAL["check_values"] if scoped is None else scoped
