"""Each loss is defined once (its implementation; the public function and the value_and_grad
table are made from it), and the reduction rule is written once (xmargin._xp.apply_reduction)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import xmargin
from xmargin._grad import _IMPLS
from xmargin._xp import apply_reduction
from xmargin.losses._public import LOSSES, PRIVATE

NAMES = [
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
]


def test_value_and_grad_table_covers_exactly_the_six_losses_and_the_fused_one():
    assert _IMPLS is LOSSES
    fused = xmargin.fused_linear_multilabel_margin_loss
    assert set(_IMPLS) == {getattr(xmargin, name) for name in NAMES} | {fused}
    scores = {"margin_ranking_loss": (0, 1), fused.__name__: (0, 1, 3)}  # (hidden, weight, bias)
    for fn, (impl, score_args) in _IMPLS.items():
        assert impl.__name__ == "_" + fn.__name__
        assert impl.__module__ == fn.__module__
        assert score_args == scores.get(fn.__name__, (0,))


@pytest.mark.parametrize("name", NAMES)
def test_public_function_is_its_implementation_less_the_private_keywords(name):
    fn = getattr(xmargin, name)
    impl, _ = _IMPLS[fn]
    ours, theirs = inspect.signature(fn), inspect.signature(impl)
    assert list(ours.parameters.values()) == [
        p for p in theirs.parameters.values() if p.name not in PRIVATE
    ]
    assert ours.return_annotation == "Array"
    assert (fn.__name__, fn.__qualname__) == (name, name)
    assert fn.__module__ == impl.__module__ and getattr(xmargin.losses, name) is fn
    assert ">>>" in fn.__doc__ and ">>>" not in impl.__doc__  # the doctests run once
    assert inspect.unwrap(fn) is impl
    for private in PRIVATE:
        with pytest.raises(TypeError, match=rf"{name}\(\) got an unexpected keyword argument"):
            fn(np.zeros((1, 2)), np.zeros(1, np.int64), **{private: ()})
    with pytest.raises(TypeError, match=rf"{name}\(\) takes from"):
        fn(*range(len(ours.parameters) + 1))


def test_public_function_returns_the_implementation_value():
    x, t = np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[3, 0, -1, 1]])
    value, (grad,) = _IMPLS[xmargin.multilabel_margin_loss][0](x, t, argnums=(0,))
    assert xmargin.multilabel_margin_loss(x, t) == value
    assert grad.tolist() == [[-0.5, 0.5, 0.5, -0.5]]


# --------------------------------------------------------------------------------------------
# the reduction rule
# --------------------------------------------------------------------------------------------
CASES = [np.array([0.5, 1.5, 4.0]), np.array([[1.0, 2.0], [3.0, 5.0]]), np.zeros((0,))]


def _expected(a: np.ndarray, reduction: str):
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(a)
    return {"none": t, "sum": t.sum(), "mean": t.mean()}[reduction].numpy()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_one_reduction_rule_gives_pytorchs_results(case, reduction):
    a = CASES[case]
    want = _expected(a, reduction)
    torch = pytest.importorskip("torch")
    got = {
        "numpy": apply_reduction(np, a, reduction),
        "numpy eager": apply_reduction(None, a, reduction, eager=True),
        "torch": apply_reduction(torch, torch.from_numpy(a), reduction),
        "torch eager": apply_reduction(None, torch.from_numpy(a), reduction, eager=True),
    }
    for how, value in got.items():
        value = np.asarray(value)
        assert value.shape == want.shape, how
        np.testing.assert_array_equal(value, want, err_msg=how)  # NaN for a mean over N = 0
    if a.size == 0 and reduction == "mean":
        assert all(math.isnan(float(v)) for v in got.values())


@pytest.mark.parametrize("eager", [False, True])
def test_reduction_rule_divisor_and_overflow(eager):
    torch = pytest.importorskip("torch")
    xp = None if eager else torch
    rows = torch.tensor([3.0, 5.0, 10.0], dtype=torch.float64)
    assert float(apply_reduction(xp, rows, "sum", divisor=4, eager=eager)) == 18.0 / 4
    assert float(apply_reduction(xp, rows, "mean", divisor=4, eager=eager)) == 6.0 / 4
    np.testing.assert_array_equal(apply_reduction(xp, rows, "none", divisor=4, eager=eager),
                                  rows / 4)  # fmt: skip
    assert math.isnan(float(apply_reduction(xp, rows[:0], "mean", divisor=4, eager=eager)))
    assert float(apply_reduction(xp, rows[:0], "sum", divisor=4, eager=eager)) == 0.0
    big = torch.tensor([1.7e308, 1.7e308], dtype=torch.float64)  # the sum overflows
    assert float(apply_reduction(xp, big, "mean", eager=eager)) == 1.7e308
    assert float(apply_reduction(xp, big, "mean", divisor=2, eager=eager)) == 0.85e308
    assert float(apply_reduction(np, big.numpy(), "mean")) == 1.7e308  # (no overflow warning)


def test_thin_torch_path_still_taken():
    torch = pytest.importorskip("torch")
    x = torch.randn(8, 16, requires_grad=True)
    if xmargin.backends.resolve(None, x).name != "numba":
        pytest.skip("the numba backend does not serve here")
    t = torch.randint(-1, 16, (8, 16))
    loss = xmargin.multilabel_margin_loss(x, t)
    assert type(loss.grad_fn).__name__ == "_FastHingeLossBackward"
    loss.backward()
    assert x.grad is not None and x.grad.shape == (8, 16)
