"""The cupy backend's weights (issue 14): ``neg_weight`` and (N, C) ``weight`` in the raw CUDA
kernel.

Calls with ``neg_weight`` or an (N, C) ``weight`` launch the kernel's weighted entry points
(``*_w``, compiled with ``-DXM_ENTRIES=2``); the others the plain ones, unchanged. Without a GPU:
the weighted set builds with nvcc for sm_80 and sm_90 within the budgets of tests/test_cuda.py
and with NVRTC; it runs on the CPU through tests/tools/cuda_emulator.cpp against the literal-loop
oracle (tests/oracle.py) on every path the launcher takes (the split path with one and several
slices, the one-block kernel with one and several threshold tiles), p = 1 and 2, every weight
shape (None, (C,), (N, C), exact zeros in ``neg_weight``), every score dtype, duplicates, rows
without positives or without negatives, NaN, ±inf and invalid targets; the fixed-point sums of
the weights are exact (bitwise the same gradients whatever the slicing or thread order), within
their documented precision for weights over six decades, and race-free under ThreadSanitizer;
``neg_weight=None`` is the plain kernel, bit for bit; the launcher's plumbing is checked on a
fake CuPy. With a GPU (``gpu`` mark): parity and repeatability on the device.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import cuda_emu
import numpy as np
import pytest
from test_cuda import GPU, REG_BUDGET, SMEM_BUDGET, _FakeArray, _FakeCupy, _ptxas_entries

from xmargin.backends import cupy as cb

import oracle
from conftest import assert_close

ROOT = Path(__file__).resolve().parents[1]
CU = ROOT / "kernels" / "cuda" / "multilabel_hinge.cu"
DTYPES = ["float16", "bfloat16", "float32", "float64"]


def _weighted_names() -> set[str]:
    names = set()
    for s in cb._SCORE_CODES:
        for t in cb._TARGET_CODES:
            names |= {cb.entry_point(s, t, True), *cb.split_entry_points(s, t, True)}
    return names


# ---------------------------------------------------------------------------------------------
# compilers
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", [80, 90])
def test_nvcc_compiles_the_weighted_set(arch, tmp_path):
    """``-DXM_ENTRIES=2`` builds exactly the 24 weighted entry points the launcher names, within
    the plain set's budgets (registers, no spills, shared memory; the fixed-point bins take
    1 KiB more than the counts), and the weighted judge keeps its 16-byte score loads and
    gradient stores."""
    result = subprocess.run(
        ["nvcc", f"-arch=sm_{arch}", "-cubin", "-Xptxas", "-v", "-DXM_ENTRIES=2", "-keep",
         "-keep-dir", str(tmp_path), "-o", str(tmp_path / "k.cubin"), str(CU)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "warning" not in out.lower(), out
    entries = _ptxas_entries(out)
    expected = _weighted_names()
    assert set(entries) == expected and len(expected) == 24, sorted(set(entries) ^ expected)
    for name, use in entries.items():
        what = f"{name} on sm_{arch}: {use}"
        assert use["spill_stores"] == use["spill_loads"] == use["stack"] == 0, what
        assert use["regs"] <= REG_BUDGET, what
        assert use["smem"] <= SMEM_BUDGET[re.search(r"_(f16|bf16|f32|f64)(_|$)", name)[1]], what
    ptx = (tmp_path / "multilabel_hinge.ptx").read_text()
    for code in cb._SCORE_CODES.values():
        judge = ptx.split(f".entry xm_multilabel_hinge_{code}_w_judge(")[1].split(".entry")[0]
        assert re.search(r"ld\.global(\.nc)?\.v[24]\.", judge), f"{code}: no vector load"
        assert re.search(r"st\.global\.v[24]\.", judge), f"{code}: no vector store"


def test_nvrtc_compiles_the_weighted_set():
    """The launcher's second module: the source with XM_ENTRIES 2, through NVRTC."""
    sys.path.insert(0, str(ROOT / "tests" / "tools"))
    try:
        import nvrtc_compile
    finally:
        sys.path.pop(0)
    lib = nvrtc_compile.find_nvrtc()
    if lib is None:
        pytest.skip("no libnvrtc here (pip install nvidia-cuda-nvrtc)")
    code = "#define XM_ENTRIES 2\n" + cb.source()  # what -DXM_ENTRIES=2 defines
    for arch in (80, 90):
        ok, log = nvrtc_compile.compile_for(lib, code, arch)
        assert ok, f"compute_{arch}: {log}"


