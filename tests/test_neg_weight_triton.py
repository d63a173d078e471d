"""The triton backend's ``neg_weight`` and (N, C) ``weight`` (issue 14), against the literal-loop
oracle (tests/oracle.py): on the CPU through Triton's interpreter (TRITON_INTERPRET=1, as
tests/test_triton.py runs it) and, with the ``gpu`` mark, on a CUDA device.

Every launch path of the launcher is forced on small problems: one threshold tile and one
chunk per row (the default blocks), several tiles and chunks (BLOCK_T = 4, BLOCK_C = 16: the
many-positives path, with and without the prefetch of the next chunk, which the launcher
drops for p = 2 gradients), and rows split across programs (grid (N, S) and the finishing
kernel). Weights are log-uniform in [1e-3, 1e3], with exact zeros in neg_weight (also a row
of zeros); the positives' gradient then comes from per-bin sums of V and V·x', which must be
bitwise repeatable. The AOT check compiles the neg-weighted specialisations for sm_80 and
sm_90 under the budgets of tests/test_triton.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")  # conftest has set TRITON_INTERPRET=1 already when there is no GPU

from test_triton import DEVICES, INTERPRETED  # noqa: E402  (the same two devices)

from xmargin.backends import triton as tb  # noqa: E402

import oracle  # noqa: E402
from conftest import assert_close, bitwise_equal  # noqa: E402

# relative tolerances against the float64 oracle on the same rounded scores and weights; the
# float32 one is relative to the largest value of the compared array (sums of terms up to
# 1e6·x² cancel in float32); float64 is the 1e-9 with room to spare (measured ≤ 1e-14)
TOL = {"float64": 1e-11, "float32": 2e-5, "float16": 2e-3}
PATHS = ["one tile", "tiles and chunks", "split"]
# (C, K) of each path's problems: the interpreter runs tl.sort as a Python bitonic network
# (about 0.1 s per chunk of a neg-weighted gradient), so the problems are as small as the path
# allows: one chunk of 128; 2 tiles of 4 by 3 chunks of 16; 3 slices of 32
SIZES = {"one tile": (70, 12), "tiles and chunks": (40, 8), "split": (70, 12)}


def _force_path(monkeypatch, path: str, device: str = "cpu") -> None:
    """The launcher's path for the small problems below (as tests/test_triton.py forces
    them): default blocks (K <= BLOCK_T = 16 and C <= BLOCK_C: one tile, one chunk), BLOCK_T =
    4 and BLOCK_C = 16 (several tiles and chunks), or S = 3 programs per row of BLOCK_C = 16
    (slices of 32 classes)."""
    if path == "tiles and chunks":
        monkeypatch.setattr(tb, "BLOCK_T_RANGE", (2, 4))
        monkeypatch.setattr(tb, "BLOCK_C_RANGE", (8, 16))
    elif path == "split":
        if device != "cpu":
            pytest.skip("the split is forced on interpreted programs only")
        monkeypatch.setattr(tb, "BLOCK_C_RANGE", (8, 16))
        monkeypatch.setattr(tb, "programs_per_row", lambda *args, **kwargs: 3)


def _kernels_of(x, t, **kw):
    """The launcher's kernel names for this problem (its plan; nothing launched)."""
    _, _, steps = tb.launch_plan(x, t, margin=1.0, p=1, weight=None, want_grad=True, **kw)
    return [name for name, _, _, _ in steps]


