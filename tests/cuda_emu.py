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


def build(out_dir: Path, *, sanitize: str | None = None, weighted: bool = False) -> Path | None:
    """Compile the emulator (None when there is no C++20 compiler). ``sanitize="thread"``
    builds it under ThreadSanitizer (each CUDA thread is a std::thread and __syncthreads a
    std::barrier, so a missing barrier between two accesses of one shared or global location
    by different threads is reported as a data race); None when the compiler cannot.
    ``weighted``: the kernel's weighted entry points as well as the plain ones (which ``run``
    needs for ``neg_weight``, (N, C) weights or ``weighted=True``; twice the build time)."""
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        return None
    name = "xmargin_cuda_emulator" + ("_w" if weighted else "")
    exe = out_dir / (name + (f"_{sanitize}" if sanitize else ""))
    flags = [f"-fsanitize={sanitize}", "-g"] if sanitize else []
    flags.append(f"-DXM_ENTRIES={3 if weighted else 1}")
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
        slices=0, neg_weight=None, weighted=None):  # fmt: skip
    """(loss, grad or None, the scores as the kernel saw them) from the emulated kernel.
    ``acc``: hand the kernel the float32 gradient scratch; None decides as the cupy backend
    does (half scores, a gradient, more target columns than a tile holds). ``env``: variables
    added to the emulator's environment (e.g. TSAN_OPTIONS); EmulatorError when it fails.
    ``slices``: 0 runs the one-block-per-row kernel; S >= 1 the split path (setup, judge on an
    (N, S) grid, finish; K <= TILE), as the cupy backend launches it when ``slices()`` says so.
    ``weight`` and ``neg_weight``: None, (C,) or (N, C) (row stride C). ``weighted``: run the
    weighted entry points; None decides as the cupy backend does (``neg_weight`` given, or an
    (N, C) ``weight``), True also takes them for a (C,) or no weight and no ``neg_weight``.
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
    w = None if weight is None else np.ascontiguousarray(weight, acc)
    v = None if neg_weight is None else np.ascontiguousarray(neg_weight, acc)
    for a in (w, v):
        if a is not None and a.shape not in ((c,), (n, c)):
            raise ValueError(f"weights are (C,) or (N, C), got {a.shape}")
    if weighted is None:
        weighted = v is not None or (w is not None and w.ndim == 2)
    if not weighted and (v is not None or (w is not None and w.ndim == 2)):
        raise ValueError("neg_weight and (N, C) weights take the weighted entry points")
    swn, svn = (c if a is not None and a.ndim == 2 else 0 for a in (w, v))
    header = struct.pack(
        "<20qd4q", SCORE_CODES[dtype], int(target_dtype == "int64"), n, c, k, sxn, sxc, k, 1, c,
        1, buf.size, tb.size, n * c if want_grad else 0, p, int(want_grad), int(w is not None),
        int(scale is not None), has_acc, int(slices), float(margin), int(bool(weighted)), swn,
        int(v is not None), svn,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        fin, fout = os.path.join(d, "in"), os.path.join(d, "out")
        with open(fin, "wb") as f:
            f.write(header + buf.tobytes() + tb.tobytes())
            if w is not None:
                f.write(w.tobytes())
            if v is not None:
                f.write(v.tobytes())
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