# ---------------------------------------------------------------------------------------------
# emulated on the CPU, against the oracle
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    exe = cuda_emu.build(tmp_path_factory.mktemp("emu_w"), weighted=True)
    if exe is None:
        pytest.skip("no C++20 compiler for the CUDA emulator")
    return exe


def _oracle_raw(x, t, **kw):
    """The literal-loop oracle as raw sums (it returns values after the 1/C)."""
    c = np.asarray(x).shape[1]
    losses, grads = oracle.multilabel_margin(x, t, **kw)
    return np.array(losses) * c, np.array(grads, dtype=np.float64).reshape(-1, c) * c


# (N, C, K, slices): the launcher's paths. "split": one slice, a row of all C classes positive
# (K > C) and so without negatives; "split-3": three slices (several 16-byte vectors each);
# "tiles": the one-block kernel (K > 256), rows of 270 positives in two threshold tiles.
PATHS = {"split": (6, 45, 50, 1), "split-3": (5, 600, 40, 3), "tiles": (5, 280, 300, 0)}


def _problem(n, c, k, seed):
    """Scores on a grid of quarters (ties at the margin) with noise elsewhere, targets with
    duplicates, a terminator and values after it (row 0), T = 0 (row 1), every class positive
    where K >= C (row 2), more than a tile of positives where K > 256 (row 3)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-12, 13, size=(n, c)) / 4
    x[n // 2 :] += rng.normal(scale=0.3, size=(n - n // 2, c))
    t = rng.integers(-1, c, size=(n, k))
    t[0, :4] = [c - 1, 0, c - 1, -1]
    t[1, 0] = -1
    if k >= c:
        t[2] = np.concatenate([rng.permutation(c), rng.integers(0, c, size=k - c)])
    if k > 256:
        t[3] = np.concatenate([rng.permutation(c)[:270], np.full(k - 270, -1)])
        t[3, 5] = t[3, 4]  # a duplicate in the first tile
    return x, t


def _weights(case, n, c, rng, *, zeros):
    """None, a (C,) or an (N, C) array: ``neg_weight`` log-uniform over [1e-3, 1e3] with exact
    zeros, ``weight`` uniform over [0.5, 2]."""
    if case == "none":
        return None
    shape = (c,) if case == "C" else (n, c)
    if not zeros:
        return rng.uniform(0.5, 2.0, size=shape)
    v = 10.0 ** rng.uniform(-3, 3, size=shape)
    v[rng.random(shape) < 0.2] = 0.0
    return v


def _check(loss, grad, ref_loss, ref_grad, *, tol, what):
    """Loss and gradient against the oracle, relative with an absolute floor at the row's
    scale (gradients of weights over six decades span many magnitudes)."""
    scale_l = np.nanmax(np.abs(ref_loss), initial=1.0)
    scale_g = np.nanmax(np.abs(ref_grad), axis=1, initial=1.0)[:, None]
    assert_close(loss, ref_loss, rtol=tol, atol=tol * scale_l * 1e-3, what=f"{what}: loss")
    # per-row floor: NaN rows compare as NaN, the floor of the others is their own scale
    floor = np.where(np.isfinite(scale_g), scale_g, 1.0) * tol * 1e-3
    ok = np.isclose(grad, ref_grad, rtol=tol, atol=0) | (np.abs(grad - ref_grad) <= floor)
    ok |= np.isnan(grad) & np.isnan(ref_grad)
    if not ok.all():
        bad = np.argwhere(~ok)[:5].tolist()
        raise AssertionError(
            f"{what}: {int((~ok).sum())} gradient values differ, first at (row, class) {bad}: "
            f"actual {[grad[i, j] for i, j in bad]}, expected {[ref_grad[i, j] for i, j in bad]}"
        )


@pytest.mark.parametrize("vcase", ["none", "C", "NC"])
@pytest.mark.parametrize("wcase", ["none", "C", "NC"])
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("p", [1, 2])
def test_weighted_kernel_matches_the_oracle(emulator, p, path, wcase, vcase):
    """float64, every weight shape on every path, through the weighted entry points (also for
    the combinations the launcher sends to the plain ones: there ``neg_weight`` null reads as
    1): the literal oracle to 1e-9 relative (``neg_weight`` over six decades, with zeros),
    ``grad_scale`` on half the runs."""
    n, c, k, s = PATHS[path]
    x, t = _problem(n, c, k, seed=7 * p + len(path))
    rng = np.random.default_rng(100 * p + 10 * len(wcase) + len(vcase))
    w = _weights(wcase, n, c, rng, zeros=False)
    v = _weights(vcase, n, c, rng, zeros=True)
    scale = rng.uniform(-2, 2, size=n) if (len(wcase) + len(vcase)) % 2 else None
    loss, grad, values = cuda_emu.run(
        emulator, x, t, p=p, weight=w, neg_weight=v, scale=scale, dtype="float64",
        slices=s, weighted=True, margin=0.75,
    )  # fmt: skip
    ref_loss, ref_grad = _oracle_raw(values, t, p=p, weight=w, neg_weight=v, margin=0.75)
    if scale is not None:
        ref_grad = ref_grad * scale[:, None]
    _check(loss, grad, ref_loss, ref_grad, tol=1e-9, what=f"{path} p={p} W={wcase} V={vcase}")
    if k >= c:  # row 2: every class positive, no negative: no pair
        assert loss[2] == 0 and (grad[2] == 0).all()
    assert loss[1] == 0 and (grad[1] == 0).all()  # T = 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2])
def test_weighted_kernel_dtypes(emulator, dtype, p):
    """Every score dtype (int32 targets for p = 1, int64 for p = 2), (N, C) weights with zero
    neg weights, the split path with 2 slices and the one-block kernel with two tiles (half
    gradients summed over the tiles in float32 and rounded once): the oracle on the scores as
    the kernel saw them, to the dtype's tolerance. The loss layer's 1/C as grad_scale keeps half
    gradients in range."""
    target_dtype = "int32" if p == 1 else "int64"
    tol = {"float16": 4e-3, "bfloat16": 1.6e-2, "float32": 2e-5, "float64": 1e-9}[dtype]
    for path, (n, c, k, _) in (("split-3", PATHS["split-3"]), ("tiles", PATHS["tiles"])):
        x, t = _problem(n, c, k, seed=DTYPES.index(dtype) + 10 * p)
        rng = np.random.default_rng(DTYPES.index(dtype) + p)
        w = rng.uniform(0.5, 2.0, size=(n, c))
        v = rng.uniform(0.0, 3.0, size=(n, c))
        v[rng.random((n, c)) < 0.2] = 0.0
        scale = np.full(n, 1.0 / c)
        loss, grad, values = cuda_emu.run(
            emulator, x, t, p=p, weight=w, neg_weight=v, scale=scale, dtype=dtype,
            target_dtype=target_dtype, slices=2 if path == "split-3" else 0,
        )  # fmt: skip
        acc = np.float64 if dtype == "float64" else np.float32
        ref_loss, ref_grad = _oracle_raw(values, t, p=p, weight=w.astype(acc),
                                         neg_weight=v.astype(acc))  # fmt: skip
        _check(loss, grad, ref_loss, ref_grad * scale[:, None], tol=tol, what=f"{dtype} {path}")


# Rows with infinite, NaN and zero-weighted scores, as (scores, targets, neg_weight), each with
# the oracle's verdict in words. Padding classes: scores far below, neg weight 0 (no pairs, even
# with a positive at -inf).
_I, _N = np.inf, np.nan
SPECIAL_ROWS = {
    # a +inf negative of weight 0 forms no pair: loss 0.5 from class 2 only, no NaN
    "inf neg, weight 0": ([0.0, _I, 0.5, -3.0], [0, -1, 0, 0], [1.0, 0.0, 1.0, 1.0]),
    "inf neg, weight 2": ([0.0, _I, 0.5, -3.0], [0, -1, 0, 0], [1.0, 2.0, 1.0, 1.0]),
    # a -inf positive: every weighted negative's hinge is +inf, the zero-weighted adds nothing
    "-inf pos, weight 0 neg": ([-_I, 0.0, -2.0, -1.0], [0, -1, 0, 0], [1.0, 0.0, 0.0, 0.0]),
    "-inf pos, one weighted": ([-_I, 0.0, -2.0, -1.0], [0, -1, 0, 0], [1.0, 0.0, 3.0, 0.0]),
    # a weight under half a fixed-point unit (vmax = 4 here) still forms its pair: for p = 2
    # the -inf positive's gradient is -inf, not 0
    "-inf pos, tiny weight": ([-_I, 0.0, -2.0, -1.0], [0, -1, 0, 0], [1.0, 1e-30, 0.0, 0.0]),
    # NaN on a zero-weighted negative: still a negative for the NaN rule, the row is NaN
    "NaN neg, weight 0": ([0.0, _N, 0.5, -3.0], [0, -1, 0, 0], [1.0, 0.0, 1.0, 1.0]),
    # every negative weight 0: no pair, loss and gradient 0 (the row still has negatives)
    "all weights 0": ([0.0, 5.0, 0.5, -3.0], [0, -1, 0, 0], [1.0, 0.0, 0.0, 0.0]),
    # a +inf positive and a -inf negative: no pair counts
    "+inf pos": ([_I, 0.0, 1.0, -_I], [0, -1, 0, 0], [1.0, 4.0, 4.0, 0.0]),
    "dup -inf pos": ([-_I, 0.5, 1.0, -2.0], [0, 0, 1, -1], [1.0, 1.0, 1.0, 0.5]),
    "invalid target": ([0.0, 0.5, 1.0, -2.0], [0, 4, -1, 0], [1.0, 1.0, 1.0, 1.0]),
}


def _special_problem(c, k):
    """SPECIAL_ROWS padded to (N, C) and K columns (targets -1, neg weight 0, scores -100)."""
    xs, ts, vs = [], [], []
    for x, t, v in SPECIAL_ROWS.values():
        xs.append(list(x) + [-100.0] * (c - len(x)))
        tt = list(t) + [-1] * (k - len(t))
        ts.append([c if tv == 4 else tv for tv in tt])  # the invalid row: C
        vs.append(list(v) + [0.0] * (c - len(v)))
    return np.array(xs), np.array(ts), np.array(vs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("path", ["split-3", "one-block"])
def test_zero_weights_infinities_and_nan(emulator, dtype, p, path):
    """The oracle's IEEE values on SPECIAL_ROWS (an infinite negative of neg weight 0 adds 0,
    not NaN; a NaN beside a zero weight still makes the row NaN; an invalid target row NaN),
    with an (N, C) weight and grad_scale; and the verdicts spelt out."""
    k = 300 if path == "one-block" else 40
    c = 300
    x, t, v = _special_problem(c, k)
    n = x.shape[0]
    rng = np.random.default_rng(p)
    w = rng.uniform(0.5, 2.0, size=(n, c))
    scale = rng.uniform(0.5, 2.0, size=n)
    loss, grad, values = cuda_emu.run(
        emulator, x, t, p=p, weight=w, neg_weight=v, scale=scale, dtype=dtype,
        slices=3 if path == "split-3" else 0,
    )  # fmt: skip
    ref_loss, ref_grad = _oracle_raw(values, t, p=p, weight=w, neg_weight=v)
    names = list(SPECIAL_ROWS)
    for i, name in enumerate(names):
        what = f"{name} ({dtype}, p={p}, {path})"
        assert_close(loss[i], ref_loss[i], rtol=1e-6, atol=1e-6, what=f"{what}: loss")
        assert_close(grad[i], ref_grad[i] * scale[i], rtol=1e-6, atol=1e-6, what=f"{what}: grad")
    rows = dict(zip(names, zip(loss, grad, strict=True), strict=True))
    lo, g = rows["inf neg, weight 0"]  # class 2 alone: W * (1 - 0 + 0.5)^p
    assert lo == pytest.approx(w[0, 0] * 1.5**p, rel=1e-6) and np.isfinite(g).all(), (lo, g[:4])
    assert np.isposinf(rows["inf neg, weight 2"][0])
    for name in ("-inf pos, weight 0 neg", "all weights 0"):
        lo, g = rows[name]
        assert lo == 0 and (g == 0).all(), (name, lo, g[:4])
    assert np.isposinf(rows["-inf pos, one weighted"][0])
    lo, g = rows["-inf pos, tiny weight"]
    assert np.isposinf(lo) and g[0] < 0 and (p == 1 or np.isneginf(g[0])), (lo, g[:4])
    for name in ("NaN neg, weight 0", "invalid target"):
        lo, g = rows[name]
        assert np.isnan(lo) and np.isnan(g).all(), (name, lo, g[:4])


# ---------------------------------------------------------------------------------------------
# identities, exactness, determinism, precision
# ---------------------------------------------------------------------------------------------
def _bits(a):
    return np.ascontiguousarray(a).view(np.uint64 if a.dtype == np.float64 else np.uint8)


@pytest.mark.parametrize("p", [1, 2])
def test_none_and_ones_are_the_plain_kernel_bitwise(emulator, p):
    """``neg_weight=None`` runs the plain entry points, bit for bit what a call without the
    argument gives; the weighted entry points with no ``neg_weight``, with ``neg_weight`` all
    ones, and with (N, C) copies of a (C,) weight give those same bits (the fixed-point sum of
    ones is the count, exactly), on the split and the one-block paths."""
    for path in ("split-3", "tiles"):
        n, c, k, s = PATHS[path]
        x, t = _problem(n, c, k, seed=3 + p)
        rng = np.random.default_rng(p)
        w = rng.uniform(0.5, 2.0, size=c)
        kw = {"p": p, "dtype": "float32", "slices": s, "scale": rng.uniform(0.5, 2, n)}
        plain = cuda_emu.run(emulator, x, t, weight=w, **kw)[:2]
        runs = {
            "neg_weight=None": cuda_emu.run(emulator, x, t, weight=w, neg_weight=None, **kw),
            "weighted, no V": cuda_emu.run(emulator, x, t, weight=w, weighted=True, **kw),
            "V ones (C,)": cuda_emu.run(emulator, x, t, weight=w, neg_weight=np.ones(c), **kw),
            "W, V (N, C)": cuda_emu.run(
                emulator, x, t, weight=np.tile(w, (n, 1)), neg_weight=np.ones((n, c)), **kw
            ),
        }
        for name, (loss, grad, _) in runs.items():
            for a, b, what in ((loss, plain[0], "loss"), (grad, plain[1], "grad")):
                differ = _bits(a) != _bits(b)
                assert not differ.any(), (
                    f"{path} p={p} {name}: {what} differs from the plain kernel at "
                    f"{np.argwhere(differ)[:4].tolist()}"
                )


@pytest.mark.parametrize("p", [1, 2])
def test_broadcast_weights_equal_their_rows(emulator, p):
    """(N, C) weight and neg_weight equal to a broadcast (C,) pair (row stride C vs 0): the same
    bits, split and one-block."""
    for path in ("split-3", "tiles"):
        n, c, k, s = PATHS[path]
        x, t = _problem(n, c, k, seed=11 + p)
        rng = np.random.default_rng(5)
        w, v = rng.uniform(0.5, 2.0, size=c), 10.0 ** rng.uniform(-3, 3, size=c)
        v[::5] = 0.0
        kw = {"p": p, "dtype": "float64", "slices": s}
        a = cuda_emu.run(emulator, x, t, weight=w, neg_weight=v, **kw)
        b = cuda_emu.run(emulator, x, t, weight=np.tile(w, (n, 1)), neg_weight=np.tile(v, (n, 1)),
                         **kw)  # fmt: skip
        assert np.array_equal(_bits(a[0]), _bits(b[0])), f"{path} p={p}: loss"
        assert np.array_equal(_bits(a[1]), _bits(b[1])), f"{path} p={p}: grad"


def test_fixed_point_sums_are_exact_and_repeatable(emulator):
    """The positives' p = 1 gradient is -W_k times an integer (fixed-point) sum of neg weights:
    the same bits whatever the order the threads add them in or the slices they are cut into
    (S = 1, 2, 5 and the one-block kernel), where float sums of weights over six decades would
    differ in the last bits; losses agree to rounding. A p = 2 run repeats bit for bit."""
    n, c, k = 4, 600, 40
    x, t = _problem(n, c, k, seed=21)
    rng = np.random.default_rng(21)
    v = 10.0 ** rng.uniform(-3, 3, size=(n, c))
    v[rng.random((n, c)) < 0.1] = 0.0
    kw = {"p": 1, "dtype": "float64", "neg_weight": v, "weight": rng.uniform(0.5, 2, c)}
    runs = {s: cuda_emu.run(emulator, x, t, slices=s, **kw) for s in (1, 2, 5, 0)}
    ref_loss, ref_grad = _oracle_raw(runs[1][2], t, p=1, weight=kw["weight"], neg_weight=v)
    for s, (loss, grad, _) in runs.items():
        assert np.array_equal(_bits(grad), _bits(runs[1][1])), f"S={s}: gradient bits differ"
        assert_close(loss, ref_loss, rtol=1e-12, atol=0, what=f"S={s} loss")
    _check(runs[1][0], runs[1][1], ref_loss, ref_grad, tol=1e-9, what="S=1")
    a = cuda_emu.run(emulator, x, t, slices=3, **{**kw, "p": 2})
    b = cuda_emu.run(emulator, x, t, slices=3, **{**kw, "p": 2})
    assert np.array_equal(_bits(a[0]), _bits(b[0])) and np.array_equal(_bits(a[1]), _bits(b[1]))


@pytest.mark.parametrize("path", ["split-4", "tiles"])
def test_float64_precision_for_weights_over_six_decades(emulator, path):
    """The fixed-point unit comes from the largest neg weight (here 1e3, on a class of row 0)
    and C = 2000; rows whose negatives all weigh 1e-3 are the worst case of the documented
    bound |error| <= vmax * C * 2^-63 per weight, 2.2e-10 relative: the positives' gradients
    stay within 1e-9 of the oracle (and within the bound), rows of log-uniform weights too."""
    n, c = 4, 2000
    k, s = (300, 0) if path == "tiles" else (40, 4)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(n, c))
    t = np.stack([rng.permutation(c)[:k] for _ in range(n)])
    t[0, 30:] = -1
    v = np.full((n, c), 1e-3)
    far = np.setdiff1d(np.arange(c), t[0, :30])[0]
    v[0, far], x[0, far] = 1e3, -50.0  # vmax, on a negative below every threshold
    v[2:] = 10.0 ** rng.uniform(-3, 3, size=(2, c))
    loss, grad, values = cuda_emu.run(emulator, x, t, p=1, dtype="float64", neg_weight=v,
                                      slices=s)  # fmt: skip
    ref_loss, ref_grad = oracle.multilabel_margin_dense(values, t, p=1, neg_weight=v)
    pos = np.zeros((n, c), dtype=bool)
    for i in range(n):
        stop = np.flatnonzero(t[i] < 0)
        pos[i, t[i, : stop[0] if stop.size else k]] = True
    rel = np.abs(grad - ref_grad)[pos] / np.abs(ref_grad)[pos].clip(1e-300)
    bound = 1e3 * c * 2.0**-63 / 1e-3  # relative, for sums of weights >= 1e-3
    assert rel.max() <= 1e-9 and rel[: pos[:2].sum()].max() <= bound + 1e-14, (rel.max(), bound)
    _check(loss, grad, ref_loss, ref_grad, tol=1e-9, what=f"{path}: wide weights")


# ---------------------------------------------------------------------------------------------
# ThreadSanitizer
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tsan_emulator(tmp_path_factory):
    exe = cuda_emu.build(tmp_path_factory.mktemp("emu_w_tsan"), sanitize="thread", weighted=True)
    if exe is None:
        pytest.skip("no C++20 compiler with ThreadSanitizer for the CUDA emulator")
    return exe


@pytest.mark.parametrize(("p", "slices"), [(2, 0), (1, 3)])
def test_weighted_kernel_has_no_data_race(tsan_emulator, p, slices):
    """The weighted kernels under ThreadSanitizer (see tests/test_cuda.py): the one-block kernel
    with two tiles and p = 2 (the 64-bit bins, reset per tile, beside the per-warp sums), and the
    split path with 3 slices and p = 1 (64-bit partials)."""
    rng = np.random.default_rng(9)
    x = rng.integers(-20, 21, size=(2, 300)) / 4
    t = rng.integers(0, 300, size=(2, 270 if slices == 0 else 40))
    t[1, 20] = -1
    v = rng.uniform(0, 2, size=(2, 300))
    v[:, ::4] = 0.0
    env = {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66 report_signal_unsafe=0"}
    try:
        cuda_emu.run(tsan_emulator, x, t, p=p, dtype="float64", neg_weight=v,
                     weight=rng.uniform(0.5, 2, 300), scale=[0.5, 2.0], slices=slices,
                     env=env)  # fmt: skip
    except cuda_emu.EmulatorError as err:
        pytest.fail(f"ThreadSanitizer: {err}")


# ---------------------------------------------------------------------------------------------
# the launcher, on a fake CuPy (tests/test_cuda.py's)
# ---------------------------------------------------------------------------------------------
class _FakeArrayW(_FakeArray):
    """With the ``max`` the launcher takes of ``neg_weight`` (recorded: it must stay on the
    device, a 0-d array, not a host number)."""

    maxes: ClassVar[list[int]] = []

    def max(self):
        _FakeArrayW.maxes.append(self.device.id)
        return _FakeArrayW((), self.dtype, self.device.id)


class _FakeCupyW(_FakeCupy):
    """Records the compile options and the allocations' dtypes."""

    def __init__(self):
        super().__init__()
        self.options = []
        self.allocs = []
        compile_module = self.RawModule

        def raw_module(code, options):
            self.options.append(options)
            return compile_module(code, options)

        self.RawModule = raw_module

    def array(self, shape, dtype, device=None):
        return _FakeArrayW(shape, dtype, self.current if device is None else device)

    def empty(self, shape, dtype):
        self.allocs.append((tuple(shape), np.dtype(dtype).name))
        return super().empty(shape, dtype)


