"""The numba kernel with per-negative weights (``neg_weight``) and (N, C) weights, against the
literal-loop oracle: the direct loop, the fused one-positive pass and the sorted search (forced
by ``DIRECT_MAX``), duplicates, empty and full rows, ties, ±inf and NaN scores, bad targets,
float32 and float64, ``grad_scale``, and the row offsets of the threaded launch."""

from __future__ import annotations

import numpy as np
import pytest

from xmargin.backends import numba as nb

import oracle
from conftest import assert_close

# the kernel's loss is float64 whatever the scores' dtype; a float32 gradient is rounded once
TOL = {"float64": 1e-12, "float32": 2e-6}
PATHS = {"direct": 10**9, "search": 0}  # DIRECT_MAX: every row with T ≥ 2 in one path


def _oracle(x, t, *, margin, p, weight, neg_weight):
    """The literal loop's per-row losses and gradients as raw sums (before the 1/C)."""
    c = x.shape[1]
    loss, grad = oracle.multilabel_margin(
        x.astype(np.float64), t, margin=margin, p=p, weight=weight, neg_weight=neg_weight
    )
    return np.asarray(loss) * c, np.asarray(grad).reshape(x.shape) * c


def _targets(rng, n, c, k):
    """(n, k) targets with rows of every kind: T = 0, 1, a few, many, all C classes (T = C, no
    negative), duplicate slots, and in-range values after the terminator."""
    t = np.full((n, k), -1)
    for i in range(n):
        kind = i % 8
        if kind == 0:  # no positive, values after the terminator
            t[i, 1:3] = rng.integers(0, c, 2)
        elif kind == 1:  # one positive: the fused pass
            t[i, 0] = rng.integers(0, c)
        elif kind == 2:  # every class: no negative
            t[i, :c] = rng.permutation(c)
        elif kind == 3:  # a duplicated class
            a, b = rng.choice(c, 2, replace=False)
            t[i, :4] = [a, b, a, a]
        else:  # 2 to c - 1 distinct positives, then a value after the terminator
            m = int(rng.integers(2, c))
            t[i, :m] = rng.choice(c, m, replace=False)
            if m + 1 < k:
                t[i, m + 1] = rng.integers(0, c)
    return t


def _weights(rng, kind, n, c, zeros):
    """None, a (C,) or an (N, C) weight in [0, 2), with exact zeros (a fraction ``zeros``)."""
    if kind is None:
        return None
    shape = (c,) if kind == "C" else (n, c)
    w = rng.uniform(0.0, 2.0, shape)
    return np.where(rng.random(shape) < zeros, 0.0, w)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("neg", [None, "C", "NC"])
