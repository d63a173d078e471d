"""The reference backend's weights (issue 14): ``weight`` (C,) or (N, C) and ``neg_weight``
None, (C,) or (N, C) against the literal-loop oracle, on both of the kernel's searches (a
linear count for T <= 8 thresholds, a binary search beyond), with duplicates, empty and
all-positive rows, ties at the margin, ±inf and NaN scores, bad targets, row blocks, float32
and float64. A negative of neg_weight 0 forms no pair: 0, never 0·inf, but still a negative
for the NaN rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xmargin.backends import reference

import oracle
from conftest import assert_close

# float64 sums either way; float32 gradients are rounded once at the end
TOL = {"float64": 1e-12, "float32": 1e-6}
WEIGHTS = [None, "shared", "rows"]
NEG_WEIGHTS = [None, "shared", "rows", "shared, zeros", "rows, zeros"]
# the largest T of a block picks the kernel's search: (C, largest T)
PATHS = {"few": (16, 8), "many": (40, 40)}


def _weights(kind, n, c, rng, dtype):
    """None, a (C,) or an (N, C) weight in [0.5, 2], with exact zeros when asked."""
    if kind is None:
        return None
    w = rng.uniform(0.5, 2.0, size=(n, c) if kind.startswith("rows") else c)
    if kind.endswith("zeros"):
        w[rng.random(w.shape) < 0.3] = 0.0
    return w.astype(dtype)


def _targets(n, c, tmax, rng):
    """Rows of every T from 0 to ``tmax``: row 0 empty (values after its terminator), row 1
    with duplicates, row 2 all of ``tmax`` classes (all positive when tmax == C)."""
    t = np.full((n, tmax + 2), -1)
    for i in range(n):
        size = rng.integers(1, tmax + 1)
        t[i, :size] = rng.permutation(c)[:size]
    t[0, :3] = [-1, 3, 5]
    t[1, :4] = [c - 1, 2, c - 1, c - 1]
    t[2, :tmax] = rng.permutation(c)[:tmax]
    return t


def _oracle(x, t, p, weight, neg_weight, margin=1.0):
    """The literal loop's raw sums (it returns them after the 1/C)."""
    c = x.shape[1]
    loss, grad = oracle.multilabel_margin(
        x, t, margin=margin, p=p, weight=weight, neg_weight=neg_weight
    )
    return np.array(loss) * c, np.array(grad).reshape(x.shape) * c


