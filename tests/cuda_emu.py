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


def build(out_dir: Path) -> Path | None:
    """Compile the emulator (None when there is no C++20 compiler)."""
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        return None
    exe = out_dir / "xmargin_cuda_emulator"
    subprocess.run(
        [cxx, "-std=c++20", "-O1", "-pthread", "-I", str(ROOT / "kernels" / "cuda"),
         str(ROOT / "tests" / "tools" / "cuda_emulator.cpp"), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
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
        dtype="float32", target_dtype="int64", transposed=False):  # fmt: skip
    """(loss, grad or None, the scores as the kernel saw them) from the emulated kernel."""
    n, c = x.shape
    k = t.shape[1]
    bits, values = to_storage(x, dtype)
    if transposed:  # column-major scores: strides (1, N)
        buf, sxn, sxc = np.ascontiguousarray(bits.T), 1, n
    else:
        buf, sxn, sxc = np.ascontiguousarray(bits), c, 1
    acc = np.float64 if dtype == "float64" else np.float32
    tb = np.ascontiguousarray(t.astype(target_dtype))
    header = struct.pack(
        "<18qd", SCORE_CODES[dtype], int(target_dtype == "int64"), n, c, k, sxn, sxc, k, 1, c, 1,
        buf.size, tb.size, n * c if want_grad else 0, p, int(want_grad), int(weight is not None),
        int(scale is not None), float(margin),
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
        subprocess.run([str(exe), fin, fout], check=True, capture_output=True, timeout=600)
        raw = Path(fout).read_bytes()
    nb = np.dtype(acc).itemsize * n
    loss = np.frombuffer(raw[:nb], acc).astype(np.float64)
    grad = _values(raw[nb:], dtype, n * c).reshape(n, c) if want_grad else None
    return loss, grad, values