def _fake(monkeypatch):
    fake = _FakeCupyW()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cb, "_MODULES", {})
    monkeypatch.setattr(_FakeArrayW, "maxes", [])
    cb._device_sm_count.cache_clear()
    return fake


@pytest.mark.parametrize("shape", [(3, 500, 300), (3, 50000, 40)], ids=["one-block", "split"])
def test_launcher_takes_the_weighted_set_only_when_asked(monkeypatch, shape):
    """No neg_weight and a (C,) weight: the plain kernels with the plain arguments (neg_weight
    None or left out alike) from the plain module. neg_weight (or an (N, C) weight): the ``_w``
    kernels with the row strides, V and its max (taken on the device) from a second module
    compiled with -DXM_ENTRIES=2; int64 partials on the split path."""
    fake = _fake(monkeypatch)
    n, c, k = shape
    try:
        x = _FakeArrayW((n, c), "float32", device=1)
        t = _FakeArrayW((n, k), "int64", device=1)
        w, w_nc = _FakeArrayW((c,), "float32", 1), _FakeArrayW((n, c), "float32", 1)
        kw = {"margin": 1.0, "p": 1, "want_grad": True, "grad_scale": 0.5}
        cb.hinge(x, t, weight=w, **kw)
        plain = list(fake.launches)
        cb.hinge(x, t, weight=w, neg_weight=None, **kw)
        assert fake.launches[len(plain) :] == plain and fake.options == [("--std=c++14",)]
        assert _FakeArrayW.maxes == []
        for weight, neg in ((w, _FakeArrayW((c,), "float32", 1)), (w_nc, None)):
            fake.launches.clear()
            empties = [what for what, _ in fake.events].count("empty")
            cb.hinge(x, t, weight=weight, neg_weight=neg, **kw)
            names = [name for name, *_ in fake.launches]
            if shape[2] > cb.TILE:
                assert names == [cb.entry_point("float32", "int64", True)]
                assert [a for *_, a in fake.launches] == [24]
            else:
                assert names == list(cb.split_entry_points("float32", "int64", True))
                assert [a for *_, a in fake.launches] == [13, 18, 14]
                assert [what for what, _ in fake.events].count("empty") - empties == 6
                s = cb.slices(n, c, k, 2)
                assert fake.allocs[-1] == ((n, s, cb.PART), "int64")  # 64-bit partials
            assert all(device == 1 for _, device in fake.events), fake.events
        assert fake.options == [("--std=c++14",), ("--std=c++14", "-DXM_ENTRIES=2")]
        assert _FakeArrayW.maxes == [1]  # once, for the call with neg_weight, on device 1
    finally:
        cb._device_sm_count.cache_clear()


