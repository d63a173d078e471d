"""The one command that proves a GPU build of xmargin:

    python -m benchmarks.gpu_check [--quick] [--no-bench]

1. ``pytest -m gpu`` over the whole suite (Triton and CuPy against the CPU reference and the
   oracle on the device: values, gradients, every dtype, p, weight, K != C, C up to 10^6,
   N·C > 2^31, out-of-range targets with value checks off, determinism, streams, devices);
2. the GPU benchmark, ``python -m benchmarks --device cuda`` (torch CUDA eager, torch.compile,
   triton, cupy: ms, GB/s against the bytes that must move, the roofline model beside them)
   and ``python -m benchmarks.multilabel_hinge_gpu`` (% of the measured copy bandwidth),
   writing ``benchmarks/results/<gpu>.{csv,md,png}``;
3. ``python -m benchmarks.gpu_profile``: per call, host wall time against the kernels' device
   time (is a path host-bound?);
4. ``python -m benchmarks.gpu_variants``: the kernels under forced launch variants (row
   splits, block sizes, warps), timed side by side, each checked against the default launch.

Exit status 0 only when every GPU test passed and the four benchmarks ran. Without a CUDA
device it says so and exits with status 2 (nothing here is skipped silently).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict) -> int:
    print("$ " + " ".join(cmd), flush=True)
    started = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    print(f"-> exit {rc} after {time.perf_counter() - started:.0f} s", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--no-bench", action="store_true", help="the GPU tests only")
    parser.add_argument("--quick", action="store_true", help="fewer benchmark shapes")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False)")
        return 2
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # real kernels
    py = sys.executable
    print(f"gpu_check on {torch.cuda.get_device_name()} ({torch.cuda.device_count()} device(s))")
    status = _run([py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], env)
    if args.no_bench:
        return status
    bench = [py, "-m", "benchmarks", "--device", "cuda", "--save"]
    gpu = [py, "-m", "benchmarks.multilabel_hinge_gpu"]
    if args.quick:
        gpu += ["--shapes", "4096,4096,64", "4096,32768,16"]
    for cmd in (bench, gpu, [py, "-m", "benchmarks.gpu_profile"],
                [py, "-m", "benchmarks.gpu_variants"]):  # fmt: skip
        status = _run(cmd, env) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
