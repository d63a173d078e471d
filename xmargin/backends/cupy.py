"""The ``cupy`` backend: launches the raw CUDA kernels of ``kernels/cuda/multilabel_hinge.cu``.

Runs on CuPy arrays, and on torch CUDA tensors (read and written in place through their device
pointers, no copy; bfloat16 included, which CuPy itself lacks). The source is read from the
installed package (``xmargin/_kernels``) or the source checkout, prefixed with a ``#line``
directive so that compiler messages point at the ``.cu`` file, compiled by NVRTC through
``cupy.RawModule`` once per (device, compute capability, source) and cached. Everything runs
with the scores' device current (outputs and scratch are allocated there, the module compiled
for it and the kernel launched on it, whichever device was current before). Kernels go on the
input's current stream of that device: CuPy's for CuPy arrays, torch's for torch tensors.
Nothing here synchronises with the host.

Launch, one of two ways (``slices()`` chooses):

* one block of 256 threads per sample (the kernel's ``XM_THREADS``), for more than 256
  target columns (several threshold tiles): scratch of one bit per class and sample for the positives'
  bitmap and, for float16/bfloat16 gradients with more than 256 target columns (several tiles),
  a float32 (N, C) array in which the tiles' contributions are summed before one rounding to
  the half dtype; everything else lives in shared memory (18 KiB per block for float32
  accumulation, 34 KiB for float64);
* the split path, for K <= 256, with S slices per row (S > 1 when N rows alone would leave
  SMs idle): ``setup`` (grid N)
  writes each row's sorted thresholds, prefix sums and class-sorted positives to a table,
  ``judge`` (grid (N, S)) streams slice s of row n with 16-byte loads and writes partials (loss,
  flags, per-threshold counts and sums), ``finish`` (grid N) adds the S partials in slice order
  and writes the loss and the positives' gradient. Scratch: (N, 6·256 + 4) accumulation-type and
  (N, 2·256 + 1) int32 tables, and (N, S, 257) partials of each; bitwise repeatable like the
  one-block kernel, whose results it matches up to the rounding of the sums.

Weights: ``weight`` and ``neg_weight`` go to the kernels as contiguous arrays of the
accumulation dtype with a row stride (0 for (C,), C for (N, C)). Calls with no ``neg_weight``
and a (C,) or no ``weight`` launch the plain entry points, the code of before (bitwise the same
results, nothing extra to pay); the others launch the weighted set (names ending in ``_w``),
compiled on first use as a second module from the same source (``-DXM_ENTRIES=2``). There a
negative's terms are multiplied by its ``neg_weight`` (0: no pair), and the positives' per-bin
sums of the negatives' weights are 64-bit fixed-point integers (exact, so bitwise repeatable),
in units set by ``neg_weight.max()``, computed on the device and read there by the kernels (no
host synchronisation); the split path's integer partials are then int64.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from .._interop import compute_dtype, is_torch
from .._resources import kernels_dir
from ._common import GPU_NOTES, kernel_contract, torch_acc

__all__ = ["cache_key", "entry_point", "hinge", "source"]

THREADS = 256  # XM_THREADS in the kernel
TILE = 256  # XM_TILE in the kernel: positive slots per threshold tile
# the split path's scratch, per row (XM_TAB_A, XM_TAB_I) and per (row, slice) (XM_PART)
TAB_A = 6 * TILE + 4
TAB_I = 2 * TILE + 1
PART = TILE + 1

# How many blocks share a row (the split path; rows of K <= TILE target columns). Its judge
# reads 16 bytes per thread and access where the one-block kernel reads 4, which is what keeps
# enough bytes in flight to approach the memory bandwidth, so it is taken for every such
# problem, at the cost of a table (~2 KiB) and partials per row. The judge holds <= 64
# registers per thread (tests/test_cuda.py checks it): 4 blocks of 256 threads are resident
# per SM, so S aims at BLOCKS_PER_SM * SMs judge blocks, one full wave, and a few rows still
# keep every SM streaming; a row is cut into at most C / MIN_SLICE slices, since each block
# loads its row's table and writes partials, worth it only over a few chunks of scores (4096
# classes: 4 chunks of float32, 2 of half). Rows that fill the GPU by themselves
# (N >= BLOCKS_PER_SM * SMs) get S = 1.
BLOCKS_PER_SM = 4
MIN_SLICE = 4096
MAX_SLICES = 1024  # bounds the finish's serial sum over slices
SM_COUNT: int | None = None  # None: the device's MultiProcessorCount; tests set a number
_SCORE_CODES = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
_TARGET_CODES = {"int32": "i32", "int64": "i64"}
_MODULES: dict[tuple, Any] = {}


def source_path() -> Path:
    return kernels_dir() / "cuda" / "multilabel_hinge.cu"


@functools.lru_cache(maxsize=1)  # read once per process, not on every launch
def source() -> str:
    """The kernel source with a ``#line`` directive naming its file (for compiler messages)."""
    path = source_path()
    text = path.read_text()
    return f'#line 1 "{path.as_posix()}"\n{text}'


