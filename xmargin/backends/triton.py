"""The ``triton`` backend: launches the Triton kernels of ``kernels/triton/multilabel_hinge.py``.

Runs on torch CUDA tensors (CuPy arrays are viewed as torch tensors through DLPack, zero
copy), and on torch CPU tensors when ``TRITON_INTERPRET=1`` (Triton's interpreter; that is how
CI tests it without a GPU). Kernels run on the scores' device (made current around the launch:
a tensor on cuda:1 runs on cuda:1 whichever device is current) and go on torch's current
stream of that device; nothing here synchronises.

Launch heuristics:

* ``BLOCK_T`` (positive slots per threshold tile) = the next power of two >= K, clamped to
  [16, 256] (64 for float64, whose thresholds are ranked by a BLOCK_T² comparison): one tile
  holds every positive of a row in the common case, and tl.sort of 256 keys stays cheap. Rows
  with more positives are processed tile by tile (each tile re-reads the row:
  O(C · ⌈T / BLOCK_T⌉ · log BLOCK_T)).
* ``BLOCK_C`` (classes per chunk) = the next power of two >= C, clamped to [128, 1024]
  (512 for float64): wide enough to stream a row at full bandwidth, small enough to keep the
  per-lane state in registers.
* ``num_warps`` = 4 up to 512 classes per chunk, 8 above; ``maxnreg`` = the registers per
  thread that keep two programs on an SM (128 at 8 warps, 255 at 4). Without it ptxas spilled
  to local memory to reach an occupancy of its own choosing; with it no variant spills
  (tests/tools/compile_triton.py checks every specialisation the launcher produces).
* ``S`` (programs per row, ``programs_per_row``): one program per row runs N programs, and a
  row of 10⁶ classes is 977 chunks walked one after another by one program; with N = 64 on
  132 SMs that is a quarter of the SMs' program slots, each waiting on one chunk's DRAM round
  trip at a time. When N is below the GPU's resident program slots (SMs × CTAS_PER_SM) and
  the row's positives fit one tile (K <= BLOCK_T, so the split needs no per-tile partials),
  each row is cut into S contiguous slices of whole chunks. S is chosen by a serial-time
  model (the one benchmarks/roofline.py prints): programs run in waves of ``slots``, each wave
  as long as one program's setup (SETUP_CHUNKS chunk times: every program rebuilds its row's
  sorted table) plus its slice's chunks (two in flight at a time: CHUNKS_IN_FLIGHT); the
  candidates are S = 1 and the S that fill w = 1..MAX_SPLIT_WAVES waves exactly or nearly
  (N·S <= w·slots: a partial last wave costs a whole one), each slice at least
  MIN_SLICE_CHUNKS chunks. (64, 10⁶, 32) on 132 SMs gets
  S = 4: 256 programs of 245 chunks, one wave, against 977 chunks in a row unsplit. S = 1 when
  N already fills the GPU (N >= slots), or when K > BLOCK_T (those rows keep one program per
  row and their tiles). The SM count is the device's (``multi_processor_count``); for the
  interpreter (CPU tensors) it is INTERPRETER_SMS and for ``meta`` tensors (the AOT check)
  META_SMS (an H100 SXM), module constants so that tests can force a split on small problems.
  Split rows run two kernels: ``multilabel_hinge_split_kernel`` on grid (N, S) (the
  negatives' gradient and each slice's partial loss and per-threshold counts) and
  ``multilabel_hinge_finish_kernel`` on (N, S) (the loss and the positives' gradient from the
  S partials, summed in the fixed order s = 0..S−1: bitwise repeatable; a NaN row's programs
  fill their slices with NaN).
* ``PREFETCH`` (one-program-per-row kernel): the next chunk's scores and bitmap words (and
  neg_weight) are loaded before the current chunk is worked on, two chunks' round trips in
  flight per program (the split kernel always does this). Not for p = 2 gradients nor
  neg-weighted gradients: they sit at the 128 registers of two programs per SM without it, and
  the ~8 more (12 in float64) would spill.
* Weights: ``weight`` and ``neg_weight`` (None, (C,) or (N, C)) go to the kernels as a pointer
  and a row stride (0 for (C,), C for (N, C)), each with a constexpr flag (HAS_WEIGHT,
  HAS_NEG_WEIGHT), so the unweighted specialisations are the kernels of before and a (C,)
  weight costs one more scalar argument. With neg_weight the kernels also sum V and V·x' per
  threshold bin (a sort and segmented scan per chunk, deterministic, no atomics); split rows
  get BLOCK_T more partials per program for Σ V.
* Scratch per row: a bitmap of positives (C/32 int32 words) and a tile's sorted thresholds and
  prefix sums (about 5·BLOCK_T words, per program when split, with the partials: about
  3·BLOCK_T words per program); for float16/bfloat16 gradients with K > BLOCK_T also a
  float32 row of C (N·C·4 bytes in all) in which the tiles' contributions are summed before
  one rounding to the half dtype; nothing of size N·T·C.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

from .._interop import as_torch, compute_dtype
from .._resources import kernels_dir
from ._common import GPU_NOTES, kernel_contract, torch_acc

__all__ = ["hinge", "launch_config", "launch_plan", "programs_per_row"]

_KERNELS: ModuleType | None = None


def _kernels() -> ModuleType:
    """The device code, imported once from the installed package or the source checkout."""
    global _KERNELS
    if _KERNELS is None:
        name = "xmargin._kernels.triton.multilabel_hinge"
        path = kernels_dir() / "triton" / "multilabel_hinge.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"xmargin: cannot load the Triton kernels from {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Triton reads the source of @jit functions by module
        spec.loader.exec_module(module)
        _KERNELS = module
    return _KERNELS


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


# Bounds of the heuristics below (module constants so that tests can force several tiles and
# chunks on small problems).
BLOCK_T_RANGE = (16, 256)
BLOCK_C_RANGE = (128, 1024)
# The row split (see the module docstring). CTAS_PER_SM is what ``maxnreg`` allows (two
# programs per SM); SETUP_CHUNKS is a program's setup (targets, sort, prefix sums: a few
# dependent round trips) in chunk times; splits of up to MAX_SPLIT_WAVES waves are weighed;
# slices have at least MIN_SLICE_CHUNKS chunks. SM counts where no CUDA device is asked: the
# interpreter's (CPU tensors; small, so that small test problems split) and the AOT check's
# (meta tensors).
CTAS_PER_SM = 2
CHUNKS_IN_FLIGHT = 2  # the kernels load the next chunk before working on this one
SETUP_CHUNKS = 3
MAX_SPLIT_WAVES = 4
MIN_SLICE_CHUNKS = 4
INTERPRETER_SMS = 4
META_SMS = 132


def _blocks(c: int, k: int, is_f64: bool) -> tuple[int, int]:
    """(BLOCK_T, BLOCK_C) for C classes and K target columns (see the module docstring)."""
    # float64 thresholds are ranked with a BLOCK_T² comparison (no 64-bit key packing): keep
    # that in registers
    t_max = min(BLOCK_T_RANGE[1], 64) if is_f64 else BLOCK_T_RANGE[1]
    block_t = min(max(_next_pow2(max(k, 1)), BLOCK_T_RANGE[0]), max(t_max, BLOCK_T_RANGE[0]))
    c_max = BLOCK_C_RANGE[1] // 2 if is_f64 else BLOCK_C_RANGE[1]
    block_c = min(max(_next_pow2(c), BLOCK_C_RANGE[0]), max(c_max, BLOCK_C_RANGE[0]))
    return block_t, block_c


def _slice_unit(block_c: int) -> int:
    """Slices are whole chunks and whole 32-class words of the positives' bitmap."""
    return max(block_c, 32)


