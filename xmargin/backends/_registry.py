"""The backend registry: what exists, what can run here and on these arrays, and the choice."""

from __future__ import annotations

import contextvars
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._errors import XMarginTypeError, XMarginValueError
from .._interop import array_kind, is_half

HingeFn = Callable[..., tuple[Any, Any]]
Reason = str | None  # None: usable; otherwise why not

_ENV = "XMARGIN_BACKEND"
# os.environ's own mapping, where a membership test costs a dict lookup (os.environ's
# __contains__ goes through __getitem__ and a KeyError; that is a fair share of a small call)
_ENV_DATA: Any = getattr(os.environ, "_data", None)
_ENV_KEY: Any = os.environ.encodekey(_ENV) if hasattr(os.environ, "encodekey") else _ENV
if not isinstance(_ENV_DATA, dict):
    _ENV_DATA, _ENV_KEY = os.environ, _ENV
_SCOPED: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "xmargin_backend", default=None
)


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """A registered implementation of the pairwise hinge.

    ``load()`` returns the hinge function (imported on first use); ``status()`` says whether
    it can run in this process at all (None: yes); ``supports(x)`` whether it can run on scores
    ``x`` (None: yes).
    """

    name: str
    load: Callable[[], HingeFn]
    status: Callable[[], Reason]
    supports: Callable[[Any], Reason]
    description: str = ""
    builtin: bool = False
    half_precision: bool = False  # takes float16/bfloat16 scores as they are
    scales_grad: bool = False  # takes grad_scale=: an (N,) array or a float, folded in the kernel
    # the same kernel on NumPy arrays, for CPU tensors viewed as NumPy without any wrapping
    load_numpy: Callable[[], HingeFn] | None = None
    grad_in_backward: bool = False  # under autograd: loss-only forward, a second (scaled) pass
    # in backward; for kernels bound by memory traffic (see xmargin.adapters.torch)

    def recomputes_grad(self, dtype: Any) -> bool:
        """Under autograd, whether the gradient comes from a second kernel pass in backward
        rather than from forward: the backend's ``grad_in_backward``, and half-precision
        scores on a backend that reads them as they are. A half gradient formed in forward is
        rounded before ``grad_output`` multiplies it (float16 entries under 6e-8 become 0 under
        loss scaling; an unscaled one overflows past 65,504); the second pass folds
        ``grad_output`` in float32 and rounds once, as PyTorch does."""
        return self.grad_in_backward or (self.half_precision and is_half(dtype))

    def reason(self, x: Any = None) -> Reason:
        why = self.status()
        if why is None and x is not None:
            why = self.supports(x)
        return why


def _always(*_: Any) -> Reason:
    return None


def _module_loader(module: str, name: str = "hinge") -> Callable[[], HingeFn]:
    def load() -> HingeFn:
        return getattr(importlib.import_module(module), name)

    return load


_REGISTRY: dict[str, Backend] = {}


def _rule(module: str, name: str) -> Callable[..., Reason]:
    """A backend's own support rule (``status()`` or ``supports(x)`` of its module), the
    module imported on first use; a module that is missing makes the backend unusable."""

    def rule(*args: Any) -> Reason:
        try:
            mod = sys.modules.get(module) or importlib.import_module(module)
        except ImportError as exc:
            return f"not available in this xmargin version ({module}: {exc})"
        return getattr(mod, name)(*args)

    return rule


def _builtin(name: str, description: str, **flags: Any) -> None:
    module = f"xmargin.backends.{name}"
    _REGISTRY[name] = Backend(
        name,
        _module_loader(module),
        _rule(module, "status"),
        _rule(module, "supports"),
        description,
        builtin=True,
        **flags,
    )


# the order of explain(); automatic dispatch has its own order (_AUTO_ORDER)
_builtin(
    "numba",
    "compiled CPU kernel (Numba), O(T·C) or O(C log T) per sample by its own T, float64 "
    "accumulation",
    scales_grad=True,
    load_numpy=_module_loader("xmargin.backends.numba", "hinge_numpy"),
)
_builtin(
    "reference",
    "NumPy CPU kernel, O(C log T) per sample, float64 accumulation",
    load_numpy=_module_loader("xmargin.backends.reference", "hinge_numpy"),
)
_builtin("portable", "pure array-API code, any namespace and device")
# The GPU kernels form the gradient in forward when autograd will need it, as the CPU ones do
# (grad_in_backward=False): measured on an H200 (docs/gpu-notes.md) their time goes to per-row
# setup and per-chunk work, not to bytes (3-15% of copy bandwidth), so a second kernel pass in
# backward cost 1.4-1.7x the loss-only forward, where scaling a kept gradient by grad_output is
# one element-wise pass at copy bandwidth
_builtin(
    "triton",
    "Triton GPU kernels (torch CUDA tensors; CuPy through DLPack)",
    half_precision=True,
    scales_grad=True,
)
_builtin(
    "cupy",
    "CuPy raw-CUDA kernels (CuPy arrays; torch CUDA through DLPack)",
    half_precision=True,
    scales_grad=True,
)


