"""Every hinge backend against the others, the oracle and PyTorch: values and gradients over
shapes (T = 0, T = C, T = 2000, duplicates, values after the terminator), dtypes and options."""

from __future__ import annotations

import numpy as np
import pytest

import xmargin
from xmargin import backends

import oracle
from conftest import assert_close

torch = pytest.importorskip("torch")

CPU_BACKENDS = ["numba", "reference", "portable"]
# per-dtype tolerances, relative to the float64 oracle
TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def _problem(n, c, k, seed, dtype=np.float64, grid=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 5, size=(n, c)) / 2 if grid else rng.normal(size=(n, c))
    t = rng.integers(-1, c, size=(n, k))
    return x.astype(dtype), t


SHAPES = {
    "C=1": (3, 1, 1),
    "C=7,K=C": (5, 7, 7),
    "K<C": (6, 13, 4),
    "K>C": (4, 5, 9),
    "T=0": (3, 6, 0),
    "N=1": (1, 17, 17),
    "N=0": (0, 5, 5),
    "wide": (3, 700, 50),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.25, -0.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_backend_against_oracle(backend, shape, p, margin, weighted):
    n, c, k = SHAPES[shape]
    x, t = _problem(n, c, k, seed=hash((shape, p)) % 1000, grid=True)
    if n >= 2 and k >= 3:
        t[0, :3] = [c - 1, c - 1, -1]  # a duplicate then the terminator
        t[1, 0] = -1  # an empty row, values after the terminator
    weight = np.linspace(-1.0, 2.0, c) if weighted else None
    hinge = backends.get(backend).load()
    loss, grad = hinge(x, t, margin=margin, p=p, weight=weight, want_grad=True)
    ref_loss, ref_grad = oracle.multilabel_margin_dense(x, t, margin=margin, p=p, weight=weight)
    what = f"{backend} {shape} p={p} margin={margin} weighted={weighted}"
    assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12, what=f"loss {what}")
    assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12, what=f"grad {what}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", ["C=1", "C=7,K=C", "N=1", "wide"])
def test_backend_against_torch(backend, shape, reduction):
    """PyTorch's own layout (K = C), through the public loss with backend=, values and
    autograd gradients in float64."""
    n, c, _ = SHAPES[shape]
    x, t = _problem(n, c, c, seed=5)
    xt = torch.tensor(x, requires_grad=True)
    xr = torch.tensor(x, requires_grad=True)
    ours = xmargin.multilabel_margin_loss(xt, torch.tensor(t), reduction=reduction, backend=backend)
    ref = torch.nn.functional.multilabel_margin_loss(xr, torch.tensor(t), reduction=reduction)
    assert_close(ours.detach(), ref.detach(), rtol=1e-12, atol=1e-12, what=f"{backend} value")
    ours.sum().backward()
    ref.sum().backward()
    assert_close(xt.grad, xr.grad, rtol=1e-12, atol=1e-12, what=f"{backend} grad")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(("n", "c", "t"), [(3, 300, 300), (2, 4000, 2000)])
def test_large_t(backend, n, c, t):
    """T = C and T = 2000: float64 exact, float32 within 1e-5 of the float64 oracle."""
    rng = np.random.default_rng(t)
    x = rng.normal(scale=2.0, size=(n, c))
    target = np.full((n, c), -1)
    target[:, :t] = np.argsort(rng.random((n, c)), axis=1)[:, :t]
    hinge = backends.get(backend).load()
    for dtype, tol in (("float64", 1e-12), ("float32", TOL["float32"])):
        xd = x.astype(dtype)
        ref_loss, ref_grad = oracle.multilabel_margin_dense(xd, target)
        loss, grad = hinge(xd, target, margin=1.0, p=1, weight=None, want_grad=True)
        assert_close(loss, ref_loss, rtol=tol, atol=0, what=f"{backend} T={t} {dtype} loss")
        # float32 gradients are hinge counts: exact, since comparisons are exact
        assert_close(grad, ref_grad, rtol=tol, atol=0, what=f"{backend} T={t} {dtype} grad")
    # and the dense oracle itself agrees with PyTorch on these sizes
    ref64, _ = oracle.multilabel_margin_dense(x, target)
    big = torch.nn.functional.multilabel_margin_loss(
        torch.tensor(x), torch.tensor(target), reduction="none"
    )
    assert_close(ref64 / c, big, rtol=1e-12, atol=0, what="dense oracle vs torch")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("target_dtype", ["int32", "int64", "uint8"])
