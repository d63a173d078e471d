"""xmargin.mine_negatives against a plain-Python oracle, on every namespace: ties, NaN and
infinite scores, target terminators and duplicates, degenerate rows, dtypes, jit, Dask, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xmargin
from xmargin import negatives

from conftest import _make, _skip_reason

NAN, INF = math.nan, math.inf


def oracle(x, t, k: int) -> np.ndarray:
    """Row by row: the non-positives sorted by (−score, index), NaN as +inf, -1 padded."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t)
    vector = x.ndim == 1
    rows_x = x.reshape(1, -1) if vector else x
    rows_t = t.reshape(1, -1) if vector else t
    out = []
    for row, trow in zip(rows_x, rows_t, strict=True):
        positives = set()
        for v in trow.tolist():
            if v < 0:
                break
            positives.add(int(v))

        def score_or_inf(j: int, row=row) -> float:
            v = float(row[j])
            return INF if math.isnan(v) else v

        picked = sorted(
            (j for j in range(len(row)) if j not in positives), key=lambda j: (-score_or_inf(j), j)
        )[:k]
        out.append(picked + [-1] * (k - len(picked)))
    res = np.array(out, dtype=np.int64).reshape(len(out), k)
    return res[0] if vector else res


# (scores, targets, k): each row a corner the rule has to get right
CASES = {
    "plain": (
        [[0.1, 0.9, 0.4, 0.9, 0.2], [0.5, 0.5, 0.5, 0.0, 1.0]],
        [[1, -1, 4], [4, 2, 0]],
        3,
    ),
    "ties": ([[1.0] * 8, [2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]], [[3, 0, -1], [2, -1, -1]], 5),
    "nan_and_inf": (
        [[NAN, INF, -INF, 0.0, NAN, -0.0], [-INF, -INF, -INF, INF, 1.0, NAN]],
        [[1, -1, 0], [5, 0, -1]],
        4,
    ),
    "duplicates_and_after_terminator": (
        [[0.3, 0.1, 0.7, 0.2, 0.9, 0.5]] * 2,
        [[4, 4, 2, 4, -1, 0, 1], [-1, 4, 4, 2, 3, 1, 0]],
        3,
    ),
    "no_positives": ([[0.2, 0.8, 0.5], [3.0, 2.0, 1.0]], [[-1, 0], [-1, -1]], 2),
    "all_positive": ([[0.2, 0.8, 0.5], [3.0, 2.0, 1.0]], [[2, 1, 0], [0, 1, 2]], 2),
    "k_above_c": ([[0.2, 0.8, 0.5, 0.1], [3.0, 2.0, 1.0, 2.0]], [[1, -1], [3, 0]], 7),
    "no_target_columns": ([[0.2, 0.8, 0.5], [1.0, 1.0, 0.0]], np.zeros((2, 0), np.int64), 2),
    "negative_infinite_only_left": ([[-INF, 5.0, -INF, 7.0]], [[3, 1, -1]], 3),
    "wide_small_k": (  # NumPy's argpartition path (4k <= C), ties across the boundary
        [[0.5, 1.0, 0.5, 1.0, 0.5, 0.5, 1.0, 0.5, 0.5, 0.5, 2.0, 0.5]] * 3,
        [[1, 10, -1] + [0] * 9, [-1, 1, 2] + [0] * 9, [1, 3, 6, 10, 0, 2, 4, 5, 7, 8, 9, 11]],
        3,
    ),
}