def _expect_path(path: str, x, t) -> None:
    names = _kernels_of(x, t)
    if path == "split":
        assert names == ["multilabel_hinge_split_kernel", "multilabel_hinge_finish_kernel"]
    else:
        assert names == ["multilabel_hinge_kernel"], names
        cfg = tb.launch_config(*x.shape, t.shape[1], x.dtype == torch.float64)
        tiles = -(-t.shape[1] // cfg["BLOCK_T"])
        chunks = -(-x.shape[1] // cfg["BLOCK_C"])
        assert (tiles > 1 and chunks > 1) == (path == "tiles and chunks"), (path, cfg)


def _weights(kind: str | None, n: int, c: int, rng, zeros: bool) -> np.ndarray | None:
    """None, a (C,) or an (N, C) weight, log-uniform in [1e-3, 1e3]; with ``zeros`` about a
    quarter exact zeros."""
    if kind is None:
        return None
    shape = (c,) if kind == "C" else (n, c)
    w = 10.0 ** rng.uniform(-3, 3, size=shape)
    if zeros:
        w[rng.random(shape) < 0.25] = 0.0
    return w


def _problem(seed: int, path: str, n: int = 4):
    """Scores in quarters (exact in every dtype, ties at the margin) and targets with a
    duplicate, a terminator with valid values after it, a row without positives, and
    (split path) positives spread over the three slices."""
    c, k = SIZES[path]
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, size=(n, c)) / 4
    t = np.stack([rng.permutation(c)[:k] for _ in range(n)])
    t[0, :3] = [c - 1, c - 1, 5]  # a duplicate
    t[1, 4] = -1  # T = 4, then valid values after the terminator
    if n > 2:
        t[2, 0] = -1  # T = 0
    return x, t, rng


def _run(x, t, *, device, p, weight=None, neg_weight=None, scale=None, want_grad=True, **kw):
    """The triton kernel on NumPy inputs (x and the weights already in their dtypes):
    (loss, grad) as float64 NumPy arrays."""

    def dev(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)

    st = scale if scale is None or np.isscalar(scale) else dev(np.asarray(scale, np.float64))
    loss, grad = tb.hinge(
        dev(x), dev(t), margin=1.0, p=p, weight=dev(weight), neg_weight=dev(neg_weight),
        want_grad=want_grad, grad_scale=st, **kw,
    )  # fmt: skip
    return loss.double().cpu().numpy(), None if grad is None else grad.double().cpu().numpy()


def _oracle_raw(x, t, **kw):
    """The literal-loop oracle as raw sums (it returns values after the 1/C)."""
    c = np.asarray(x).shape[1]
    losses, grads = oracle.multilabel_margin(x, t, **kw)
    return np.array(losses) * c, np.array(grads, dtype=np.float64).reshape(-1, c) * c


def _acc(a, dtype):
    """A weight as the kernel reads it: rounded to the accumulation dtype, back in float64."""
    acc = np.float64 if dtype == "float64" else np.float32
    return None if a is None else np.asarray(a).astype(acc).astype(np.float64)


def _compare(loss, grad, ref_loss, ref_grad, dtype, what):
    tol = TOL[dtype]
    lscale = np.nanmax(np.abs(ref_loss), initial=0.0) if dtype != "float64" else 0.0
    gscale = np.nanmax(np.abs(ref_grad), initial=0.0) if dtype != "float64" else 0.0
    assert_close(loss, ref_loss, rtol=tol, atol=tol * lscale, what=f"{what}: loss")
    assert_close(grad, ref_grad, rtol=tol, atol=tol * gscale + 1e-300, what=f"{what}: grad")


# ---------------------------------------------------------------------------------------------
# parity with the oracle on every path
# ---------------------------------------------------------------------------------------------
# (weight, neg_weight) kinds: every kind of each beside a (C,) and an (N, C) one of the other
# (neg_weight None with weight None or (C,) is today's kernel: tests/test_triton.py)
KINDS = [(None, "C"), (None, "NC"), ("C", "NC"), ("NC", "C"), ("NC", "NC"), ("NC", None)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize(("wkind", "vkind"), KINDS)
def test_parity_with_the_oracle(device, path, p, wkind, vkind, monkeypatch):
    """Loss and gradient of every path and p, weight None / (C,) / (N, C) beside neg_weight
    None / (C,) / (N, C) (with exact zeros), against the literal-loop oracle in float64 or
    float32 (on the same rounded weights; the dtype alternates over the cases so that each
    path, p and kind meets both); duplicates, T = 0, a terminator with values after it. The
    loss-only launch (which prefetches the next chunk's V) gives the same loss."""
    _force_path(monkeypatch, path, device)
    i = KINDS.index((wkind, vkind))
    dtype = ("float64", "float32")[(i + p + PATHS.index(path)) % 2]
    x, t, rng = _problem(100 * p + 10 * PATHS.index(path) + i, path)
    n, c = x.shape
    _expect_path(path, torch.from_numpy(x), torch.from_numpy(t))
    w = _acc(_weights(wkind, n, c, rng, zeros=False), dtype)
    v = _acc(_weights(vkind, n, c, rng, zeros=True), dtype)
    xd = x.astype(dtype)
    loss, grad = _run(xd, t, device=device, p=p, weight=w, neg_weight=v)
    ref_loss, ref_grad = _oracle_raw(x, t, p=p, weight=w, neg_weight=v)
    what = f"{path} {dtype} p={p} weight={wkind} neg_weight={vkind}"
    _compare(loss, grad, ref_loss, ref_grad, dtype, what)
    only, none = _run(xd, t, device=device, p=p, weight=w, neg_weight=v, want_grad=False)
    assert none is None, what
    assert_close(only, loss, rtol=0, atol=0, what=f"{what}: loss-only launch")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", PATHS)
def test_rows_without_positives_and_all_positive(device, path, monkeypatch):
    """C = 5, K = 8: rows of no positive, of every class positive (with duplicates, past
    several tiles), of one negative (of weight 0 or not) and a row of all-zero neg_weight:
    the oracle's values (0 where no pair is left)."""
    _force_path(monkeypatch, path, device)
    x = np.array([[0.5, -1.0, 2.0, 0.25, 0.0]] * 5)
    t = np.array(
        [
            [-1, 0, 1, 2, 3, 4, 0, 1],  # no positive
            [4, 3, 2, 1, 0, 0, 2, -1],  # every class positive, duplicates
            [0, 1, 3, 4, 1, -1, 0, 0],  # one negative (class 2), the highest score
            [0, 1, 3, 4, 1, -1, 0, 0],  # the same, its neg_weight 0
            [2, -1, 0, 0, 0, 0, 0, 0],  # every negative of weight 0
        ]
    )
    v = np.full((5, 5), 3.0)
    v[3, 2] = 0.0
    v[4] = 0.0
    w = np.linspace(0.5, 2.5, 5)
    for p in (1, 2):
        loss, grad = _run(x, t, device=device, p=p, weight=w, neg_weight=v)
        ref_loss, ref_grad = _oracle_raw(x, t, p=p, weight=w, neg_weight=v)
        assert (loss[[0, 1, 3, 4]] == 0).all() and (grad[[0, 1, 3, 4]] == 0).all(), (loss, grad)
        assert loss[2] > 0
        _compare(loss, grad, ref_loss, ref_grad, "float64", f"{path} p={p}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["tiles and chunks", "split"])
@pytest.mark.parametrize("p", [1, 2])
def test_grad_scale_and_half_scores(device, path, p, monkeypatch):
    """grad_scale (an (N,) array with a 0 and a negative) multiplies the weighted gradient;
    float16 scores with (N, C) weights and neg_weight, a number as the scale: the oracle on
    the rounded scores, the gradient rounded once (several tiles: the float32 accumulator
    row)."""
    _force_path(monkeypatch, path, device)
    x, t, rng = _problem(7 + p, path)
    n, c = x.shape
    w = _weights("NC", n, c, rng, zeros=False)
    v = _weights("NC", n, c, rng, zeros=True)
    row_scale = np.array([0.5, -2.0, 0.0, 4.0])
    ref_loss, ref_grad = _oracle_raw(x, t, p=p, weight=w, neg_weight=v)
    loss, grad = _run(x, t, device=device, p=p, weight=w, neg_weight=v, scale=row_scale)
    _compare(loss, grad, ref_loss, ref_grad * row_scale[:, None], "float64", f"{path} p={p}")
    xh = x.astype(np.float16)  # quarters in [-2, 2]: exact
    wh, vh = _acc(w, "float16"), _acc(v, "float16")
    ref_loss, ref_grad = _oracle_raw(x, t, p=p, weight=wh, neg_weight=vh)
    loss, grad = _run(xh, t, device=device, p=p, weight=wh, neg_weight=vh, scale=1e-4)
    _compare(loss, grad, ref_loss, ref_grad * 1e-4, "float16", f"{path} p={p} float16")


# ---------------------------------------------------------------------------------------------
# NaN, infinities, invalid targets
# ---------------------------------------------------------------------------------------------
_INF = np.inf
_MIXED = ([-_INF, 0.5, _INF, 0.0, -_INF, 1.0], [0, 1, -1, 0, 0, 0])
# (scores, targets, neg_weight): the oracle's IEEE arithmetic decides; a pair of V = 0 is no
# pair, also beside an infinite hinge (0, not 0·inf = NaN)
INF_CASES = {
    "neg at +inf, V 0": ([0.0, _INF, 0.5, -3.0], [0, -1, 0, 0], [1.0, 0.0, 2.0, 3.0]),
    "neg at +inf, V > 0": ([0.0, _INF, 0.5, -3.0], [0, -1, 0, 0], [1.0, 0.5, 2.0, 3.0]),
    "pos at -inf, V 0 and > 0": ([-_INF, 0.0, 2.0, -1.0], [0, -1, 0, 0], [1.0, 0.0, 2.0, 0.0]),
    "pos at -inf, all V 0": ([-_INF, 0.0, 2.0, -1.0], [0, -1, 0, 0], [1.0, 0.0, 0.0, 0.0]),
    "pos and neg at -inf": ([-_INF, -_INF, 1.0, -5.0], [0, -1, 0, 0], [1.0, 2.0, 0.5, 3.0]),
    "pos at +inf": ([_INF, 0.0, 1.0, -_INF], [0, -1, 0, 0], [1.0, 2.0, 0.0, 3.0]),
    "mixed": (*_MIXED, [1.0, 1.0, 0.0, 4.0, 2.0, 0.0]),
    "mixed, inf V > 0": (*_MIXED, [1.0, 1.0, 0.25, 4.0, 2.0, 0.0]),
    "NaN negative of V 0": ([0.0, np.nan, 0.5, 1.0], [2, -1, 0, 0], [1.0, 0.0, 1.0, 1.0]),
    "NaN positive, all V 0": ([np.nan, 0.5, 0.0, 1.0], [0, -1, 0, 0], [1.0, 0.0, 0.0, 0.0]),
    "only positive at +inf": ([0.0, 0.5, _INF, 0.2], [2, -1, -1, -1], [0.5, 0.0, 1.0, 2.0]),
}


def _inf_problem(spread: int):
    """INF_CASES as one (N, C) problem, class j of a case at column ``spread``·j (spread 13:
    in three slices of the split path); padding: negatives of V 0 (no pair)."""
    cc = max(len(x) for x, _, _ in INF_CASES.values())
    kk = max(len(t) for _, t, _ in INF_CASES.values())
    c = spread * (cc - 1) + 1
    n = len(INF_CASES)
    x, v = np.full((n, c), -100.0), np.zeros((n, c))
    t = np.full((n, kk), -1)
    for i, (xs, ts, vs) in enumerate(INF_CASES.values()):
        x[i, spread * np.arange(len(xs))] = xs
        v[i, spread * np.arange(len(vs))] = vs
        t[i, : len(ts)] = np.where(np.array(ts) >= 0, spread * np.array(ts), -1)
    return x, t, v


# the interpreter evaluates both arms of every tl.where in NumPy: 0·inf in the arm not taken
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("dtype", "p"), [("float32", 2), ("float64", 1)])
def test_infinite_and_nan_scores(device, path, dtype, p, monkeypatch):
    """±inf and NaN scores with (N, C) neg_weight: each pair counts iff x_j > x_k − margin and
    V_j > 0, in IEEE arithmetic (an infinite hinge is +inf); an infinite negative of V 0 adds
    exactly 0 (no NaN); a NaN score still makes its row NaN when a negative (of any V) is left.
    (C,) weights on the positives."""
    _force_path(monkeypatch, path, device)
    x, t, v = _inf_problem(13 if path == "split" else 1)
    x = x.astype(dtype)
    w = np.linspace(0.5, 2.0, x.shape[1])
    loss, grad = _run(x, t, device=device, p=p, weight=w, neg_weight=v)
    ref_loss, ref_grad = _oracle_raw(x.astype(np.float64), t, p=p, weight=w, neg_weight=v)
    for i, name in enumerate(INF_CASES):
        assert_close(loss[i], ref_loss[i], rtol=1e-6, atol=1e-6, what=f"{name}: loss")
        assert_close(grad[i], ref_grad[i], rtol=1e-6, atol=1e-6, what=f"{name}: grad")
    first = list(INF_CASES).index("neg at +inf, V 0")
    assert np.isfinite(loss[first]) and np.isfinite(grad[first]).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("path", "tdtype"), [("tiles and chunks", "int32"), ("split", "int64")])
def test_invalid_targets_give_nan_rows(device, path, tdtype, monkeypatch):
    """A target outside [-1, C) anywhere in a row (also after the terminator; int64 as 64-bit)
    makes that row NaN with (N, C) weights and neg_weight; the other rows are the oracle's."""
    _force_path(monkeypatch, path, device)
    x, t, rng = _problem(31, path, n=6)
    c = x.shape[1]
    t[1, -1] = -2  # after the terminator at 4
    t[3, 2] = c
    if tdtype == "int64":
        t[5, 6] = 2**32 + 1  # (int32) 1
    bad = np.array([False, True, False, True, False, tdtype == "int64"])
    t = t.astype(tdtype)
    w = _weights("NC", 6, c, rng, zeros=False)
    v = _weights("NC", 6, c, rng, zeros=True)
    scale = np.array([1.0, 0.0, 2.0, -1.0, 0.5, 0.0])  # NaN rows whatever their scale
    for p in (1, 2):
        loss, grad = _run(x, t, device=device, p=p, weight=w, neg_weight=v, scale=scale)
        assert np.isnan(loss[bad]).all() and np.isnan(grad[bad]).all()
        ref_loss, ref_grad = _oracle_raw(x[~bad], t[~bad], p=p, weight=w[~bad],
                                         neg_weight=v[~bad])  # fmt: skip
        _compare(loss[~bad], grad[~bad], ref_loss, ref_grad * scale[~bad, None], "float64",
                 f"{path} p={p}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# identities, determinism, errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", PATHS)
def test_identities(device, path, monkeypatch):
    """neg_weight=None is bitwise the call without it; (N, C) weights and neg_weight that
    repeat a (C,) row are bitwise the (C,) ones (the same values read through a row stride);
    neg_weight of ones is no neg_weight (within rounding)."""
    _force_path(monkeypatch, path, device)
    x, t, rng = _problem(5, path, n=2)
    xt, tt = torch.from_numpy(x).to(device), torch.from_numpy(t).to(device)
    n, c = x.shape
    w = torch.from_numpy(_weights("C", n, c, rng, zeros=False)).to(device)
    v = torch.from_numpy(_weights("C", n, c, rng, zeros=True)).to(device)
    for p in (1, 2):
        kw = {"margin": 1.0, "p": p, "want_grad": True, "grad_scale": 0.5}
        plain = tb.hinge(xt, tt, weight=w, **kw)
        none = tb.hinge(xt, tt, weight=w, neg_weight=None, **kw)
        assert bitwise_equal(plain[0], none[0]) and bitwise_equal(plain[1], none[1]), p
        shared = tb.hinge(xt, tt, weight=w, neg_weight=v, **kw)
        rows = tb.hinge(xt, tt, weight=w.expand(n, c).contiguous(),
                        neg_weight=v.expand(n, c).contiguous(), **kw)  # fmt: skip
        assert bitwise_equal(shared[0], rows[0]) and bitwise_equal(shared[1], rows[1]), p
        ones = tb.hinge(xt, tt, weight=w, neg_weight=torch.ones_like(xt), **kw)
        assert_close(ones[0].cpu(), plain[0].cpu(), rtol=1e-14, atol=0, what=f"ones p={p}")
        assert_close(ones[1].cpu(), plain[1].cpu(), rtol=1e-14, atol=1e-14, what=f"ones p={p}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", PATHS)
def test_deterministic(device, path, monkeypatch):
    """Two runs with neg_weight give bitwise equal losses and gradients (the per-bin sums of V
    and V·x' are a sort and a segmented scan, summed over chunks and slices in a fixed order:
    no float atomics): float32 with p = 2, float64 with p = 1."""
    _force_path(monkeypatch, path, device)
    rng = np.random.default_rng(2)
    n, (c, k) = 2, SIZES[path]
    x = rng.normal(size=(n, c))
    t = rng.integers(0, c, size=(n, k))
    w = _weights("NC", n, c, rng, zeros=False)
    v = _weights("NC", n, c, rng, zeros=True)
    for dtype, p in (("float32", 2), ("float64", 1)):
        xt = torch.tensor(x, dtype=getattr(torch, dtype), device=device)
        acc = xt.dtype
        kw = {"margin": 1.0, "p": p, "want_grad": True, "grad_scale": 0.25,
              "weight": torch.tensor(w, dtype=acc, device=device),
              "neg_weight": torch.tensor(v, dtype=acc, device=device)}  # fmt: skip
        tt = torch.tensor(t, device=device)
        runs = [tb.hinge(xt, tt, **kw) for _ in range(2)]
        assert bitwise_equal(runs[0][0], runs[1][0]), (dtype, p)
        assert bitwise_equal(runs[0][1], runs[1][1]), (dtype, p)


@pytest.mark.skipif(not INTERPRETED, reason="records the interpreter's memory operations")
@pytest.mark.parametrize(("path", "p"), [("tiles and chunks", 2), ("split", 1)])
def test_scratch_accesses_are_separated_by_barriers(path, p, monkeypatch):
    """With neg_weight (and the split's partials of Σ V), a barrier still separates every
    scratch write from other operations' reads of it (tests/test_triton.py's recorder)."""
    from test_triton import _record_hazards

    _force_path(monkeypatch, path)
    rec = _record_hazards(monkeypatch)
    x, t, rng = _problem(3, path, n=2)
    n, c = x.shape
    _run(x, t, device="cpu", p=p, weight=_weights("NC", n, c, rng, zeros=False),
         neg_weight=_weights("NC", n, c, rng, zeros=True), scale=[0.5, 2.0])  # fmt: skip
    assert rec.barriers > 0 and not rec.hazards, (
        "unordered conflicting accesses (program, first kind, line, second kind, line): "
        f"{rec.hazards}"
    )


def test_weight_shapes_are_checked():
    """A weight that is neither (C,) nor (N, C) is refused before any launch (the kernel
    would read it out of bounds)."""
    x = torch.zeros(3, 5, device="meta")
    t = torch.zeros(3, 2, dtype=torch.int64, device="meta")
    for name in ("weight", "neg_weight"):
        for shape in ((4,), (1, 5), (3, 4), (5, 3)):
            kw = {"weight": None, name: torch.ones(shape, device="meta")}
            with pytest.raises(ValueError, match=rf"{name} must have shape \(5,\) or \(3, 5\)"):
                tb.launch_plan(x, t, margin=1.0, p=1, want_grad=True, **kw)
    for shape, stride in (((5,), 0), ((3, 5), 5)):
        kinds = {}
        for name in ("weight", "neg_weight"):
            kw = {"weight": None, name: torch.ones(shape, device="meta")}
            _, _, steps = tb.launch_plan(x, t, margin=1.0, p=1, want_grad=True, **kw)
            _, _, args, kwargs = steps[0]
            kinds[name] = (kwargs["HAS_WEIGHT"], kwargs["HAS_NEG_WEIGHT"])
            i = 6 if name == "weight" else 8  # the pointer, then its row stride
            assert args[i] is not None and args[i + 1] == stride, (name, shape)
        assert kinds == {"weight": (True, False), "neg_weight": (False, True)}


# ---------------------------------------------------------------------------------------------
# ahead-of-time compilation of the neg-weighted specialisations
# ---------------------------------------------------------------------------------------------
TOOLS = Path(__file__).parent / "tools"
# (N, C, K), score dtype, p, weight, neg_weight, mode: the launcher's paths at real sizes (one
# tile; several tiles, K > BLOCK_T; split rows, N below the 264 program slots of 132 SMs) with
# every score dtype, both p, (C,) and (N, C) weights, 4 and 8 warps, BLOCK_T up to 64 in
# float64 and 256 on the float32 path; gradients with grad_scale (the loss layer's launch,
# and the most registers), and a loss-only launch (the one-program-per-row kernel then
# prefetches V)
AOT_CASES = [
    ((4096, 4096, 16), "float32", 2, "NC", "NC", "grad+scale"),
    ((4096, 4096, 16), "float32", 1, "C", "NC", "loss"),
    ((4096, 4096, 64), "float16", 1, "NC", "NC", "grad+scale"),
    ((4096, 4096, 64), "float64", 1, None, "NC", "grad+scale"),
    ((4096, 4096, 256), "float64", 2, "C", "C", "grad+scale"),
    ((256, 4000, 2000), "bfloat16", 2, "NC", "C", "grad+scale"),
    ((1024, 300, 10), "float32", 1, "C", "NC", "grad+scale"),
    ((64, 10**6, 32), "float32", 1, "C", "NC", "grad+scale"),
    ((64, 10**6, 32), "float64", 2, "NC", "NC", "grad+scale"),
]
# neg-weighted float64 variants: measured ≤ 194 registers (sm_80: the V chunk and its per-bin
# sums on top of the unweighted kernel's ≤ 179), still two programs of 128 threads per SM
# (maxnreg 255); float32 variants keep tests/test_triton.py's budgets
NEG_F64_REG_BUDGET = 208
# the compile tool's launches, with neg_weight and (N, C) weights (the tool itself knows (C,)
# weights only), compiled on two processes (forked: they keep the patched tool); run in a
# subprocess without TRITON_INTERPRET
_AOT_SCRIPT = r"""
import importlib.util, json, multiprocessing, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("compile_triton", sys.argv[2])
tool = importlib.util.module_from_spec(spec)
sys.modules["compile_triton"] = tool
spec.loader.exec_module(tool)
import torch
from xmargin.backends import triton as tb

def launches(case):
    n, c, k = case["shape"]
    x = torch.empty((n, c), dtype=getattr(torch, case["scores"]), device="meta")
    t = torch.empty((n, k), dtype=getattr(torch, case["targets"]), device="meta")
    acc = torch.float64 if case["scores"] == "float64" else torch.float32
    def weight(kind):
        shape = {None: None, "C": (c,), "NC": (n, c)}[kind]
        return None if shape is None else torch.empty(shape, dtype=acc, device="meta")
    s = torch.empty((n,), dtype=acc, device="meta") if case["scale"] else None
    _, _, steps = tb.launch_plan(
        x, t, margin=0.1, p=case["p"], weight=weight(case["weight"]),
        neg_weight=weight(case["neg_weight"]), want_grad=case["want_grad"], grad_scale=s)
    return [(name, grid, args, dict(kwargs)) for name, grid, args, kwargs in steps]

def job(item):
    return tool.compile_variant(*item)

tool.launches = launches
items = [(case, arch, step) for case in json.loads(sys.argv[4])
         for step in range(len(launches(case))) for arch in map(int, sys.argv[3].split(","))]
with multiprocessing.get_context("fork").Pool(2) as pool:
    for (case, arch, step), row in zip(items, pool.map(job, items)):
        print(json.dumps(dict(row, **case, arch=arch, step=step)), flush=True)
"""


@pytest.mark.slow
def test_neg_weighted_kernels_compile_for_sm80_and_sm90():
    """The neg-weighted specialisations (HAS_NEG_WEIGHT, (C,) and (N, C) weights, the three
    paths, every score dtype and p) compiled ahead of time for sm_80 and sm_90 (no GPU
    needed) keep to tests/test_triton.py's budgets: no spills, no stack or local memory,
    shared memory within bounds, the margin a .f64 parameter, registers within bounds (float64:
    NEG_F64_REG_BUDGET)."""
    import test_triton

    cases = [
        {"shape": list(shape), "scores": s, "targets": ("int64", "int32")[i % 2], "p": p,
         "weight": w, "neg_weight": v, "mode": mode, "want_grad": mode != "loss",
         "scale": mode != "loss"}
        for i, (shape, s, p, w, v, mode) in enumerate(AOT_CASES)
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", _AOT_SCRIPT, str(root), str(TOOLS / "compile_triton.py"),
         "80,90", json.dumps(cases)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(ln) for ln in result.stdout.splitlines() if ln.startswith("{")]
    split = sum(tb.launch_config(*c[0], c[1] == "float64")["S"] > 1 for c in AOT_CASES)
    assert split == 2 and len(rows) == 2 * (len(AOT_CASES) + split)  # split: two launches
    assert {r["kernel"] for r in rows} == {test_triton.WHOLE, test_triton.SPLIT, test_triton.FINISH}
    assert {r["arch"] for r in rows} == {80, 90}
    for r in rows:
        what = (
            f"sm_{r['arch']} {r['kernel']} {r['scores']} {tuple(r['shape'])} p={r['p']} "
            f"weight={r['weight']} neg_weight={r['neg_weight']} {r['mode']} "
            f"(BLOCK_T={r['BLOCK_T']} BLOCK_C={r['BLOCK_C']} warps={r['num_warps']})"
        )
        if r["kernel"] != test_triton.FINISH:
            assert r["margin_param"] == "f64", what
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, f"{what}: spills {r}"
        assert r["stack_frame"] == 0 and r["stack"] == 0 and r["local"] == 0, f"{what}: {r}"
        f64 = r["scores"] == "float64"
        budget = NEG_F64_REG_BUDGET if f64 else test_triton.REG_BUDGET[("f32", r["num_warps"])]
        assert r["reg"] <= budget, f"{what}: {r['reg']} registers > {budget}"
        smem = r["shared"] + r["dyn_shared"]
        assert smem <= test_triton.SMEM_BUDGET, f"{what}: {smem} bytes of shared memory"
