"""Corners where a plausible but wrong number used to come out (issue 10), each against an
independent oracle (tests/oracle.py, exact rationals, finite differences or PyTorch float64):
checks-off gradients, forward-mode AD, integer targets that do not fit, byte-swapped scores,
precision at large scores, infinite scores, near the dtype maximum, fork safety."""

from __future__ import annotations

import math
import os
import sys
from fractions import Fraction

import numpy as np
import pytest

import xmargin
from xmargin import backends

import oracle
from conftest import assert_close

torch = pytest.importorskip("torch")

CPU_BACKENDS = ["numba", "reference", "portable"]
X = np.array([[0.1, 0.2, 0.4, 0.8], [0.3, 0.9, 0.2, 0.5], [0.7, 0.1, 0.6, 0.2]])
# row 1 holds a value past the terminator that is out of range, row 2 one before it
BAD_T = np.array([[3, 0, -1, 1], [1, -1, 7, 0], [2, 9, -1, -1]])
GOOD_T = np.array([[3, 0, -1, 1], [1, -1, 2, 0], [2, -1, -1, -1]])


def _oracle_rows(x, t, **kw):
    loss, grad = oracle.multilabel_margin(x, t, **kw)
    return np.array(loss), np.array(grad)


# --------------------------------------------------------------------------------------------
# 1. value checks off: the gradient row of a NaN loss row is NaN, on every path
# --------------------------------------------------------------------------------------------
def _expected_checks_off(p=1):
    loss, grad = _oracle_rows(X, GOOD_T, p=p)
    loss[1:], grad[1:] = math.nan, math.nan
    return loss, grad


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("p", [1, 2])
def test_checks_off_torch_autograd_gives_nan_gradient_rows(backend, p):
    x = torch.tensor(X, requires_grad=True)
    with xmargin.options(check_values=False):
        loss = xmargin.multilabel_margin_loss(
            x, torch.tensor(BAD_T), reduction="none", p=p, backend=backend
        )
        (grad,) = torch.autograd.grad(loss.sum(), x)
    want_loss, want_grad = _expected_checks_off(p)
    assert_close(loss.detach(), want_loss, rtol=1e-12, atol=1e-12, what=f"{backend} loss")
    assert_close(grad, want_grad, rtol=1e-12, atol=1e-12, what=f"{backend} grad")


def test_checks_off_multi_margin_gradient_rows():
    x = torch.tensor(X, requires_grad=True)
    with xmargin.options(check_values=False):
        loss = xmargin.multi_margin_loss(x, torch.tensor([3, 4, -2]), reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    want_loss, want_grad = oracle.multi_margin(X[:1], [3])
    assert_close(loss.detach()[0], want_loss[0], rtol=1e-12, atol=1e-12, what="loss")
    assert_close(grad[0], want_grad[0], rtol=1e-12, atol=1e-12, what="grad")
    assert torch.isnan(loss[1:]).all() and torch.isnan(grad[1:]).all()


def test_checks_off_under_torch_compile():
    def f(x, t):
        return xmargin.multilabel_margin_loss(x, t, reduction="none")

    x = torch.tensor(X, requires_grad=True)
    with xmargin.options(check_values=False):
        loss = torch.compile(f, fullgraph=True)(x, torch.tensor(BAD_T))
    (grad,) = torch.autograd.grad(loss.sum(), x)
    want_loss, want_grad = _expected_checks_off()
    assert_close(loss.detach(), want_loss, rtol=1e-12, atol=1e-12, what="compiled loss")
    assert_close(grad, want_grad, rtol=1e-12, atol=1e-12, what="compiled grad")


def test_checks_off_under_jax_grad_and_jit():
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        t = jax.numpy.asarray(BAD_T)

        def f(x):
            return xmargin.multilabel_margin_loss(x, t, reduction="sum")

        _, want_grad = _expected_checks_off()
        for g in (jax.grad(f), jax.jit(jax.grad(f))):  # jit: values cannot be checked
            with xmargin.options(check_values=False):
                grad = np.asarray(g(jax.numpy.asarray(X)))
            assert_close(grad, want_grad, rtol=1e-12, atol=1e-12, what="jax grad")


def test_checks_off_value_and_grad_and_dask():
    want_loss, want_grad = _expected_checks_off()
    with xmargin.options(check_values=False):
        loss, grad = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
            X, BAD_T, reduction="none"
        )
    assert_close(loss, want_loss, rtol=1e-12, atol=1e-12, what="value_and_grad loss")
    assert_close(grad, want_grad, rtol=1e-12, atol=1e-12, what="value_and_grad grad")
    da = pytest.importorskip("dask.array")
    loss, grad = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
        da.from_array(X, chunks=2), da.from_array(BAD_T, chunks=2), reduction="none"
    )
    assert_close(loss.compute(), want_loss, rtol=1e-12, atol=1e-12, what="dask loss")
    assert_close(grad.compute(), want_grad, rtol=1e-12, atol=1e-12, what="dask grad")


