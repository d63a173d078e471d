"""multilabel_margin_loss(..., neg_weight=, negatives=) (DESIGN.md §9): values and gradients
against the literal-loop oracle (its mined sets from a plain Python sort) on every CPU backend,
the identities that tie it to the full loss, the NaN and ties rules, the autodiff transforms,
Dask, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xmargin

import oracle
from conftest import assert_close

CPU_BACKENDS = ["numba", "reference", "portable"]
vg = xmargin.value_and_grad(xmargin.multilabel_margin_loss)


def _problem(seed, n=7, c=11, k=4, grid=True):
    """Scores on a grid of quarters (ties and exact zero hinges) or normal; targets with
    repeats, -1 terminators and values after them; one all-tied row, one row without
    positives."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-6, 7, (n, c)) / 4.0 if grid else rng.normal(size=(n, c))
    t = rng.integers(-1, c, (n, k))
    t[0, :] = [2, 2, -1, 5]
    x[1, :] = 0.5
    t[2, 0] = -1
    return x, t


def _candidates(seed, n, c, m=6):
    """Candidate rows: repeats, -1 anywhere, the row's own positives, an empty row."""
    cand = np.random.default_rng(seed + 100).integers(-1, c, (n, m))
    cand[3, :] = -1
    return cand


NEGATIVES = ["all", "k=1", "k=3", "k=C", "candidates"]


def _negatives(kind, seed, n, c):
    return {"all": None, "k=1": 1, "k=3": 3, "k=C": c, "candidates": _candidates(seed, n, c)}[kind]


