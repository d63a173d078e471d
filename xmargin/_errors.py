"""Exception types.

Every bad input raises a :class:`ValueError` or :class:`TypeError` (DESIGN.md §4). The two
classes below are also :class:`RuntimeError` subclasses so that code written against
``torch.nn.functional``, which raises ``RuntimeError`` for most of these cases, keeps catching
them when it switches to xmargin.
"""

from __future__ import annotations


class XMarginValueError(ValueError, RuntimeError):
    """A bad shape or value: the message names the argument, the expectation and the value."""


class XMarginTypeError(TypeError, RuntimeError):
    """A bad type or dtype: the message names the argument, the expectation and the value."""