DTYPES = ["float16", "float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_matches_oracle(xp, case, dtype):
    if xp.name == "array_api_strict" and dtype == "float16":
        pytest.skip("array_api_strict has no float16")
    x, t, k = CASES[case]
    x = np.asarray(x, dtype=dtype)
    t = np.asarray(t, dtype=np.int64)
    xa, ta = xp.asarray(x), xp.asarray(t)
    out = xmargin.mine_negatives(xa, ta, k)
    assert type(out).__module__.split(".")[0] == type(xa).__module__.split(".")[0]
    assert str(out.dtype).rsplit(".", 1)[-1] == "int64", out.dtype
    assert tuple(out.shape) == (x.shape[0], k)
    np.testing.assert_array_equal(xp.to_numpy(out), oracle(x, t, k), err_msg=f"{case} on {xp}")


def test_device_and_namespace(xp):
    x, t, k = CASES["ties"]
    xa = xp.asarray(np.asarray(x, dtype=np.float32))
    out = xmargin.mine_negatives(xa, xp.asarray(np.asarray(t)), k)
    assert xmargin._xp.device(out) == xmargin._xp.device(xa)
    if xp.name == "dask":
        assert out.numblocks[0] == xa.numblocks[0]  # lazy, chunked by rows as the input


def test_vector_input(xp):
    x = np.array([0.3, NAN, 0.3, 0.9, -INF])
    for t in ([3, -1, 1], [1], [-1], 0, []):
        t = np.asarray(t, dtype=np.int64)
        out = xmargin.mine_negatives(xp.asarray(x), xp.asarray(t), 4)
        assert tuple(out.shape) == (4,)
        np.testing.assert_array_equal(xp.to_numpy(out), oracle(x, t, 4), err_msg=str(t))


def test_empty_batch(xp):
    if xp.name == "dask":  # (conftest's chunking needs a row)
        import dask.array as da

        xa, ta = da.zeros((0, 4)), da.zeros((0, 2), dtype=np.int64)
    else:
        xa, ta = xp.asarray(np.zeros((0, 4))), xp.asarray(np.zeros((0, 2), np.int64))
    out = xmargin.mine_negatives(xa, ta, 3)
    assert tuple(out.shape) == (0, 3)
    assert xp.to_numpy(out).shape == (0, 3)


@pytest.mark.parametrize("tdtype", ["int32", "uint8", "int16"])
def test_target_dtypes(xp, tdtype):
    x = np.array([[0.1, 0.5, 0.5, 0.2], [1.0, 0.0, 1.0, 0.0]])
    t = np.array([[1, 0, -1], [2, 2, 3]])
    if tdtype == "uint8":  # no -1: a full row of positives instead
        t = np.array([[1, 0, 3], [2, 2, 3]])
    out = xmargin.mine_negatives(xp.asarray(x), xp.asarray(t.astype(tdtype)), 3)
    np.testing.assert_array_equal(xp.to_numpy(out), oracle(x, t, 3))


def test_numpy_target_with_other_input(xp):
    x, t, k = CASES["duplicates_and_after_terminator"]
    out = xmargin.mine_negatives(xp.asarray(np.asarray(x)), np.asarray(t), k)
    np.testing.assert_array_equal(xp.to_numpy(out), oracle(x, t, k))
    out = xmargin.mine_negatives(xp.asarray(np.asarray(x)), t, k)  # a Python list
    np.testing.assert_array_equal(xp.to_numpy(out), oracle(x, t, k))


def test_numpy_fast_path_equals_generic():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n, c = rng.integers(1, 6), rng.integers(4, 40)
        x = rng.choice([0.0, 1.0, 2.0, NAN, INF, -INF], size=(n, c))
        t = rng.integers(-1, c, size=(n, rng.integers(0, c + 2)))
        for k in range(1, c // 4 + 1):
            is_pos = negatives._positives(np, t, n, c)
            fast = negatives._top_numpy(x, is_pos, k)
            assert fast is not None
            got = xmargin.mine_negatives(x, t, k)
            np.testing.assert_array_equal(got, oracle(x, t, k))


def test_large_row_count_keys():
    # offsets n·(C+1) across many rows: the flattened search must stay row-local
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 7))
    t = rng.integers(-1, 7, size=(500, 4))
    np.testing.assert_array_equal(xmargin.mine_negatives(x, t, 3), oracle(x, t, 3))


def test_jax_jit():
    if _skip_reason("jax"):
        pytest.skip("jax not installed")
    import jax
    import jax.numpy as jnp

    x, t, k = CASES["nan_and_inf"]
    x, t = np.asarray(x, np.float32), np.asarray(t, np.int32)
    f = jax.jit(xmargin.mine_negatives, static_argnums=2)
    out = f(jnp.asarray(x), jnp.asarray(t), k)
    assert out.dtype == jnp.int32 or out.dtype == jnp.int64
    np.testing.assert_array_equal(np.asarray(out), oracle(x, t, k))
    # an out-of-range target cannot raise inside jit: its row gets -1s
    bad = t.copy()
    bad[1, 2] = 6
    out = np.asarray(f(jnp.asarray(x), jnp.asarray(bad), k))
    np.testing.assert_array_equal(out[0], oracle(x, t, k)[0])
    np.testing.assert_array_equal(out[1], [-1] * k)