def _weights(seed, c, zeros):
    rng = np.random.default_rng(seed + 7)
    w = rng.uniform(0.5, 2.0, c)
    v = rng.uniform(0.25, 3.0, c)
    if zeros:
        v[::3] = 0.0
    return w, v


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("negatives", NEGATIVES)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weights", ["none", "weight", "neg_weight", "both+zeros"])
@pytest.mark.parametrize("grid", [True, False], ids=["grid", "normal"])
def test_against_oracle(backend, negatives, p, weights, grid):
    x, t = _problem(3, grid=grid)
    n, c = x.shape
    negs = _negatives(negatives, 3, n, c)
    w, v = _weights(3, c, zeros=weights == "both+zeros")
    kw = {
        "weight": w if weights in ("weight", "both+zeros") else None,
        "neg_weight": v if weights in ("neg_weight", "both+zeros") else None,
    }
    loss, grad = vg(x, t, reduction="none", p=p, margin=0.75, negatives=negs, backend=backend,
                    **kw)  # fmt: skip
    ref_loss, ref_grad = oracle.multilabel_margin(x, t, p=p, margin=0.75, negatives=negs, **kw)
    what = f"{backend} negatives={negatives} p={p} {weights}"
    assert_close(loss, np.asarray(ref_loss), rtol=1e-12, atol=1e-13, what=what + " loss")
    assert_close(grad, np.asarray(ref_grad), rtol=1e-12, atol=1e-13, what=what + " grad")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("negatives", ["k=2", "candidates"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_autograd_against_oracle(backend, negatives, dtype):
    torch = pytest.importorskip("torch")
    x, t = _problem(5, grid=False)
    n, c = x.shape
    negs = 2 if negatives == "k=2" else _candidates(5, n, c)
    _, v = _weights(5, c, zeros=True)
    xt = torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=True)
    loss = xmargin.multilabel_margin_loss(
        xt, torch.from_numpy(t), negatives=negs if isinstance(negs, int) else torch.from_numpy(negs),
        neg_weight=torch.from_numpy(v), p=2, backend=backend,
    )  # fmt: skip
    loss.backward()
    ref_loss, ref_grad = oracle.multilabel_margin(
        xt.detach().double().numpy(), t, p=2, negatives=negs, neg_weight=v
    )
    tol = 1e-12 if dtype == "float64" else 2e-6
    assert loss.dtype == xt.dtype
    assert_close(loss.item(), np.mean(ref_loss), rtol=tol, atol=tol, what=f"{backend} loss")
    assert_close(xt.grad.double().numpy(), np.asarray(ref_grad) / n, rtol=tol, atol=tol,
                 what=f"{backend} grad")  # fmt: skip


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("p", [1, 2])
def test_k_covering_every_negative_is_the_full_loss(backend, p):
    """k >= C - T reproduces the full loss: exactly where the sums are exact (quarters), to
    rounding elsewhere; a candidate set listing every class does too."""
    for grid in (True, False):
        x, t = _problem(11, grid=grid)
        n, c = x.shape
        full = vg(x, t, reduction="none", p=p, backend=backend)
        every = np.tile(np.arange(c), (n, 1))
        for negs in (c, c + 5, every):
            got = vg(x, t, reduction="none", p=p, backend=backend, negatives=negs)
            if grid:
                np.testing.assert_array_equal(got[0], full[0])
                np.testing.assert_array_equal(got[1], full[1])
            else:
                assert_close(got[0], full[0], rtol=1e-14, atol=1e-15, what="loss")
                assert_close(got[1], full[1], rtol=1e-14, atol=1e-15, what="grad")


def test_ties_go_to_the_lower_class_index():
    x = np.array([[0.0, 0.5, 0.5, 0.5, 0.5, 0.0]])
    t = np.array([[0, -1]])
    loss, grad = vg(x, t, negatives=2, reduction="sum")
    # the hardest two negatives are classes 1 and 2 (of the tied 1..4)
    np.testing.assert_array_equal(grad[0] * 6, [-2.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    assert loss == pytest.approx(3.0 / 6)
    np.testing.assert_array_equal(xmargin.mine_negatives(x, t, 2), [[1, 2]])


def test_gradient_reaches_only_the_chosen_negatives_and_positives():
    x = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    t = np.array([[5, -1]])
    _, grad = vg(x, t, negatives=np.array([[3, -1, 1, 3]]), reduction="sum")
    np.testing.assert_array_equal(grad[0] * 6, [0.0, 1.0, 0.0, 1.0, 0.0, -2.0])


def test_nan_rule_looks_at_the_positives_and_chosen_negatives():
    x = np.array([[0.1, 0.2, np.nan, 0.4], [np.nan, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    t = np.array([[0, -1], [0, -1], [0, -1]])
    cand = np.array([[1, 3], [-1, -1], [2, -1]])
    x[2, 2] = np.nan
    loss, grad = vg(x, t, negatives=cand, reduction="none")
    ref_loss, _ = oracle.multilabel_margin(x, t, negatives=cand)
    # row 0: the NaN is not a candidate; row 1: a NaN positive without candidates (loss 0);
    # row 2: a NaN candidate makes the whole row NaN, every class of its gradient too
    assert math.isfinite(loss[0]) and loss[0] == pytest.approx(ref_loss[0])
    assert loss[1] == 0.0 and np.all(grad[1] == 0.0)
    assert math.isnan(loss[2]) and np.all(np.isnan(grad[2]))
    # mining ranks NaN first: the row is NaN with any k
    assert math.isnan(vg(x[:1], t[:1], negatives=1)[0])


def test_rows_without_negatives_or_positives():
    x = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    t = np.array([[0, 1, 2], [-1, 0, 0]])
    for negs in (1, 5, np.array([[0, 1], [2, -1]])):
        loss, grad = vg(x, t, negatives=negs, reduction="none")
        np.testing.assert_array_equal(loss, [0.0, 0.0])
        np.testing.assert_array_equal(grad, np.zeros((2, 3)))


def test_vector_input_and_m_zero():
    x = np.array([0.1, 0.2, 0.4, 0.8])
    t = np.array([3, 0, -1, 1])
    assert float(xmargin.multilabel_margin_loss(x, t, negatives=np.array([2, 1]))) == (
        pytest.approx(0.85)
    )
    assert float(xmargin.multilabel_margin_loss(x, t, negatives=np.array([2]))) == (
        pytest.approx(0.475)
    )
    xx = np.array([[0.1, 0.2, 0.4, 0.8]])
    empty = np.zeros((1, 0), np.int64)
    assert float(xmargin.multilabel_margin_loss(xx, t[None, :], negatives=empty)) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_candidate_set_properties(data):
    """Permuting, repeating, padding anywhere and listing positives change nothing (bitwise);
    neg_weight of ones is no neg_weight."""
    n = data.draw(st.integers(1, 4))
    c = data.draw(st.integers(1, 9))
    k = data.draw(st.integers(0, 4))
    m = data.draw(st.integers(0, 6))
    grid = st.integers(-8, 8).map(lambda i: i / 4)
    x = np.array(data.draw(st.lists(grid, min_size=n * c, max_size=n * c))).reshape(n, c)
    ints = st.integers(-1, c - 1)
    t = np.array(data.draw(st.lists(ints, min_size=n * k, max_size=n * k)), np.int64)
    t = t.reshape(n, k)
    cand = np.array(data.draw(st.lists(ints, min_size=n * m, max_size=n * m)), np.int64)
    cand = cand.reshape(n, m)
    p = data.draw(st.sampled_from([1, 2]))
    base = vg(x, t, negatives=cand, reduction="none", p=p)
    ref_loss, ref_grad = oracle.multilabel_margin(x, t, negatives=cand, p=p)
    assert_close(base[0], np.asarray(ref_loss), rtol=1e-12, atol=1e-12, what="loss")
    assert_close(base[1], np.asarray(ref_grad), rtol=1e-12, atol=1e-12, what="grad")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    shuffled = rng.permuted(np.concatenate([cand, cand, -np.ones((n, 2), np.int64)], 1), axis=1)
    before = np.cumsum(t < 0, axis=1) == 0  # the positives: the entries before the first -1
    with_pos = np.concatenate([shuffled, np.where(before, t, -1)], axis=1)
    for other in (shuffled, with_pos):
        got = vg(x, t, negatives=other, reduction="none", p=p)
        np.testing.assert_array_equal(got[0], base[0])
        np.testing.assert_array_equal(got[1], base[1])
    ones = vg(x, t, negatives=cand, reduction="none", p=p, neg_weight=np.ones(c))
    np.testing.assert_array_equal(ones[0], base[0])
    np.testing.assert_array_equal(ones[1], base[1])


# --------------------------------------------------------------------------------------------
# transforms, namespaces, Dask
# --------------------------------------------------------------------------------------------
def test_jax_jit_grad_vmap():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, t = _problem(17, grid=False)
    c = x.shape[1]
    _, v = _weights(17, c, zeros=True)
    with jax.enable_x64(True):
        f = lambda a, b: xmargin.multilabel_margin_loss(  # noqa: E731
            a, b, negatives=3, neg_weight=jnp.asarray(v), p=2
        )
        ref_loss, ref_grad = vg(x, t, negatives=3, neg_weight=v, p=2)
        loss = jax.jit(f)(jnp.asarray(x), jnp.asarray(t))
        grad = jax.jit(jax.grad(f))(jnp.asarray(x), jnp.asarray(t))
        rows = jax.vmap(f)(jnp.asarray(x), jnp.asarray(t))
    assert_close(float(loss), ref_loss, rtol=1e-13, atol=1e-14, what="jit loss")
    assert_close(np.asarray(grad), ref_grad, rtol=1e-13, atol=1e-14, what="jit grad")
    per_row = vg(x, t, negatives=3, neg_weight=v, p=2, reduction="none")[0]
    assert_close(np.asarray(rows), per_row, rtol=1e-13, atol=1e-14, what="vmap")


def test_torch_compile_and_func_grad():
    torch = pytest.importorskip("torch")
    x, t = _problem(19, grid=False)
    _, v = _weights(19, x.shape[1], zeros=False)
    tt, tv = torch.from_numpy(t), torch.from_numpy(v)
    ref_loss, ref_grad = vg(x, t, negatives=2, neg_weight=v)

    def f(a):
        return xmargin.multilabel_margin_loss(a, tt, negatives=2, neg_weight=tv)

    xt = torch.tensor(x, requires_grad=True)
    loss = torch.compile(f)(xt)
    loss.backward()
    assert_close(loss.item(), ref_loss, rtol=1e-13, atol=1e-14, what="compile loss")
    assert_close(xt.grad.numpy(), ref_grad, rtol=1e-13, atol=1e-14, what="compile grad")
    g = torch.func.grad(f)(torch.tensor(x))
    assert_close(g.numpy(), ref_grad, rtol=1e-13, atol=1e-14, what="torch.func.grad")


@pytest.mark.parametrize("negatives", ["k=2", "candidates"])
def test_dask_row_chunks(negatives):
    da = pytest.importorskip("dask.array")
    x, t = _problem(23, n=9, grid=False)
    n, c = x.shape
    cand = _candidates(23, n, c)
    _, v = _weights(23, c, zeros=True)
    negs = 2 if negatives == "k=2" else cand
    dnegs = 2 if negatives == "k=2" else da.from_array(cand, chunks=(4, 3))
    ref = vg(x, t, negatives=negs, neg_weight=v, reduction="sum")
    dx, dt = da.from_array(x, chunks=(4, 5)), da.from_array(t, chunks=(4, 2))
    loss, grad = vg(dx, dt, negatives=dnegs, neg_weight=da.from_array(v), reduction="sum")
    assert_close(float(loss.compute()), ref[0], rtol=1e-13, atol=1e-14, what="dask loss")
    assert_close(grad.compute(), ref[1], rtol=1e-13, atol=1e-14, what="dask grad")


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
X = np.array([[0.1, 0.2, 0.4, 0.8]])
T = np.array([[3, 0, -1, 1]])


@pytest.mark.parametrize(
    ("negatives", "error", "match"),
    [
        (0, xmargin.XMarginValueError, r"argument 'negatives' must be an int >= 1.*got 0"),
        (-2, xmargin.XMarginValueError, r"argument 'negatives' must be an int >= 1.*got -2"),
        (True, xmargin.XMarginTypeError, r"argument 'negatives' must be an int >= 1.*bool"),
        (2.0, xmargin.XMarginTypeError, r"argument 'negatives' must be None, an int k"),
        (np.array([1, 2]), xmargin.XMarginValueError, r"shape \(N, M\) with N = 1.*got shape"),
        (np.ones((2, 2), np.int64), xmargin.XMarginValueError, r"with N = 1.*\[2, 2\]"),
        (np.ones((1, 2)), xmargin.XMarginTypeError, r"'negatives' must have an integer dtype"),
        (np.array([[1, 4]]), xmargin.XMarginValueError,
         r"'negatives' is out of range: negatives\[0, 1\] = 4.*C = 4 must lie in \[-1, 4\)"),
        (np.array([[-2, 1]]), xmargin.XMarginValueError, r"negatives\[0, 0\] = -2"),
    ],
)  # fmt: skip
def test_bad_negatives(negatives, error, match):
    with pytest.raises(error, match=r"^multilabel_margin_loss: .*" + match):
        xmargin.multilabel_margin_loss(X, T, negatives=negatives)


def test_out_of_range_candidates_unchecked_make_nan_rows():
    x = np.tile(X, (2, 1))
    t = np.tile(T, (2, 1))
    cand = np.array([[1, 9], [1, 2]])
    with xmargin.options(check_values=False):
        loss, grad = vg(x, t, negatives=cand, reduction="none")
    assert math.isnan(loss[0]) and np.all(np.isnan(grad[0]))
    assert loss[1] == pytest.approx(0.85)


@pytest.mark.parametrize(
    ("neg_weight", "match"),
    [
        (np.ones(5), r"inconsistent neg_weight size, expected 4 but got \[5\]"),
        (np.ones((1, 4)), r"neg_weight must be one-dimensional.*shape \(C,\) = \(4,\)"),
        (np.array([1.0, np.nan, 1.0, 1.0]), r"'neg_weight' must hold finite weights >= 0.*\[1\] = nan"),
        (np.array([1.0, 1.0, -0.5, 1.0]), r"finite weights >= 0, got neg_weight\[2\] = -0.5"),
        (np.array([1.0, 1.0, 1.0, np.inf]), r"neg_weight\[3\] = inf"),
    ],
)  # fmt: skip
def test_bad_neg_weight(neg_weight, match):
    with pytest.raises(xmargin.XMarginValueError, match=r"^multilabel_margin_loss: .*" + match):
        xmargin.multilabel_margin_loss(X, T, neg_weight=neg_weight)


def test_bad_neg_weight_unchecked_makes_every_row_nan():
    with xmargin.options(check_values=False):
        loss, grad = vg(np.tile(X, (3, 1)), np.tile(T, (3, 1)),
                        neg_weight=np.array([1.0, np.nan, 1.0, 1.0]), reduction="none")  # fmt: skip
    assert np.all(np.isnan(loss)) and np.all(np.isnan(grad))


def test_neg_weight_dtype_and_namespace_errors():
    with pytest.raises(xmargin.XMarginTypeError, match="neg_weight"):
        xmargin.multilabel_margin_loss(X, T, neg_weight=np.array(["a", "b", "c", "d"]))
    torch = pytest.importorskip("torch")
    with pytest.raises(xmargin.XMarginValueError, match="'neg_weight' requires grad"):
        xmargin.multilabel_margin_loss(
            torch.tensor(X), torch.tensor(T), neg_weight=torch.ones(4, requires_grad=True)
        )


def test_portable_kernel_neg_weight_with_infinite_scores():
    """The portable kernel's running sums next to an infinite threshold gap (a positive at
    ±inf), against the literal loops: a weighted count summed as total − prefix left ~1e-17
    where 0 was due, and inf·1e-17 made a positive's p = 2 gradient +inf; and with a positive
    at −inf, p = 2 gave NaN for an infinite loss (s1 − step1 and total − prefix were
    inf − inf). Both found by this comparison; the sums are now exclusive prefix sums and
    sums from the right."""
    from xmargin.backends import portable

    rng = np.random.default_rng(0)
    for trial in range(300):
        n, c = 3, int(rng.integers(1, 9))
        x = rng.integers(-3, 4, (n, c)) / 2.0
        t = rng.integers(-1, c, (n, int(rng.integers(1, c + 2))))
        if trial % 3 == 0:
            x[0, 0] = np.inf
        if trial % 5 == 0:
            x[1, -1] = -np.inf
        p = 1 + trial % 2
        w = [None, rng.random(c), rng.random((n, c))][trial % 3]
        v = [None, rng.random(c) * (rng.random(c) > 0.3),
             rng.random((n, c)) * (rng.random((n, c)) > 0.3)][(trial // 3) % 3]  # fmt: skip
        loss, grad = portable.hinge(x, t, margin=1.0, p=p, weight=w, neg_weight=v, want_grad=True)
        ref_loss, ref_grad = oracle.multilabel_margin(x, t, p=p, weight=w, neg_weight=v)
        what = f"trial {trial}"
        assert_close(loss, np.asarray(ref_loss) * c, rtol=1e-12, atol=1e-12, what=what)
        assert_close(grad, np.asarray(ref_grad) * c, rtol=1e-12, atol=1e-12, what=what)
