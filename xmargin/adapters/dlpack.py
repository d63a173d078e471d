"""Zero-copy views between NumPy and other frameworks' CPU arrays, through DLPack.

Used by the NumPy ``reference`` backend to read torch CPU tensors (and any CPU array that
speaks DLPack) without copying, and to hand its results back in the caller's namespace.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, is_torch_array


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


def on_host_arrays(hinge_numpy: Any, x: Any, t: Any, **kw: Any) -> tuple[Any, Any | None]:
    """A NumPy kernel of the hinge contract called on CPU arrays of any framework: its array
    arguments (``x``, ``t``, and ``weight``/``grad_scale`` when they are arrays) as zero-copy
    NumPy views, its results back in ``x``'s namespace."""
    for name in ("weight", "grad_scale"):
        if kw.get(name) is not None and np.ndim(kw[name]) > 0:
            kw[name] = to_numpy(kw[name])
    loss, grad = hinge_numpy(to_numpy(x), to_numpy(t), **kw)
    return from_numpy_like(loss, x), None if grad is None else from_numpy_like(grad, x)
