"""Run kernels/cuda/multilabel_hinge.cu on the CPU through tests/tools/cuda_emulator.cpp."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCORE_CODES = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3}
TILE = 256  # XM_TILE: positive slots per threshold tile


class EmulatorError(RuntimeError):
    """The emulator exited with a failure (its stderr: a sanitizer's report, for instance)."""

    def __init__(self, returncode: int, stderr: str):
        super().__init__(f"emulator exited with {returncode}:\n{stderr[-6000:]}")
        self.returncode = returncode
        self.stderr = stderr


def build(out_dir: Path, *, sanitize: str | None = None) -> Path | None:
    """Compile the emulator (None when there is no C++20 compiler). ``sanitize="thread"``
    builds it under ThreadSanitizer (each CUDA thread is a std::thread and __syncthreads a
    std::barrier, so a missing barrier between two accesses of one shared or global location
    by different threads is reported as a data race); None when the compiler cannot."""
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        return None
    exe = out_dir / ("xmargin_cuda_emulator" + (f"_{sanitize}" if sanitize else ""))
    flags = [f"-fsanitize={sanitize}", "-g"] if sanitize else []
    result = subprocess.run(
        [cxx, "-std=c++20", "-O1", "-pthread", *flags, "-I", str(ROOT / "kernels" / "cuda"),
         str(ROOT / "tests" / "tools" / "cuda_emulator.cpp"), "-o", str(exe)],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        if sanitize:
            return None
        raise RuntimeError(f"building the CUDA emulator failed:\n{result.stderr}")
    return exe


def to_storage(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(the bits to hand the kernel, their values as float64)."""
    if dtype == "bfloat16":  # round to nearest even, as the hardware does
        u = np.asarray(x, np.float32).view(np.uint32)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        return r, (r.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    a = np.asarray(x).astype(dtype)
    return a, a.astype(np.float64)


def _values(raw: bytes, dtype: str, count: int) -> np.ndarray:
    if dtype == "bfloat16":
        r = np.frombuffer(raw, np.uint16, count)
        return (r.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.frombuffer(raw, dtype, count).astype(np.float64)


def run(exe, x, t, *, margin=1.0, p=1, weight=None, scale=None, want_grad=True,
        dtype="float32", target_dtype="int64", transposed=False, acc=None, env=None,
        slices=0):  # fmt: skip
    """(loss, grad or None, the scores as the kernel saw them) from the emulated kernel.
    ``acc``: hand the kernel the float32 gradient scratch; None decides as the cupy backend
    does (half scores, a gradient, more target columns than a tile holds). ``env``: variables
    added to the emulator's environment (e.g. TSAN_OPTIONS); EmulatorError when it fails.
    ``slices``: 0 runs the one-block-per-row kernel; S >= 1 the split path (setup, judge on an
    (N, S) grid, finish; K <= TILE), as the cupy backend launches it when ``slices()`` says so.
    """
    n, c = x.shape
    k = t.shape[1]
    bits, values = to_storage(x, dtype)
    if transposed:  # column-major scores: strides (1, N)
        buf, sxn, sxc = np.ascontiguousarray(bits.T), 1, n
    else:
        buf, sxn, sxc = np.ascontiguousarray(bits), c, 1
    if acc is None:
        acc = want_grad and dtype in ("float16", "bfloat16") and k > TILE
    has_acc = int(bool(acc) and want_grad)
    acc = np.float64 if dtype == "float64" else np.float32
    tb = np.ascontiguousarray(t.astype(target_dtype))
    if slices and k > TILE:
        raise ValueError("the split path takes rows of at most TILE target columns")
    header = struct.pack(
        "<20qd", SCORE_CODES[dtype], int(target_dtype == "int64"), n, c, k, sxn, sxc, k, 1, c, 1,
        buf.size, tb.size, n * c if want_grad else 0, p, int(want_grad), int(weight is not None),
        int(scale is not None), has_acc, int(slices), float(margin),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        fin, fout = os.path.join(d, "in"), os.path.join(d, "out")
        with open(fin, "wb") as f:
            f.write(header + buf.tobytes() + tb.tobytes())
            if weight is not None:
                f.write(np.asarray(weight, acc).tobytes())
            if scale is not None:
                f.write(np.asarray(scale, acc).tobytes())
            if want_grad:  # garbage the kernel must overwrite
                f.write(b"\x3c" * (n * c * buf.itemsize))
        env = None if env is None else {**os.environ, **env}
        done = subprocess.run([str(exe), fin, fout], capture_output=True, timeout=600, env=env)
        if done.returncode != 0:
            raise EmulatorError(done.returncode, done.stderr.decode(errors="replace"))
        raw = Path(fout).read_bytes()
    nb = np.dtype(acc).itemsize * n
    loss = np.frombuffer(raw[:nb], acc).astype(np.float64)
    grad = _values(raw[nb:], dtype, n * c).reshape(n, c) if want_grad else None
    return loss, grad, values
