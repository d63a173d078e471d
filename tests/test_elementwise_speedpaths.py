"""The compiled CPU fast paths of soft_margin_loss, multilabel_soft_margin_loss,
multi_margin_loss, hinge_embedding_loss and margin_ranking_loss (Numba kernels on NumPy arrays
and, through one autograd node, on eager torch CPU tensors): values and gradients against
torch.nn.functional in float64 and the oracle, at the extremes (|x| near the dtype's maximum,
±inf, NaN, ties at the margin, empty), the generic path where the fast one does not apply
(broadcasting, float16, torch.compile, torch.func), and double backward. No timings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import xmargin
from xmargin.losses import hinge, multi_margin, soft_margin

import oracle
from conftest import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

if soft_margin.numba_kernels("soft_margin") is None:  # pragma: no cover
    pytest.skip("Numba does not import here: no fast paths", allow_module_level=True)

REDUCTIONS = ["none", "mean", "sum"]
# relative tolerance against float64 references, by the scores' dtype
RTOL = {np.float32: 2e-6, np.float64: 1e-13}
ATOL = {np.float32: 1e-7, np.float64: 1e-15}


@pytest.fixture
def launches(monkeypatch):
    """Counts the kernel launches of every fast path (to prove a test takes it, or not)."""
    seen = []
    for module in (soft_margin, hinge, multi_margin):
        real = module.launch

        def counted(task, n, block, real=real):
            seen.append(n)
            return real(task, n, block)

        monkeypatch.setattr(module, "launch", counted)
    return seen


def _data(n=6, c=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, c)) * 3).astype(dtype)
    x2 = (rng.normal(size=(n, c)) * 3).astype(dtype)
    pm1 = np.where(rng.random((n, c)) < 0.5, -1.0, 1.0).astype(dtype)
    cls = rng.integers(0, c, size=n)
    w = rng.uniform(0.5, 2.0, size=c).astype(dtype)
    return x, x2, pm1, cls, w


# name -> (xmargin loss, build(x, x2, pm1, cls, w) -> (scores, others, kwargs))
CASES = {
    "soft_margin": ("soft_margin_loss", lambda x, x2, y, t, w: ([x], [y], {})),
    "multilabel_soft_margin": (
        "multilabel_soft_margin_loss",
        lambda x, x2, y, t, w: ([x], [(y + 1) / 2], {}),
    ),
    "multilabel_soft_margin_weight": (
        "multilabel_soft_margin_loss",
        lambda x, x2, y, t, w: ([x], [(y + 1) / 2, w], {}),
    ),
    "multi_margin": ("multi_margin_loss", lambda x, x2, y, t, w: ([x], [t], {})),
    "multi_margin_p2_weight": (
        "multi_margin_loss",
        lambda x, x2, y, t, w: ([x], [t], {"p": 2, "margin": 0.5, "weight": w}),
    ),
    "hinge_embedding": (
        "hinge_embedding_loss",
        lambda x, x2, y, t, w: ([np.abs(x)], [y], {"margin": 2.0}),
    ),
    "margin_ranking": (
        "margin_ranking_loss",
        lambda x, x2, y, t, w: ([x, x2], [y], {"margin": 0.5}),
    ),
}


def _torch(a):
    return torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a


def _reference(name, scores, others, kwargs, reduction):
    """torch.nn.functional in float64 on the same values: (loss, gradients of the scores)."""
    leaves = [torch.from_numpy(s.astype(np.float64)).requires_grad_() for s in scores]
    rest = [_torch(o.astype(np.float64)) if o.dtype.kind == "f" else _torch(o) for o in others]
    kw = {k: _torch(v.astype(np.float64)) if isinstance(v, np.ndarray) else v
          for k, v in kwargs.items()}  # fmt: skip
    out = getattr(F, name)(*leaves, *rest, **kw, reduction=reduction)
    grads = torch.autograd.grad(out.sum(), leaves)
    return out.detach().numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES)
def test_fast_paths_match_pytorch_float64(case, reduction, dtype, launches):
    name, build = CASES[case]
    scores, others, kwargs = build(*_data(dtype=dtype))
    want, want_grads = _reference(name, scores, others, kwargs, reduction)
    fn = getattr(xmargin, name)
    rtol, atol = RTOL[dtype], ATOL[dtype]
    # NumPy: the loss, and value_and_grad
    got = fn(*scores, *others, **kwargs, reduction=reduction)
    assert np.asarray(got).dtype == dtype
    assert_close(got, want, rtol=rtol, atol=atol, what=f"{case} numpy value")
    argnums = tuple(range(len(scores)))
    loss, grads = xmargin.value_and_grad(fn, argnums=argnums)(
        *scores, *others, **kwargs, reduction=reduction
    )
    assert_close(loss, want, rtol=rtol, atol=atol, what=f"{case} value_and_grad")
    for g, r in zip(grads, want_grads, strict=True):
        assert g.dtype == dtype and g.flags.writeable
        assert_close(g, r, rtol=rtol, atol=atol, what=f"{case} numpy gradient")
    # torch: autograd through the one node
    leaves = [torch.from_numpy(s).requires_grad_() for s in scores]
    kw = {k: _torch(v) for k, v in kwargs.items()}
    out = fn(*leaves, *map(_torch, others), **kw, reduction=reduction)
    assert out.dtype == leaves[0].dtype
    assert type(out.grad_fn).__name__ == "_HostLossBackward"
    assert_close(out.detach(), want, rtol=rtol, atol=atol, what=f"{case} torch value")
    grads = torch.autograd.grad(out.sum(), leaves)
    for g, r in zip(grads, want_grads, strict=True):
        assert_close(g, r, rtol=rtol, atol=atol, what=f"{case} torch gradient")
    assert len(launches) == 3  # numpy loss, value_and_grad, torch: all on the fast path


@pytest.mark.parametrize("case", CASES)
def test_fast_paths_equal_the_generic_path(case):
    """Same numbers as the array-API path they replace, values and gradients (float64)."""
    name, build = CASES[case]
    scores, others, kwargs = build(*_data(n=9, c=7, seed=3))
    impl = {"soft_margin_loss": soft_margin._soft_margin_loss,
            "multilabel_soft_margin_loss": soft_margin._multilabel_soft_margin_loss,
            "multi_margin_loss": multi_margin._multi_margin_loss,
            "hinge_embedding_loss": hinge._hinge_embedding_loss,
            "margin_ranking_loss": hinge._margin_ranking_loss}[name]  # fmt: skip
    argnums = tuple(range(len(scores)))
    for reduction in REDUCTIONS:
        fast = impl(*scores, *others, **kwargs, reduction=reduction, argnums=argnums)
        slow = impl(*scores, *others, **kwargs, reduction=reduction, argnums=argnums, fast=False)
        assert_close(fast[0], slow[0], rtol=1e-14, atol=1e-15, what=f"{case} value")
        for a, b in zip(fast[1], slow[1], strict=True):
            assert_close(a, b, rtol=1e-14, atol=1e-15, what=f"{case} gradient")


# --------------------------------------------------------------------------------------------
# extremes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_margin_exact_up_to_the_dtype_maximum(dtype):
    big = float(np.finfo(dtype).max)
    tiny = float(np.finfo(dtype).tiny)
    values = [0.0, -0.0, 1e-30, 0.5, -0.5, 3.0, -3.0, 17.0, -17.0, 30.0, -30.0, 88.0, -88.0,
              103.0, -103.0, 700.0, -700.0, 740.0, -740.0, 1e4, -1e4, big / 3, -big / 3, big,
              -big, tiny, -tiny]  # fmt: skip
    x = np.array(values, dtype=dtype)
    y = np.ones_like(x)
    loss, grad = xmargin.value_and_grad(xmargin.soft_margin_loss)(x, y, reduction="none")
    ref, ref_grad = oracle.soft_margin(x.astype(np.float64), y.astype(np.float64))
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    rtol = 4e-16 * 8 if dtype == np.float64 else 6e-8 * 4
    # the smallest subnormals carry few digits: an absolute floor of a few of them
    atol = float(np.finfo(dtype).smallest_subnormal) * 4
    assert_close(loss, ref, rtol=rtol, atol=atol, what="softplus(-x) at the extremes")
    assert_close(grad, ref_grad, rtol=rtol, atol=atol, what="-sigmoid(-x) at the extremes")
    xt = torch.from_numpy(x).requires_grad_()
    out = xmargin.soft_margin_loss(xt, torch.from_numpy(y), reduction="sum")
    out.backward()
    assert math.isinf(out.item()) or out.item() == pytest.approx(sum(ref), rel=1e-6)
    assert_close(xt.grad, ref_grad, rtol=rtol, atol=atol, what="torch gradient at the extremes")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multilabel_soft_margin_exact_at_the_extremes(dtype):
    big = float(np.finfo(dtype).max)
    # row 3: the weighted terms add up past the maximum, their mean does not
    x = np.array([[big, -big, 0.0, 50.0], [-1e4, 1e4, -30.0, 30.0], [big / 2] * 4], dtype=dtype)
    y = np.array([[0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 0, 0]], dtype=dtype)
    w = np.array([0.5, 2.0, 1.0, 1.5], dtype=dtype)
    loss, grad = xmargin.value_and_grad(xmargin.multilabel_soft_margin_loss)(
        x, y, w, reduction="none"
    )
    # the oracle's softplus and sigmoid, exact; its row sums and σ(x) − y are not at these
    # values (a sum past the maximum, a cancellation), so: divided first, and no cancellation
    c = x.shape[1]
    ref = [sum(float(wj) * ((float(yj) * oracle.softplus(-float(xj))
                             + (1 - float(yj)) * oracle.softplus(float(xj))) / c)
               for xj, yj, wj in zip(xr, yr, w, strict=True))
           for xr, yr in zip(x, y, strict=True)]  # fmt: skip
    ref_grad = [[float(wj) * ((1 - float(yj)) * oracle.sigmoid(float(xj))
                              - float(yj) * oracle.sigmoid(-float(xj))) / c
                 for xj, yj, wj in zip(xr, yr, w, strict=True)]
                for xr, yr in zip(x, y, strict=True)]  # fmt: skip
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    assert_close(loss, ref, rtol=rtol, atol=0, what="per-sample means at the extremes")
    assert_close(grad, ref_grad, rtol=rtol, atol=1e-300, what="gradients at the extremes")
    # the mean over samples of values near the maximum is finite too, on torch as well
    for mean in (xmargin.multilabel_soft_margin_loss(x, y, w),
                 xmargin.multilabel_soft_margin_loss(torch.from_numpy(x), torch.from_numpy(y),
                                                     torch.from_numpy(w))):  # fmt: skip
        assert float(mean) == pytest.approx(sum(r / 3 for r in ref), rel=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_means_near_the_dtype_maximum_on_the_torch_fast_path(dtype):
    big = float(np.finfo(dtype).max) * 0.75
    x = torch.tensor([big, big, big], dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
    y = -torch.ones_like(x)
    for fn, args in ((xmargin.soft_margin_loss, (x, y)),
                     (xmargin.hinge_embedding_loss, (x, -y)),
                     (xmargin.margin_ranking_loss, (x, x * 0, y))):  # fmt: skip
        leaf = args[0].clone().requires_grad_()
        out = fn(leaf, *args[1:])
        assert out.item() == pytest.approx(big, rel=1e-6), fn.__name__
        out.backward()
        assert torch.isfinite(leaf.grad).all()
        assert math.isinf(fn(*args, reduction="sum").item())


def _nan_inf_inputs(dtype):
    nan, inf = math.nan, math.inf
    x = np.array([[nan, inf, -inf, 1.0, 0.0], [2.0, -1.0, nan, inf, -inf]], dtype=dtype)
    pm1 = np.array([[1.0, 1.0, -1.0, -1.0, 1.0], [1.0, -1.0, -1.0, 1.0, -1.0]], dtype=dtype)
    return x, pm1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_nan_and_inf_follow_the_generic_path(case, dtype):
    """NaN/inf scores: NaN where the generic path (PyTorch, or xmargin's documented rule) has
    it, the same finite numbers elsewhere, on NumPy and torch."""
    name, build = CASES[case]
    x, pm1 = _nan_inf_inputs(dtype)
    x2 = np.flip(x, 1).copy()
    t = np.array([3, 0])
    w = np.array([0.5, 1.0, 2.0, 1.0, 1.5], dtype=dtype)
    scores, others, kwargs = build(x, x2, pm1, t, w)
    impl, _ = __import__("xmargin._grad", fromlist=["_IMPLS"])._IMPLS[getattr(xmargin, name)]
    argnums = tuple(range(len(scores)))
    # the generic path's σ(x) − y cancels in float32 where the fast path's does not
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for reduction in REDUCTIONS:
            fast = impl(*scores, *others, **kwargs, reduction=reduction, argnums=argnums)
            slow = impl(*scores, *others, **kwargs, reduction=reduction, argnums=argnums,
                        fast=False)  # fmt: skip
            assert_close(fast[0], slow[0], rtol=rtol, atol=0, what=f"{case} value")
            for a, b in zip(fast[1], slow[1], strict=True):
                assert_close(a, b, rtol=rtol, atol=0, what=f"{case} gradient")
            leaves = [torch.from_numpy(s).requires_grad_() for s in scores]
            kw = {k: _torch(v) for k, v in kwargs.items()}
            out = getattr(xmargin, name)(*leaves, *map(_torch, others), **kw, reduction=reduction)
            assert_close(out.detach(), slow[0], rtol=rtol, atol=0, what=f"{case} torch value")
            for a, b in zip(torch.autograd.grad(out.sum(), leaves), slow[1], strict=True):
                assert_close(a, b, rtol=rtol, atol=0, what=f"{case} torch gradient")


def test_ties_at_the_margin_take_pytorchs_gradient():
    # hinge_embedding: margin − x == 0 passes the gradient (clamp_min), as PyTorch does
    x = np.array([1.0, 1.0, 0.5, 2.0])
    y = np.array([-1.0, 1.0, -1.0, -1.0])
    _, g = xmargin.value_and_grad(xmargin.hinge_embedding_loss)(x, y, reduction="sum")
    assert g.tolist() == [-1.0, 1.0, -1.0, 0.0]
    # margin_ranking: −y·(x1 − x2) + margin == 0 passes it too
    a, b = np.array([2.0, 1.5, 0.0]), np.array([1.0, 1.0, 1.0])  # z = -0.5, 0 (a tie), 1.5
    _, (ga, gb) = xmargin.value_and_grad(xmargin.margin_ranking_loss, argnums=(0, 1))(
        a, b, np.ones(3), margin=0.5, reduction="sum"
    )
    assert ga.tolist() == [0.0, -1.0, -1.0] and gb.tolist() == [0.0, 1.0, 1.0]
    for dtype in (np.float32, np.float64):  # and the same ties as PyTorch in both dtypes
        _, want = _reference("margin_ranking_loss", [a.astype(dtype), b.astype(dtype)],
                             [np.ones(3, dtype)], {"margin": 0.5}, "sum")  # fmt: skip
        assert ga.tolist() == want[0].tolist()
    # multi_margin: a zero hinge (x_j == x_y − margin) has zero gradient
    x = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0]])
    loss, g = xmargin.value_and_grad(xmargin.multi_margin_loss)(x, np.array([1, 0]),
                                                                reduction="none")  # fmt: skip
    ref, ref_g = oracle.multi_margin(x, [1, 0])
    assert_close(loss, ref, rtol=1e-15, atol=0, what="ties")
    assert_close(g, ref_g, rtol=1e-15, atol=0, what="ties gradient")


@pytest.mark.parametrize("case", CASES)
def test_empty_inputs(case, launches):
    name, build = CASES[case]
    scores, others, kwargs = build(*_data(n=0, c=4))
    fn = getattr(xmargin, name)
    for to in (lambda a: a, _torch):
        args = [to(a) for a in (*scores, *others)]
        kw = {k: to(v) for k, v in kwargs.items()}
        assert math.isnan(float(fn(*args, **kw, reduction="mean")))
        assert float(fn(*args, **kw, reduction="sum")) == 0.0
        assert fn(*args, **kw, reduction="none").shape[0] == 0
    _, g = xmargin.value_and_grad(fn)(*scores, *others, **kwargs, reduction="mean")
    assert g.shape == scores[0].shape
    assert launches  # the fast paths took them


# --------------------------------------------------------------------------------------------
# where the fast path does not apply: the generic path, same numbers as PyTorch
# --------------------------------------------------------------------------------------------
def test_broadcasting_arguments_take_the_generic_path(launches):
    x = torch.randn(4, 1, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64)
    for name, args in (("hinge_embedding_loss", (x, y)),
                       ("margin_ranking_loss", (x, torch.randn(1, 3, dtype=torch.float64), y)),
                       ("soft_margin_loss", (torch.randn(4, 3, dtype=torch.float64,
                                                         requires_grad=True), y))):  # fmt: skip
        ours = getattr(xmargin, name)(*args)
        theirs = getattr(F, name)(*args)
        assert_close(ours.detach(), theirs.detach(), rtol=1e-12, atol=1e-15, what=name)
        leaf = args[0]
        assert_close(torch.autograd.grad(ours, leaf)[0], torch.autograd.grad(theirs, leaf)[0],
                     rtol=1e-12, atol=1e-15, what=f"{name} gradient")  # fmt: skip
    assert not launches


@pytest.mark.parametrize("case", CASES)
def test_half_precision_takes_the_generic_path(case, launches):
    name, build = CASES[case]
    scores, others, kwargs = build(*_data(dtype=np.float16))
    want, want_grads = _reference(name, scores, others, kwargs, "mean")
    for to in (lambda a: a, _torch):
        args = [to(a) for a in (*scores, *others)]
        kw = {k: to(v) for k, v in kwargs.items()}
        loss, grads = xmargin.value_and_grad(
            getattr(xmargin, name), argnums=tuple(range(len(scores)))
        )(*args, **kw)
        assert np.asarray(loss).dtype == np.float16
        assert_close(np.asarray(loss, np.float64), want, rtol=2e-3, atol=1e-3, what=case)
        for g, r in zip(grads, want_grads, strict=True):
            assert_close(np.asarray(g, np.float64), r, rtol=2e-3, atol=1e-4, what=f"{case} grad")
    assert not launches


def test_targets_and_weights_that_require_grad_get_pytorchs_gradient(launches):
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.rand(4, dtype=torch.float64, requires_grad=True)
    for name, args in (("multilabel_soft_margin_loss", (x, y, w)),
                       ("hinge_embedding_loss", (x, y)),
                       ("margin_ranking_loss", (x, x.detach().flip(0), y))):  # fmt: skip
        wrt = [a for a in args if a.requires_grad]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ours = torch.autograd.grad(getattr(xmargin, name)(*args), wrt, allow_unused=True)
            theirs = torch.autograd.grad(getattr(F, name)(*args), wrt, allow_unused=True)
        for a, b in zip(ours, theirs, strict=True):
            assert (a is None) == (b is None), name  # e.g. a target that only selects
            if a is not None:
                assert_close(a, b, rtol=1e-12, atol=1e-15, what=name)
    assert not launches


def test_without_numba_the_generic_path_gives_the_same_numbers(monkeypatch):
    scores, others, kwargs = CASES["multi_margin_p2_weight"][1](*_data())
    want = xmargin.value_and_grad(xmargin.multi_margin_loss)(*scores, *others, **kwargs)
    from xmargin.backends import _host

    monkeypatch.setattr(
        _host, "_KERNELS", {k: None for k in ("soft_margin", "hinge", "multi_margin")}
    )
    got = xmargin.value_and_grad(xmargin.multi_margin_loss)(*scores, *others, **kwargs)
    assert_close(got[0], want[0], rtol=1e-14, atol=0, what="loss")
    assert_close(got[1], want[1], rtol=1e-14, atol=0, what="gradient")


# --------------------------------------------------------------------------------------------
# autograd details of the one node
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_backward_scales_retains_and_checks(case):
    name, build = CASES[case]
    scores, others, kwargs = build(*_data(dtype=np.float64))
    fn = getattr(xmargin, name)
    kw = {k: _torch(v) for k, v in kwargs.items()}
    rest = [_torch(o) for o in others]
    leaves = [torch.from_numpy(s).requires_grad_() for s in scores]
    out = fn(*leaves, *rest, **kw, reduction="none")
    seed = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    first = torch.autograd.grad(out, leaves, seed, retain_graph=True)
    again = torch.autograd.grad(out, leaves, seed)  # the saved gradient was not changed
    ref = [s.detach().clone().requires_grad_() for s in leaves]
    want = torch.autograd.grad(getattr(F, name)(*ref, *rest, **kw, reduction="none"), ref, seed)
    for a, b, c in zip(first, again, want, strict=True):
        assert torch.equal(a, b)
        assert_close(a, c, rtol=1e-12, atol=1e-15, what=f"{case} grad_output")
    # a scalar grad_output other than 1, and accumulation into .grad
    out = fn(*leaves, *rest, **kw)
    (out * 3.0).backward(retain_graph=True)
    out.backward()
    ref_out = getattr(F, name)(*ref, *rest, **kw)
    for leaf, r in zip(leaves, torch.autograd.grad(ref_out * 4.0, ref), strict=True):
        assert_close(leaf.grad, r, rtol=1e-12, atol=1e-15, what=f"{case} accumulated")
    # gradcheck through the fast path (float64)
    assert torch.autograd.gradcheck(
        lambda *s: fn(*s, *rest, **kw), [s.detach().clone().requires_grad_() for s in leaves]
    )


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("multi_margin")])
def test_double_backward_is_pytorchs(case):
    name, build = CASES[case]
    scores, others, kwargs = build(*_data(dtype=np.float64))
    kw = {k: _torch(v) for k, v in kwargs.items()}
    rest = [_torch(o) for o in others]

    def hessian_vector(fn):
        leaves = [torch.from_numpy(s).requires_grad_() for s in scores]
        seed = torch.tensor(1.5, dtype=leaves[0].dtype, requires_grad=True)
        grads = torch.autograd.grad(fn(*leaves, *rest, **kw), leaves, seed, create_graph=True)
        total = sum((g * g).sum() for g in grads)
        # piecewise linear losses: the gradient depends on grad_output only
        return torch.autograd.grad(total, [*leaves, seed], allow_unused=True)

    for a, b in zip(hessian_vector(getattr(xmargin, name)), hessian_vector(getattr(F, name)),
                    strict=True):  # fmt: skip
        a = torch.zeros(()) if a is None else a
        b = torch.zeros(()) if b is None else b
        assert_close(a, b, rtol=1e-12, atol=1e-15, what=f"{case} double backward")


def test_multi_margin_second_derivative_raises_as_before():
    x = torch.tensor([[0.1, 0.2, 0.4, 0.8]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(xmargin.multi_margin_loss(x, torch.tensor([3])), x,
                               create_graph=True)  # fmt: skip
    with pytest.raises(TypeError, match="no second derivative"):
        torch.autograd.grad(g.sum(), x)


# --------------------------------------------------------------------------------------------
# torch.compile and torch.func on inputs the fast path takes eagerly
# --------------------------------------------------------------------------------------------
def _torch_case(case, dtype=np.float32):
    name, build = CASES[case]
    scores, others, kwargs = build(*_data(dtype=dtype))
    kw = {k: _torch(v) for k, v in kwargs.items()}
    rest = [_torch(o) for o in others]
    fn = getattr(xmargin, name)
    x = torch.from_numpy(scores[0])
    pinned = [torch.from_numpy(s) for s in scores[1:]]  # margin_ranking's second score

    def f(a, reduction="sum"):
        return fn(a, *pinned, *rest, **kw, reduction=reduction)

    return f, x


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("case", CASES)
def test_compile_fullgraph_equals_the_fast_path(case, dynamic):
    torch._dynamo.reset()
    f, x0 = _torch_case(case)
    x, xe = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    out = torch.compile(f, fullgraph=True, dynamic=dynamic)(x)
    want = f(xe)
    assert type(want.grad_fn).__name__ == "_HostLossBackward"
    assert_close(out.detach(), want.detach(), rtol=1e-5, atol=1e-6, what=f"{case} value")
    (g,) = torch.autograd.grad(out, x)
    (g_want,) = torch.autograd.grad(want, xe)
    assert_close(g, g_want, rtol=1e-5, atol=1e-6, what=f"{case} gradient")


@pytest.mark.parametrize("case", CASES)
def test_torch_func_equals_the_fast_path(case):
    f, x = _torch_case(case, np.float64)
    leaf = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(f(leaf), leaf)
    assert_close(torch.func.grad(f)(x), want, rtol=1e-12, atol=1e-15, what=f"{case} grad")
    rows = torch.stack([f(x, "none"), f(x * 0.5, "none")])
    got = torch.func.vmap(lambda a: f(a, "none"))(torch.stack([x, x * 0.5]))
    assert_close(got, rows, rtol=1e-12, atol=1e-15, what=f"{case} vmap")
    jac = torch.func.jacrev(lambda a: f(a, "none"))(x)
    assert_close(jac.reshape(-1, x.numel()).sum(0), want.reshape(-1), rtol=1e-12, atol=1e-15,
                 what=f"{case} jacrev")  # fmt: skip
    tangent = torch.linspace(-1, 1, x.numel(), dtype=x.dtype).reshape(x.shape)
    _, jvp = torch.func.jvp(f, (x,), (tangent,))
    assert jvp.item() == pytest.approx(float((want * tangent).sum()), rel=1e-10, abs=1e-12)


# --------------------------------------------------------------------------------------------
# inputs, checks, threads
# --------------------------------------------------------------------------------------------
def test_odd_layouts_and_target_dtypes(launches):
    x, _, pm1, _, _ = _data(n=5, c=6, dtype=np.float32)
    xt = torch.from_numpy(x).t()  # non-contiguous
    yt = torch.from_numpy(pm1).t()
    want = F.soft_margin_loss(xt.double(), yt.double())
    for y in (yt, yt.to(torch.int8), yt.double(), yt.contiguous()):
        got = xmargin.soft_margin_loss(torch.nn.Parameter(xt.clone()), y)
        assert got.dtype == torch.float32 and got.item() == pytest.approx(want.item(), rel=1e-6)
    got = xmargin.multilabel_soft_margin_loss(x[:, ::2], (pm1[:, ::2] > 0))  # bool, strided
    x64, y64 = x[:, ::2].astype(np.float64), (pm1[:, ::2] > 0).astype(np.float64)
    want = F.multilabel_soft_margin_loss(torch.from_numpy(x64), torch.from_numpy(y64))
    assert float(got) == pytest.approx(want.item(), rel=1e-6)
    # 0-d and (C,) inputs
    assert float(xmargin.soft_margin_loss(np.float32(2.0) * np.ones(()), np.ones(()))) == (
        pytest.approx(math.log1p(math.exp(-2.0)))
    )
    got = xmargin.multi_margin_loss(torch.tensor([0.1, 0.2, 0.4, 0.8]), torch.tensor(3))
    assert got.item() == pytest.approx(0.325, rel=1e-6)
    got = xmargin.multilabel_soft_margin_loss(np.array([2.0, -1.0, 0.5]), np.array([1, 0, 1]),
                                              reduction="none")  # fmt: skip
    assert got.shape == () and float(got) == pytest.approx(0.304756, rel=1e-5)
    assert launches


def test_label_convention_warnings_on_the_fast_paths():
    x = np.zeros((2, 3))
    y01 = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    cases = ((xmargin.soft_margin_loss, (x, y01), "to_pm1"),
             (xmargin.hinge_embedding_loss, (x, y01), "to_pm1"),
             (xmargin.margin_ranking_loss, (x, x, y01), "to_pm1"),
             (xmargin.multilabel_soft_margin_loss, (x, y01 * 2 - 1), "to_01"))  # fmt: skip
    for fn, args, hint in cases:
        for to in (lambda a: a, _torch):
            with pytest.warns(UserWarning, match=hint):
                fn(*map(to, args))
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                fn(*map(to, args[:-1]), to(args[-1] * 0 + 1))  # all ones: no warning
                with xmargin.options(check_values=False):
                    fn(*map(to, args))


def test_multi_margin_targets_checked_or_flagged():
    x = np.random.default_rng(0).normal(size=(3, 4))
    for to in (lambda a: a, _torch):
        with pytest.raises(ValueError, match=r"target\[1\] = 4"):
            xmargin.multi_margin_loss(to(x), to(np.array([0, 4, 1])))
        with xmargin.options(check_values=False):
            out = xmargin.multi_margin_loss(to(x), to(np.array([0, -3, 1])), reduction="none")
        out = np.asarray(out)
        assert np.isnan(out[1]) and not np.isnan(out[[0, 2]]).any()
    xn = x.copy()
    xn[2, 3] = math.nan  # a NaN score: NaN row (PyTorch: 0)
    loss, g = xmargin.value_and_grad(xmargin.multi_margin_loss)(xn, np.array([0, 1, 1]),
                                                                reduction="none")  # fmt: skip
    assert np.isnan(loss[2]) and np.isnan(g[2]).all() and not np.isnan(g[:2]).any()


def test_blocks_on_the_thread_pool_give_the_same_numbers(monkeypatch):
    """Small blocks force many tasks on the shared pool: results are those of one block."""
    monkeypatch.setenv("XMARGIN_NUM_THREADS", "2")
    results = {}
    for block in (1 << 18, 7):
        for module in (soft_margin, hinge, multi_margin):
            monkeypatch.setattr(module, "BLOCK", block)
        for case, (name, build) in CASES.items():
            scores, others, kwargs = build(*_data(n=40, c=5, dtype=np.float32))
            results.setdefault(case, []).append(xmargin.value_and_grad(
                getattr(xmargin, name), argnums=tuple(range(len(scores))))(
                    *scores, *others, **kwargs, reduction="none"))  # fmt: skip
    for case, (one, many) in results.items():
        assert np.array_equal(one[0], many[0]), case
        for a, b in zip(one[1], many[1], strict=True):
            assert np.array_equal(a, b), case