def test_dtypes_through_the_loss(backend, dtype, target_dtype):
    x, t = _problem(4, 9, 6, seed=11)
    xt = torch.tensor(x).to(getattr(torch, dtype))
    ref = xmargin.multilabel_margin_loss(
        xt.double(), torch.tensor(t), reduction="none", backend="portable"
    )
    tt = torch.tensor(np.where(t < 0, -1, t)).to(getattr(torch, target_dtype))
    if target_dtype == "uint8":  # no -1 in uint8: pad with K columns of a full row instead
        tt = torch.tensor(t.clip(0)).to(torch.uint8)
        ref = xmargin.multilabel_margin_loss(
            xt.double(), torch.tensor(t.clip(0)), reduction="none", backend="portable"
        )
    leaf = xt.clone().requires_grad_()
    out = xmargin.multilabel_margin_loss(leaf, tt, reduction="none", backend=backend)
    assert out.dtype == xt.dtype
    assert_close(out.detach().double(), ref, rtol=TOL[dtype], atol=TOL[dtype], what=f"{dtype}")
    out.sum().backward()
    assert leaf.grad.dtype == xt.dtype
    # the gradient against the float64 oracle on the same rounded scores (and clipped targets)
    _, ref_grad = oracle.multilabel_margin_dense(xt.double().numpy(), tt.long().numpy())
    c = xt.shape[1]  # the oracle's raw sums are C times the gradient of sum(loss)
    scale = float(np.abs(ref_grad).max() / c) or 1.0
    assert_close(leaf.grad.double() * c, ref_grad, rtol=TOL[dtype], atol=TOL[dtype] * scale,
                 what=f"{backend} {dtype} grad")  # fmt: skip


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_float32_uses_exact_comparisons(backend):
    """Ties at the margin in float32: a hinge of exactly 0 has zero gradient, as in float64."""
    x = np.array([[0.1, 1.1, 2.1, 1.1]], dtype=np.float32)
    t = np.array([[1, -1, 0, 0]])
    hinge = backends.get(backend).load()
    loss32, grad32 = hinge(x, t, margin=1.0, p=1, weight=None, want_grad=True)
    ref_loss, ref_grad = oracle.multilabel_margin_dense(x.astype(np.float64), t)
    assert_close(loss32, ref_loss, rtol=1e-7, atol=1e-7, what="float32 ties loss")
    assert_close(grad32, ref_grad, rtol=0, atol=0, what="float32 ties grad")


def test_reference_reads_torch_tensors_without_copying():
    from xmargin._interop import from_numpy_like, to_numpy

    xt = torch.randn(3, 5)
    view = to_numpy(xt)
    assert view.ctypes.data == xt.data_ptr()
    back = from_numpy_like(view, xt)
    assert isinstance(back, torch.Tensor) and back.data_ptr() == xt.data_ptr()
    leaf = torch.randn(2, 3, requires_grad=True)
    assert to_numpy(leaf).shape == (2, 3)  # detached, not refused


def test_autograd_computes_the_gradient_in_the_forward_pass():
    calls = []
    reference = backends.get("reference").load()

    def spy(x, t, **kw):
        calls.append(kw["want_grad"])
        return reference(x, t, **kw)

    backends.register("spy", spy, supports=lambda x: None)
    try:
        x = torch.randn(4, 6, requires_grad=True)
        t = torch.tensor([[0, 1, -1], [2, -1, 0], [5, 5, 4], [-1, 0, 0]])
        loss = xmargin.multilabel_margin_loss(x, t, backend="spy")
        loss.backward()
        assert calls == [True]  # one pass: loss and gradient together
        calls.clear()
        with torch.no_grad():
            xmargin.multilabel_margin_loss(x, t, backend="spy")
        assert calls == [False]
    finally:
        backends.unregister("spy")