def test_dask_row_chunks():
    if _skip_reason("dask"):
        pytest.skip("dask not installed")
    import dask.array as da

    rng = np.random.default_rng(1)
    x = rng.choice([0.0, 1.0, NAN, -INF], size=(11, 6))
    t = rng.integers(-1, 6, size=(11, 3))
    xa = da.from_array(x, chunks=((3, 4, 4), (2, 4)))  # the class axis rechunked to one chunk
    ta = da.from_array(t, chunks=(5, 3))  # target chunks need not match
    out = xmargin.mine_negatives(xa, ta, 4)
    assert isinstance(out, da.Array) and out.chunks == ((3, 4, 4), (4,))
    np.testing.assert_array_equal(out.compute(), oracle(x, t, 4))
    bad = t.copy()
    bad[5, 0] = 9  # lazily unchecked: a row of -1s, as in jit
    got = xmargin.mine_negatives(xa, da.from_array(bad, chunks=4), 4).compute()
    np.testing.assert_array_equal(got[5], [-1] * 4)
    np.testing.assert_array_equal(np.delete(got, 5, 0), np.delete(oracle(x, t, 4), 5, 0))


def test_checks_off_bad_row():
    x = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    t = np.array([[0, -1], [1, 7]])
    with xmargin.options(check_values=False):
        out = xmargin.mine_negatives(x, t, 2)
    np.testing.assert_array_equal(out, [[2, 1], [-1, -1]])


def test_torch_requires_grad_input():
    if _skip_reason("torch"):
        pytest.skip("torch not installed")
    import torch

    x = torch.tensor([[0.3, 0.1, 0.7, 0.2]], requires_grad=True)
    out = xmargin.mine_negatives(x, torch.tensor([[2, -1]]), 2)
    assert out.dtype == torch.int64 and not out.requires_grad
    assert out.tolist() == [[0, 3]]


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
X = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
T = np.array([[0, -1], [1, 2]])


@pytest.mark.parametrize(
    ("k", "error", "text"),
    [
        (
            0,
            xmargin.XMarginValueError,
            "argument 'k' must be an int >= 1 (negatives per row), got 0",
        ),
        (-2, xmargin.XMarginValueError, "got -2"),
        (True, xmargin.XMarginTypeError, "got bool True"),
        (1.5, xmargin.XMarginTypeError, "got float 1.5"),
        (2.0, xmargin.XMarginTypeError, "got float 2.0"),
        ("2", xmargin.XMarginTypeError, "got str '2'"),
        (None, xmargin.XMarginTypeError, "got NoneType None"),
    ],
)
def test_bad_k(k, error, text):
    with pytest.raises(error, match=r"^mine_negatives: ") as info:
        xmargin.mine_negatives(X, T, k)
    assert text in str(info.value)


def test_numpy_integer_k():
    np.testing.assert_array_equal(xmargin.mine_negatives(X, T, np.int64(2)), oracle(X, T, 2))
    np.testing.assert_array_equal(xmargin.mine_negatives(X, T, np.uint8(1)), oracle(X, T, 1))


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (
            [[0, -1], [1, 3]],
            "target[1, 1] = 3, but targets of an input with C = 3 must lie in [-1, 3)",
        ),
        ([[0, -2], [1, 2]], "target[0, 1] = -2"),
        ([[0, -1], [-1, 5]], "target[1, 1] = 5"),  # also after the terminator
    ],
)
def test_target_out_of_range(t, text):
    with pytest.raises(xmargin.XMarginValueError, match=r"^mine_negatives: argument 'target'") as e:
        xmargin.mine_negatives(X, np.asarray(t), 2)
    assert text in str(e.value)


@pytest.mark.parametrize(
    ("x", "t", "error", "text"),
    [
        (X, np.array([[0, 1, 2]]), xmargin.XMarginValueError, "inconsistent target size: [1, 3]"),
        (X, np.array([0, 1]), xmargin.XMarginValueError, "must have shape (N, K) with N = 2"),
        (X[0], T, xmargin.XMarginValueError, "must have shape (K,) or 0-d"),
        (X, T.astype(np.float64), xmargin.XMarginTypeError, "'target' must have an integer dtype"),
        (X, T.astype(bool), xmargin.XMarginTypeError, "'target' must have an integer dtype"),
        (T, T, xmargin.XMarginTypeError, "'input' must have a real floating-point dtype"),
        (np.float64(1.0), T, xmargin.XMarginValueError, "(C,) vector or an (N, C) matrix"),
        (np.zeros((2, 0)), T, xmargin.XMarginValueError, "C >= 1, got shape [2, 0]"),
        (np.zeros((2, 2, 2)), T, xmargin.XMarginValueError, "got shape [2, 2, 2]"),
        ([[0.1, 0.2]], T, xmargin.XMarginTypeError, "argument 'input' must be an array"),
    ],
)
def test_bad_arrays(x, t, error, text):
    with pytest.raises(error, match=r"^mine_negatives: ") as info:
        xmargin.mine_negatives(x, t, 2)
    assert text in str(info.value)


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SCORES = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, NAN, INF, -INF])


