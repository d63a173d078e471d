"""What a backend needs from this process, found without importing frameworks: a package
installed and recent enough, a CUDA device. Each backend's own support rules (its module's
``status()`` and ``supports(x)``) are built from these."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import itertools
import os
import sys

Reason = str | None  # None: usable; otherwise why not


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_DEVICE_REASON: list[Reason] = []


def cuda_device_reason(probe: bool = False) -> Reason:
    """None when a CUDA device is visible, else why not.

    Asks torch or CuPy only if already imported (or ``probe=True``, as ``python -m xmargin
    info`` does); otherwise looks for the NVIDIA driver's device list.
    """
    if _DEVICE_REASON:
        return _DEVICE_REASON[0]
    seen: list[str] = []  # what each framework said
    if "torch" in sys.modules or (probe and installed("torch")):
        torch = importlib.import_module("torch")
        if torch.cuda.is_available():
            _DEVICE_REASON.append(None)
            return None
        seen.append("torch.cuda.is_available() is False")
    if "cupy" in sys.modules or (probe and installed("cupy")):
        try:
            cupy = importlib.import_module("cupy")
            if cupy.cuda.runtime.getDeviceCount() > 0:
                _DEVICE_REASON.append(None)
                return None
            seen.append("CuPy sees 0 devices")
        except Exception as exc:  # CuPy without a driver raises here
            seen.append(f"CuPy: {type(exc).__name__}: {str(exc).split(':')[0]}")
    if seen:
        reason = f"no CUDA device ({'; '.join(seen)})"
        _DEVICE_REASON.append(reason)  # a framework answered: definitive
        return reason
    gpus = "/proc/driver/nvidia/gpus"
    if os.path.isdir(gpus) and os.listdir(gpus):
        return None
    return "no CUDA device (no NVIDIA driver found)"


# the kernels use tl.gather and masked tl.histogram (Triton 3.4); compiled, they ran on an H200
# with Triton 3.6
MIN_VERSIONS = {"triton": (3, 4)}
# Triton's CPU interpreter (TRITON_INTERPRET=1): 3.6's cannot take a loop bound computed in the
# kernel ("only 0-dimensional arrays can be converted to Python scalars"); 3.9's can (versions
# between are untested)
INTERPRETER_MIN_VERSIONS = {"triton": (3, 9)}


@functools.cache
def installed_version(package: str) -> str | None:
    """``package``'s version from its metadata, read once per process: reading it parses the
    METADATA file (a few hundred µs), and the registry asks on every call (seen on an H200:
    a Triton forward at (4096, 4096, 64) took 619 µs of wall time for 239 µs of kernels)."""
    import importlib.metadata  # 50 ms to import: only when a GPU backend is asked about

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def older_than(package: str, minimum: tuple[int, ...] | None) -> str | None:
    """Why the installed ``package`` is too old (from its metadata; nothing is imported)."""
    if minimum is None:
        return None
    installed = installed_version(package)
    if installed is None:
        return None  # importable without metadata (a source build): let it try
    parts = []
    for piece in installed.split(".")[: len(minimum)]:
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        parts.append(int(digits or 0))
    if tuple(parts) < minimum:
        need = ".".join(map(str, minimum))
        return f"{package} {installed} is too old, xmargin needs {package}>={need}"
    return None


def gpu_status(package: str, extra: str, interpreter: bool = False) -> Reason:
    """Why a GPU backend built on ``package`` cannot run here (None: it can): not installed,
    too old, or no CUDA device (``interpreter``: Triton's CPU interpreter, when
    ``TRITON_INTERPRET=1``, needs none)."""
    if not installed(package):
        return f"{package} is not installed (pip install 'xmargin[{extra}]')"
    too_old = older_than(package, MIN_VERSIONS.get(package))
    if too_old:
        return too_old
    if interpreter and os.environ.get("TRITON_INTERPRET") == "1":
        # the interpreter runs kernels on the CPU
        too_old = older_than(package, INTERPRETER_MIN_VERSIONS.get(package))
        return None if too_old is None else f"{too_old} under TRITON_INTERPRET=1"
    why = cuda_device_reason()
    if why is not None and interpreter:
        why += "; set TRITON_INTERPRET=1 to run the Triton kernels on the CPU"
    return why
