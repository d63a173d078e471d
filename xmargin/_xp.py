"""Array-namespace plumbing shared by the losses: namespaces, devices, dtypes, shapes, reductions.

Pure array-API code (``xp`` from ``array_namespace``); nothing here imports a framework.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import types
import warnings
from typing import Any

from array_api_compat import array_namespace, is_array_api_obj
from array_api_compat import device as _device

from ._errors import XMarginTypeError, XMarginValueError
from ._interop import is_torch, namespace, native
from ._loaded import loaded

Array = Any
Namespace = Any

REDUCTIONS = ("none", "mean", "sum")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn, attributing the warning to the first caller outside xmargin."""
    level, frame = 1, sys._getframe(1)
    here: types.FrameType | None = frame
    while here is not None and os.path.abspath(here.f_code.co_filename).startswith(_PACKAGE_DIR):
        level, here = level + 1, here.f_back
    warnings.warn(message, category, stacklevel=level + 1)


# --------------------------------------------------------------------------------------------
# arguments that are not arrays
# --------------------------------------------------------------------------------------------
def resolve_reduction(
    fn: str, size_average: Any, reduce: Any, reduction: Any, *, elementwise_mean: bool = True
) -> str:
    """PyTorch's rules and warnings: legacy ``size_average``/``reduce`` win over ``reduction``
    (a ``UserWarning``, PyTorch's text), ``reduction="elementwise_mean"`` means ``"mean"`` (a
    ``UserWarning``) except where PyTorch refuses it (``elementwise_mean=False``)."""
    if size_average is not None or reduce is not None:
        sa = True if size_average is None else bool(size_average)
        rd = True if reduce is None else bool(reduce)
        reduction = "mean" if (sa and rd) else ("sum" if rd else "none")
        warn_user(
            f"size_average and reduce args will be deprecated, please use "
            f"reduction='{reduction}' instead.",
            UserWarning,
        )
        return reduction
    if reduction == "elementwise_mean" and elementwise_mean:
        warn_user(
            "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
            UserWarning,
        )
        return "mean"
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise XMarginValueError(
            f"{fn}: {reduction} is not a valid value for reduction; argument 'reduction' must be "
            f"one of 'none', 'mean', 'sum', got {reduction!r}"
        )
    return reduction


def check_real(fn: str, name: str, value: Any) -> float:
    """A Python-level real number (margin): bools and arrays are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise XMarginTypeError(
            f"{fn}: argument '{name}' must be a real number (float), got {type(value).__name__} "
            f"{value!r}"
        )
    value = float(value)
    if value != value:  # NaN (math.isnan is not traceable by torch.compile with dynamic=True)
        # a NaN margin makes every hinge NaN, or 0 where a kernel compares against it
        raise XMarginValueError(f"{fn}: argument '{name}' must be a number, got nan")
    return value


def check_p(fn: str, p: Any) -> int:
    if isinstance(p, numbers.Real) and not isinstance(p, bool) and p in (1, 2):
        return 1 if p == 1 else 2
    if isinstance(p, bool) and p:  # PyTorch accepts p=True as 1
        return 1
    raise XMarginValueError(
        f"{fn}: only p == 1 and p == 2 supported; argument 'p' must be 1 (hinge) or 2 "
        f"(squared hinge), got {p!r}"
    )


# --------------------------------------------------------------------------------------------
# namespaces and devices
# --------------------------------------------------------------------------------------------
def _type_name(a: Any) -> str:
    t = type(a)
    return f"{t.__module__}.{t.__qualname__}"


def _device_of(a: Any) -> Any:
    return a.device if is_torch(a) else _device(a)


def namespace_of(fn: str, name: str, a: Any) -> Namespace:
    if is_torch(a):
        return namespace(a)
    if not is_array_api_obj(a):
        raise XMarginTypeError(
            f"{fn}: argument '{name}' must be an array (NumPy, PyTorch, CuPy, JAX, Dask or any "
            f"array-API array), got {_type_name(a)}"
        )
    return array_namespace(a)


def _on_host(a: Any) -> bool:
    """Whether ``a``'s memory is ordinary host memory (a CPU array of any framework)."""
    if is_torch(a):
        return a.device.type == "cpu"
    mod = type(a).__module__.split(".")[0]
    if mod in ("numpy", "array_api_strict"):
        return True
    if mod in ("jax", "jaxlib"):
        try:
            return all(d.platform == "cpu" for d in a.devices())
        except Exception:  # a tracer: no memory yet
            return False
    return str(_device(a)).lower().startswith("cpu")


