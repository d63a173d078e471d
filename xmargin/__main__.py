"""Command line: ``python -m xmargin info`` prints versions, devices and backends."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
from collections.abc import Sequence

PACKAGES = [
    ("numpy", "numpy"),
    ("array-api-compat", "array_api_compat"),
    ("numba", "numba"),
    ("torch", "torch"),
    ("triton", "triton"),
    ("cupy", "cupy"),
    ("jax", "jax"),
    ("dask", "dask"),
]
CUPY_DISTRIBUTIONS = ("cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x")


def _version(dist: str) -> str | None:
    names = CUPY_DISTRIBUTIONS if dist == "cupy" else (dist,)
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _devices() -> list[tuple[str, str]]:
    """(device, description) for every device a framework installed here can see."""
    rows = [("cpu", f"{os.cpu_count()} cores, {platform.machine()} {platform.processor()}".strip())]
    if _version("torch"):
        try:
            torch = importlib.import_module("torch")
            for i in range(torch.cuda.device_count()):
                rows.append((f"cuda:{i} (torch)", torch.cuda.get_device_name(i)))
        except Exception as exc:  # a broken install should not break `info`
            rows.append(("torch", f"could not query CUDA: {type(exc).__name__}: {exc}"))
    if _version("cupy"):
        try:
            cupy = importlib.import_module("cupy")
            for i in range(cupy.cuda.runtime.getDeviceCount()):
                name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
                rows.append(
                    (f"cuda:{i} (cupy)", name.decode() if isinstance(name, bytes) else name)
                )
        except Exception as exc:
            rows.append(("cupy", f"no CUDA device ({type(exc).__name__})"))
    return rows


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        head = "  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=False))
        lines.append(f"{head}  {r[-1]}".rstrip())
    return "\n".join(lines)


def info() -> str:
    """The report of ``python -m xmargin info``."""
    import xmargin
    from xmargin.backends import _registry

    versions = [
        ("package", "version"),
        ("python", platform.python_version()),
        ("xmargin", xmargin.__version__),
    ]
    versions += [(label, _version(dist) or "not installed") for label, dist in PACKAGES]
    _registry.cuda_device_reason(probe=True)  # info may import frameworks to look for GPUs
    backends = [("backend", "usable", "why / what")]
    backends += [
        (s.name, "yes" if s.usable else "no", s.reason) for s in xmargin.backends.explain()
    ]
    parts = [
        f"xmargin {xmargin.__version__} on {platform.platform()}",
        "",
        _table(versions),
        "",
        _table([("device", "description"), *_devices()]),
        "",
        _table(backends),
    ]
    env = [
        f"{k}={os.environ[k]}"
        for k in (
            "XMARGIN_BACKEND",
            "XMARGIN_CHECK_VALUES",
            "XMARGIN_NUM_THREADS",
            "TRITON_INTERPRET",
        )
        if k in os.environ
    ]
    if env:
        parts += ["", "environment: " + " ".join(env)]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xmargin", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="versions, devices and backends (with why a backend is unusable)")
    args = parser.parse_args(argv)
    if args.command != "info":
        parser.print_help()
        return 2
    print(info())
    return 0


if __name__ == "__main__":
    sys.exit(main())