def _check(x, t, p, weight, neg_weight, what, margin=1.0):
    loss, grad = reference.hinge_numpy(
        x, t, margin=margin, p=p, weight=weight, neg_weight=neg_weight, want_grad=True
    )
    assert loss.dtype == np.float64 and grad.dtype == x.dtype, what
    ref_loss, ref_grad = _oracle(x, t, p, weight, neg_weight, margin)
    tol = TOL[x.dtype.name]
    assert_close(loss, ref_loss, rtol=tol, atol=tol, what=f"loss {what}")
    assert_close(grad, ref_grad, rtol=tol, atol=tol, what=f"grad {what}")
    return loss, grad


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("neg", NEG_WEIGHTS)
@pytest.mark.parametrize("weighted", WEIGHTS)
@pytest.mark.parametrize("p", [1, 2])
def test_against_oracle(p, weighted, neg, path, dtype):
    """Finite scores on a grid of halves (ties at the margin: zero hinges)."""
    c, tmax = PATHS[path]
    n = 9
    rng = np.random.default_rng([p, WEIGHTS.index(weighted), NEG_WEIGHTS.index(neg), tmax])
    x = (rng.integers(-6, 7, size=(n, c)) / 2).astype(dtype)
    t = _targets(n, c, tmax, rng)
    weight = _weights(weighted, n, c, rng, dtype)
    neg_weight = _weights(neg, n, c, rng, dtype)
    what = f"p={p} weight={weighted} neg_weight={neg} {path} {dtype}"
    loss, _ = _check(x, t, p, weight, neg_weight, what)
    assert (loss[1:] > 0).any(), f"{what}: a problem without a violated pair tests nothing"
    # the loss alone is the same loss
    alone, none = reference.hinge_numpy(
        x, t, margin=1.0, p=p, weight=weight, neg_weight=neg_weight, want_grad=False
    )
    assert none is None and np.array_equal(alone, loss), what


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("neg", ["shared, zeros", "rows, zeros"])
@pytest.mark.parametrize("p", [1, 2])
def test_special_values(p, neg, path, dtype):
    """±inf and NaN scores, and bad targets, beside negatives of weight 0 and > 0."""
    c, tmax = PATHS[path]
    n = 12
    rng = np.random.default_rng([p, tmax, len(neg)])
    x = rng.normal(size=(n, c)).astype(dtype)
    t = np.full((n, tmax + 1), -1)
    t[:, :2] = [[0, 1]] * n
    t[n - 1, :tmax] = np.arange(tmax)  # the largest T of the block: picks the search
    neg_weight = np.full((n, c) if neg.startswith("rows") else c, 1.5)
    neg_weight[..., 5] = 0.0  # class 5 pairs with nothing (shared: in every row)
    neg_weight[..., 7] = 0.25
    neg_weight = neg_weight.astype(dtype)
    weight = rng.uniform(0.5, 2.0, size=(n, c)).astype(dtype)
    x[0, 5] = np.inf  # an infinite hinge of weight 0: no pair, a finite loss
    x[1, 5], x[1, 7] = np.inf, np.inf  # ... beside one of weight > 0: +inf
    x[2, 0] = -np.inf  # a positive at -inf: infinite hinges, except with class 5
    x[3, 5] = np.nan  # a NaN negative of weight 0: still a negative, the row is NaN
    x[4, 1] = np.nan  # a NaN positive
    t[5, 0] = -1  # no positive: a NaN of weight 0 and +inf scores add nothing
    x[5, 5], x[5, 6], x[5, 8] = np.nan, np.inf, -np.inf
    x[6, 0], x[6, 5], x[6, 9] = np.inf, np.inf, -np.inf  # +inf positive, -inf negative
    t[7, 2] = c  # a target out of range after the positives: the row is NaN
    t[8, 3] = -2
    x[9, 0], x[9, 5], x[9, 6] = -np.inf, -np.inf, -np.inf  # -inf against -inf: no pair
    if neg.startswith("rows"):  # row 10: every negative of weight 0, one of them at +inf
        neg_weight[10, 2:] = 0.0
        x[10, 3] = np.inf
    what = f"p={p} neg_weight={neg} {path} {dtype}"
    loss, grad = _check(x, t, p, weight, neg_weight, what)
    assert math.isfinite(loss[0]) and grad[0, 5] == 0, f"{what}: weight-0 negative at +inf"
    assert loss[1] == math.inf, f"{what}: weight-0.25 negative at +inf"
    assert np.isnan(loss[[3, 4, 7, 8]]).all() and np.isnan(grad[[3, 4, 7, 8]]).all(), what
    assert loss[5] == 0 and not grad[5].any(), f"{what}: a row without positives"
    assert loss[2] == math.inf and grad[2, 5] == 0, f"{what}: a positive at -inf"
    if neg.startswith("rows"):
        assert loss[10] == 0 and not grad[10].any(), f"{what}: no negative of weight > 0"


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_blocks_and_column_chunks(monkeypatch, p, dtype):
    """(N, C) weights are sliced with each block of rows: small chunks make many blocks of a
    few rows (on the thread pool) and many column chunks per block."""
    monkeypatch.setattr(reference, "_CHUNK_ELEMS", 64)
    rng = np.random.default_rng(p)
    n, c = 23, 30
    x = (rng.integers(-6, 7, size=(n, c)) / 2).astype(dtype)
    for tmax in (5, 20):
        t = _targets(n, c, tmax, rng)
        weight = _weights("rows", n, c, rng, dtype)
        neg_weight = _weights("rows, zeros", n, c, rng, dtype)
        _check(x, t, p, weight, neg_weight, f"blocks p={p} T<={tmax} {dtype}")


@pytest.mark.parametrize("p", [1, 2])
def test_wide_rows_against_the_dense_oracle(p):
    """Normal scores, T up to 300 of C = 700, against the vectorised oracle."""
    rng = np.random.default_rng(100 + p)
    n, c = 4, 700
    x = rng.normal(scale=2.0, size=(n, c))
    t = _targets(n, c, 300, rng)
    weight = _weights("rows", n, c, rng, np.float64)
    neg_weight = _weights("rows, zeros", n, c, rng, np.float64)
    loss, grad = reference.hinge_numpy(
        x, t, margin=0.5, p=p, weight=weight, neg_weight=neg_weight, want_grad=True
    )
    ref_loss, ref_grad = oracle.multilabel_margin_dense(
        x, t, margin=0.5, p=p, weight=weight, neg_weight=neg_weight
    )
    assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12, what=f"wide loss p={p}")
    assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12, what=f"wide grad p={p}")


