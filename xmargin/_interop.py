"""Interop, in one place: what an array is (framework, device), conversions between
frameworks' arrays (zero-copy through DLPack or the frameworks' own views: NumPy views of host
arrays, torch views of CuPy arrays), the byte order NumPy kernels need, and the accumulation
dtype of a computation (the loss layer's and every GPU launcher's).

Detection never imports a framework: a framework the caller has not imported cannot have
produced the array (``xmargin._loaded``). array-api-compat's ``is_*_array`` serve where their
cost does not matter; the checks on the hot paths (``is_torch``) are the cheapest forms that
``torch.compile`` also traces.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, is_torch_array

from ._loaded import loaded

Namespace = Any


# --------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------
def is_torch(a: Any) -> bool:
    """A torch tensor? (without importing torch, and cheap for torch.compile to trace)"""
    torch = loaded("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def is_jax(a: Any) -> bool:
    """A JAX array or tracer? (without importing jax)"""
    jax = loaded("jax")
    return jax is not None and isinstance(a, jax.Array)


def is_dask(a: Any) -> bool:
    """A Dask array? (without importing dask)"""
    da = loaded("dask.array")
    return da is not None and isinstance(a, da.Array)


def namespace(a: Any) -> Namespace:
    """``array_namespace(a)``, with a fast path for torch tensors (traceable by torch.compile)."""
    if is_torch(a):  # the common case under torch.compile: skip array_namespace's lookups
        from array_api_compat import torch as torch_namespace

        return torch_namespace
    return array_namespace(a)


def array_kind(x: Any) -> tuple[str, str]:
    """(framework, device type) of an array, e.g. ("torch", "cuda"), ("numpy", "cpu")."""
    mod = type(x).__module__.split(".")[0]
    if mod == "numpy":
        return "numpy", "cpu"
    if mod == "torch" and "torch" in sys.modules:
        return "torch", x.device.type
    if mod == "cupy" and "cupy" in sys.modules:
        return "cupy", "cuda"
    if mod in ("jax", "jaxlib"):
        return "jax", "any"
    if mod == "dask":
        return "dask", "any"
    if mod == "array_api_strict":
        return "array_api_strict", "cpu"
    return mod, "unknown"


# --------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------
def native(a: Any) -> Any:
    """A NumPy array in the machine's byte order (a copy only for a byte-swapped array such as
    ``'>f8'`` on a little-endian machine); anything else as it is. Dtype rules compare dtypes
    with ``==``, which a byte-swapped float64 fails, and DLPack refuses byte-swapped arrays."""
    dt = getattr(a, "dtype", None)
    if (
        dt is None
        or getattr(dt, "byteorder", "=") in "=|"
        or type(a).__module__.split(".")[0] != "numpy"
    ):
        return a
    return a.astype(dt.newbyteorder("="))


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy view of a CPU array (no copy). torch tensors are detached first."""
    if is_numpy_array(a):
        return np.asarray(a)
    if is_torch_array(a):
        a = a.detach()
        if a.is_conj() or a.is_neg():  # lazy bits NumPy cannot carry
            a = a.resolve_conj().resolve_neg()
        if a.device.type == "cpu":
            return a.numpy()  # the same zero-copy view as DLPack, in a fraction of its time
    return np.from_dlpack(a)


def from_numpy_like(arr: np.ndarray, like: Any) -> Any:
    """``arr`` as an array of ``like``'s namespace (zero-copy for torch and other DLPack
    consumers on the CPU)."""
    if is_numpy_array(like):
        return arr
    if is_torch_array(like):
        import torch  # already imported: `like` is a torch tensor

        return torch.from_numpy(arr)
    return array_namespace(like).from_dlpack(arr)


def as_torch(a: Any) -> Any:
    """A torch tensor as it is; a CuPy array (any DLPack producer) as a zero-copy torch view
    on its device."""
    if is_torch(a):
        return a
    import torch

    return torch.from_dlpack(a)


def on_host_arrays(hinge_numpy: Any, x: Any, t: Any, **kw: Any) -> tuple[Any, Any | None]:
    """A NumPy kernel of the hinge contract called on CPU arrays of any framework: its array
    arguments (``x``, ``t``, and ``weight``/``neg_weight``/``grad_scale`` when they are
    arrays) as zero-copy NumPy views, its results back in ``x``'s namespace."""
    for name in ("weight", "neg_weight", "grad_scale"):
        if kw.get(name) is not None and np.ndim(kw[name]) > 0:
            kw[name] = to_numpy(kw[name])
    loss, grad = hinge_numpy(to_numpy(x), to_numpy(t), **kw)
    return from_numpy_like(loss, x), None if grad is None else from_numpy_like(grad, x)


# --------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------
def compute_dtype(xp: Namespace, dtype: Any) -> Any:
    """float64 stays float64; float32, float16 and bfloat16 compute in float32."""
    return xp.float64 if dtype == xp.float64 else xp.float32


def is_half(dtype: Any) -> bool:
    """float16 or bfloat16, in any framework (by the dtype's name)."""
    return str(dtype).rsplit(".", 1)[-1] in ("float16", "bfloat16")