def cache_key(device_id: int, compute_capability: str, code: str) -> tuple[int, str, str]:
    """Compiled modules are cached per device, architecture and source text."""
    return (int(device_id), str(compute_capability), _digest(code))


@functools.lru_cache(maxsize=4)  # the same source string on every launch: hashed once
def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def entry_point(score_dtype: Any, target_dtype: Any, weighted: bool = False) -> str:
    """The kernel's ``extern "C"`` name for these dtypes (ValueError for unsupported ones); the
    weighted set's with ``weighted``."""
    s, t = _dtype_name(score_dtype), _dtype_name(target_dtype)
    if s not in _SCORE_CODES:
        raise ValueError(
            f"cupy backend: scores must be float16, bfloat16, float32 or float64, got {s}"
        )
    if t not in _TARGET_CODES:
        raise ValueError(f"cupy backend: targets must be int32 or int64 here, got {t}")
    return f"xm_multilabel_hinge_{_SCORE_CODES[s]}_{_TARGET_CODES[t]}" + ("_w" if weighted else "")


def slices(n: int, c: int, k: int, sm_count: int) -> int:
    """Blocks per row: 0 for the one-block kernel (K > TILE), S >= 1 for the split path."""
    if k > TILE:
        return 0
    want = BLOCKS_PER_SM * sm_count
    return max(1, min(-(-want // max(n, 1)), c // MIN_SLICE, MAX_SLICES))


def split_entry_points(
    score_dtype: Any, target_dtype: Any, weighted: bool = False
) -> tuple[str, str, str]:
    """The split path's (setup, judge, finish) kernels for these dtypes (the weighted set's with
    ``weighted``); the judge and the finish are per score dtype only."""
    name = entry_point(score_dtype, target_dtype, weighted)
    base = f"xm_multilabel_hinge_{_SCORE_CODES[_dtype_name(score_dtype)]}"
    w = "_w" if weighted else ""
    return f"{name}_setup", f"{base}{w}_judge", f"{base}{w}_finish"


@functools.cache  # one query per device and process
def _device_sm_count(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


def _sm_count(device_id: int) -> int:
    return SM_COUNT if SM_COUNT is not None else _device_sm_count(device_id)


def _module(cupy: Any, weighted: bool = False) -> Any:
    """The compiled module for the current device (NVRTC, once per device and source): the
    plain entry points, or with ``weighted`` the weighted ones (a second module, compiled only
    when a call needs it)."""
    device = cupy.cuda.Device()
    code = source()
    key = (*cache_key(device.id, device.compute_capability, code), weighted)
    module = _MODULES.get(key)
    if module is None:
        options = ("--std=c++14", "-DXM_ENTRIES=2") if weighted else ("--std=c++14",)
        module = cupy.RawModule(code=code, options=options)
        _MODULES[key] = module
    return module


class _Frame:
    """The few operations the launch needs, on torch tensors or CuPy arrays alike. Dtypes are
    the library's (``lib.float32``) or their names."""

    lib: Any  # torch or cupy

    def __init__(self, like: Any):
        self.torch = is_torch(like)
        if self.torch:
            import torch

            self.lib = torch
            self.device = like.device
        else:
            import cupy

            self.lib = cupy

    def dtype(self, dtype: Any) -> Any:
        return getattr(self.lib, dtype) if isinstance(dtype, str) else dtype

    def empty(self, shape: tuple, dtype: Any) -> Any:
        dt = self.dtype(dtype)
        if self.torch:
            return self.lib.empty(shape, dtype=dt, device=self.device)
        return self.lib.empty(shape, dtype=dt)

    def ptr(self, a: Any) -> int:
        return a.data_ptr() if self.torch else a.data.ptr

    def arg(self, a: Any | None) -> Any:
        """A kernel pointer argument (null for None)."""
        import numpy as np

        return np.uint64(0 if a is None else self.ptr(a))

    def strides(self, a: Any) -> tuple[int, ...]:
        if self.torch:
            return tuple(a.stride())
        return tuple(s // a.itemsize for s in a.strides)

    def as_acc(self, a: Any, acc: Any, n: int | None = None) -> Any:
        """A contiguous copy (or view) of a small argument in the accumulation dtype, broadcast
        to (n,) if given; ``a`` may be a number (``value_and_grad`` folds the reduction's 1/C or
        1/(N·C) in as a float)."""
        if self.torch:
            return torch_acc(a, self.dtype(acc), self.device, n)
        out = self.lib.asarray(a, dtype=acc)
        return self.lib.ascontiguousarray(
            self.lib.broadcast_to(out, (n,)) if n is not None else out
        )

    def stream(self) -> Any:
        import cupy

        if self.torch:
            return cupy.cuda.ExternalStream(self.lib.cuda.current_stream(self.device).cuda_stream)
        return cupy.cuda.get_current_stream()

    def device_id(self, a: Any) -> int:
        if self.torch:
            return a.device.index if a.device.index is not None else self.lib.cuda.current_device()
        return a.device.id


@kernel_contract(GPU_NOTES)
def hinge(
    x: Any,
    t: Any,
    *,
    margin: float,
    p: int,
    weight: Any | None,
    want_grad: bool,
    neg_weight: Any | None = None,
    grad_scale: Any | None = None,
) -> tuple[Any, Any | None]:
    """The raw CUDA kernels on CuPy arrays or torch CUDA tensors (see the module docstring for
    the launch; ``neg_weight`` or an (N, C) ``weight`` take the weighted entry points)."""
    import cupy
    import numpy as np

    f = _Frame(x)
    n, c = x.shape
    k = t.shape[1]
    weighted = neg_weight is not None or (weight is not None and len(weight.shape) == 2)
    name = entry_point(x.dtype, t.dtype, weighted)
    acc = compute_dtype(f.lib, x.dtype)
    # Everything below runs on the scores' device: CuPy allocates on the current device and
    # the module is compiled for (and launched on) the current device, so the device is made
    # current before the first allocation, not only around the launch.
    with cupy.cuda.Device(f.device_id(x)):
        loss = f.empty((n,), acc)
        grad = f.empty((n, c), x.dtype) if want_grad else None
        if n == 0:
            return loss, grad
        w = None if weight is None else f.as_acc(weight, acc)
        v = None if neg_weight is None else f.as_acc(neg_weight, acc)
        # the weighted set: row strides (0 for (C,)) and V's max, a device scalar the kernels read
        # (the unit of their fixed-point sums; no host sync)
        swn, svn = (np.int64(c if a is not None and len(a.shape) == 2 else 0) for a in (w, v))
        vmax = v.max() if v is not None and c > 0 else None
        scale = None if grad_scale is None else f.as_acc(grad_scale, acc, n)
        sx, st = f.strides(x), f.strides(t)
        sg = f.strides(grad) if grad is not None else (0, 0)
        module = _module(cupy, weighted)
        s = 0 if k > TILE else slices(n, c, k, _sm_count(f.device_id(x)))
        if s:
            tab, itab = f.empty((n, TAB_A), acc), f.empty((n, TAB_I), "int32")
            # the weighted judge's integer partials are 64-bit (fixed-point sums of V)
            part = f.empty((n, s, PART), acc)
            ipart = f.empty((n, s, PART), "int64" if weighted else "int32")
            setup, judge, finish = (
                module.get_function(e) for e in split_entry_points(x.dtype, t.dtype, weighted)
            )
            common = (
                f.arg(tab), f.arg(itab), f.arg(part), f.arg(ipart), np.int64(c), np.int32(s),
                np.int32(p), np.int32(bool(want_grad)),
            )  # fmt: skip
            w_args = (f.arg(w), swn) if weighted else (f.arg(w),)
            v_args = (f.arg(v), svn, f.arg(vmax)) if weighted else ()
            with f.stream():
                setup((n,), (THREADS,), (
                    f.arg(x), np.int64(sx[0]), np.int64(sx[1]), f.arg(t), np.int64(st[0]),
                    np.int64(st[1]), *w_args, f.arg(tab), f.arg(itab), np.int64(c),
                    np.int64(k), np.float64(margin),
                ))  # fmt: skip
                judge((n, s), (THREADS,), (
                    f.arg(x), np.int64(sx[0]), np.int64(sx[1]), f.arg(grad), np.int64(sg[0]),
                    np.int64(sg[1]), f.arg(scale), *v_args, *common,
                ))  # fmt: skip
                finish((n,), (THREADS,), (
                    f.arg(loss), f.arg(grad), np.int64(sg[0]), np.int64(sg[1]), f.arg(scale),
                    *v_args[2:], *common,
                ))  # fmt: skip
            return loss, grad
        words = (c + 31) // 32
        bits = f.empty((n, words), "int32")
        # half gradients of rows with several tiles are summed in float32 and rounded once
        gacc = f.empty((n, c), acc) if want_grad and x.dtype != acc and k > TILE else None
        args = (
            f.arg(x), np.int64(sx[0]), np.int64(sx[1]),
            f.arg(t), np.int64(st[0]), np.int64(st[1]),
            *((f.arg(w), swn, f.arg(v), svn, f.arg(vmax)) if weighted else (f.arg(w),)),
            f.arg(loss),
            f.arg(grad), np.int64(sg[0]), np.int64(sg[1]),
            f.arg(bits), np.int64(words), f.arg(scale), f.arg(gacc),
            np.int64(c), np.int64(k), np.float64(margin), np.int32(p), np.int32(bool(want_grad)),
        )  # fmt: skip
        kernel = module.get_function(name)
        with f.stream():
            kernel((n,), (THREADS,), args)
    return loss, grad


# --------------------------------------------------------------------------------------------
# support rules (read by the registry)
# --------------------------------------------------------------------------------------------
def status() -> str | None:
    """None when CuPy is installed and a CUDA device is visible, else why not."""
    from . import _probe

    return _probe.gpu_status("cupy", "cuda13")


def supports(x: Any) -> str | None:
    """None for CuPy arrays and torch CUDA tensors, else why not."""
    from .._interop import array_kind

    kind = array_kind(x)
    if kind == ("torch", "cuda") or kind[0] == "cupy":
        return None
    return f"cupy runs on CuPy arrays and torch CUDA tensors, got {kind[0]} on {kind[1]}"
