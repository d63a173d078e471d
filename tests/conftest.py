"""Shared fixtures: the array namespaces every loss test runs on, and conversions."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

# Triton kernels run on the CPU through Triton's interpreter when no CUDA device is present.
# The variable must be set before triton is first imported (it decides at decoration time), so
# it is set here, before any test module imports anything.
if "TRITON_INTERPRET" not in os.environ:
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"
    except ImportError:
        pass

# Hypothesis: a fixed, CI-sized budget; `HYPOTHESIS_PROFILE=thorough` for more examples.
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci", max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.register_profile("thorough", max_examples=2000, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover
    pass


def _cupy_reason() -> str | None:
    try:
        import cupy
    except Exception as exc:  # not installed, or broken without a driver
        return f"cupy not importable ({type(exc).__name__})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "cupy installed but no CUDA device"
    except Exception as exc:
        return f"cupy installed but no CUDA device ({type(exc).__name__})"
    return None


class Namespace:
    """One array library under test: builds arrays from NumPy and reads them back."""

    def __init__(self, name: str, module, asarray, to_numpy):
        self.name = name
        self.module = module
        self._asarray = asarray
        self._to_numpy = to_numpy

    def asarray(self, a, dtype=None):
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        return self._asarray(a)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(self._to_numpy(a))

    def __repr__(self) -> str:
        return self.name


def _make(name: str) -> Namespace:
    if name == "numpy":
        return Namespace("numpy", np, np.asarray, np.asarray)
    if name == "torch":
        torch = importlib.import_module("torch")
        return Namespace("torch", torch, torch.from_numpy, lambda a: a.detach().cpu().numpy())
    if name == "array_api_strict":
        xs = importlib.import_module("array_api_strict")
        return Namespace("array_api_strict", xs, xs.asarray, lambda a: np.asarray(a))
    if name == "cupy":
        cp = importlib.import_module("cupy")
        return Namespace("cupy", cp, cp.asarray, cp.asnumpy)
    if name == "jax":  # float64 needs x64: the xp fixture enables it around each test
        jnp = importlib.import_module("jax.numpy")
        return Namespace("jax", jnp, jnp.asarray, np.asarray)
    if name == "dask":  # several chunks along the batch axis
        da = importlib.import_module("dask.array")

        def chunked(a):
            return da.from_array(
                a, chunks=(max(1, -(-a.shape[0] // 2)), *a.shape[1:]) if a.ndim else ()
            )

        return Namespace("dask", da, chunked, lambda a: np.asarray(a.compute()))
    raise ValueError(name)


def _skip_reason(name: str) -> str | None:
    if name == "cupy":
        return _cupy_reason()
    module = {"array_api_strict": "array_api_strict", "dask": "dask.array"}.get(name, name)
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{name} not installed ({type(exc).__name__})"
    return None


# Namespaces the losses are tested on (each skipped, with the reason, where not installed).
NAMESPACES = ["numpy", "torch", "array_api_strict", "cupy", "jax", "dask"]


@pytest.fixture(params=NAMESPACES)
def xp(request):
    reason = _skip_reason(request.param)
    if reason is not None:
        pytest.skip(reason)
    ns = _make(request.param)
    if request.param == "jax":
        import jax

        with jax.enable_x64(True):
            yield ns
    else:
        yield ns


def assert_close(actual, expected, *, rtol: float, atol: float, what: str) -> None:
    """Element-wise closeness with NaN equal to NaN and a message naming the worst entry."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape} != expected {expected.shape}"
    )
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), (
        f"{what}: NaN at {np.argwhere(nan_a != nan_e)[:5].tolist()} differ "
        f"(actual {actual[nan_a != nan_e][:5]}, expected {expected[nan_a != nan_e][:5]})"
    )
    ok = np.isclose(actual, expected, rtol=rtol, atol=atol) | nan_a
    if not ok.all():
        err = np.where(ok, 0.0, np.abs(actual - expected))
        worst = np.unravel_index(np.argmax(err), err.shape) if err.ndim else ()
        raise AssertionError(
            f"{what}: {int((~ok).sum())} of {ok.size} values differ; worst at index "
            f"{tuple(int(i) for i in worst)}: actual {actual[worst]!r}, expected "
            f"{expected[worst]!r} (rtol={rtol}, atol={atol})"
        )


def bitwise_equal(a, b) -> bool:
    """Two torch tensors with the same bits (NaN equal to the same NaN, -0.0 unlike 0.0)."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool((a.reshape(-1).contiguous().view(torch.uint8)
                 == b.reshape(-1).contiguous().view(torch.uint8)).all())  # fmt: skip