def _flag_invalid_targets(impl: HingeFn) -> HingeFn:
    """A third-party hinge that assumes targets in [-1, C), made to follow the contract for
    any target (a row holding a value outside it gets NaN loss and gradient), in array-API
    code around it."""

    def hinge(x: Any, t: Any, *, margin: float, p: int, weight: Any, want_grad: bool) -> Any:
        from array_api_compat import array_namespace

        xp = array_namespace(x, t)
        c = x.shape[1]
        bad = (t < -1) | (t >= c)
        rows = xp.any(bad, axis=1)
        loss, grad = impl(
            x, xp.where(bad, -1, t), margin=margin, p=p, weight=weight, want_grad=want_grad
        )
        loss = xp.where(rows, xp.nan, loss)
        if grad is not None:
            grad = xp.where(rows[:, None], xp.nan, grad)
        return loss, grad

    return hinge


def register(
    name: str,
    impl: HingeFn,
    *,
    supports: Callable[[Any], Reason] | None = None,
    description: str = "",
    replace: bool = False,
) -> None:
    """Register a third-party implementation of the pairwise hinge under ``name``.

    ``impl(x, t, *, margin, p, weight, want_grad) -> (loss_raw, grad_raw | None)`` follows the
    kernel contract (see the module docstring) for targets in [-1, C); xmargin wraps it so that
    a row holding any other target value gets NaN loss and gradient. ``supports(x)`` returns None when ``impl`` can
    run on scores ``x``, else the reason (default: any array). A registered backend is used only
    when asked for by name (``backend=``, :func:`use_backend`, ``XMARGIN_BACKEND``).

    >>> import xmargin
    >>> from xmargin.backends import portable
    >>> xmargin.backends.register("mine", portable.hinge)
    >>> "mine" in xmargin.backends.available()
    True
    >>> xmargin.backends.unregister("mine")
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise XMarginValueError(
            f"register: argument 'name' must be an identifier string, got {name!r}"
        )
    if not callable(impl):
        raise XMarginTypeError(
            f"register: argument 'impl' must be callable (the hinge kernel), got {impl!r}"
        )
    existing = _REGISTRY.get(name)
    if existing is not None and (existing.builtin or not replace):
        why = "a built-in backend" if existing.builtin else "taken (pass replace=True)"
        raise XMarginValueError(f"register: backend name {name!r} is {why}")
    flagged = _flag_invalid_targets(impl)
    _REGISTRY[name] = Backend(
        name, lambda: flagged, _always, supports or _always, description or "registered"
    )
    _AUTO_CACHE.clear()


def unregister(name: str) -> None:
    """Remove a backend added with :func:`register`."""
    existing = _REGISTRY.get(name)
    if existing is None or existing.builtin:
        raise XMarginValueError(f"unregister: {name!r} is not a registered third-party backend")
    del _REGISTRY[name]


def check_backend_name(fn: str, name: Any) -> None:
    """``name`` must be None (automatic dispatch) or a known backend's name (checked when a
    loss object is built; whether it can run on the arrays is checked at the call)."""
    if name is None:
        return
    if not isinstance(name, str) or name not in _REGISTRY:
        raise XMarginValueError(
            f"{fn}: argument 'backend' must be None (automatic) or one of "
            f"{', '.join(map(repr, _REGISTRY))}, got {name!r}"
        )


def get(name: str) -> Backend:
    """The :class:`Backend` called ``name`` (ValueError listing the known names if none)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise XMarginValueError(
            f"unknown backend {name!r}; known backends: {', '.join(map(repr, _REGISTRY))}"
        ) from None


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------
class BackendStatus(NamedTuple):
    name: str
    usable: bool
    reason: str
    description: str


class Explanation(list):
    """A list of :class:`BackendStatus`, printed as a table."""

    def __str__(self) -> str:
        rows = [
            ("backend", "usable", "why / what"),
            *((s.name, "yes" if s.usable else "no", s.reason) for s in self),
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)