def test_registered_backend_follows_the_target_contract():
    """A third-party kernel that assumes valid targets is wrapped: bad rows come out NaN."""
    seen = []

    def plain(x, t, *, margin, p, weight, want_grad):
        seen.append(np.asarray(t).copy())
        return backends.get("reference").load()(
            x, t, margin=margin, p=p, weight=weight, want_grad=want_grad
        )

    backends.register("corner_spy", plain)
    try:
        with xmargin.options(check_values=False):
            loss, grad = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
                X, BAD_T, reduction="none", backend="corner_spy"
            )
    finally:
        backends.unregister("corner_spy")
    assert ((seen[0] >= -1) & (seen[0] < 4)).all()  # the kernel only saw valid values
    want_loss, want_grad = _expected_checks_off()
    assert_close(loss, want_loss, rtol=1e-12, atol=1e-12, what="registered loss")
    assert_close(grad, want_grad, rtol=1e-12, atol=1e-12, what="registered grad")


def test_checks_off_passes_targets_through_untouched():
    """Switching value checks off must not cost a pass over the targets: the kernel gets the
    caller's int64 target memory itself (no mask, no cleaned copy)."""
    seen = []
    ref = backends.get("reference").load()

    def spy(x, t, **kw):
        seen.append(t)
        return ref(x, t, **kw)

    t = np.ascontiguousarray(BAD_T, dtype=np.int64)
    original = backends.get("reference").load
    try:
        object.__setattr__(backends.get("reference"), "load", lambda: spy)
        with xmargin.options(check_values=False):
            xmargin.multilabel_margin_loss(X, t, backend="reference")
    finally:
        object.__setattr__(backends.get("reference"), "load", original)
    assert np.shares_memory(seen[0], t)


# --------------------------------------------------------------------------------------------
# 2. forward-mode AD: jvp = Σ grad · tangent per row, never 0 for a non-zero derivative
# --------------------------------------------------------------------------------------------
def _finite_difference(f, x, v, eps=1e-6):
    return (f(x + eps * v) - f(x - eps * v)) / (2 * eps)


FWD_CASES = {
    "multilabel_margin": lambda x: xmargin.multilabel_margin_loss(x, torch.tensor([[3, 0, -1, 1]])),
    "multilabel_margin_p2": lambda x: xmargin.multilabel_margin_loss(
        x, torch.tensor([[3, 0, -1, 1]]), p=2, margin=0.7
    ),
    "multi_margin": lambda x: xmargin.multi_margin_loss(x, torch.tensor([3])),
    "multilabel_margin_weighted_p2": lambda x: xmargin.multilabel_margin_loss(
        x, torch.tensor([[3, 0, -1, 1]]), p=2, weight=torch.linspace(0.5, 2, 4).double()
    ),
}


@pytest.mark.parametrize("case", FWD_CASES)
def test_forward_mode_ad(case):
    f = FWD_CASES[case]
    x = torch.tensor([[0.1, 0.2, 0.4, 0.8]], dtype=torch.float64)
    v = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)  # d/dx_0
    want = _finite_difference(f, x, v).item()
    assert abs(want) > 0.1  # the derivative is not zero here
    _, tangent = torch.func.jvp(f, (x,), (v,))
    assert tangent.item() == pytest.approx(want, rel=1e-6)
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        out = f(fwad.make_dual(x, v))
        assert fwad.unpack_dual(out).tangent.item() == pytest.approx(want, rel=1e-6)
    jac = torch.func.jacfwd(f)(x)
    assert torch.allclose(jac, torch.func.jacrev(f)(x), rtol=1e-12, atol=1e-12)


