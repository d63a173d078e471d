"""Frameworks already imported by the caller, looked up without importing them."""

from __future__ import annotations

import sys
from typing import Any

_SEEN: dict[str, Any] = {}


def loaded(name: str) -> Any:
    """``sys.modules[name]`` if that module is imported, else None; cached once found.

    The cache is what ``torch.compile`` traces: a lookup in this small dict, not in
    ``sys.modules``, which another thread may change while Dynamo iterates it ("dictionary
    changed size during iteration")."""
    module = _SEEN.get(name)
    if module is None:
        module = sys.modules.get(name)
        if module is not None:
            _SEEN[name] = module
    return module