def explain(x: Any = None) -> Explanation:
    """Every known backend, whether it is usable (on scores ``x``, if given) and why (not).

    >>> import xmargin
    >>> print(xmargin.backends.explain())  # doctest: +SKIP
    backend    usable  why / what
    reference  yes     NumPy CPU kernel, O(C log T) per sample, float64 accumulation
    portable   yes     pure array-API code, any namespace and device
    triton     no      triton is not installed (pip install 'xmargin[triton]')
    cupy       no      cupy is not installed (pip install 'xmargin[cuda12]')
    """
    out = Explanation()
    for b in _REGISTRY.values():
        why = b.reason(x)
        out.append(BackendStatus(b.name, why is None, why or b.description, b.description))
    return out


def available(x: Any = None) -> list[str]:
    """Names of the backends usable in this process (and on scores ``x``, if given)."""
    return [b.name for b in _REGISTRY.values() if b.reason(x) is None]


# --------------------------------------------------------------------------------------------
# choosing
# --------------------------------------------------------------------------------------------
@contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Use backend ``name`` for the hinge inside this block (None: automatic dispatch).

    Scoped with contextvars: threads and async tasks do not see each other's choice. A
    ``backend=`` argument on a call still wins.

    >>> import numpy as np, xmargin
    >>> with xmargin.use_backend("portable"):
    ...     round(float(xmargin.multilabel_margin_loss(np.array([[0.1, 0.2, 0.4, 0.8]]),
    ...                                                np.array([[3, 0, -1, 1]]))), 6)
    0.85
    """
    if name is not None:
        get(name)  # unknown names fail here, not at the first call
    token = _SCOPED.set(name)
    try:
        yield
    finally:
        _SCOPED.reset(token)


_AUTO_CACHE: dict[tuple[type, str], str] = {}

_AUTO_ORDER = {
    ("torch", "cuda"): ("triton", "cupy", "portable"),
    ("cupy", "cuda"): ("cupy", "triton", "portable"),
    ("numpy", "cpu"): ("numba", "reference"),
    ("torch", "cpu"): ("numba", "reference", "portable"),
}


def _automatic(x: Any) -> str:
    kind = array_kind(x)
    key = (type(x), kind[1])
    name = _AUTO_CACHE.get(key)
    if name is None:
        for candidate in _AUTO_ORDER.get(kind, ("portable",)):
            if _REGISTRY[candidate].reason(x) is None:
                name = candidate
                break
        else:
            name = "portable"
        _AUTO_CACHE[key] = name
    return name


def _nothing_requested(backend: str | None) -> bool:
    """No backend named on the call, by :func:`use_backend` or in the environment."""
    return backend is None and _SCOPED.get() is None and _ENV_KEY not in _ENV_DATA


def numba_serves(backend: str | None, x: Any) -> bool:
    """Whether the numba backend computes the hinge for ``x``, a torch CPU tensor (the torch
    fast path's question, answered from the cache of automatic choices when nothing is
    requested); a bad explicit request raises as in :func:`resolve`."""
    if _nothing_requested(backend):
        name = _AUTO_CACHE.get((type(x), "cpu"))
        return (name or _automatic(x)) == "numba"
    if backend == "numba" and _REGISTRY["numba"].reason(x) is None:
        return True  # (an explicit request the numba backend can serve: no message to build)
    return resolve(backend, x).name == "numba"


def choice(backend: str | None) -> tuple[str | None, str]:
    """The explicitly requested backend name, if any, and where the request came from."""
    if backend is not None:
        return backend, "backend="
    scoped = _SCOPED.get()
    if scoped is not None:
        return scoped, "use_backend()"
    env = os.environ.get(_ENV, "").strip()
    if env:
        return env, f"the {_ENV} environment variable"
    return None, "automatic dispatch"


def resolve(backend: str | None, x: Any, fn: str = "multilabel_margin_loss") -> Backend:
    """The backend for scores ``x``, honouring ``backend``, :func:`use_backend` and
    ``XMARGIN_BACKEND`` in that order, else automatic dispatch."""
    if _nothing_requested(backend):
        return _REGISTRY[_automatic(x)]  # the common case, without building a message
    name, source = choice(backend)
    if name is None:
        return _REGISTRY[_automatic(x)]
    if not isinstance(name, str) or name not in _REGISTRY:
        raise XMarginValueError(
            f"{fn}: unknown backend {name!r} (from {source}); valid choices: "
            f"{', '.join(map(repr, _REGISTRY))}"
        )
    why = _REGISTRY[name].reason(x)
    if why is not None:
        usable = available(x)
        raise XMarginValueError(
            f"{fn}: backend {name!r} (from {source}) cannot run here: {why}. Valid choices "
            f"for these arrays: {', '.join(map(repr, usable))}"
        )
    return _REGISTRY[name]
