"""Implementations of the pairwise multilabel hinge (DESIGN.md §5) and the choice among them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._errors import XMarginValueError

HingeFn = Callable[..., tuple[Any, Any]]


def _portable() -> HingeFn:
    from .portable import hinge

    return hinge


_KNOWN: dict[str, Callable[[], HingeFn]] = {"portable": _portable}


def resolve(backend: str | None, x: Any) -> HingeFn:
    """The hinge implementation to use for scores ``x``."""
    name = "portable" if backend is None else backend
    if name not in _KNOWN:
        raise XMarginValueError(
            f"multilabel_margin_loss: unknown backend {backend!r}; valid choices: "
            + ", ".join(repr(k) for k in _KNOWN)
        )
    return _KNOWN[name]()