def _convert(fn: str, xp: Namespace, ref_name: str, ref: Array, name: str, a: Any) -> Array:
    """``a`` (another framework's array) as an array of ``ref``'s namespace and device.

    Zero-copy through DLPack when both live in host memory or on the same device; a host
    array going to ``ref``'s device is copied there (targets and weights are small next to the
    scores). Anything else, a device-to-host or device-to-device move, is refused: the scores
    decide where the computation happens and xmargin does not move data off a device.
    """
    dev = _device_of(ref)
    what = f"{_type_name(a)} on {_device_of(a) if is_array_api_obj(a) else '?'}"
    if type(a).__module__.split(".")[0] == "dask":
        raise XMarginTypeError(
            f"{fn}: argument '{name}' is a lazy Dask array but '{ref_name}' is a "
            f"{_type_name(ref)}; compute() it first, or pass Dask arrays for both"
        )
    if is_torch(a) and a.requires_grad:
        # converting would detach it: the gradient the caller asked for could never reach it
        raise XMarginTypeError(
            f"{fn}: argument '{name}' is a torch tensor that requires grad, but '{ref_name}' is "
            f"a {_type_name(ref)}, so the result would be a {_type_name(ref)} and no gradient "
            f"could reach '{name}'; pass torch tensors for both, or '{name}'.detach() it"
        )
    if _on_host(a):
        import numpy as np

        host = np.asarray(a) if type(a).__module__.split(".")[0] == "numpy" else np.from_dlpack(a)
        if _on_host(ref):
            try:
                out = xp.from_dlpack(host)  # zero-copy between host frameworks
            except Exception:
                out = xp.asarray(host)
            return out if _device_of(out) == dev else xp.asarray(out, device=dev)
        return xp.asarray(host, device=dev)  # the documented host-to-device copy
    try:
        out = xp.from_dlpack(a)  # same device: zero-copy
    except Exception as exc:
        raise XMarginValueError(
            f"{fn}: argument '{name}' is a {what} and cannot be used with '{ref_name}' "
            f"({_type_name(ref)} on {dev}): xmargin does not move data off a device; move "
            f"'{name}' to {dev} first ({type(exc).__name__}: {exc})"
        ) from None
    if _device_of(out) != dev:
        raise XMarginValueError(
            f"{fn}: argument '{name}' is a {what} but '{ref_name}' is on {dev}; move '{name}' "
            f"to {dev} first (xmargin does not move data between devices)"
        )
    return out


def _list_to_array(fn: str, name: str, a: Any, convert: Any) -> Array:
    try:
        return convert(a)
    except Exception as exc:  # ragged lists, mixed types
        hint = ""
        if isinstance(a, (list, tuple)) and any(isinstance(r, (list, tuple)) for r in a):
            hint = " (rows of different lengths? xmargin.targets.pad(rows) pads them with -1)"
        raise XMarginTypeError(
            f"{fn}: argument '{name}' could not be converted to an array{hint}: {exc}"
        ) from exc


def as_array(fn: str, name: str, a: Any) -> Array:
    """``a`` if it is an array of any framework; a Python number or (nested) list as a NumPy
    array (Python ints as int64: nothing is narrowed before it is checked)."""
    if is_torch(a) or is_array_api_obj(a):
        return a
    if isinstance(a, (numbers.Number, list, tuple)):
        import numpy as np

        return _list_to_array(fn, name, a, np.asarray)
    raise XMarginTypeError(
        f"{fn}: argument '{name}' must be an array (of any framework), a number or a list, "
        f"got {_type_name(a)}"
    )


