"""Process-wide and scoped options.

``check_values`` controls the checks that must read array *values* (target ranges, label
conventions). On a GPU each of them costs a device-to-host synchronisation, so a training loop
that has validated its data once can switch them off::

    import xmargin
    xmargin.set_options(check_values=False)          # for the whole process
    with xmargin.options(check_values=False):        # or for a block (thread/async-task local)
        ...

The environment variable ``XMARGIN_CHECK_VALUES=0`` sets the process default. Shape, dtype and
namespace checks are never switched off. Value checks are skipped where values cannot be read
without breaking the computation: under ``torch.compile`` (a graph break), inside torch.func
transforms (``grad``, ``vmap``, ``jvp``, ``jacrev``: a batched tensor has no single value), for
JAX tracers (inside ``jit``, ``grad``, ``vmap``) and for Dask arrays (a ``compute()``); validate targets
once outside, eagerly. There, as with checks off, an out-of-range target is not reported: the
affected sample's loss and gradient come out NaN instead (never an out-of-bounds read and never
a silently wrong number).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ._loaded import loaded

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


def _unreadable(a: object) -> bool:
    """Values that cannot be read now: a JAX tracer (jit, grad, vmap) or a lazy Dask array."""
    mod = type(a).__module__.split(".")[0]
    if mod == "dask":
        return True
    if mod in ("jax", "jaxlib"):
        jax = loaded("jax")
        return jax is not None and isinstance(a, jax.core.Tracer)
    return False


def readable(a: object) -> bool:
    """Whether ``a``'s value can be read now (not a JAX tracer, not a lazy Dask array). Inside
    ``jax.jit`` even arithmetic on concrete arrays gives tracers, so checks test the flag they
    computed, not only their inputs."""
    return not _unreadable(a)


def functorch_active() -> bool:
    """True inside a torch.func transform (``grad``, ``vmap``, ``jvp``, ``jacrev``, ...): values
    of batched tensors cannot be read there (``bool()`` of a vmapped tensor fails)."""
    torch = loaded("torch")
    return torch is not None and torch._C._functorch.peek_interpreter_stack() is not None


def check_values_enabled(*arrays: object) -> bool:
    """Whether value checks (which may synchronise a device) are on in this context, for
    these arrays.

    Always off while torch.compile traces, inside torch.func transforms, and for JAX tracers
    and Dask arrays: a check would read values (a graph break, a batched ``bool()``, a
    ConcretizationTypeError, a compute()). Invalid targets then give NaN rows (loss and
    gradient), as with checks switched off.
    """
    torch = loaded("torch")
    if torch is not None and (torch.compiler.is_compiling() or functorch_active()):
        return False
    if any(_unreadable(a) for a in arrays):
        return False
    scoped = _SCOPED.get()
    return _GLOBAL["check_values"] if scoped is None else scoped
