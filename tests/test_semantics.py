"""What PyTorch lacks or does differently, against the literal-loop oracle (tests/oracle.py):
margin, p, weight and K != C for multilabel_margin_loss, NaN propagation, empty batches,
stability at large |x|, integer target dtypes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import xmargin

import oracle
from conftest import assert_close

RTOL, ATOL = 1e-10, 1e-12


def _mlm_both(x, t, **kw):
    loss, grad = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
        x, t, reduction="none", **kw
    )
    return np.asarray(loss), np.asarray(grad)


@pytest.mark.parametrize("margin", [1.0, 0.0, 0.5, 2.5, -0.75])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("k", [1, 3, 8, 12])
def test_multilabel_margin_options_against_oracle(margin, p, weighted, k):
    rng = np.random.default_rng(hash((margin, p, weighted, k)) % 2**32)
    n, c = 7, 8
    x = rng.normal(size=(n, c)).round(1)  # rounded: many exact ties at the margin
    t = rng.integers(-1, c, size=(n, k))
    t[0, :] = -1  # an empty row
    if k >= 2:
        t[1, :2] = [3, 3]  # a duplicated label
    weight = rng.uniform(-1.0, 2.0, size=c) if weighted else None
    loss, grad = _mlm_both(x, t, margin=margin, p=p, weight=weight)
    ref_loss, ref_grad = oracle.multilabel_margin(x, t, margin=margin, p=p, weight=weight)
    what = f"margin={margin} p={p} weighted={weighted} K={k}"
    assert_close(loss, ref_loss, rtol=RTOL, atol=ATOL, what=f"loss {what}")
    assert_close(grad, ref_grad, rtol=RTOL, atol=ATOL, what=f"grad {what}")
    # the functional form gives the same numbers
    direct = xmargin.multilabel_margin_loss(
        x, t, reduction="none", margin=margin, p=p, weight=weight
    )
    assert_close(direct, ref_loss, rtol=RTOL, atol=ATOL, what=f"functional {what}")


def test_multilabel_margin_narrow_targets_equal_padded_ones():
    """(N, K) targets with K < C mean the same as the -1-padded (N, C) ones."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 10))
    narrow = np.array([[1, 4], [0, -1], [9, 9], [-1, -1], [2, 3]])
    wide = np.full((5, 10), -1)
    wide[:, :2] = narrow
    for red in ("none", "mean", "sum"):
        a = xmargin.multilabel_margin_loss(x, narrow, reduction=red)
        b = xmargin.multilabel_margin_loss(x, wide, reduction=red)
        assert_close(a, b, rtol=RTOL, atol=ATOL, what=f"K=2 vs K=C, {red}")


def test_multilabel_margin_nan_propagates():
    x = np.array(
        [
            [np.nan, 0.0, 1.0],  # NaN, a positive and a negative: NaN
            [0.5, np.nan, 1.0],  # NaN on a negative class: NaN
            [np.nan, 0.0, 1.0],  # no positives: 0
            [np.nan, 0.0, 1.0],  # every class positive: 0
            [0.1, 0.2, 0.3],  # clean row: finite
        ]
    )
    t = np.array([[2, -1, 0], [0, -1, -1], [-1, 0, 1], [0, 1, 2], [0, -1, -1]])
    loss, grad = _mlm_both(x, t)
    assert np.isnan(loss[:2]).all() and np.isnan(grad[:2]).all()
    assert loss[2] == 0 and loss[3] == 0
    assert np.all(grad[2:4] == 0)
    assert np.isfinite(loss[4]) and np.isfinite(grad[4]).all()
    assert math.isnan(float(xmargin.multilabel_margin_loss(x, t)))


def test_multi_margin_nan_propagates():
    x = np.array([[np.nan, 0.0, 1.0], [0.2, 0.1, 0.0]])
    loss, grad = xmargin.value_and_grad(xmargin.multi_margin_loss)(
        x, np.array([1, 0]), reduction="none"
    )
    assert np.isnan(loss[0]) and np.isnan(grad[0]).all()
    ref, ref_grad = oracle.multi_margin([[0.2, 0.1, 0.0]], [0])
    assert_close(loss[1:], ref, rtol=RTOL, atol=ATOL, what="clean row")
    assert_close(grad[1:], ref_grad, rtol=RTOL, atol=ATOL, what="clean row grad")


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, -0.5, 0.0])
def test_multi_margin_against_oracle(p, margin):
    rng = np.random.default_rng(p * 10 + int(margin * 4))
    x = rng.normal(size=(9, 6)).round(1)
    y = rng.integers(0, 6, size=9)
    w = rng.uniform(-2, 2, size=6)
    loss, grad = xmargin.value_and_grad(xmargin.multi_margin_loss)(
        x, y, p=p, margin=margin, weight=w, reduction="none"
    )
    ref, ref_grad = oracle.multi_margin(x, y, margin=margin, p=p, weight=w)
    assert_close(loss, ref, rtol=RTOL, atol=ATOL, what="multi_margin loss")
    assert_close(grad, ref_grad, rtol=RTOL, atol=ATOL, what="multi_margin grad")