def same_namespace(
    fn: str, xp: Namespace, ref_name: str, ref: Array, name: str, a: Any, dtype: Any = None
) -> Array:
    """Return ``a`` as an array of ``ref``'s namespace and device, or raise a clear error.

    The scores (``ref``) decide the namespace and device and are never moved. Python scalars
    and (nested) lists are converted to ``ref``'s namespace and device; arrays of another
    framework are converted by :func:`_convert` (zero-copy through DLPack, or a host-to-device
    copy of a small host array). An array of ``ref``'s own framework on another device is an
    error, as in PyTorch.
    """
    dev = _device_of(ref)
    if not (is_torch(a) or is_array_api_obj(a)):
        if isinstance(a, (numbers.Number, list, tuple)):
            return _list_to_array(fn, name, a, lambda v: xp.asarray(v, dtype=dtype, device=dev))
        raise XMarginTypeError(
            f"{fn}: argument '{name}' must be an array (of any framework), a number or a list, "
            f"got {_type_name(a)}"
        )
    a = native(a)
    try:
        xp_a = namespace(a)
    except TypeError as exc:
        raise XMarginTypeError(f"{fn}: argument '{name}': {exc}") from exc
    if xp_a is not xp:
        return _convert(fn, xp, ref_name, ref, name, a)
    dev_a = _device_of(a)
    # a JAX tracer has no device (None): jit places the computation, nothing to check
    if dev_a is not None and dev is not None and dev_a != dev:
        raise XMarginValueError(
            f"{fn}: argument '{name}' is on device {dev_a} but '{ref_name}' is on device {dev}; "
            f"move '{name}' to {dev} first (xmargin does not move data implicitly)"
        )
    return a


def compiling() -> bool:
    """True while torch.compile traces the code (value checks and Python-side state such as
    context variables are off limits then)."""
    torch = loaded("torch")
    return torch is not None and torch.compiler.is_compiling()


def on_host(a: Array) -> bool:
    """A NumPy array, or a torch CPU tensor outside ``torch.compile`` and ``torch.func``: its
    values can be read (or viewed as NumPy) without a device sync or breaking a trace."""
    if is_torch(a):
        from ._config import functorch_active

        return a.device.type == "cpu" and not compiling() and not functorch_active()
    return type(a).__module__.split(".")[0] == "numpy"


def device(a: Array) -> Any:
    return _device_of(a)


def requires_grad(a: Array) -> bool:
    """True for a torch tensor that autograd is tracking in this context."""
    if not is_torch(a) or not a.requires_grad:
        return False
    import torch  # already imported: `a` is a torch tensor

    return torch.is_grad_enabled()


def detach(a: Array) -> Array:
    return a.detach() if is_torch(a) else a


# --------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------
def check_float(fn: str, name: str, xp: Namespace, a: Array) -> None:
    if not xp.isdtype(a.dtype, "real floating"):
        raise XMarginTypeError(
            f"{fn}: argument '{name}' must have a real floating-point dtype (float16, bfloat16, "
            f"float32 or float64), got dtype {a.dtype}"
        )


def check_real_dtype(fn: str, name: str, xp: Namespace, a: Array) -> None:
    if not (xp.isdtype(a.dtype, ("real floating", "integral")) or a.dtype == xp.bool):
        raise XMarginTypeError(
            f"{fn}: argument '{name}' must have a real (integer, boolean or floating) dtype, "
            f"got dtype {a.dtype}"
        )


_TORCH_SCALAR_NAMES = {
    "float16": "Half",
    "bfloat16": "BFloat16",
    "float32": "Float",
    "float64": "Double",
    "bool": "Bool",
    "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
}


def check_integer(fn: str, name: str, xp: Namespace, a: Array, what: str) -> None:
    if not xp.isdtype(a.dtype, "integral"):
        short = str(a.dtype).rsplit(".", 1)[-1]
        raise XMarginTypeError(
            f"{fn}: argument '{name}' must have an integer dtype ({what}), got dtype {a.dtype}; "
            "convert it with astype, e.g. to int64 (expected scalar type Long but found "
            f"{_TORCH_SCALAR_NAMES.get(short, short)})"
        )


def index_dtype(xp: Namespace) -> Any:
    """The namespace's default index dtype: int64, or int32 where 64-bit integers are off
    (JAX without ``jax_enable_x64``)."""
    try:
        return xp.__array_namespace_info__().default_dtypes()["indexing"]
    except Exception:  # older namespaces without the inspection API
        return xp.int64


def astype(xp: Namespace, a: Array, dtype: Any) -> Array:
    return a if a.dtype == dtype else xp.astype(a, dtype)


# --------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------
def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """The broadcast shape of ``shapes``, or None when they do not broadcast.

    Plain loops over Python ints: torch.compile(fullgraph=True) traces them (it does not trace
    ``max(generator, default=...)``)."""
    ndim = 0
    for s in shapes:
        ndim = len(s) if len(s) > ndim else ndim
    out = []
    for axis in range(-ndim, 0):
        size = 1
        for s in shapes:
            if len(s) >= -axis and s[axis] != 1:
                if size != 1 and size != s[axis]:
                    return None
                size = s[axis]
        out.append(size)
    return tuple(out)


