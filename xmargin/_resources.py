"""Where the device code of ``kernels/`` lives: inside an installed package
(``xmargin/_kernels``, put there by the wheel build) or at the top of a source checkout."""

from __future__ import annotations

import functools
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)  # looked up on every GPU launch; the install does not move
def kernels_dir() -> Path:
    """The ``kernels/`` folder (Triton and CUDA sources) that this xmargin should use.

    >>> (kernels_dir() / "cuda").is_dir()
    True
    """
    for candidate in (_PACKAGE / "_kernels", _PACKAGE.parent / "kernels"):
        if (candidate / "README.md").is_file():
            return candidate
    raise FileNotFoundError(
        "xmargin: the kernels/ folder is missing; expected it at "
        f"{_PACKAGE / '_kernels'} (installed) or {_PACKAGE.parent / 'kernels'} (source checkout). "
        "Reinstall xmargin."
    )