def test_weighted_entry_point_names():
    assert cb.entry_point("float32", "int32", True) == "xm_multilabel_hinge_f32_i32_w"
    assert cb.split_entry_points("bfloat16", "int64", True) == (
        "xm_multilabel_hinge_bf16_i64_w_setup", "xm_multilabel_hinge_bf16_w_judge",
        "xm_multilabel_hinge_bf16_w_finish",
    )  # fmt: skip
    assert cb.split_entry_points("float64", "int32") == (
        "xm_multilabel_hinge_f64_i32_setup", "xm_multilabel_hinge_f64_judge",
        "xm_multilabel_hinge_f64_finish",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# on a GPU
# ---------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2])
def test_gpu_weighted_parity_and_repeatability(monkeypatch, dtype, p):
    """On the device, torch tensors: (N, C) weight and neg_weight with zeros, the split path
    (several slices), the one-block kernel with two tiles, against the dense oracle, and bit for
    bit the same on a second call."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(p)
    tol = {"float16": 4e-3, "bfloat16": 1.6e-2, "float32": 2e-5, "float64": 1e-9}[dtype]
    acc = torch.float64 if dtype == "float64" else torch.float32
    monkeypatch.setattr(cb, "SM_COUNT", 64)
    for n, c, k in ((6, 20011, 64), (5, 1000, 300)):
        x = rng.normal(size=(n, c))
        t = np.stack([rng.permutation(c)[:k] for _ in range(n)])
        t[1, 10:] = -1
        w = rng.uniform(0.5, 2.0, size=(n, c))
        v = 10.0 ** rng.uniform(-3, 3, size=(n, c))
        v[rng.random((n, c)) < 0.2] = 0.0
        xt = torch.tensor(x, device="cuda").to(getattr(torch, dtype))
        kw = {"margin": 1.0, "p": p, "want_grad": True, "grad_scale": 1.0 / c,
              "weight": torch.tensor(w, device="cuda", dtype=acc),
              "neg_weight": torch.tensor(v, device="cuda", dtype=acc)}  # fmt: skip
        tt = torch.tensor(t, device="cuda")
        loss, grad = cb.hinge(xt, tt, **kw)
        again = cb.hinge(xt, tt, **kw)
        torch.cuda.synchronize()
        assert torch.equal(loss, again[0]) and torch.equal(grad, again[1])
        values = xt.double().cpu().numpy()
        wa, va = (kw[a].double().cpu().numpy() for a in ("weight", "neg_weight"))
        ref_loss, ref_grad = oracle.multilabel_margin_dense(values, t, p=p, weight=wa,
                                                            neg_weight=va)  # fmt: skip
        _check(loss.double().cpu().numpy(), grad.double().cpu().numpy(), ref_loss,
               ref_grad / c, tol=tol, what=f"gpu {dtype} C={c}")  # fmt: skip