@pytest.mark.parametrize("direct_max", [0, 4, 10**9], ids=["search", "mixed", "direct"])
@pytest.mark.parametrize("p", [1, 2])
def test_numba_direct_loop_and_sorted_search_agree(monkeypatch, direct_max, p):
    """Rows pick the direct O(T·C) loop or the sorted search by their own T: both against the
    oracle, on rows of every T from 0 to 40 in one batch (duplicates, terminators, ties)."""
    from xmargin.backends import numba as nb

    monkeypatch.setattr(nb, "DIRECT_MAX", direct_max)
    rng = np.random.default_rng(direct_max % 97 + p)
    n, c = 41, 60
    x = rng.integers(-6, 7, size=(n, c)) / 2  # halves: ties at the margin
    t = np.full((n, 45), -1)
    for i in range(n):  # row i has i positive slots
        t[i, :i] = rng.integers(0, c, size=i)
    w = rng.uniform(0.5, 2.0, size=c)
    loss, grad = nb.hinge_numpy(x, t, margin=0.5, p=p, weight=w, want_grad=True)
    ref_loss, ref_grad = oracle.multilabel_margin_dense(x, t, margin=0.5, p=p, weight=w)
    assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12, what=f"numba loss direct_max={direct_max}")
    assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12, what=f"numba grad direct_max={direct_max}")
    scale = rng.uniform(-2, 2, size=n)
    _, scaled = nb.hinge_numpy(x, t, margin=0.5, p=p, weight=w, want_grad=True, grad_scale=scale)
    assert_close(scaled, ref_grad * scale[:, None], rtol=1e-12, atol=1e-12, what="grad_scale")
    loss_only, none = nb.hinge_numpy(x, t, margin=0.5, p=p, weight=w, want_grad=False)
    assert none is None and np.array_equal(loss_only, loss)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_numba_single_positive_rows(dtype, p, weighted):
    """Rows with one positive take the numba kernel's fused single pass: the same values as
    the reference kernel, with ties at the margin, ±inf scores (at the positive and at
    negatives), NaN rows, a per-row gradient scale, and C = 1 (no negative)."""
    from xmargin.backends import numba as nb
    from xmargin.backends import reference

    rng = np.random.default_rng(7)
    n, c = 12, 9
    x = rng.integers(-3, 4, size=(n, c)).astype(dtype)  # integers: exact ties at margin 1
    t = np.full((n, c), -1)
    t[:, 0] = rng.integers(0, c, n)
    t[1, 5] = 2  # a value after the terminator (in range): ignored
    x[2, t[2, 0]] = np.inf  # positive at +inf: no violation
    x[3, t[3, 0]] = -np.inf  # positive at -inf: every negative violates, by inf
    x[4, (t[4, 0] + 1) % c] = np.inf  # a negative at +inf
    x[5, (t[5, 0] + 2) % c] = np.nan  # NaN: the whole row NaN
    x[6, t[6, 0]] = np.nan
    w = rng.uniform(0.5, 2.0, c) if weighted else None
    scale = rng.uniform(-1.0, 2.0, n)
    got = nb.hinge_numpy(x, t, margin=1.0, p=p, weight=w, want_grad=True, grad_scale=scale)
    ref_loss, ref_grad = reference.hinge_numpy(x.astype(np.float64), t, margin=1.0, p=p,
                                               weight=w, want_grad=True)  # fmt: skip
    tol = 1e-6 if dtype == "float32" else 1e-12
    assert_close(got[0], ref_loss, rtol=tol, atol=tol, what="single-positive loss")
    assert_close(got[1].astype(np.float64), ref_grad * scale[:, None], rtol=tol, atol=tol,
                 what="single-positive grad")  # fmt: skip
    assert np.isnan(got[0][[5, 6]]).all() and np.isinf(got[0][[3, 4]]).all()
    one = nb.hinge_numpy(x[:, :1], np.zeros((n, 1), np.int64), margin=1.0, p=p, weight=None,
                         want_grad=True)  # fmt: skip
    assert (one[0] == 0).all() and (one[1] == 0).all()  # C = 1: no pair, no gradient