def _waves_time(n: int, s: int, chunks: int, slots: int) -> float:
    """The serial time of N·S programs over ``slots`` resident slots, in chunk times: waves
    of programs, each wave as long as one program's setup and its slice (CHUNKS_IN_FLIGHT
    chunks' round trips overlapping)."""
    return -(-n * s // slots) * (-(-chunks // s) / CHUNKS_IN_FLIGHT + SETUP_CHUNKS)


def programs_per_row(n: int, c: int, k: int, is_f64: bool = False, sms: int = META_SMS) -> int:
    """S, the programs that share each row (1: no split), for an (N, C) problem with K target
    columns on a GPU of ``sms`` SMs (see the module docstring): among S = 1 and the S that
    fill w = 1..MAX_SPLIT_WAVES whole waves (N·S <= w·slots), the one of least serial time
    (``_waves_time``), with at least MIN_SLICE_CHUNKS chunks per slice and no empty slice."""
    block_t, block_c = _blocks(c, k, is_f64)
    slots = sms * CTAS_PER_SM
    if n <= 0 or k > block_t or n >= slots:
        return 1
    chunks = -(-c // _slice_unit(block_c))
    cap = chunks // max(MIN_SLICE_CHUNKS, 1)
    best, best_time = 1, _waves_time(n, 1, chunks, slots)
    for waves in range(1, MAX_SPLIT_WAVES + 1):
        s = min(waves * slots // n, cap)
        if s < 2:
            continue
        s = -(-chunks // -(-chunks // s))  # as many slices as needed at that slice length
        t = _waves_time(n, s, chunks, slots)
        if t < best_time:
            best, best_time = s, t
    return best


def launch_config(n: int, c: int, k: int, is_f64: bool, sms: int = META_SMS) -> dict[str, int]:
    """Block sizes, warps and the row split for an (N, C) problem with K target columns on a
    GPU of ``sms`` SMs (see the module doc): ``S`` programs per row, each over ``SLICE``
    classes (S = 1: one program per row, SLICE = C)."""
    block_t, block_c = _blocks(c, k, is_f64)
    num_warps = 4 if block_c <= 512 else 8
    # registers per thread: two programs fit on an SM (65536 registers), and ptxas may not
    # spill to reach an occupancy target of its own (without .maxnreg it did: 8 to 56 bytes
    # of local memory in a third of the launched variants)
    maxnreg = min(255, 65536 // (CTAS_PER_SM * 32 * num_warps))
    # only rows whose positives fit one tile split (also when a test replaces the heuristic)
    s = max(1, programs_per_row(n, c, k, is_f64, sms)) if k <= block_t else 1
    chunks = -(-c // _slice_unit(block_c))
    slice_len = -(-chunks // s) * _slice_unit(block_c) if s > 1 else c
    return {
        "BLOCK_T": block_t,
        "BLOCK_C": block_c,
        "num_warps": num_warps,
        "maxnreg": maxnreg,
        "S": s,
        "SLICE": slice_len,
    }


_SM_COUNTS: dict[int, int] = {}


def _sm_count(device: Any) -> int:
    """The SMs of the scores' device: CUDA's count, or the module constants (see above)."""
    if device.type == "cuda":
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        if index not in _SM_COUNTS:
            _SM_COUNTS[index] = torch.cuda.get_device_properties(index).multi_processor_count
        return _SM_COUNTS[index]
    return META_SMS if device.type == "meta" else INTERPRETER_SMS


def _device_guard(device: Any) -> Any:
    """The CUDA device of the scores made current for the launch (Triton launches on the
    current device and its current stream): a tensor on cuda:1 runs on cuda:1, whatever device
    is current. A no-op for CPU tensors (the interpreter)."""
    import torch

    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(device)


def launch_plan(
    xt: Any,
    tt: Any,
    *,
    margin: float,
    p: int,
    weight: Any | None,
    want_grad: bool,
    neg_weight: Any | None = None,
    grad_scale: Any | None = None,
) -> tuple[Any, Any | None, tuple | None]:
    """Outputs, scratch and the kernels' arguments for torch tensors ``xt`` (N, C) and
    ``tt`` (N, K): ``(loss, grad, launches)`` with ``launches`` a tuple of
    ``(kernel name, grid, args, kwargs)`` to run in order (one step, or the split kernel and
    its finishing kernel), or None where nothing is to be launched (N = 0 or K = 0: the
    outputs are final). Allocates on ``xt``'s device and launches nothing, so that the
    ahead-of-time check (tests/tools/compile_triton.py) compiles exactly the specialisations
    this produces. ``weight`` and ``neg_weight``: None, (C,) or (N, C) (see ``_weights``)."""
    import torch
    import triton.language as tl

    n, c = xt.shape
    k = tt.shape[1]
    acc = compute_dtype(torch, xt.dtype)
    is_f64 = acc == torch.float64
    loss = torch.empty((n,), dtype=acc, device=xt.device)
    grad = torch.empty((n, c), dtype=xt.dtype, device=xt.device) if want_grad else None
    if n == 0:
        return loss, grad, None
    if k == 0:
        loss.zero_()
        if grad is not None:
            grad.zero_()
        return loss, grad, None
    cfg = launch_config(n, c, k, is_f64, _sm_count(xt.device))
    block_t, s = cfg["BLOCK_T"], cfg["S"]
    dev = xt.device
    words = (c + 31) // 32
    bits = torch.empty((n, words), dtype=torch.int32, device=dev)
    w, stride_wn = _weights(weight, "weight", loss, n, c, acc, dev)
    v, stride_vn = _weights(neg_weight, "neg_weight", loss, n, c, acc, dev)
    g = grad if grad is not None else loss.view(1, n)  # never written without WANT_GRAD
    scale = loss if grad_scale is None else torch_acc(grad_scale, acc, dev, n)
    common = {
        "P": p,
        "HAS_NEG_WEIGHT": neg_weight is not None,
        "WANT_GRAD": want_grad,
        "HAS_SCALE": grad_scale is not None,
        "F": tl.float64 if is_f64 else tl.float32,
        "BLOCK_C": cfg["BLOCK_C"],
        "BLOCK_T": block_t,
        "num_warps": cfg["num_warps"],
        "maxnreg": cfg["maxnreg"],
    }
    if s > 1:
        # split rows (K <= BLOCK_T): per-program scratch (sorted thresholds, classes, prefix
        # sums and the positives' W, thr') and the slices' partials, all O(N·S·BLOCK_T)
        ts = torch.empty((n * s, block_t), dtype=acc, device=dev)
        cls = torch.empty((n * s, block_t), dtype=torch.int32, device=dev)
        pre = torch.empty((n * s, 5, block_t + 1), dtype=acc, device=dev)
        # the loss and Σ x' per bin; with neg_weight also Σ V per bin
        part_len = 2 * block_t + 1 if neg_weight is not None else block_t + 1
        part = torch.empty((n * s, part_len), dtype=acc, device=dev)
        cnt = torch.empty((n * s, block_t + 2), dtype=torch.int32, device=dev)
        split_args = (
            xt, xt.stride(0), xt.stride(1), tt, tt.stride(0), tt.stride(1), w, stride_wn,
            v, stride_vn, g, g.stride(0), g.stride(1), bits, words, ts, cls, pre, part, cnt, scale,
            c, k, s, cfg["SLICE"], float(margin),
        )  # fmt: skip
        finish_args = (
            loss, g, g.stride(0), g.stride(1), cls, pre, part, cnt, scale, c, s, cfg["SLICE"],
        )  # fmt: skip
        # the finishing kernel is small (BLOCK_T-wide sums; a NaN row's fill): 4 warps
        finish_kw = dict(common, num_warps=4, maxnreg=min(255, 65536 // (CTAS_PER_SM * 128)))
        return loss, grad, (
            ("multilabel_hinge_split_kernel", (n, s), split_args,
             dict(common, HAS_WEIGHT=weight is not None)),
            ("multilabel_hinge_finish_kernel", (n, s if want_grad else 1), finish_args,
             finish_kw),
        )  # fmt: skip
    ts = torch.empty((n, block_t), dtype=acc, device=dev)
    cls = torch.empty((n, block_t), dtype=torch.int32, device=dev)
    pre = torch.empty((n, 3, block_t + 1), dtype=acc, device=dev)
    # half gradients of rows with several tiles are summed in float32 and rounded once
    acc_grad = want_grad and xt.dtype != acc and k > block_t
    gacc = torch.empty((n, c), dtype=acc, device=dev) if acc_grad else loss
    args = (
        xt, xt.stride(0), xt.stride(1), tt, tt.stride(0), tt.stride(1), w, stride_wn, v,
        stride_vn, loss, g, g.stride(0), g.stride(1), bits, words, ts, cls, pre, scale, gacc, c,
        k, float(margin),
    )  # fmt: skip
    # the next chunk's loads issued before this chunk's work (two chunks in flight) costs
    # about 8 registers per thread (12 in float64): p = 2 gradients are at their 128 without it,
    # and so are neg-weighted p = 1 gradients (their per-bin sums of V sort each chunk, as
    # p = 2's do: with the prefetch, float16 spilled at BLOCK_T = 64 and float64 took 212)
    prefetch = not want_grad or (p == 1 and neg_weight is None)
    kwargs = dict(common, HAS_WEIGHT=weight is not None, ACC_GRAD=acc_grad, PREFETCH=prefetch)
    return loss, grad, (("multilabel_hinge_kernel", (n,), args, kwargs),)


def _weights(
    a: Any | None, name: str, placeholder: Any, n: int, c: int, acc: Any, dev: Any
) -> tuple[Any, int]:
    """A weight argument as (tensor, row stride in elements): a contiguous tensor of the
    accumulation dtype on the scores' device, stride 0 for (C,) (one row shared by every
    sample), C for (N, C); ``placeholder`` and 0 for None (the kernel does not read it). The
    shape is checked here (no device sync): a wrong one would be read out of bounds."""
    if a is None:
        return placeholder, 0
    w = torch_acc(a, acc, dev)
    if tuple(w.shape) == (c,):
        return w, 0
    if tuple(w.shape) == (n, c):
        return w, w.stride(0)
    raise ValueError(
        f"triton backend: {name} must have shape ({c},) or ({n}, {c}), got {tuple(w.shape)}"
    )


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
    """The Triton kernels on torch CUDA tensors or CuPy arrays (zero-copy torch views), or on
    torch CPU tensors under ``TRITON_INTERPRET=1``; :func:`launch_plan` has the launches."""
    xt, tt = as_torch(x), as_torch(t)
    if xt.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            "triton backend: scores must be CUDA tensors (or set TRITON_INTERPRET=1 to run the "
            f"kernels on the CPU), got a tensor on {xt.device}"
        )
    loss, grad, launches = launch_plan(
        xt, tt, margin=margin, p=p, weight=weight, want_grad=want_grad,
        neg_weight=neg_weight, grad_scale=grad_scale,
    )  # fmt: skip
    if launches is not None:
        kernels = _kernels()
        with _device_guard(xt.device):
            # one stream: the finishing kernel starts after the split kernel's writes
            for name, grid, args, kwargs in launches:
                getattr(kernels, name)[grid](*args, **kwargs)
    return _back(loss, grad, xt is not x)


def _back(loss: Any, grad: Any | None, to_cupy: bool) -> tuple[Any, Any | None]:
    """The results as CuPy arrays (zero-copy) for scores that came as CuPy arrays."""
    if not to_cupy:
        return loss, grad
    import cupy

    return cupy.from_dlpack(loss), None if grad is None else cupy.from_dlpack(grad)


# --------------------------------------------------------------------------------------------
# support rules (read by the registry)
# --------------------------------------------------------------------------------------------
def status() -> str | None:
    """None when Triton (3.4 or newer) is installed and a CUDA device is visible or
    ``TRITON_INTERPRET=1`` is set, else why not."""
    from . import _probe

    return _probe.gpu_status("triton", "triton", interpreter=True)


def supports(x: Any) -> str | None:
    """None for torch CUDA tensors and CuPy arrays (torch CPU tensors under the
    interpreter), else why not."""
    from .._interop import array_kind

    kind = array_kind(x)
    if kind == ("torch", "cuda") or kind[0] == "cupy":
        return None
    if kind == ("torch", "cpu") and os.environ.get("TRITON_INTERPRET") == "1":
        return None
    if kind == ("torch", "cpu"):
        return "triton needs CUDA tensors (set TRITON_INTERPRET=1 to run its kernels on the CPU)"
    return f"triton runs on torch CUDA tensors and CuPy arrays, got {kind[0]} on {kind[1]}"