def test_forward_mode_ad_matches_pytorch_example():
    """PyTorch's documented example: d loss / d x_0 = -0.5 (its own op has no forward AD)."""
    x = torch.tensor([[0.1, 0.2, 0.4, 0.8]], dtype=torch.float64)
    y = torch.tensor([[3, 0, -1, 1]])
    v = torch.zeros_like(x)
    v[0, 0] = 1.0
    _, tangent = torch.func.jvp(lambda a: xmargin.multilabel_margin_loss(a, y), (x,), (v,))
    assert tangent.item() == pytest.approx(-0.5, abs=1e-15)


@pytest.mark.parametrize("case", FWD_CASES)
def test_second_derivatives_raise_instead_of_returning_zero(case):
    """The hinge's Hessian is not zero for p = 2; nothing returns it as zero."""
    f = FWD_CASES[case]
    x = torch.tensor([[0.1, 0.2, 0.4, 0.8]], dtype=torch.float64)
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(xg), xg, create_graph=True)
    with pytest.raises(TypeError, match="no second derivative"):
        torch.autograd.grad(g.sum(), xg)
    # beside a term that does have one, the hinge's part is not silently taken as 0 either
    (g,) = torch.autograd.grad(f(xg) + (xg**2).sum(), xg, create_graph=True)
    with pytest.raises(TypeError, match="no second derivative"):
        torch.autograd.grad(g.sum(), xg)
    for second in (torch.func.hessian, lambda h: torch.func.jacrev(torch.func.jacrev(h)),
                   lambda h: torch.func.jacfwd(torch.func.jacfwd(h))):  # fmt: skip
        with pytest.raises(TypeError, match="no second derivative"):
            second(f)(x)


# --------------------------------------------------------------------------------------------
# 3. integer targets that do not fit: read in their own dtype, never wrapped or truncated
# --------------------------------------------------------------------------------------------
U64_MAX = 2**64 - 1


def test_uint64_max_is_not_the_terminator():
    t = np.array([[U64_MAX, 0, 1, 2]], dtype=np.uint64)
    with pytest.raises(ValueError, match=rf"target\[0, 0\] = {U64_MAX}, "):
        xmargin.multilabel_margin_loss(X[:1], t)
    with pytest.raises(ValueError, match=rf"target\[0\] = {U64_MAX}, "):
        xmargin.multi_margin_loss(X[:1], np.array([U64_MAX], dtype=np.uint64))
    with pytest.raises(ValueError, match=rf"index_targets\[0, 0\] = {U64_MAX}, "):
        xmargin.targets.to_multihot(t, 4)
    with xmargin.options(check_values=False):
        assert math.isnan(float(xmargin.multilabel_margin_loss(X[:1], t)))
        assert math.isnan(float(xmargin.multi_margin_loss(X[:1], t[0, :1])))
        # an integer result has no NaN: unchecked, a row ends at an out-of-range value as at
        # a -1 (documented); values before it are kept, whatever its dtype
        t2 = np.array([[1, U64_MAX, 2], [2**63 + 3, 0, 0]], dtype=np.uint64)
        assert xmargin.targets.to_multihot(t2, 4).tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]


def test_torch_unsigned_targets():
    t = torch.from_numpy(np.array([[U64_MAX, 0, 1, 2]], dtype=np.uint64))
    with pytest.raises(ValueError, match=rf"= {U64_MAX}, "):
        xmargin.multilabel_margin_loss(torch.tensor(X[:1]), t)
    with xmargin.options(check_values=False):
        assert math.isnan(float(xmargin.multilabel_margin_loss(torch.tensor(X[:1]), t)))
    for dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64):
        good = torch.tensor([[3, 0, 1, 3]]).to(dtype)
        want = xmargin.multilabel_margin_loss(X[:1], np.array([[3, 0, 1, 3]]))
        assert float(xmargin.multilabel_margin_loss(torch.tensor(X[:1]), good)) == float(want)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