def _special_problem(dtype, rng):
    n, c = 10, 24
    x = (rng.integers(-6, 7, size=(n, c)) / 2).astype(dtype)
    x[0, 3], x[1, 2], x[2, 4] = np.inf, np.nan, -np.inf
    t = _targets(n, c, 12, rng)
    t[3, 5] = 99  # a bad row
    return x, t


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_none_is_bitwise_the_call_without_it(p, dtype):
    """neg_weight=None is today's call, bit for bit (weights None, (C,) and (N, C))."""
    rng = np.random.default_rng(3)
    x, t = _special_problem(dtype, rng)
    n, c = x.shape
    for weighted in WEIGHTS:
        weight = _weights(weighted, n, c, rng, dtype)
        kw = dict(margin=1.0, p=p, weight=weight, want_grad=True)
        before = reference.hinge_numpy(x, t, **kw)
        after = reference.hinge_numpy(x, t, neg_weight=None, **kw)
        for a, b, name in zip(before, after, ("loss", "grad"), strict=True):
            assert a.tobytes() == b.tobytes(), f"{name} p={p} weight={weighted} {dtype}"


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rows_equal_to_a_broadcast_give_the_same(p, dtype):
    """(N, C) weights equal to a broadcast (C,) weight: the same results; neg_weight of ones:
    the unweighted results."""
    rng = np.random.default_rng(4)
    x, t = _special_problem(dtype, rng)
    n, c = x.shape
    w = _weights("shared", n, c, rng, dtype)
    v = _weights("shared, zeros", n, c, rng, dtype)
    kw = dict(margin=1.0, p=p, want_grad=True)
    shared = reference.hinge_numpy(x, t, weight=w, neg_weight=v, **kw)
    rows = reference.hinge_numpy(
        x, t, weight=np.tile(w, (n, 1)), neg_weight=np.tile(v, (n, 1)), **kw
    )
    for a, b, name in zip(shared, rows, ("loss", "grad"), strict=True):
        assert np.array_equal(a, b, equal_nan=True), f"{name} p={p} {dtype}: (N, C) vs (C,)"
    plain = reference.hinge_numpy(x, t, weight=w, **kw)
    ones = reference.hinge_numpy(x, t, weight=w, neg_weight=np.ones((n, c), dtype), **kw)
    for a, b, name in zip(plain, ones, ("loss", "grad"), strict=True):
        assert_close(b, a, rtol=TOL[dtype], atol=0, what=f"{name} p={p} {dtype}: ones vs None")


def test_torch_tensors_through_hinge():
    """``hinge`` takes CPU tensors for every argument, (N, C) weights included."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, t = _special_problem("float32", rng)
    n, c = x.shape
    w = _weights("rows", n, c, rng, np.float32)
    v = _weights("rows, zeros", n, c, rng, np.float32)
    kw = dict(margin=1.0, p=2, want_grad=True)
    tensors = [torch.from_numpy(a) for a in (x, t, w, v)]
    loss, grad = reference.hinge(*tensors[:2], weight=tensors[2], neg_weight=tensors[3], **kw)
    assert isinstance(loss, torch.Tensor) and grad.dtype == torch.float32
    ref_loss, ref_grad = reference.hinge_numpy(x, t, weight=w, neg_weight=v, **kw)
    assert np.array_equal(loss.numpy(), ref_loss, equal_nan=True), "torch loss != NumPy loss"
    assert np.array_equal(grad.numpy(), ref_grad, equal_nan=True), "torch grad != NumPy grad"


def test_weight_of_the_wrong_shape():
    x, t = np.zeros((3, 4)), np.zeros((3, 1), dtype=np.int64)
    for name in ("weight", "neg_weight"):
        kw = {"weight": None, name: np.ones((4, 4))}
        with pytest.raises(ValueError, match=rf"{name} must be \(C,\) or \(N, C\) = \(3, 4\)"):
            reference.hinge_numpy(x, t, margin=1.0, p=1, want_grad=False, **kw)