def check_broadcasts_to(fn: str, name: str, shape: tuple, to: tuple) -> None:
    """``name``'s shape must broadcast to ``to`` without growing it."""
    if broadcast_shapes(shape, to) == tuple(to):
        return
    bad = [d for d, e in zip(shape[::-1], to[::-1], strict=False) if d not in (1, e)] or [shape[0]]
    raise XMarginValueError(
        f"{fn}: argument '{name}' of shape {shape_str(shape)} must broadcast to input's shape "
        f"{shape_str(to)} (Attempting to broadcast a dimension of length {bad[0]})"
    )


def shape_str(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def expand_to(xp: Namespace, a: Array, shape: tuple[int, ...]) -> Array:
    """``a`` broadcast to ``shape`` as a new, writable array (``broadcast_to`` gives read-only
    views in NumPy), or ``a`` itself when it has that shape already."""
    if tuple(a.shape) == tuple(shape):
        return a
    return a + xp.zeros(shape, dtype=a.dtype, device=_device_of(a))


def sum_to_shape(xp: Namespace, g: Array, shape: tuple[int, ...]) -> Array:
    """Sum a broadcast gradient back to the shape of the argument it belongs to."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = xp.sum(g, axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = xp.sum(g, axis=axes, keepdims=True)
    return xp.reshape(g, shape)


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# --------------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------------
def apply_reduction(
    xp: Namespace, loss: Array, reduction: str, *, divisor: int = 1, eager: bool = False
) -> Array:
    """PyTorch's reduction of ``loss`` over all its elements: the one place the rule is written
    (the row-wise losses' 1/C and the compiled fast paths' reductions call it too).

    ``"none"``: ``loss``; ``"sum"``: its sum (0 for no elements); ``"mean"``: :func:`mean`, NaN
    for no elements (PyTorch CPU returns uninitialised memory for some losses) and finite
    wherever the true mean is. ``divisor`` (C for the row-wise losses) divides the result. The
    result stays connected to autograd graphs.

    ``eager``: ``loss`` is an eager NumPy array or CPU tensor whose values may be read (the
    compiled fast paths): array methods only, ``xp`` unused (None), a mean's overflow handled
    by a branch on the sum's value.
    """
    if reduction == "none":
        return loss if divisor == 1 else loss / divisor
    if reduction == "sum":
        total = loss.sum() if eager else xp.sum(loss)
        return total if divisor == 1 else total / divisor
    if eager:  # (the compiled fast paths: one call fewer)
        return _mean(xp, loss, None, divisor, True)
    return mean(xp, loss, divisor=divisor)


def mean(
    xp: Namespace, a: Array, axis: int | None = None, *, divisor: int = 1, eager: bool = False
) -> Array:
    """The mean of ``a`` (over ``axis``, or all of it) divided by ``divisor``, NaN for zero
    elements, and finite whenever the true mean is: where the plain sum overflows (1.7e308 +
    1.7e308 in float64, 3e38 + 3e38 in float32) the values are divided first. Otherwise it is
    PyTorch's ``sum / count``, bit for bit.

    Where values may be read (``eager``, or a NumPy array over all its elements) that is one
    sum and a branch, ``sum / (count · divisor)``; elsewhere (no host sync) both sums are
    formed, ``where`` picks, and the mean is then divided by ``divisor``.
    """
    if not eager and type(a).__module__.split(".")[0] == "numpy":
        import numpy as np

        with np.errstate(over="ignore"):  # the overflowing sum is the one not taken
            return _mean(np, a, axis, divisor, eager=axis is None)
    return _mean(xp, a, axis, divisor, eager)


def _mean(xp: Namespace, a: Array, axis: int | None, divisor: int, eager: bool) -> Array:
    count = math.prod(a.shape) if axis is None else a.shape[axis]
    total = a.sum() if eager else xp.sum(a, axis=axis)
    if not count:
        return total * math.nan
    if eager:
        if not math.isinf(total):
            return total / (count * divisor)
        scaled = (a / count).sum()
        out = scaled if math.isfinite(scaled) else total / count
    else:
        scaled = xp.sum(a / count, axis=axis)
        out = xp.where(xp.isinf(total) & xp.isfinite(scaled), scaled, total / count)
    return out if divisor == 1 else out / divisor


def reduction_scale(reduction: str, count: int) -> float:
    """d reduce(loss) / d loss_i for the linear reductions ('none' means the sum)."""
    if reduction == "mean":
        return 1.0 / count if count else math.nan
    return 1.0