EMPTY = {
    "multilabel_margin_loss": lambda: (np.zeros((0, 4)), np.zeros((0, 4), dtype=np.int64)),
    "multi_margin_loss": lambda: (np.zeros((0, 4)), np.zeros((0,), dtype=np.int64)),
    "multilabel_soft_margin_loss": lambda: (np.zeros((0, 4)), np.zeros((0, 4))),
    "soft_margin_loss": lambda: (np.zeros((0,)), np.zeros((0,))),
    "hinge_embedding_loss": lambda: (np.zeros((0, 3)), np.zeros((0, 3))),
    "margin_ranking_loss": lambda: (np.zeros((0,)), np.zeros((0,)), np.zeros((0,))),
}


@pytest.mark.parametrize("name", EMPTY)
def test_empty_batch(name):
    fn = getattr(xmargin, name)
    args = EMPTY[name]()
    assert math.isnan(float(fn(*args, reduction="mean")))
    assert float(fn(*args, reduction="sum")) == 0.0
    none = fn(*args, reduction="none")
    assert none.shape[0] == 0
    _, g = xmargin.value_and_grad(fn)(*args, reduction="sum")
    assert g.shape == args[0].shape


def test_soft_margin_losses_are_stable_at_large_scores():
    x = np.array([-1000.0, -1e300, 1e300, 1000.0, 0.0])
    y = np.ones(5)
    loss, grad = xmargin.value_and_grad(xmargin.soft_margin_loss)(x, y, reduction="none")
    ref, ref_grad = oracle.soft_margin(x.tolist(), y.tolist())
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    assert_close(loss, ref, rtol=1e-15, atol=0, what="soft_margin at large |x|")
    assert_close(grad, ref_grad, rtol=1e-15, atol=0, what="soft_margin grad at large |x|")
    x32 = np.array([-1000.0, 1000.0, 3e38, -3e38], dtype=np.float32)
    out = xmargin.soft_margin_loss(x32, np.ones(4, dtype=np.float32), reduction="none")
    assert out.dtype == np.float32 and np.isfinite(out).all()

    xm = np.array([[-1000.0, 1000.0, 0.5], [1e300, -1e300, -3.0]])
    ym = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    w = np.array([[0.5, 2.0, 1.0]])
    loss, grad = xmargin.value_and_grad(xmargin.multilabel_soft_margin_loss)(
        xm, ym, w, reduction="none"
    )
    ref, ref_grad = oracle.multilabel_soft_margin(xm, ym, weight=np.broadcast_to(w, xm.shape))
    assert_close(loss, ref, rtol=1e-15, atol=0, what="multilabel_soft_margin at large |x|")
    assert_close(grad, ref_grad, rtol=1e-15, atol=0, what="its gradient")


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint16, np.uint32]
)
def test_any_integer_target_dtype(dtype):
    x = np.random.default_rng(0).normal(size=(3, 5))
    t = np.array([[0, 4, 1, 3, 2], [2, 2, 0, 1, 1], [4, 3, 2, 1, 0]])
    expected = xmargin.multilabel_margin_loss(x, t)
    assert xmargin.multilabel_margin_loss(x, t.astype(dtype)) == expected
    y = np.array([0, 4, 2])
    assert xmargin.multi_margin_loss(x, y.astype(dtype)) == xmargin.multi_margin_loss(x, y)


def test_value_checks_switch():
    """With value checks off, bad targets give NaN rows instead of an error, and no warnings."""
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"target\[0, 1\] = 3"):
        xmargin.multilabel_margin_loss(x, np.array([[0, 3, -1], [0, -1, -1]]))
    with xmargin.options(check_values=False):
        out = xmargin.multilabel_margin_loss(
            x, np.array([[0, 3, -1], [0, -1, -1]]), reduction="none"
        )
        assert np.isnan(out[0]) and out[1] == pytest.approx(2 / 3)
        out = xmargin.multi_margin_loss(x, np.array([-4, 1]), reduction="none")
        assert np.isnan(out[0]) and out[1] == pytest.approx(2 / 3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            xmargin.soft_margin_loss(np.zeros(3), np.array([0.0, 1.0, 1.0]))
    with pytest.warns(UserWarning, match="to_pm1"):
        xmargin.soft_margin_loss(np.zeros(3), np.array([0.0, 1.0, 1.0]))


def test_options_are_scoped_per_thread():
    import threading

    seen = {}

    def worker(flag, key):
        with xmargin.options(check_values=flag):
            barrier.wait()
            try:
                xmargin.multi_margin_loss(np.zeros((1, 2)), np.array([7]))
                seen[key] = "no error"
            except ValueError:
                seen[key] = "error"

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=worker, args=(f, f)) for f in (True, False)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert seen == {True: "error", False: "no error"}


def test_results_are_writable_numpy_arrays():
    """No read-only broadcast views handed out (NumPy's broadcast_to makes those)."""
    _, g = xmargin.value_and_grad(xmargin.soft_margin_loss)(np.zeros((2, 3)), np.ones(3))
    assert g.flags.writeable and g.shape == (2, 3)
    out = xmargin.hinge_embedding_loss(np.zeros((2, 1)), np.ones((1, 3)), reduction="none")
    assert out.flags.writeable and out.shape == (2, 3)
    _, (ga, gb) = xmargin.value_and_grad(xmargin.margin_ranking_loss, argnums=(0, 1))(
        np.zeros((2, 1)), np.zeros((1, 3)), np.ones((2, 3))
    )
    assert ga.flags.writeable and gb.flags.writeable and ga.shape == (2, 1) and gb.shape == (1, 3)