@st.composite
def problems(draw):
    n = draw(st.integers(0, 4))
    c = draw(st.integers(1, 12))
    kt = draw(st.integers(0, 6))
    x = np.array(draw(st.lists(SCORES, min_size=n * c, max_size=n * c)), dtype=np.float64)
    t = np.array(draw(st.lists(st.integers(-1, c - 1), min_size=n * kt, max_size=n * kt)))
    k = draw(st.integers(1, c + 2))
    return x.reshape(n, c), t.astype(np.int64).reshape(n, kt), k


STRICT = None if _skip_reason("array_api_strict") else _make("array_api_strict")


@given(problems())
def test_property_against_oracle(problem):
    x, t, k = problem
    expected = oracle(x, t, k)
    np.testing.assert_array_equal(xmargin.mine_negatives(x, t, k), expected)
    if STRICT is not None:  # the generic path (NumPy may take argpartition)
        got = xmargin.mine_negatives(STRICT.asarray(x), STRICT.asarray(t), k)
        np.testing.assert_array_equal(STRICT.to_numpy(got), expected)
    # every mined class is a negative, no class twice, and the count is min(k, #negatives)
    for trow, got_row in zip(t, expected, strict=True):
        prefix = trow[: int(np.argmax(np.append(trow, -1) < 0))]
        mined = [int(j) for j in got_row if j >= 0]
        assert len(set(mined)) == len(mined) and not set(mined) & set(prefix.tolist())
        assert len(mined) == min(k, x.shape[1] - len(set(prefix.tolist())))


def test_search_keys_stay_within_the_index_dtype(monkeypatch):
    """The row-offset keys n·(C + 1) + c are formed in the namespace's index dtype, whatever
    the targets' dtype, and a problem whose keys would not fit raises instead of wrapping.
    (At real sizes: int32 targets on NumPy from 2148 rows of 10**6 classes, or JAX without
    x64; here the index dtype is made int16 so that the boundary is a small problem.)"""
    xs = pytest.importorskip("array_api_strict")  # (NumPy takes the host path: no keys)
    monkeypatch.setattr(negatives, "index_dtype", lambda xp: xs.int16)
    rng = np.random.default_rng(5)
    n, c = 32767 // 201, 200  # N·(C + 1) = 32763: the largest key fits int16
    x = rng.integers(0, 5, size=(n, c)).astype(np.float64)
    t = rng.integers(-1, c, size=(n, 3)).astype(np.int32)
    got = np.asarray(xmargin.mine_negatives(xs.asarray(x), xs.asarray(t), 4))
    for row in range(n - 3, n):  # the last rows carry the largest offsets
        pos = set()
        for v in t[row]:
            if v < 0:
                break
            pos.add(int(v))
        want = sorted((j for j in range(c) if j not in pos), key=lambda j: (-x[row, j], j))[:4]
        assert got[row].tolist() == want, (row, got[row], want)
    with pytest.raises(xmargin.XMarginValueError, match="search keys exceed"):
        xmargin.mine_negatives(
            xs.zeros((n + 1, c)), xs.zeros((n + 1, 1), dtype=xs.int32), 1
        )


def test_narrow_target_dtypes_do_not_wrap_the_search_keys():
    """int16 targets with N·(C + 1) = 40,200 > 2**15: the keys are formed in the index dtype
    (int64), not in the targets' dtype, where they would wrap and mark the wrong classes as
    positives."""
    rng = np.random.default_rng(6)
    n, c = 200, 200
    x = rng.normal(size=(n, c))
    t = rng.integers(-1, c, size=(n, 4)).astype(np.int16)
    got = xmargin.mine_negatives(x, t, 3)
    for row in range(n - 20, n):
        pos = set()
        for v in t[row]:
            if v < 0:
                break
            pos.add(int(v))
        want = sorted((j for j in range(c) if j not in pos), key=lambda j: (-x[row, j], j))[:3]
        assert got[row].tolist() == want, (row, got[row], want)


@given(problems())
def test_torch_topk_selection_against_oracle(problem):
    """torch tensors off the host path (CUDA, torch.compile, torch.func) select with
    torch.topk; here that path is called on CPU tensors directly."""
    torch = pytest.importorskip("torch")
    from array_api_compat import torch as xpt

    x, t, k = problem
    n, c = x.shape
    if n == 0 or 4 * k > c:
        return
    expected = oracle(x, t, k)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    is_pos = negatives._positives(xpt, tt, n, c)
    assert negatives._top_torch(xt, is_pos, k) is not None
    got = negatives._select(xpt, xt, is_pos, k)
    np.testing.assert_array_equal(got.numpy(), expected)
