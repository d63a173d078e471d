"""The CuPy raw-CUDA backend.

Without a GPU: every ``.cu`` compiles with nvcc for sm_80 and sm_90 and with NVRTC (the
compiler CuPy uses); the kernel's logic runs on the CPU through tests/tools/cuda_emulator.cpp
(one std::thread per CUDA thread) against the reference backend; the host code's source
loading, cache keys, entry points, dispatch and errors are checked. With a GPU (``gpu`` mark):
parity on CuPy arrays and torch CUDA tensors, autograd, streams, determinism.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cuda_emu
import numpy as np
import pytest

import xmargin
from xmargin.backends import cupy as cb
from xmargin.backends import reference

from conftest import assert_close

ROOT = Path(__file__).resolve().parents[1]
CU_FILES = sorted((ROOT / "kernels" / "cuda").glob("*.cu"))


def _gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


GPU = _gpu()


# ---------------------------------------------------------------------------------------------
# compilers
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles(cu, arch, tmp_path):
    result = subprocess.run(
        ["nvcc", f"-arch=sm_{arch}", "-cubin", "-Xptxas", "-v", "-o", str(tmp_path / "k.cubin"), str(cu)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "warning" not in out.lower(), out
    entries = re.findall(r"Compiling entry function '(\w+)'", out)
    assert len(entries) == 8, out  # 4 score dtypes x 2 target dtypes
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
    assert spills and all(s == ("0", "0") for s in spills), f"register spills: {out}"


def test_nvrtc_compiles():
    tool = ROOT / "tests" / "tools" / "nvrtc_compile.py"
    result = subprocess.run(
        [sys.executable, str(tool), "80", "90"], capture_output=True, text=True, timeout=600
    )
    if result.returncode == 3:
        pytest.skip("no libnvrtc here (pip install nvidia-cuda-nvrtc)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok") == 2


# ---------------------------------------------------------------------------------------------
# the kernel's logic, emulated on the CPU
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    exe = cuda_emu.build(tmp_path_factory.mktemp("emu"))
    if exe is None:
        pytest.skip("no C++20 compiler for the CUDA emulator")
    return exe


def _compare(emulator, x, t, *, dtype="float32", tol=None, **kw):
    loss, grad, values = cuda_emu.run(emulator, x, t, dtype=dtype, **kw)
    ref_loss, ref_grad = reference.hinge_numpy(
        values, t, margin=kw.get("margin", 1.0), p=kw.get("p", 1), weight=kw.get("weight"),
        want_grad=True,
    )  # fmt: skip
    if kw.get("scale") is not None:
        ref_grad = ref_grad * np.asarray(kw["scale"])[:, None]
    if tol is None:
        tol = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype]
    assert_close(loss, ref_loss, rtol=tol, atol=tol, what=f"emulated cuda loss ({dtype})")
    if kw.get("want_grad", True):
        assert_close(grad, ref_grad, rtol=tol, atol=tol, what=f"emulated cuda grad ({dtype})")
    return loss, grad


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("target_dtype", ["int32", "int64"])
def test_emulated_dtypes(emulator, dtype, target_dtype):
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 9, size=(3, 45)) / 4  # exactly representable in every dtype
    t = rng.integers(-1, 45, size=(3, 20))
    for p in (1, 2):
        _compare(emulator, x, t, dtype=dtype, target_dtype=target_dtype, p=p, margin=0.5)


@pytest.mark.parametrize(
    ("n", "c", "k"), [(2, 1, 1), (3, 7, 7), (2, 9, 0), (2, 300, 12), (2, 33, 40), (1, 5, 5)]
)
def test_emulated_shapes_and_options(emulator, n, c, k):
    rng = np.random.default_rng(n * 100 + c + k)
    x = rng.integers(-6, 7, size=(n, c)) / 2  # halves: exact ties at the margin
    t = rng.integers(-1, c, size=(n, k))
    if n >= 2 and k >= 3:
        t[0, :3] = [c - 1, c - 1, -1]  # duplicate, terminator, values after it
    w = np.linspace(-1.0, 2.0, c)
    for kw in (
        {},
        {"p": 2, "weight": w},
        {"margin": -0.5, "weight": w, "scale": rng.uniform(-2, 2, n)},
    ):
        _compare(emulator, x, t, dtype="float64", **kw)
        _compare(emulator, x, t, dtype="float64", transposed=True, **kw)


def test_emulated_several_tiles_and_chunks(emulator):
    """More than 256 positives (several threshold tiles) and more than 256 classes."""
    rng = np.random.default_rng(7)
    x = rng.integers(-20, 21, size=(2, 600)) / 4
    t = rng.integers(0, 600, size=(2, 700))
    t[1, 290:] = -1
    for p in (1, 2):
        _compare(emulator, x, t, dtype="float64", p=p, weight=rng.uniform(-1, 2, 600))
        _compare(emulator, x, t, dtype="float32", p=p, tol=1e-5)


def test_emulated_nan_rows_loss_only_and_determinism(emulator):
    x = np.array([[np.nan, 0.0, 1.0], [0.5, 0.2, 0.1], [np.nan, 0.0, 1.0]])
    t = np.array([[2, -1, 0], [0, -1, -1], [-1, 0, 0]])
    loss, grad = _compare(emulator, x, t, dtype="float32")
    assert np.isnan(loss[0]) and np.isnan(grad[0]).all() and loss[2] == 0 and (grad[2] == 0).all()
    loss_only, none, _ = cuda_emu.run(emulator, x, t, want_grad=False)
    assert none is None and np.array_equal(loss_only, loss, equal_nan=True)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 200))
    t = rng.integers(0, 200, size=(2, 50))
    a = cuda_emu.run(emulator, x, t, p=2)
    b = cuda_emu.run(emulator, x, t, p=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ---------------------------------------------------------------------------------------------
# host code without a GPU
# ---------------------------------------------------------------------------------------------
def test_source_is_found_and_points_at_its_file():
    code = cb.source()
    first = code.splitlines()[0]
    assert first == f'#line 1 "{cb.source_path().as_posix()}"'
    assert "multilabel_hinge_impl" in code and cb.source_path().is_file()


def test_module_is_compiled_once_per_device_and_source_read_once(monkeypatch):
    """No file I/O or compile on the hot path: the source is read once per process and the
    module compiled once per (device, architecture, source)."""
    reads, hashes, compiles = [], [], []
    monkeypatch.setattr(cb, "_MODULES", {})
    cb.source.cache_clear()
    cb._digest.cache_clear()
    real_read, real_sha = Path.read_text, cb.hashlib.sha256
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or real_read(self, *a, **k))  # fmt: skip
    monkeypatch.setattr(cb.hashlib, "sha256", lambda *a: hashes.append(1) or real_sha(*a))

    class FakeCupy:
        current = 0

        class cuda:
            @staticmethod
            def Device():
                return types.SimpleNamespace(id=FakeCupy.current,
                                             compute_capability=("90", "80")[FakeCupy.current])  # fmt: skip

        @staticmethod
        def RawModule(code, options):
            compiles.append(code)
            return object()

    try:
        first = cb._module(FakeCupy)
        assert cb._module(FakeCupy) is first and cb._module(FakeCupy) is first
        FakeCupy.current = 1
        second = cb._module(FakeCupy)
        assert second is not first and cb._module(FakeCupy) is second
        assert reads == [cb.source_path()] and len(hashes) == 1 and len(compiles) == 2
        assert compiles[0].startswith("#line 1 ") and "multilabel_hinge_impl" in compiles[0]
    finally:
        cb.source.cache_clear()
        cb._digest.cache_clear()


def test_cache_key():
    a = cb.cache_key(0, "90", "code")
    assert a == cb.cache_key(0, "90", "code")
    assert a != cb.cache_key(1, "90", "code")
    assert a != cb.cache_key(0, "80", "code")
    assert a != cb.cache_key(0, "90", "code2")


def test_entry_points():
    assert cb.entry_point("float32", "int64") == "xm_multilabel_hinge_f32_i64"
    assert cb.entry_point("torch.bfloat16", "torch.int32") == "xm_multilabel_hinge_bf16_i32"
    for score in ("float16", "bfloat16", "float32", "float64"):
        for target in ("int32", "int64"):
            assert cb.entry_point(score, target) in cb.source()
    with pytest.raises(ValueError, match="scores must be float16, bfloat16, float32 or float64"):
        cb.entry_point("int8", "int64")
    with pytest.raises(ValueError, match="targets must be int32 or int64"):
        cb.entry_point("float32", "uint8")


@pytest.mark.skipif(GPU, reason="checks the no-GPU answers")
def test_without_a_device_cupy_is_unusable_and_says_why():
    status = {s.name: s for s in xmargin.backends.explain()}["cupy"]
    assert not status.usable
    assert "not installed" in status.reason or "no CUDA device" in status.reason
    x, t = np.zeros((2, 3)), np.array([[0, -1, 1], [1, 2, 0]])
    with pytest.raises(ValueError, match=r"backend 'cupy' \(from backend=\) cannot run here"):
        xmargin.multilabel_margin_loss(x, t, backend="cupy")


# ---------------------------------------------------------------------------------------------
# on a GPU
# ---------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_gpu_cupy_arrays(dtype, p, weighted):
    import cupy

    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 1000)).astype(dtype)
    t = rng.integers(-1, 1000, size=(17, 300))
    w = rng.uniform(0.5, 2, 1000) if weighted else None
    loss, grad = cb.hinge(cupy.asarray(x), cupy.asarray(t), margin=0.5, p=p,
                          weight=None if w is None else cupy.asarray(w), want_grad=True)  # fmt: skip
    ref_loss, ref_grad = reference.hinge_numpy(
        x.astype(np.float64), t, margin=0.5, p=p, weight=w, want_grad=True
    )
    tol = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-12}[dtype]
    assert_close(cupy.asnumpy(loss), ref_loss, rtol=tol, atol=tol, what="cupy loss")
    assert_close(
        cupy.asnumpy(grad).astype(np.float64), ref_grad, rtol=tol, atol=tol, what="cupy grad"
    )
    again = cb.hinge(cupy.asarray(x), cupy.asarray(t), margin=0.5, p=p,
                     weight=None if w is None else cupy.asarray(w), want_grad=True)  # fmt: skip
    assert bool((again[0] == loss).all()) and bool((again[1] == grad).all())  # deterministic


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no CUDA device")
def test_gpu_value_and_grad_on_cupy():
    import cupy

    x = cupy.asarray(np.random.default_rng(1).normal(size=(8, 50)))
    t = cupy.asarray(np.random.default_rng(2).integers(-1, 50, size=(8, 50)))
    loss, g = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(x, t)
    assert isinstance(g, cupy.ndarray)
    ref_loss, ref_g = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
        cupy.asnumpy(x), cupy.asnumpy(t)
    )
    assert_close(float(loss), ref_loss, rtol=1e-12, atol=1e-12, what="loss")
    assert_close(cupy.asnumpy(g), ref_g, rtol=1e-12, atol=1e-12, what="grad")


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_gpu_torch_tensors_with_autograd_on_a_side_stream(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(size=(9, 300)), device="cuda").to(getattr(torch, dtype))
    t = torch.tensor(rng.integers(-1, 300, size=(9, 300)), device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        leaf = x.clone().requires_grad_()
        out = xmargin.multilabel_margin_loss(leaf, t, backend="cupy", reduction="sum")
        out.backward()
    torch.cuda.synchronize()
    ref_leaf = x.double().cpu().requires_grad_()
    ref = xmargin.multilabel_margin_loss(ref_leaf, t.cpu(), backend="reference", reduction="sum")
    ref.backward()
    tol = 1e-5 if dtype == "float32" else 1.6e-2
    assert_close(
        out.detach().double().cpu(), ref.detach(), rtol=tol, atol=tol, what="torch+cupy loss"
    )
    assert_close(
        leaf.grad.double().cpu(), ref_leaf.grad, rtol=tol, atol=tol, what="torch+cupy grad"
    )
