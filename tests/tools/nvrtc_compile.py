"""Compile kernels/cuda/multilabel_hinge.cu with NVRTC (the compiler CuPy's RawModule uses),
without a GPU, through ctypes.

    python tests/tools/nvrtc_compile.py [80 90 ...]

Looks for libnvrtc in the nvidia-cuda-nvrtc wheel, then on the loader path. Exit status 0 when
every architecture compiles; 3 when no libnvrtc is found.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from xmargin.backends.cupy import source  # noqa: E402


def find_nvrtc() -> ctypes.CDLL | None:
    candidates = []
    try:
        import nvidia

        for base in nvidia.__path__:
            candidates += sorted(glob.glob(os.path.join(base, "cu*", "lib", "libnvrtc.so*")))
            candidates += sorted(glob.glob(os.path.join(base, "cuda_nvrtc", "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    for path in candidates:
        if "builtins" in path:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def compile_for(lib: ctypes.CDLL, code: str, arch: int) -> tuple[bool, str]:
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(
        ctypes.byref(prog), code.encode(), b"multilabel_hinge.cu", 0, None, None
    )
    if rc != 0:
        return False, f"nvrtcCreateProgram failed ({rc})"
    opts = [f"--gpu-architecture=compute_{arch}".encode(), b"--std=c++14"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return rc == 0, log.value.decode(errors="replace")


def main(archs: list[int]) -> int:
    lib = find_nvrtc()
    if lib is None:
        print("no libnvrtc found (pip install nvidia-cuda-nvrtc)")
        return 3
    code = source()
    status = 0
    for arch in archs:
        ok, log = compile_for(lib, code, arch)
        print(f"compute_{arch}: {'ok' if ok else 'FAILED'}")
        if log.strip():
            print(log)
        status |= 0 if ok else 1
    return status


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [80, 90]))