def test_narrow_target_dtypes_with_many_classes(dtype):
    """A narrow dtype cannot hold C: nothing is out of range above, nothing wraps."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 300))
    info = np.iinfo(dtype)
    t = rng.integers(max(info.min, -1), min(info.max, 300), size=(3, 5)).astype(dtype)
    got = xmargin.multilabel_margin_loss(x, t, reduction="none")
    want, _ = _oracle_rows(x, t.astype(np.int64))
    assert_close(got, want, rtol=1e-12, atol=1e-12, what=f"{dtype.__name__} targets")


def test_jax_32_bit_does_not_truncate_int64_targets():
    jax = pytest.importorskip("jax")
    assert not jax.config.jax_enable_x64
    x = jax.numpy.asarray(X[:1], dtype=jax.numpy.float32)
    for make in (np.asarray, torch.tensor):
        t = make(np.array([[2**40, 1, -1, 0]], dtype=np.int64))
        with pytest.raises(ValueError, match=rf"target\[0, 0\] = {2**40}, "):
            xmargin.multilabel_margin_loss(x, t)
        with pytest.raises(ValueError, match=rf"target\[0\] = {2**40}, "):
            xmargin.multi_margin_loss(x, make(np.array([2**40], dtype=np.int64)))
        with xmargin.options(check_values=False):
            assert math.isnan(float(xmargin.multilabel_margin_loss(x, t)))
            assert math.isnan(float(xmargin.multi_margin_loss(x, make(np.array([2**32])))))
    # values that fit convert as they are
    t = np.array([[3, 0, -1, 1]], dtype=np.int64)
    assert float(xmargin.multilabel_margin_loss(x, t)) == pytest.approx(0.85, rel=1e-6)


# --------------------------------------------------------------------------------------------
# 4. byte-swapped arrays compute in their real precision
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["soft_margin_loss", "multilabel_soft_margin_loss", "multi_margin_loss",
     "multilabel_margin_loss", "hinge_embedding_loss", "margin_ranking_loss"],
)  # fmt: skip
def test_byte_swapped_float64_is_float64(name):
    swapped = ">f8" if sys.byteorder == "little" else "<f8"
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4)) * 1.000000123
    targets = {
        "soft_margin_loss": (np.sign(x + 0.1),),
        "multilabel_soft_margin_loss": ((x > 0) * 1.0,),
        "multi_margin_loss": (np.array([0, 3, 1], dtype=swapped.replace("f", "i")),),
        "multilabel_margin_loss": (np.array([[0, 3, -1, 1]] * 3, dtype=swapped.replace("f", "i")),),
        "hinge_embedding_loss": (np.sign(x + 0.1),),
        "margin_ranking_loss": (x[::-1].copy(), np.sign(x + 0.1)),
    }[name]
    fn = getattr(xmargin, name)
    want = fn(x, *targets, reduction="none")
    got = fn(x.astype(swapped), *(a.astype(a.dtype.newbyteorder("S")) if a.dtype.kind == "f"
             else a for a in targets), reduction="none")  # fmt: skip
    assert np.asarray(got).dtype == np.float64
    assert np.array_equal(np.asarray(got), np.asarray(want))
    _, g = xmargin.value_and_grad(fn)(x.astype(swapped), *targets, reduction="sum")
    _, g_want = xmargin.value_and_grad(fn)(x, *targets, reduction="sum")
    assert np.array_equal(np.asarray(g, dtype=np.float64), g_want)


# --------------------------------------------------------------------------------------------
# 5. precision at large scores (p = 1 and the squared hinge), against exact rationals
# --------------------------------------------------------------------------------------------
def _exact(x, t, *, margin, p, weight=None):
    """Raw per-row losses and gradients in exact rational arithmetic (then rounded once)."""
    losses, grads = [], []
    for xs, ts in zip(x, t, strict=True):
        c = len(xs)
        pos = []
        for v in ts:
            if v < 0:
                break
            pos.append(int(v))
        neg = [j for j in range(c) if j not in pos]
        fx = [Fraction(float(v)) for v in xs]
        loss, grad = Fraction(0), [Fraction(0)] * c
        for k in pos:
            wk = Fraction(1) if weight is None else Fraction(float(weight[k]))
            for j in neg:
                z = Fraction(margin) - fx[k] + fx[j]
                if z > 0:
                    loss += wk * z**p
                    d = wk * (1 if p == 1 else 2 * z)
                    grad[j] += d
                    grad[k] -= d
        losses.append(float(loss))
        grads.append([float(g) for g in grad])
    return np.array(losses), np.array(grads)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize(
    ("scale", "dtype", "rtol"),
    [(1e2, np.float64, 1e-13), (1e4, np.float64, 1e-13), (1e6, np.float64, 1e-13),
     (1e2, np.float32, 1e-13), (1e3, np.float32, 1e-13)],
)  # fmt: skip
def test_precision_at_large_scores(backend, p, scale, dtype, rtol):
    """Scores far from 0 but close to each other: sums of thr² and x² used to cancel
    (relative error 1e-4 at 1e6 in float64). The CPU backends accumulate float32 inputs in
    float64, so both dtypes are held to float64 accuracy against the exact value."""
    rng = np.random.default_rng(int(scale) + p)
    n, c = 6, 80
    x = (scale + rng.normal(size=(n, c)) * 2).astype(dtype)
    x[0, :40] = scale - 100.0  # a second cluster: large gaps between thresholds as well
    t = rng.integers(0, c, size=(n, 12))
    t[1, 6:] = -1
    w = rng.uniform(0.5, 2.0, size=c)
    hinge = backends.get(backend).load()
    for weight in (None, w):
        loss, grad = hinge(x, t, margin=1.0, p=p, weight=weight, want_grad=True)
        want_loss, want_grad = _exact(x, t, margin=1.0, p=p, weight=weight)
        what = f"{backend} scale={scale} {np.dtype(dtype).name} p={p}"
        assert_close(loss, want_loss, rtol=rtol, atol=0, what=f"loss {what}")
        # gradient entries relative to the row's largest one, plus one rounding to the
        # scores' dtype (the gradient is returned in it)
        err = np.abs(np.asarray(grad, np.float64) - want_grad)
        rounding = np.finfo(np.asarray(grad).dtype).eps / 2 * np.abs(want_grad)
        bound = rtol * np.abs(want_grad).max(axis=1, keepdims=True) + rounding + 1e-300
        assert (err <= bound).all(), f"grad {what}: worst {np.max(err / bound)} x bound"


def test_precision_at_large_scores_through_the_loss_torch():
    x = torch.tensor(1e6 + np.random.default_rng(2).normal(size=(4, 50)), requires_grad=True)
    t = torch.tensor(np.random.default_rng(3).integers(0, 50, size=(4, 8)))
    loss = xmargin.multilabel_margin_loss(x, t, p=2, reduction="none")
    want, _ = _exact(x.detach().numpy(), t.numpy(), margin=1.0, p=2)
    assert_close(loss.detach() * 50, want, rtol=1e-13, atol=0, what="torch p=2 at 1e6")


# --------------------------------------------------------------------------------------------
# 6. infinite scores: the definition's results, not NaN
# --------------------------------------------------------------------------------------------
INF = math.inf
INF_CASES = [  # (scores, targets)
    ([[0.0, -INF, 1.0]], [[0, -1, 0]]),  # -inf negative never violates: 4/3 for p = 2
    ([[0.0, INF, 1.0]], [[0, -1, 0]]),  # +inf negative: infinite hinge
    ([[-INF, 0.5, 1.0]], [[0, -1, 0]]),  # -inf positive: every negative infinitely far
    ([[INF, 0.5, 1.0]], [[0, -1, 0]]),  # +inf positive: nothing violates it
    ([[-INF, -INF, 1.0, 0.0]], [[0, 1, -1, 0]]),  # two -inf thresholds (equal: a zero gap)
    ([[0.0, -INF, 2.0, -INF]], [[2, 0, -1, 0]]),  # masked classes beside real ones
    ([[5.0, -INF, -INF, 4.5]], [[0, 3, -1, 0]]),
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("case", range(len(INF_CASES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinite_scores(backend, p, case, dtype):
    x, t = (np.array(a) for a in INF_CASES[case])
    x = x.astype(dtype)
    with np.errstate(invalid="ignore"):
        want_loss, want_grad = _oracle_rows(x.astype(np.float64), t, p=p)
    loss, grad = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
        x, t, p=p, reduction="none", backend=backend
    )
    what = f"{backend} {x.tolist()} p={p}"
    assert_close(loss, want_loss, rtol=1e-6, atol=0, what=f"loss {what}")
    assert_close(grad, want_grad, rtol=1e-6, atol=0, what=f"grad {what}")


def test_masked_logits_example_from_the_issue():
    x, t = np.array([[0.0, -INF, 1.0]]), np.array([[0, -1, 0]])
    for backend in CPU_BACKENDS:
        assert float(xmargin.multilabel_margin_loss(x, t, p=2, backend=backend)) == 4 / 3


# --------------------------------------------------------------------------------------------
# 7. near the dtype maximum: means are finite where the true mean is
# --------------------------------------------------------------------------------------------
def test_means_near_the_dtype_maximum():
    big = np.finfo(np.float64).max * 0.99
    got = xmargin.multilabel_soft_margin_loss(np.array([[big, big]]), np.array([[0, 0]]))
    assert float(got) == pytest.approx(big, rel=1e-15)
    big32 = np.float32(3e38)
    x32 = np.array([big32, big32], dtype=np.float32)
    got = xmargin.soft_margin_loss(x32, -np.ones(2, np.float32))
    assert got.dtype == np.float32 and float(got) == pytest.approx(3e38, rel=1e-6)
    got = xmargin.hinge_embedding_loss(x32, np.ones(2, np.float32))
    assert float(got) == pytest.approx(3e38, rel=1e-6)
    got = xmargin.margin_ranking_loss(x32, -x32 * 0, -np.ones(2, np.float32))
    assert float(got) == pytest.approx(3e38, rel=1e-6)
    # the sum is not finite, and says so
    assert math.isinf(
        float(xmargin.soft_margin_loss(x32, -np.ones(2, np.float32), reduction="sum"))
    )
    # torch: same numbers, and the gradient of the mean is finite too
    xt = torch.tensor([big, big], requires_grad=True)
    loss = xmargin.soft_margin_loss(xt, -torch.ones(2, dtype=torch.float64))
    loss.backward()
    assert loss.item() == pytest.approx(big, rel=1e-15) and torch.isfinite(xt.grad).all()
    # ordinary values: PyTorch's rule, sum / count, exactly
    xs = torch.randn(7, 5, dtype=torch.float64)
    y = torch.sign(torch.randn(7, 5, dtype=torch.float64))
    elementwise = xmargin.soft_margin_loss(xs, y, reduction="none")
    assert xmargin.soft_margin_loss(xs, y).item() == (elementwise.sum() / 35).item()
    want = torch.nn.functional.soft_margin_loss(xs, y)
    assert xmargin.soft_margin_loss(xs, y).item() == pytest.approx(want.item(), rel=1e-15)


# --------------------------------------------------------------------------------------------
# 8. a forked child after the parent used the reference kernel's thread pool
# --------------------------------------------------------------------------------------------
_FORK_SCRIPT = """
import multiprocessing, os, sys
import numpy as np
import xmargin
from xmargin.backends import _threads

x = np.random.default_rng(0).normal(size=(512, 4096))  # several pool tasks for either
t = np.random.default_rng(1).integers(0, 4096, size=(512, 8))
backend = sys.argv[1]
want = float(xmargin.multilabel_margin_loss(x, t, backend=backend))
assert _threads._POOL is not None  # several blocks ran on the pool


def child(queue):
    queue.put(float(xmargin.multilabel_margin_loss(x, t, backend=backend)))


ctx = multiprocessing.get_context("fork")
queue = ctx.Queue()
proc = ctx.Process(target=child, args=(queue,))
proc.start()
proc.join(timeout=60)
if proc.is_alive():
    proc.kill()
    sys.exit("the forked child hung on the thread pool")
assert proc.exitcode == 0 and queue.get(timeout=5) == want
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_forked_child_does_not_hang(backend):
    """Linux's default start method forks; the child must not wait on the parent's pool
    threads (they do not exist in the child). A fresh interpreter: nothing else threaded."""
    import subprocess

    env = {**os.environ, "XMARGIN_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, backend], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
