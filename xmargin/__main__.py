"""Command line: ``python -m xmargin info`` prints versions, devices and backends."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

PACKAGES = [
    ("numpy", "numpy"),
    ("array-api-compat", "array_api_compat"),
    ("numba", "numba"),
    ("torch", "torch"),
    ("triton", "triton"),
    ("cupy", "cupy"),
    ("jax", "jax"),
    ("dask", "dask"),
    ("keras", "keras"),
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


def _cuda_version(code: int) -> str:
    """CUDA's integer versions (12040) as text (12.4)."""
    return f"{code // 1000}.{code % 1000 // 10}"


def _devices() -> list[dict[str, Any]]:
    """Every device a framework installed here can see: name, description and, for CUDA
    devices, compute capability and memory."""
    rows: list[dict[str, Any]] = [{
        "device": "cpu", "framework": "numpy",
        "description": f"{os.cpu_count()} cores, {platform.machine()} {platform.processor()}".strip(),
    }]  # fmt: skip
    if _version("torch"):
        try:
            torch = importlib.import_module("torch")
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                rows.append({"device": f"cuda:{i}", "framework": "torch",
                             "description": props.name,
                             "compute_capability": f"{props.major}.{props.minor}",
                             "memory_gib": round(props.total_memory / 2**30, 1)})  # fmt: skip
        except Exception as exc:  # a broken install should not break `info`
            rows.append({"device": "cuda", "framework": "torch",
                         "description": f"could not query CUDA: {type(exc).__name__}: {exc}"})  # fmt: skip
    if _version("cupy"):
        try:
            cupy = importlib.import_module("cupy")
            for i in range(cupy.cuda.runtime.getDeviceCount()):
                props = cupy.cuda.runtime.getDeviceProperties(i)
                name = props["name"]
                rows.append({"device": f"cuda:{i}", "framework": "cupy",
                             "description": name.decode() if isinstance(name, bytes) else name,
                             "compute_capability": f"{props['major']}.{props['minor']}",
                             "memory_gib": round(props["totalGlobalMem"] / 2**30, 1)})  # fmt: skip
        except Exception as exc:
            rows.append({"device": "cuda", "framework": "cupy",
                         "description": f"no CUDA device ({type(exc).__name__})"})  # fmt: skip
    return rows


def _cuda() -> dict[str, str | None]:
    """CUDA driver, runtime and NVRTC versions where an installed framework can tell (None
    where not: no driver, no CUDA build)."""
    out: dict[str, str | None] = {"driver": None, "runtime": None, "nvrtc": None,
                                  "torch_cuda": None}  # fmt: skip
    if _version("cupy"):
        try:
            runtime = importlib.import_module("cupy").cuda.runtime
            driver = runtime.driverGetVersion()
            out["driver"] = _cuda_version(driver) if driver else None  # 0: no driver
            out["runtime"] = _cuda_version(runtime.runtimeGetVersion())
        except Exception:
            pass
        try:
            major, minor = importlib.import_module("cupy").cuda.nvrtc.getVersion()
            out["nvrtc"] = f"{major}.{minor}"
        except Exception:
            pass
    if _version("torch"):
        with contextlib.suppress(Exception):
            out["torch_cuda"] = importlib.import_module("torch").version.cuda
    return out


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        head = "  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=False))
        lines.append(f"{head}  {r[-1]}".rstrip())
    return "\n".join(lines)


ENVIRONMENT = ("XMARGIN_BACKEND", "XMARGIN_CHECK_VALUES", "XMARGIN_NUM_THREADS", "TRITON_INTERPRET")


def report() -> dict[str, Any]:
    """What ``python -m xmargin info`` reports, as data (``--json`` prints it)."""
    import xmargin
    from xmargin.backends import _probe

    _probe.cuda_device_reason(probe=True)  # info may import frameworks to look for GPUs
    return {
        "xmargin": xmargin.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {label: _version(dist) for label, dist in PACKAGES},
        "devices": _devices(),
        "cuda": _cuda(),
        "backends": [
            {"name": s.name, "usable": s.usable, "reason": s.reason}
            for s in xmargin.backends.explain()
        ],
        "environment": {k: os.environ[k] for k in ENVIRONMENT if k in os.environ},
    }


def info(data: dict[str, Any] | None = None) -> str:
    """The report of ``python -m xmargin info``, as text."""
    data = report() if data is None else data
    versions = [("package", "version"), ("python", data["python"]), ("xmargin", data["xmargin"])]
    versions += [(k, v or "not installed") for k, v in data["packages"].items()]
    versions += [(f"CUDA {k.replace('_', ' ')}", v) for k, v in data["cuda"].items() if v]
    devices = [("device", "description")]
    for d in data["devices"]:
        extra = ", ".join(
            f"{label} {d[key]}"
            for key, label in (("compute_capability", "sm"), ("memory_gib", "GiB"))
            if key in d
        )
        where = d["device"] if d["device"] == "cpu" else f"{d['device']} ({d['framework']})"
        devices.append((where, d["description"] + (f" ({extra})" if extra else "")))
    backends = [("backend", "usable", "why / what")]
    backends += [(b["name"], "yes" if b["usable"] else "no", b["reason"]) for b in data["backends"]]
    parts = [
        f"xmargin {data['xmargin']} on {data['platform']}",
        "",
        _table(versions),
        "",
        _table(devices),
        "",
        _table(backends),
    ]
    if data["environment"]:
        env = " ".join(f"{k}={v}" for k, v in data["environment"].items())
        parts += ["", "environment: " + env]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xmargin", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    cmd = sub.add_parser(
        "info", help="versions, devices and backends (with why a backend is unusable)"
    )
    cmd.add_argument("--json", action="store_true", help="as JSON (for bug reports and CI logs)")
    args = parser.parse_args(argv)
    if args.command != "info":
        parser.print_help()
        return 2
    if args.json:
        print(json.dumps(report(), indent=2))
    else:
        print(info())
    return 0


if __name__ == "__main__":
    sys.exit(main())
