"""The backend registry: what is known and usable and why, registration, the choice order
(backend= > use_backend > XMARGIN_BACKEND > automatic), scoping across threads and async
tasks, errors, lazy detection, and ``python -m xmargin info``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import numpy as np
import pytest

import xmargin
from xmargin import backends
from xmargin.backends import _probe, _registry

X = np.array([[0.1, 0.2, 0.4, 0.8], [0.5, -0.3, 0.9, 0.0]])
T = np.array([[3, 0, -1, 1], [2, -1, 0, 0]])


@pytest.fixture
def spies():
    """Two registered backends that record which thread/task called them."""
    calls: dict[str, list] = {"spy_a": [], "spy_b": []}
    portable = backends.get("portable").load()

    def make(name):
        def impl(x, t, **kw):
            calls[name].append(threading.current_thread().name)
            return portable(x, t, **kw)

        return impl

    for name in calls:
        backends.register(name, make(name))
    yield calls
    for name in calls:
        backends.unregister(name)


def test_every_known_backend_is_explained():
    report = backends.explain()
    names = [s.name for s in report]
    assert names[:5] == ["numba", "reference", "portable", "triton", "cupy"]
    by_name = {s.name: s for s in report}
    assert by_name["numba"].usable  # a core dependency
    assert by_name["reference"].usable and by_name["portable"].usable
    for gpu in ("triton", "cupy"):
        s = by_name[gpu]
        if not s.usable:
            assert any(w in s.reason for w in ("not installed", "no CUDA device", "missing")), s
    text = str(report)
    assert text.splitlines()[0].split() == ["backend", "usable", "why", "/", "what"]
    assert all(name in text for name in names)


def test_too_old_triton_is_reported_not_run(monkeypatch):
    """An installed Triton older than the kernels need is unusable, with the reason."""
    if not _probe.installed("triton"):
        pytest.skip("triton is not installed: the version check is not reached")
    import importlib.metadata

    real = importlib.metadata.version
    fake = {"triton": "3.2.0+git1234"}
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: fake.get(name) or real(name))  # fmt: skip
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    _probe.installed_version.cache_clear()  # read once per process: this test changes it
    try:
        s = {s.name: s for s in backends.explain()}["triton"]
        assert not s.usable and "triton 3.2.0+git1234 is too old" in s.reason
        assert ">=3.4" in s.reason
        # the interpreter needs 3.9 (3.6's rejects the kernels' loop bounds)
        fake["triton"] = "3.6.0"
        _probe.installed_version.cache_clear()
        s = {s.name: s for s in backends.explain()}["triton"]
        assert not s.usable and "triton 3.6.0 is too old" in s.reason
        assert ">=3.9 under TRITON_INTERPRET=1" in s.reason
        fake["triton"] = "3.9.0"
        _probe.installed_version.cache_clear()
        assert {s.name: s for s in backends.explain()}["triton"].usable
    finally:
        _probe.installed_version.cache_clear()


def test_version_metadata_is_read_once(monkeypatch):
    """The registry asks a GPU backend's status on every call; the version check behind it
    reads package metadata once per process, not per call (on an H200 that read left a
    Triton forward at 619 µs of wall time for 239 µs of kernels)."""
    if not _probe.installed("triton"):
        pytest.skip("triton is not installed: the version check is not reached")
    import importlib.metadata

    from xmargin.backends import triton as tb

    reads = []
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: reads.append(name) or real(name))  # fmt: skip
    _probe.installed_version.cache_clear()
    try:
        for _ in range(3):
            tb.status()
    finally:
        _probe.installed_version.cache_clear()
    assert reads.count("triton") == 1, reads


def test_explain_for_arrays_says_wrong_array_type():
    xs = pytest.importorskip("array_api_strict")
    report = {s.name: s for s in backends.explain(xs.asarray(X))}
    assert not report["reference"].usable and not report["numba"].usable
    assert "NumPy arrays and torch CPU tensors" in report["reference"].reason
    assert "NumPy arrays and torch CPU tensors" in report["numba"].reason
    assert report["portable"].usable
    assert backends.available(xs.asarray(X)) == ["portable"]
    assert backends.available(X)[:3] == ["numba", "reference", "portable"]


def test_automatic_dispatch():
    assert _registry._automatic(X) == "numba"
    torch = pytest.importorskip("torch")
    assert _registry._automatic(torch.zeros(2, 3)) == "numba"
    xs = pytest.importorskip("array_api_strict")
    assert _registry._automatic(xs.asarray(X)) == "portable"
    assert (type(X), "cpu") in _registry._AUTO_CACHE  # cached per type and device kind


def test_register_and_select(spies):
    ref = float(xmargin.multilabel_margin_loss(X, T))
    assert float(xmargin.multilabel_margin_loss(X, T, backend="spy_a")) == pytest.approx(ref)
    assert len(spies["spy_a"]) == 1 and not spies["spy_b"]
    assert "spy_a" in backends.available()
    assert "spy_a" in [s.name for s in backends.explain()]


def test_register_errors():
    portable = backends.get("portable").load()
    with pytest.raises(ValueError, match="'reference' is a built-in backend"):
        backends.register("reference", portable)
    with pytest.raises(ValueError, match="identifier"):
        backends.register("not a name", portable)
    with pytest.raises(TypeError, match="callable"):
        backends.register("fine", 42)
    backends.register("twice", portable)
    try:
        with pytest.raises(ValueError, match="taken"):
            backends.register("twice", portable)
        backends.register("twice", portable, replace=True)
    finally:
        backends.unregister("twice")
    with pytest.raises(ValueError, match="not a registered third-party backend"):
        backends.unregister("portable")


def test_precedence(spies, monkeypatch):
    monkeypatch.setenv("XMARGIN_BACKEND", "spy_a")
    xmargin.multilabel_margin_loss(X, T)
    assert len(spies["spy_a"]) == 1
    with xmargin.use_backend("spy_b"):
        xmargin.multilabel_margin_loss(X, T)  # the scope beats the environment
        assert len(spies["spy_b"]) == 1
        xmargin.multilabel_margin_loss(X, T, backend="spy_a")  # the argument beats both
        assert len(spies["spy_a"]) == 2
        with xmargin.use_backend(None):  # back to automatic inside, env still applies
            xmargin.multilabel_margin_loss(X, T)
            assert len(spies["spy_a"]) == 3
    monkeypatch.delenv("XMARGIN_BACKEND")
    xmargin.multilabel_margin_loss(X, T)
    assert len(spies["spy_a"]) == 3 and len(spies["spy_b"]) == 1


def test_unknown_and_unusable_backends(monkeypatch):
    with pytest.raises(
        ValueError,
        match=r"unknown backend 'nope' \(from backend=\); valid choices: 'numba', 'reference', 'portable', 'triton', 'cupy'",
    ):
        xmargin.multilabel_margin_loss(X, T, backend="nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"), xmargin.use_backend("nope"):
        pass
    monkeypatch.setenv("XMARGIN_BACKEND", "nope")
    with pytest.raises(ValueError, match="from the XMARGIN_BACKEND environment variable"):
        xmargin.multilabel_margin_loss(X, T)
    monkeypatch.delenv("XMARGIN_BACKEND")
    xs = pytest.importorskip("array_api_strict")
    with pytest.raises(
        ValueError,
        match=r"backend 'reference' \(from backend=\) cannot run here: reference runs on NumPy arrays.*Valid choices for these arrays: 'portable'",
    ):
        xmargin.multilabel_margin_loss(xs.asarray(X), xs.asarray(T), backend="reference")
    if "triton" not in backends.available(X):
        with pytest.raises(
            ValueError,
            match=r"backend 'triton' .* cannot run here: (triton is not installed|.*CUDA)",
        ):
            xmargin.multilabel_margin_loss(X, T, backend="triton")
    if "cupy" not in backends.available(X):
        with pytest.raises(ValueError, match=r"backend 'cupy' .* cannot run here"):
            xmargin.multilabel_margin_loss(X, T, backend="cupy")


def test_use_backend_is_thread_local(spies):
    """Concurrent threads with different choices each get their own backend and right values."""
    expected = float(xmargin.multilabel_margin_loss(X, T))
    barrier = threading.Barrier(4)
    results: dict[str, list[float]] = {}

    def worker(choice):
        with xmargin.use_backend(choice):
            barrier.wait()
            out = []
            for _ in range(20):
                out.append(float(xmargin.multilabel_margin_loss(X, T)))
            results[threading.current_thread().name] = out

    threads = [
        threading.Thread(target=worker, args=(c,), name=f"{c}-{i}")
        for i, c in enumerate(["spy_a", "spy_b", "spy_a", "spy_b"])
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(spies["spy_a"]) == sorted([n for n in results if n.startswith("spy_a")] * 20)
    assert sorted(spies["spy_b"]) == sorted([n for n in results if n.startswith("spy_b")] * 20)
    assert all(v == pytest.approx(expected) for vs in results.values() for v in vs)


def test_use_backend_is_task_local(spies):
    async def task(choice, n):
        with xmargin.use_backend(choice):
            for _ in range(n):
                await asyncio.sleep(0)  # interleave with the other task
                xmargin.multilabel_margin_loss(X, T)

    async def main():
        await asyncio.gather(task("spy_a", 5), task("spy_b", 7))

    asyncio.run(main())
    assert len(spies["spy_a"]) == 5 and len(spies["spy_b"]) == 7


def test_without_numba_dispatch_falls_back_to_reference(monkeypatch):
    """Where Numba cannot import, NumPy and torch CPU arrays go to reference, and explain()
    says why."""
    from xmargin.backends import numba as nb

    monkeypatch.setattr(nb, "status", lambda: "numba does not import (ImportError: test)")
    monkeypatch.setattr(_registry, "_AUTO_CACHE", {})
    assert _registry._automatic(X) == "reference"
    s = {s.name: s for s in backends.explain()}["numba"]
    assert not s.usable and "numba does not import" in s.reason
    assert float(xmargin.multilabel_margin_loss(X, T)) == pytest.approx(0.5125)
    with pytest.raises(ValueError, match=r"backend 'numba' .* cannot run here: numba does not"):
        xmargin.multilabel_margin_loss(X, T, backend="numba")


def test_detection_imports_no_framework():
    code = (
        "import sys, numpy as np, xmargin;"
        "xmargin.backends.explain(); xmargin.backends.available(np.zeros((2, 2)));"
        "xmargin.multilabel_margin_loss(np.zeros((2, 3)), np.array([[0, -1, 1], [2, 1, 0]]));"
        "bad = [m for m in ('torch', 'cupy', 'triton', 'jax', 'dask') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_info_command():
    result = subprocess.run(
        [sys.executable, "-m", "xmargin", "info"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in ("python", "numpy", "array-api-compat", "numba", "torch", "triton", "cupy", "jax",
                  "dask"):  # fmt: skip
        assert f"\n{label} " in out, label
    assert "\ncpu " in out
    for name in ("numba", "reference", "portable", "triton", "cupy"):
        assert f"\n{name} " in out
    assert "usable" in out
    usage = subprocess.run([sys.executable, "-m", "xmargin"], capture_output=True, text=True)
    assert usage.returncode == 2 and "info" in usage.stdout


def test_info_json():
    import json

    result = subprocess.run([sys.executable, "-m", "xmargin", "info", "--json"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["xmargin"] == xmargin.__version__
    assert data["packages"]["numpy"] == np.__version__
    assert [b["name"] for b in data["backends"]] == [s.name for s in xmargin.backends.explain()]
    usable = {b["name"]: b["usable"] for b in data["backends"]}
    assert usable["reference"] is True and usable["numba"] is True
    assert set(data["cuda"]) == {"driver", "runtime", "nvrtc", "torch_cuda"}
    assert data["devices"][0]["device"] == "cpu"
    for d in data["devices"][1:]:  # CUDA devices carry their compute capability
        assert (
            "compute_capability" in d
            or "could not" in d["description"]
            or "no CUDA" in d["description"]
        )