@pytest.mark.parametrize("pos", [None, "C", "NC"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("path", PATHS)
def test_against_the_oracle(monkeypatch, path, p, pos, neg, dtype):
    """Every combination of weights on rows of every kind, ties at the margin (halves), in
    both paths of the kernel (and the fused pass for T = 1)."""
    monkeypatch.setattr(nb, "DIRECT_MAX", PATHS[path])
    rng = np.random.default_rng([PATHS[path] % 7, p, hash((pos, neg)) % 1000])
    n, c = 24, 11
    x = (rng.integers(-4, 5, size=(n, c)) / 2).astype(dtype)
    t = _targets(rng, n, c, c + 2)
    w = _weights(rng, pos, n, c, zeros=0.1)
    v = _weights(rng, neg, n, c, zeros=0.3)
    if neg == "NC":
        v[4] = 0.0  # a row of positives whose negatives all weigh 0: no pair at all
    loss, grad = nb.hinge_numpy(x, t, margin=0.5, p=p, weight=w, want_grad=True, neg_weight=v)
    ref_loss, ref_grad = _oracle(x, t, margin=0.5, p=p, weight=w, neg_weight=v)
    what = f"{path} p={p} weight={pos} neg_weight={neg} {dtype}"
    assert loss.dtype == np.float64 and grad.dtype == x.dtype
    assert_close(loss, ref_loss, rtol=TOL[dtype], atol=TOL[dtype], what=f"loss {what}")
    assert_close(grad, ref_grad, rtol=TOL[dtype], atol=TOL[dtype], what=f"grad {what}")
    if neg == "NC":
        assert loss[4] == 0 and not grad[4].any(), f"row 4 without pairs: {what}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("path", PATHS)
def test_infinities_nan_and_bad_targets(monkeypatch, path, p, dtype):
    """±inf scores at weighted and zero-weight negatives and at positives, NaN at a negative of
    weight 0 (still a negative for the NaN rule), and rows with targets out of range."""
    monkeypatch.setattr(nb, "DIRECT_MAX", PATHS[path])
    inf, nan = np.inf, np.nan
    c = 6
    x = np.zeros((9, c))
    t = np.full((9, 4), -1)
    v = np.ones((9, c))
    rows = [  # (scores, targets, neg weights)
        ([0, inf, 1, -inf, 0.5, 2], [0, 4], [1, 0, 1, 1, 1, 1]),  # +inf of weight 0: no pair
        ([0, inf, 1, -inf, 0.5, 2], [0], [1, 0, 1, 1, 1, 1]),  # the same, one positive
        ([0, inf, 1, 2, 0.5, 2], [0, 4], [1, 0.5, 1, 1, 1, 0]),  # +inf weighted: inf loss
        ([-inf, 1, -inf, 2, 0.5, inf], [0, 3], [1, 1, 1, 1, 0, 0]),  # a positive at -inf
        ([inf, 1, -inf, 2, 0.5, 3], [0, 1, 0], [1, 1, 1, 1, 2, 0]),  # a positive at +inf
        ([0, nan, 1, 2, 0.5, 1], [0, 2], [1, 0, 1, 1, 1, 1]),  # NaN at weight 0: NaN row
        ([0, nan, 1, 2, 0.5, 1], [-1], [1, 0, 1, 1, 1, 1]),  # NaN, no positive: 0
        ([0, 1, 1, 2, 0.5, 1], [0, 2, -1, 6], [1, 1, 0, 1, 1, 1]),  # 6 ≥ C: NaN row
        ([0, inf, 1, 2, 0.5, 1], [1, -2], [1, 0, 0, 1, 1, 1]),  # -2: NaN row
    ]
    for i, (xs, ts, vs) in enumerate(rows):
        x[i] = xs
        t[i, : len(ts)] = ts
        v[i] = vs
    x = x.astype(dtype)
    w = np.linspace(0.5, 1.5, c)
    loss, grad = nb.hinge_numpy(x, t, margin=1.0, p=p, weight=w, want_grad=True, neg_weight=v)
    ref_loss, ref_grad = _oracle(x, t, margin=1.0, p=p, weight=w, neg_weight=v)
    what = f"{path} p={p} {dtype}"
    assert_close(loss, ref_loss, rtol=TOL[dtype], atol=TOL[dtype], what=f"loss {what}")
    assert_close(grad, ref_grad, rtol=TOL[dtype], atol=TOL[dtype], what=f"grad {what}")
    # the cases the oracle must also say (so that the test does not rest on it alone)
    assert np.isfinite(loss[:2]).all() and np.isfinite(grad[:2]).all(), what
    assert np.isinf(loss[2]) and np.isnan(loss[[5, 7, 8]]).all() and loss[6] == 0, what


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("path", PATHS)
def test_grad_scale_and_loss_only(monkeypatch, path, p):
    """A per-row and a scalar ``grad_scale`` multiply the weighted gradient; without
    ``want_grad`` the loss is the same and no gradient comes back."""
    monkeypatch.setattr(nb, "DIRECT_MAX", PATHS[path])
    rng = np.random.default_rng(p)
    for n, c in [(16, 9), (12, 37)]:  # rows shorter and longer than a few vector widths
        x = rng.integers(-4, 5, size=(n, c)) / 2
        t = _targets(rng, n, c, c + 1)
        w = _weights(rng, "NC", n, c, zeros=0.1)
        v = _weights(rng, "NC", n, c, zeros=0.3)
        kw = {"margin": 1.0, "p": p, "weight": w, "neg_weight": v}
        ref_loss, ref_grad = _oracle(x, t, **kw)
        scale = rng.uniform(-2.0, 2.0, n)
        what = f"{path} p={p} C={c}"
        loss, grad = nb.hinge_numpy(x, t, want_grad=True, grad_scale=scale, **kw)
        assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12, what=f"loss {what}")
        assert_close(grad, ref_grad * scale[:, None], rtol=1e-12, atol=1e-12,
                     what=f"grad, (N,) grad_scale, {what}")  # fmt: skip
        _, grad = nb.hinge_numpy(x, t, want_grad=True, grad_scale=0.25, **kw)
        assert_close(grad, ref_grad * 0.25, rtol=1e-12, atol=1e-12, what=f"grad, 0.25, {what}")
        loss_only, none = nb.hinge_numpy(x, t, want_grad=False, **kw)
        assert none is None, what
        assert np.array_equal(loss_only, loss), f"the loss without want_grad differs: {what}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("path", [*PATHS, "default"])
def test_none_and_broadcast_rows_are_the_same_call(monkeypatch, path, p, dtype):
    """``neg_weight=None`` is the call without the argument, bit for bit; (N, C) weights equal
    to a broadcast (C,) weight give the (C,) result bit for bit (the same numbers in the same
    order); a neg weight of ones gives the unweighted values."""
    if path != "default":
        monkeypatch.setattr(nb, "DIRECT_MAX", PATHS[path])
    rng = np.random.default_rng(3)
    n, c = 16, 80  # rows of up to 79 positives: both paths under the default DIRECT_MAX
    x = rng.normal(size=(n, c)).astype(dtype)
    t = _targets(rng, n, c, c + 1)
    w = rng.uniform(0.0, 2.0, c)
    v = np.where(rng.random(c) < 0.3, 0.0, rng.uniform(0.0, 2.0, c))
    kw = {"margin": 1.0, "p": p, "want_grad": True}
    plain = nb.hinge_numpy(x, t, weight=w, **kw)
    same = nb.hinge_numpy(x, t, weight=w, neg_weight=None, **kw)
    for a, b, name in zip(plain, same, ("loss", "grad"), strict=True):
        assert np.array_equal(a, b, equal_nan=True), f"neg_weight=None changes the {name}"
    shared = nb.hinge_numpy(x, t, weight=w, neg_weight=v, **kw)
    rows = nb.hinge_numpy(x, t, weight=np.tile(w, (n, 1)), neg_weight=np.tile(v, (n, 1)), **kw)
    for a, b, name in zip(shared, rows, ("loss", "grad"), strict=True):
        assert np.array_equal(a, b, equal_nan=True), f"(N, C) rows of a (C,) weight: {name}"
    ones = nb.hinge_numpy(x, t, weight=w, neg_weight=np.ones(c), **kw)
    assert_close(ones[0], plain[0], rtol=1e-12, atol=1e-12, what=f"ones loss {path}")
    assert_close(ones[1], plain[1], rtol=TOL[dtype], atol=TOL[dtype], what=f"ones grad {path}")


@pytest.mark.parametrize("p", [1, 2])
def test_large_problems_and_threaded_row_offsets(p):
    """The default launch on problems large enough for the sorted search and for row blocks
    on the pool: (N, C) weights must be read at each block's own rows."""
    rng = np.random.default_rng(10 + p)
    for n, c, k in [(3, 400, 200), (64, 2000, 100)]:
        x = rng.normal(scale=2.0, size=(n, c))
        t = np.full((n, c), -1)
        t[:, :k] = np.argsort(rng.random((n, c)), axis=1)[:, :k]
        t[::5, k // 2] = -1  # some rows with half as many positives
        w = rng.uniform(0.0, 2.0, (n, c))
        v = np.where(rng.random((n, c)) < 0.2, 0.0, rng.uniform(0.0, 2.0, (n, c)))
        for dtype in ("float64", "float32"):
            xd = x.astype(dtype)
            loss, grad = nb.hinge_numpy(xd, t, margin=1.0, p=p, weight=w, want_grad=True,
                                        neg_weight=v)  # fmt: skip
            ref_loss, ref_grad = oracle.multilabel_margin_dense(
                xd, t, margin=1.0, p=p, weight=w, neg_weight=v
            )
            what = f"({n}, {c}, T={k}) p={p} {dtype}"
            tol = 1e-11 if dtype == "float64" else 1e-5
            scale = np.abs(ref_grad).max()
            assert_close(loss, ref_loss, rtol=tol, atol=0, what=f"loss {what}")
            assert_close(grad, ref_grad, rtol=tol, atol=tol * scale, what=f"grad {what}")


def test_torch_tensors_and_wrong_shapes():
    """The ``hinge`` of the backend takes torch CPU weights of either shape; a weight of
    another shape is refused before the kernel reads it."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    n, c = 5, 7
    x = rng.normal(size=(n, c))
    t = _targets(rng, n, c, c)
    w = rng.uniform(0.0, 2.0, (n, c))
    v = np.where(rng.random(c) < 0.3, 0.0, rng.uniform(0.0, 2.0, c))
    want = nb.hinge_numpy(x, t, margin=1.0, p=2, weight=w, want_grad=True, neg_weight=v)
    xt, tt, wt, vt = (torch.from_numpy(a) for a in (x, t, w, v))
    got = nb.hinge(xt, tt, margin=1.0, p=2, weight=wt, want_grad=True, neg_weight=vt)
    assert isinstance(got[0], torch.Tensor) and isinstance(got[1], torch.Tensor)
    np.testing.assert_array_equal(got[0].numpy(), want[0])
    np.testing.assert_array_equal(got[1].numpy(), want[1])
    for bad in (np.ones(c + 1), np.ones((n + 1, c)), np.ones((1, c)), np.ones((n, c, 1))):
        with pytest.raises(ValueError, match=r"neg_weight must have shape \(7,\) or \(5, 7\)"):
            nb.hinge_numpy(x, t, margin=1.0, p=1, weight=None, want_grad=True, neg_weight=bad)
        with pytest.raises(ValueError, match=r"weight must have shape \(7,\) or \(5, 7\)"):
            nb.hinge_numpy(x, t, margin=1.0, p=1, weight=bad, want_grad=False)
