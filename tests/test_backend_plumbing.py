"""The plumbing the backends share (xmargin/backends/_common.py, _host.py, xmargin/_interop.py):
one accumulation dtype rule for the loss layer and every GPU launcher, the small arguments of
the GPU launches, the CPU backends' targets and ``hinge``, and the kernel contract's text."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from xmargin._interop import as_torch, compute_dtype
from xmargin.backends import _common, _host, cupy, numba, portable, reference, triton

RULE = {"float64": "float64", "float32": "float32", "float16": "float32", "bfloat16": "float32"}


@pytest.mark.parametrize("score", ["float64", "float32", "float16"])
def test_accumulation_dtype_rule_numpy(score):
    assert compute_dtype(np, np.dtype(score)) == np.dtype(RULE[score])


@pytest.mark.parametrize("score", sorted(RULE))
def test_accumulation_dtype_rule_torch(score):
    torch = pytest.importorskip("torch")
    assert compute_dtype(torch, getattr(torch, score)) is getattr(torch, RULE[score])


@pytest.mark.parametrize("score", sorted(RULE))
def test_triton_launcher_accumulates_by_the_rule(score):
    """The launch plan's loss, scratch and the kernels' F follow compute_dtype (meta tensors:
    nothing allocated, no GPU); half gradients of several tiles get a float32 row to sum in."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("triton")
    import triton.language as tl

    dtype, acc = getattr(torch, score), getattr(torch, RULE[score])
    for k, tiles in ((5, 1), (300, 2)):
        x = torch.empty((4, 1000), dtype=dtype, device="meta")
        t = torch.empty((4, k), dtype=torch.int64, device="meta")
        w = torch.empty((1000,), dtype=torch.float64, device="meta")
        loss, grad, steps = triton.launch_plan(
            x, t, margin=1.0, p=1, weight=w, want_grad=True, grad_scale=0.5
        )
        assert loss.dtype == acc and grad is not None and grad.dtype == dtype
        for _, _, args, kwargs in steps:
            assert kwargs["F"] == (tl.float64 if acc == torch.float64 else tl.float32)
            assert all(
                a.dtype in (acc, dtype, t.dtype, torch.int32) for a in args if torch.is_tensor(a)
            )
        if tiles > 1:
            _, _, args, kwargs = steps[0]
            assert kwargs["ACC_GRAD"] == (dtype != acc)


@pytest.mark.parametrize("score", sorted(RULE))
def test_cupy_frame_accumulates_by_the_rule(score):
    """The cupy launcher's framing on torch tensors: dtypes as objects or names."""
    torch = pytest.importorskip("torch")
    frame = cupy._Frame(torch.zeros(3, 4, dtype=getattr(torch, score)))
    acc = compute_dtype(frame.lib, getattr(torch, score))
    assert acc is getattr(torch, RULE[score])
    assert frame.empty((2,), acc).dtype == acc and frame.empty((2,), "int32").dtype == torch.int32
    assert frame.as_acc(torch.ones(4, dtype=torch.float64), acc).dtype == acc


def test_torch_acc():
    torch = pytest.importorskip("torch")
    cpu = torch.device("cpu")
    out = _common.torch_acc(0.25, torch.float32, cpu, 3)  # value_and_grad's folded 1/C
    assert out.dtype == torch.float32 and out.tolist() == [0.25] * 3
    out = _common.torch_acc(torch.tensor([2.0], dtype=torch.float64), torch.float32, cpu, 3)
    assert out.is_contiguous() and out.dtype == torch.float32 and out.tolist() == [2.0] * 3
    weight = torch.arange(6, dtype=torch.float32)[::2]  # strided
    out = _common.torch_acc(weight, torch.float64, cpu)
    assert out.is_contiguous() and out.dtype == torch.float64 and out.tolist() == [0, 2, 4]
    out = _common.torch_acc(np.array([1.0, 3.0]), torch.float32, cpu)  # DLPack: zero-copy view
    assert out.tolist() == [1.0, 3.0]


def test_as_torch():
    torch = pytest.importorskip("torch")
    t = torch.zeros(3)
    assert as_torch(t) is t
    a = np.arange(3.0)
    view = as_torch(a)
    a[0] = 7.0
    assert isinstance(view, torch.Tensor) and view.tolist() == [7.0, 1.0, 2.0]


def test_integer_targets():
    t = np.array([[1, -1]], dtype=np.int64)
    assert _host.integer_targets(t, 4) is t
    t32 = np.array([[1, -1]], dtype=np.int32)
    assert _host.integer_targets(t32, 4, ("int64", "int32")) is t32
    assert _host.integer_targets(t32, 4).dtype == np.int64
    big = np.array([[2**64 - 1, 1, 3]], dtype=np.uint64)  # would wrap to -1, a terminator
    assert _host.integer_targets(big, 4).tolist() == [[4, 1, 3]]
    assert _host.integer_targets([[1, 2]], 4).dtype == np.int64


@pytest.mark.parametrize("backend", [numba, reference])
def test_cpu_backends_hinge_on_any_host_array(backend):
    assert backend.hinge.__name__ == "hinge" and backend.hinge.__module__ == backend.__name__
    assert inspect.signature(backend.hinge) == inspect.signature(backend.hinge_numpy)
    x = np.array([[0.1, 0.2, 0.4, 0.8]])
    t = np.array([[3, 0, -1, 1]])
    want = backend.hinge_numpy(x, t, margin=1.0, p=1, weight=None, want_grad=True)
    got = backend.hinge(x, t, margin=1.0, p=1, weight=None, want_grad=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    torch = pytest.importorskip("torch")
    loss, grad = backend.hinge(
        torch.from_numpy(x), torch.from_numpy(t), margin=1.0, p=1, weight=None, want_grad=False
    )
    assert isinstance(loss, torch.Tensor) and grad is None
    np.testing.assert_array_equal(loss.numpy(), want[0])


def test_reference_takes_no_grad_scale():
    with pytest.raises(TypeError):
        reference.hinge(np.zeros((1, 2)), np.zeros((1, 1), np.int64), margin=1.0, p=1,
                        weight=None, want_grad=True, grad_scale=2.0)  # fmt: skip


def test_every_hinge_documents_the_contract():
    for fn in (numba.hinge_numpy, reference.hinge_numpy, portable.hinge, triton.hinge, cupy.hinge):
        doc = inspect.getdoc(fn)
        assert _common.CONTRACT in doc, fn
        assert not doc.startswith(_common.CONTRACT), "the backend's own text comes first"
    for fn in (triton.hinge, cupy.hinge):
        assert _common.GPU_NOTES in inspect.getdoc(fn)
    for fn in (numba.hinge_numpy, reference.hinge_numpy, portable.hinge):
        assert f"{fn.__name__}(np.array(" in fn.__doc__  # the shared example, run as a doctest
