"""The CuPy raw-CUDA backend.

Without a GPU: every ``.cu`` compiles with nvcc for sm_80 and sm_90 and with NVRTC (the
compiler CuPy uses); the kernel's logic runs on the CPU through tests/tools/cuda_emulator.cpp
(one std::thread per CUDA thread) against the reference backend, and against the oracle for
the kernel's own contract (any target values, large and infinite scores, ties at the margin,
half gradients rounded once); the same emulator built with ThreadSanitizer checks that every
conflicting pair of accesses is ordered by a barrier; the host code's source loading, cache
keys, entry points, device handling, dispatch and errors are checked. With a GPU (``gpu``
mark): parity on CuPy arrays and torch CUDA tensors, autograd, streams, determinism, a second
device.

Budgets of every entry point (the one-block kernel, and the split path's setup, judge and
finish), from ``nvcc -Xptxas -v`` for sm_80 and sm_90:

* spills 0 and stack frame 0 bytes: everything of a thread fits in registers;
* registers ≤ 64 (measured: one-block 45–64, setup 36–48, judge 48–56, finish 40): every
  entry point is built with ``__launch_bounds__(256, 4)``, four blocks per SM, which the
  launcher's split heuristic counts on; a rise past it means the per-thread state grew;
* shared memory ≤ 22 KiB for the float32-accumulating entry points (float16, bfloat16,
  float32 scores; measured: one-block 20,508 B, judge 17,420 B, setup 9,244 B, finish
  3,072 B) and ≤ 40 KiB for float64 (37,928 / 31,768 / 16,424 / 4,096 B), all below the 48 KiB
  a block may hold statically (beyond that the kernel would not load without a
  dynamic-shared-memory opt-in); the tile arrays are most of it;
* the judge's scores are read, and its gradient written, with 16-byte vector instructions.

The split path (every K <= 256; S > 1 slices per row for few rows against many SMs) runs in
the emulator with ``slices=S``; its
tests cover S = 2, 3, 5, 9 (trailing slices empty), rows not 16-byte aligned (scalar head and
tail), column-major scores (scalar throughout), the NaN rule across slices, invalid targets,
±inf, ties at the margin, half gradients rounded once, bitwise repeatability, and TSan.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cuda_emu
import numpy as np
import pytest

import xmargin
from xmargin.backends import cupy as cb
from xmargin.backends import reference

from conftest import assert_close, bitwise_equal

ROOT = Path(__file__).resolve().parents[1]
CU_FILES = sorted((ROOT / "kernels" / "cuda").glob("*.cu"))


def _gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


GPU = _gpu()


# ---------------------------------------------------------------------------------------------
# compilers
# ---------------------------------------------------------------------------------------------
REG_BUDGET = 64
SMEM_BUDGET = {"f16": 22 * 1024, "bf16": 22 * 1024, "f32": 22 * 1024, "f64": 40 * 1024}


def _ptxas_entries(log: str) -> dict[str, dict[str, int]]:
    """Per entry point: registers, stack frame, spill bytes and shared memory from a
    ``-Xptxas -v`` log."""
    out = {}
    for block in re.split(r"(?=ptxas info\s*: Compiling entry function)", log)[1:]:
        name = re.search(r"entry function '(\w+)'", block).group(1)
        frame = re.search(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", block
        )
        regs = re.search(r"Used (\d+) registers", block)
        smem = re.search(r"(\d+) bytes smem", block)
        out[name] = {
            "regs": int(regs.group(1)), "stack": int(frame.group(1)),
            "spill_stores": int(frame.group(2)), "spill_loads": int(frame.group(3)),
            "smem": int(smem.group(1)) if smem else 0,
        }  # fmt: skip
    return out


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles(cu, arch, tmp_path):
    """Every entry point builds for sm_80 and sm_90 within the budgets of the module
    docstring."""
    result = subprocess.run(
        ["nvcc", f"-arch=sm_{arch}", "-cubin", "-Xptxas", "-v", "-keep", "-keep-dir",
         str(tmp_path), "-o", str(tmp_path / "k.cubin"), str(cu)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "warning" not in out.lower(), out
    entries = _ptxas_entries(out)
    expected = set()
    for s in cb._SCORE_CODES:
        for t in cb._TARGET_CODES:
            expected |= {cb.entry_point(s, t), *cb.split_entry_points(s, t)}
    # 4 score dtypes x 2 target dtypes x (one-block, setup) + 4 x (judge, finish)
    assert set(entries) == expected and len(expected) == 24, out
    for name, use in entries.items():
        what = f"{name} on sm_{arch}: {use}"
        assert use["spill_stores"] == use["spill_loads"] == use["stack"] == 0, what
        assert use["regs"] <= REG_BUDGET, what
        assert use["smem"] <= SMEM_BUDGET[re.search(r"_(f16|bf16|f32|f64)(_|$)", name)[1]], what
    if cu.name == "multilabel_hinge.cu":  # the judge's 16-byte loads and stores (kept PTX)
        ptx = (tmp_path / "multilabel_hinge.ptx").read_text()
        for code in cb._SCORE_CODES.values():
            judge = ptx.split(f".entry xm_multilabel_hinge_{code}_judge(")[1].split(".entry")[0]
            assert re.search(r"ld\.global(\.nc)?\.v[24]\.", judge), f"{code}: no vector load"
            assert re.search(r"st\.global\.v[24]\.", judge), f"{code}: no vector store"


def test_nvrtc_compiles():
    tool = ROOT / "tests" / "tools" / "nvrtc_compile.py"
    result = subprocess.run(
        [sys.executable, str(tool), "80", "90"], capture_output=True, text=True, timeout=600
    )
    if result.returncode == 3:
        pytest.skip("no libnvrtc here (pip install nvidia-cuda-nvrtc)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok") == 2


# ---------------------------------------------------------------------------------------------
# the kernel's logic, emulated on the CPU
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    exe = cuda_emu.build(tmp_path_factory.mktemp("emu"))
    if exe is None:
        pytest.skip("no C++20 compiler for the CUDA emulator")
    return exe


def _compare(emulator, x, t, *, dtype="float32", tol=None, **kw):
    loss, grad, values = cuda_emu.run(emulator, x, t, dtype=dtype, **kw)
    ref_loss, ref_grad = reference.hinge_numpy(
        values, t, margin=kw.get("margin", 1.0), p=kw.get("p", 1), weight=kw.get("weight"),
        want_grad=True,
    )  # fmt: skip
    if kw.get("scale") is not None:
        ref_grad = ref_grad * np.asarray(kw["scale"])[:, None]
    if tol is None:
        tol = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype]
    assert_close(loss, ref_loss, rtol=tol, atol=tol, what=f"emulated cuda loss ({dtype})")
    if kw.get("want_grad", True):
        assert_close(grad, ref_grad, rtol=tol, atol=tol, what=f"emulated cuda grad ({dtype})")
    return loss, grad


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("target_dtype", ["int32", "int64"])
def test_emulated_dtypes(emulator, dtype, target_dtype):
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 9, size=(3, 45)) / 4  # exactly representable in every dtype
    t = rng.integers(-1, 45, size=(3, 20))
    for p in (1, 2):
        _compare(emulator, x, t, dtype=dtype, target_dtype=target_dtype, p=p, margin=0.5)


@pytest.mark.parametrize(
    ("n", "c", "k"), [(2, 1, 1), (3, 7, 7), (2, 9, 0), (2, 300, 12), (2, 33, 40), (1, 5, 5)]
)
def test_emulated_shapes_and_options(emulator, n, c, k):
    rng = np.random.default_rng(n * 100 + c + k)
    x = rng.integers(-6, 7, size=(n, c)) / 2  # halves: exact ties at the margin
    t = rng.integers(-1, c, size=(n, k))
    if n >= 2 and k >= 3:
        t[0, :3] = [c - 1, c - 1, -1]  # duplicate, terminator, values after it
    w = np.linspace(-1.0, 2.0, c)
    for kw in (
        {},
        {"p": 2, "weight": w},
        {"margin": -0.5, "weight": w, "scale": rng.uniform(-2, 2, n)},
    ):
        _compare(emulator, x, t, dtype="float64", **kw)
        _compare(emulator, x, t, dtype="float64", transposed=True, **kw)


def test_emulated_several_tiles_and_chunks(emulator):
    """More than 256 positives (several threshold tiles) and more than 256 classes."""
    rng = np.random.default_rng(7)
    x = rng.integers(-20, 21, size=(2, 600)) / 4
    t = rng.integers(0, 600, size=(2, 700))
    t[1, 290:] = -1
    for p in (1, 2):
        _compare(emulator, x, t, dtype="float64", p=p, weight=rng.uniform(-1, 2, 600))
        _compare(emulator, x, t, dtype="float32", p=p, tol=1e-5)


def test_emulated_nan_rows_loss_only_and_determinism(emulator):
    x = np.array([[np.nan, 0.0, 1.0], [0.5, 0.2, 0.1], [np.nan, 0.0, 1.0]])
    t = np.array([[2, -1, 0], [0, -1, -1], [-1, 0, 0]])
    loss, grad = _compare(emulator, x, t, dtype="float32")
    assert np.isnan(loss[0]) and np.isnan(grad[0]).all() and loss[2] == 0 and (grad[2] == 0).all()
    loss_only, none, _ = cuda_emu.run(emulator, x, t, want_grad=False)
    assert none is None and np.array_equal(loss_only, loss, equal_nan=True)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 200))
    t = rng.integers(0, 200, size=(2, 50))
    a = cuda_emu.run(emulator, x, t, p=2)
    b = cuda_emu.run(emulator, x, t, p=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ---------------------------------------------------------------------------------------------
# the kernel's own contract, emulated, against the independent oracle (tests/oracle.py)
# ---------------------------------------------------------------------------------------------
def _oracle_raw(x, t, **kw):
    """The literal-loop oracle as raw sums (it returns values after the 1/C)."""
    import oracle

    c = np.asarray(x).shape[1]
    losses, grads = oracle.multilabel_margin(x, t, **kw)
    return np.array(losses) * c, np.array(grads, dtype=np.float64).reshape(-1, c) * c


def _invalid_target_rows(c, k, wide):
    """(N, K) targets, and which rows hold a value outside [-1, C) (also after the terminator,
    also past the first 256 columns, also after a second tile of positives)."""
    fill = [(i * 3) % c for i in range(k)]  # valid filler: a row of it has K positives

    def row(*head, tail=()):
        return (list(head) + fill[len(head) : k - len(tail)] + list(tail))[:k]

    rows = [
        (row(0, 2, -1), False),
        (row(0, 2, -1, tail=(-2,)), True),  # -2 after the terminator, in the last column
        (row(-7, 1, 2), True),  # first entry
        (row(1, c, -1), True),  # C before the terminator
        (row(3, -1, 0, tail=(c + 5,)), True),  # C + 5 after the terminator, last column
        (row(c - 1, 1, 0, 2), False),  # K positives: two tiles
        (row(tail=(-1, c)), True),  # two tiles of positives, then the terminator, then C
        (row(-1, tail=(c,)), True),  # no positives, still invalid
        (row(2, 2, -1, tail=(-1,)), False),
    ]
    if wide:  # int64 only: values that a 32-bit truncation would turn into valid classes
        rows += [
            (row(1, 2**32 + 1, -1), True),  # (int32) 1
            (row(0, -1, tail=(2**40,)), True),
            (row(2**32, -1, 0), True),  # (int32) 0
            (row(0, 1, -(2**33)), True),  # negative, below -1
            (row(1, 0, -1, tail=(-(2**32) + 3,)), True),  # (int32) 3
        ]
    return np.array([r for r, _ in rows], dtype=np.int64), np.array([b for _, b in rows])


@pytest.mark.parametrize("target_dtype", ["int32", "int64"])
@pytest.mark.parametrize("p", [1, 2])
def test_emulated_invalid_targets_give_nan_rows(emulator, target_dtype, p):
    """Any target outside [-1, C), anywhere in the row, makes that row's loss and gradient NaN
    (the gradient NaN whatever the scale is); the other rows are exact. int64 targets are
    compared as 64-bit values. K = 300: more than one pass of 256 threads, two tiles."""
    c, k = 7, 300
    t, bad = _invalid_target_rows(c, k, wide=target_dtype == "int64")
    n = t.shape[0]
    rng = np.random.default_rng(12)
    x = rng.integers(-6, 7, size=(n, c)) / 2
    weight = rng.uniform(0.5, 2.0, c)
    scale = rng.uniform(-2.0, 2.0, n)
    scale[1] = 0.0  # NaN also times 0
    kw = {"dtype": "float64", "target_dtype": target_dtype, "p": p, "weight": weight}
    loss, grad, _ = cuda_emu.run(emulator, x, t, scale=scale, **kw)
    only, none, _ = cuda_emu.run(emulator, x, t, want_grad=False, **kw)
    assert none is None
    assert np.isnan(loss[bad]).all() and np.isnan(only[bad]).all()
    assert np.isnan(grad[bad]).all()
    ref_loss, ref_grad = _oracle_raw(x[~bad], t[~bad], p=p, weight=weight)
    assert_close(loss[~bad], ref_loss, rtol=1e-12, atol=1e-12, what="valid rows' loss")
    assert_close(only[~bad], ref_loss, rtol=1e-12, atol=1e-12, what="valid rows' loss only")
    assert_close(
        grad[~bad], ref_grad * scale[~bad, None], rtol=1e-12, atol=1e-12, what="valid grads"
    )


@pytest.mark.parametrize(
    ("dtype", "s"),
    [("float64", 1e2), ("float64", 1e4), ("float64", 1e6), ("float32", 1e2), ("float32", 1e3)],
)
@pytest.mark.parametrize("p", [1, 2])
def test_emulated_precision_at_large_scores(emulator, dtype, s, p):
    """Scores s + N(0, 1): the sums are formed relative to a pivot per tile, so the loss stays
    within a few ulps of the float64 oracle (on the same rounded scores) however large s is.
    300 positives (two tiles of 256), weights, gradients."""
    import oracle

    rng = np.random.default_rng(int(s) + p)
    n, c, k = 3, 400, 300
    x = s + rng.normal(size=(n, c))
    t = np.stack([rng.permutation(c)[:k] for _ in range(n)])
    t[1, 120] = -1
    t[2, 3] = t[2, 2]  # a duplicate
    weight = rng.uniform(0.5, 2.0, c)
    loss, grad, values = cuda_emu.run(emulator, x, t, dtype=dtype, p=p, weight=weight)
    ref_loss, ref_grad = oracle.multilabel_margin_dense(values, t, p=p, weight=weight)
    # measured: a few ulps; before the pivot float32 at s = 1e3 was 1e-2 off
    tol = 1e-12 if dtype == "float64" else 1e-6
    assert_close(loss, ref_loss, rtol=tol, atol=0, what=f"loss at s={s}")
    gscale = np.abs(ref_grad).max()
    assert_close(grad, ref_grad, rtol=tol, atol=tol * gscale, what=f"grad at s={s}")


_INF = np.inf
# (scores, targets): rows where some scores are infinite; the oracle's IEEE arithmetic decides
INF_CASES = {
    "example": ([0.0, -_INF, 1.0], [0, -1, 0]),
    "neg at +inf": ([0.0, _INF, 0.5, -3.0], [0, -1, 0, 0]),
    "pos at -inf": ([-_INF, 0.0, 2.0, -1.0], [0, -1, 0, 0]),
    "pos and neg at -inf": ([-_INF, -_INF, 1.0, -5.0], [0, -1, 0, 0]),
    "neg at -inf below all": ([0.0, -_INF, -_INF, 0.5], [0, 3, -1, 1]),
    "pos at +inf": ([_INF, 0.0, 1.0, -_INF], [0, -1, 0, 0]),
    "pos and neg at +inf": ([_INF, _INF, 0.0, 2.0], [0, 3, -1, 0]),
    "pos at +inf, class 0 neg": ([0.5, _INF, 0.0, 1.0], [1, 2, -1, 0]),
    "mixed": ([-_INF, 0.5, _INF, 0.0, -_INF, 1.0], [0, 1, -1, 0, 0, 0]),
    "dup pos at -inf": ([-_INF, 0.5, 1.0, -2.0], [0, 0, 1, -1]),
    "two -inf positives": ([-_INF, -_INF, 3.0, 0.0, _INF], [1, 0, 3, -1]),
    "nan and inf": ([_INF, np.nan, 0.0, 1.0], [2, -1, 0, 0]),
    "all finite": ([0.0, 0.5, 1.0, -1.0], [2, -1, 0, 0]),
    "only positive at +inf": ([0.0, 0.5, _INF, 0.2], [2, -1, -1, -1]),
}


def _inf_problem(c):
    """INF_CASES padded to (N, C) (padding: finite scores far below every threshold), plus two
    rows of 270 positives (two tiles) with infinite scores among positives and negatives, and one
    whose positive at +inf sits in the second, partly padded tile."""
    xs, ts = [], []
    for x, t in INF_CASES.values():
        xs.append(list(x) + [-100.0] * (c - len(x)))
        ts.append(list(t) + [-1] * (c - len(t)))
    names = list(INF_CASES)
    rng = np.random.default_rng(5)
    for variant in range(3):
        x = rng.integers(-8, 9, size=c) / 4
        t = rng.permutation(c)
        t[270:] = -1
        if variant < 2:
            x[t[[3, 200]]] = -_INF  # positives at -inf in both tiles
            neg = np.setdiff1d(np.arange(c), t[:270])
            x[neg[:2]] = [_INF, -_INF] if variant == 0 else [-_INF, 0.25]
        if variant == 1:
            x[t[150]] = _INF  # a positive at +inf
        if variant == 2:
            x[t[260]] = _INF  # a positive at +inf in the second tile, beside its padding
        xs.append(list(x))
        ts.append(list(t))
        names.append(f"two tiles {variant}")
    return np.array(xs), np.array(ts), names


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_emulated_infinite_scores_follow_the_definition(emulator, dtype, p, weighted):
    """±inf scores: each pair counts iff x_j > x_k − margin, with W·max(0, ·)^p in IEEE
    arithmetic (an infinite hinge is +inf, a class no threshold is below adds nothing): the
    literal oracle's values, loss and gradient, without NaN from inf − inf or 0·inf."""
    x, t, names = _inf_problem(300)
    weight = np.linspace(0.5, 2.0, x.shape[1]) if weighted else None
    loss, grad, values = cuda_emu.run(emulator, x, t, dtype=dtype, p=p, weight=weight)
    ref_loss, ref_grad = _oracle_raw(values, t, p=p, weight=weight)
    for i, name in enumerate(names):
        assert_close(loss[i], ref_loss[i], rtol=1e-6, atol=1e-6, what=f"{name}: loss")
        assert_close(grad[i], ref_grad[i], rtol=1e-6, atol=1e-6, what=f"{name}: grad")


def test_emulated_float64_positive_at_plus_inf(emulator):
    """A positive scoring +inf violates nothing: x = [0, .5, inf, .2], t = [2, -1, ...] has loss
    0 and a zero gradient in float64; also with that positive repeated into a second tile (a
    tile of 256 slots and one of 14, the rest padding)."""
    c = 4
    x = np.array([[0.0, 0.5, _INF, 0.2]] * 2)
    t = np.full((2, 270), -1)
    t[0, 0] = 2
    t[1, :] = 2
    for p in (1, 2):
        loss, grad, _ = cuda_emu.run(emulator, x, t, dtype="float64", p=p)
        assert (loss == 0.0).all() and (grad == 0.0).all() and grad.shape == (2, c), (loss, grad)


# (scores, targets, margin) at an exact tie of the float64 definition: margin − x_k + x_j ≤ 0
# in float64, > 0 with the margin rounded to float32 (0.1 → 0.10000000149)
MARGIN_TIES = {
    "float64": ([[0.1, 0.0, -1.0]], [[0, -1, -1]], 0.1),
    # float32 scores: x_k − x_j = fp32(0.1) − 1e-9 lies strictly between 0.1 and fp32(0.1)
    "float32": ([[-1e-9, -0.1, -1.0]], [[0, -1, -1]], 0.1),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_emulated_margin_ties_follow_the_float64_definition(emulator, dtype):
    """The kernel takes ``double margin`` and compares x_j > x_k − margin with it in double
    (float32 thresholds rounded toward −inf, which is exact for float32 scores), as the float64
    oracle does: at a tie the pair does not count, loss and gradient exactly 0."""
    import oracle

    x, t, margin = MARGIN_TIES[dtype]
    x, t = np.array(x, dtype=dtype), np.array(t)
    ref_loss, ref_grad = oracle.multilabel_margin_dense(x.astype(np.float64), t, margin=margin)
    assert ref_loss[0] == 0.0 and (ref_grad == 0.0).all()
    for p in (1, 2):
        loss, grad, _ = cuda_emu.run(emulator, x, t, dtype=dtype, p=p, margin=margin)
        assert loss[0] == 0.0 and (grad == 0.0).all(), (dtype, p, loss, grad)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("scaled", [False, True])
def test_emulated_half_gradient_is_rounded_once(emulator, dtype, p, scaled):
    """Rows with more positives than a tile (K = 300 > 256) sum the tiles' gradient
    contributions in float32 (the launcher's float32 scratch) and round once to the half
    dtype: the gradient equals the float64 oracle rounded once to nearest even. The inputs make
    every float32 partial sum exact (scores in quarters, weights in 256ths, scales powers of
    two), so any difference is a second rounding; adding each tile to the half gradient in
    place missed this in most rows."""
    import oracle

    rng = np.random.default_rng(41 + p)
    n, c, k = 3, 320, 300
    x = rng.integers(-8, 9, size=(n, c)) / 4
    t = np.stack([rng.permutation(c)[:k] for _ in range(n)])
    t[1, 100] = -1  # one tile: the gradient is written directly
    t[2, 5] = t[2, 4]  # a duplicate
    weight = rng.integers(128, 512, size=c) / 256
    scale = np.array([0.25, 2.0, 0.5]) if scaled else None
    loss, grad, values = cuda_emu.run(emulator, x, t, dtype=dtype, p=p, weight=weight, scale=scale)
    ref_loss, ref_grad = oracle.multilabel_margin_dense(values, t, p=p, weight=weight)
    if scaled:
        ref_grad = ref_grad * scale[:, None]
    assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6, what="loss")
    _, expected = cuda_emu.to_storage(ref_grad, dtype)  # rounded once, to nearest even
    assert np.array_equal(grad, expected), (
        f"{dtype} p={p}: {(grad != expected).sum()} of {grad.size} gradient values differ "
        f"from the once-rounded oracle, e.g. {grad[grad != expected][:4]} vs "
        f"{expected[grad != expected][:4]}"
    )


def test_emulated_half_gradient_scale_is_applied_before_rounding(emulator):
    """Raw float16 gradients (no scale) are what the dtype can hold: a positive with more than
    65504 negatives above it gets -inf, as documented. The scale (the loss layer's 1/C or
    1/(N·C), autograd's grad_output) is applied in float32 before rounding: finite, one
    rounding off the oracle."""
    import oracle

    c = 66000  # more classes than float16's largest finite value
    x = np.zeros((2, c))
    x[0, 1], x[1, 0] = -2.0, 0.5
    t = np.array([[0, 1, -1], [0, -1, 0]])
    _, ref_grad = oracle.multilabel_margin_dense(x, t)
    _, raw, _ = cuda_emu.run(emulator, x, t, dtype="float16")
    assert np.isneginf(raw[0, :2]).all() and np.isneginf(raw[1, 0])
    assert np.isfinite(np.delete(raw, [0, 1], axis=1)).all()
    for factor in (1.0 / c, 1.0 / (2 * c)):
        _, g, _ = cuda_emu.run(emulator, x, t, dtype="float16", scale=[factor, factor])
        assert np.isfinite(g).all()
        # one rounding: half an ulp, relative 2^-11 (normal) or 2^-25 absolute (subnormal)
        assert_close(g, ref_grad * factor, rtol=2**-11, atol=2**-25, what="scaled gradient")


@pytest.fixture(scope="module")
def tsan_emulator(tmp_path_factory):
    exe = cuda_emu.build(tmp_path_factory.mktemp("emu_tsan"), sanitize="thread")
    if exe is None:
        pytest.skip("no C++20 compiler with ThreadSanitizer for the CUDA emulator")
    return exe


@pytest.mark.parametrize(
    ("dtype", "p", "want_grad"),
    [
        ("float32", 1, False),
        ("float64", 2, False),
        ("float32", 2, True),
        ("float64", 1, True),
        ("float16", 2, True),  # the float32 gradient scratch of several tiles
    ],
)
def test_emulated_kernel_has_no_data_race(tsan_emulator, dtype, p, want_grad):
    """The emulator under ThreadSanitizer: each CUDA thread is a std::thread and __syncthreads
    a std::barrier, so two accesses of one shared (or global) location by different threads,
    one of them a write, not ordered by a barrier are reported, whether or not they collided
    in this run. Two tiles (270 positives) in every path, loss-only included: the tiles reuse
    the shared arrays, and the barrier after the class loop orders one tile's reads before the
    next tile's writes (without it, TSan reports the loss-only path)."""
    rng = np.random.default_rng(8)
    x = rng.integers(-20, 21, size=(2, 300)) / 4
    t = rng.integers(0, 300, size=(2, 270))
    t[1, 100] = -1
    kw = {"weight": rng.uniform(0.5, 2.0, 300), "scale": [0.5, 2.0] if want_grad else None}
    env = {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66 report_signal_unsafe=0"}
    try:
        cuda_emu.run(tsan_emulator, x, t, dtype=dtype, p=p, want_grad=want_grad, env=env, **kw)
    except cuda_emu.EmulatorError as err:
        pytest.fail(f"ThreadSanitizer: {err}")


# ---------------------------------------------------------------------------------------------
# the split path (setup, judge on an (N, S) grid, finish), emulated
# ---------------------------------------------------------------------------------------------
def _split_problem(n, c, k, seed, *, t_zero_row=True):
    """Scores in quarters (every float32 partial sum exact), targets with duplicates, values
    after the terminator, a T = 0 row and a row of K positives."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-12, 13, size=(n, c)) / 4
    t = rng.integers(-1, c, size=(n, k))
    t[0, : min(k, 4)] = [c - 1, 0, c - 1, -1][: min(k, 4)]  # duplicates, terminator, after it
    if t_zero_row and n > 1:
        t[1, 0] = -1  # T = 0: no positives, loss 0, gradient 0
    if n > 2:
        t[2] = rng.permutation(c)[:k] if k <= c else rng.integers(0, c, size=k)  # T = K
    return x, t


# (N, C, K, S): S = 2, 3; more slices than the row has chunks (and than it has classes per
# slice: trailing slices empty); rows not 16-byte aligned (C odd: a scalar head and tail)
SPLIT_SHAPES = [(3, 600, 40, 2), (3, 45, 7, 5), (4, 130, 20, 9), (3, 1037, 256, 3)]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
def test_emulated_split_matches_the_reference(emulator, dtype, p):
    """Every slice count gives the reference's values and gradients (weight, grad_scale as
    a vector and a margin on every other shape; K != C, T = 0 rows, duplicates, values after
    the terminator), and the one-block
    kernel's: gradients bitwise (quarters: the per-bin sums are exact whatever their order),
    losses to rounding (the sums' order differs)."""
    d = ["float16", "bfloat16", "float32", "float64"].index(dtype)
    for i in (d, (d + 1) % 4):  # each shape in two dtypes (the emulator's time is the limit)
        n, c, k, s = SPLIT_SHAPES[i]
        x, t = _split_problem(n, c, k, seed=10 * i + p)
        rng = np.random.default_rng(i)
        w = rng.integers(64, 512, size=c) / 256
        scale = rng.integers(-8, 9, size=n) / 4
        kw = {"weight": w, "scale": scale, "margin": 0.5} if i % 2 else {}
        loss, grad = _compare(emulator, x, t, dtype=dtype, p=p, slices=s, **kw)
        one, one_g, _ = cuda_emu.run(emulator, x, t, dtype=dtype, p=p, **kw)
        assert np.array_equal(grad, one_g), (n, c, k, s)  # the same sums, exact
        assert_close(loss, one, rtol=1e-6, atol=0, what="split vs one-block loss")


def test_emulated_split_strided_loss_only_and_int32(emulator):
    """Column-major scores (no vector loads: scalar throughout), the loss-only path, int32
    targets, float64 and a float32 problem with inexact sums (rounding differences only),
    K = 0."""
    x, t = _split_problem(3, 300, 30, seed=4)
    for p in (1, 2):
        loss, _ = _compare(emulator, x, t, dtype="float64", p=p, slices=3, transposed=True,
                              target_dtype="int32")  # fmt: skip
        only, none, _ = cuda_emu.run(emulator, x, t, dtype="float64", p=p, slices=3,
                                     want_grad=False)  # fmt: skip
        assert none is None and np.array_equal(only, loss)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 700)) * 3
    t = rng.integers(-1, 700, size=(2, 50))
    for p in (1, 2):
        _compare(emulator, x, t, dtype="float32", p=p, slices=4, weight=rng.uniform(0.5, 2, 700))
    # K = 0: no target columns, the split path all the same (it takes every K <= TILE)
    loss, grad, _ = cuda_emu.run(emulator, x, np.zeros((2, 0), dtype=np.int64), slices=2)
    assert (loss == 0).all() and (grad == 0).all()


@pytest.mark.parametrize("target_dtype", ["int32", "int64"])
def test_emulated_split_invalid_targets_give_nan_rows(emulator, target_dtype):
    """Invalid targets in the split path: the row's loss and every slice of its gradient NaN
    (whatever the scale), the other rows exact."""
    c, k = 50, 40
    t, bad = _invalid_target_rows(c, k, wide=target_dtype == "int64")
    n = t.shape[0]
    rng = np.random.default_rng(13)
    x = rng.integers(-6, 7, size=(n, c)) / 2
    weight = rng.uniform(0.5, 2.0, c)
    scale = rng.uniform(-2.0, 2.0, n)
    scale[1] = 0.0
    for p in (1,) if target_dtype == "int32" else (2,):
        kw = {"dtype": "float64", "target_dtype": target_dtype, "p": p, "weight": weight,
              "slices": 3}  # fmt: skip
        loss, grad, _ = cuda_emu.run(emulator, x, t, scale=scale, **kw)
        only, _, _ = cuda_emu.run(emulator, x, t, want_grad=False, **kw)
        assert np.isnan(loss[bad]).all() and np.isnan(only[bad]).all()
        assert np.isnan(grad[bad]).all()
        ref_loss, ref_grad = _oracle_raw(x[~bad], t[~bad], p=p, weight=weight)
        assert_close(loss[~bad], ref_loss, rtol=1e-12, atol=1e-12, what="valid rows' loss")
        assert_close(only[~bad], ref_loss, rtol=1e-12, atol=1e-12, what="loss only")
        assert_close(grad[~bad], ref_grad * scale[~bad, None], rtol=1e-12, atol=1e-12,
                     what="valid rows' grad")  # fmt: skip


@pytest.mark.parametrize(("dtype", "p", "weighted"), [("float32", 1, False), ("float64", 2, True)])
def test_emulated_split_infinite_and_nan_scores(emulator, dtype, p, weighted):
    """The ±inf cases of the one-block kernel, each row cut into 3 slices (the infinite and
    NaN scores in different slices from the positives), and the NaN rule across slices: a NaN
    in one slice and the negatives in others make the whole row NaN."""
    c = 40
    xs, ts = [], []
    for i, (x, t) in enumerate(INF_CASES.values()):
        x, t = list(x), list(t)
        pad = [-100.0] * (c - len(x))
        # move the row's scores to the last slice for odd rows, so slices 0-1 hold padding
        xs.append(x + pad if i % 2 == 0 else pad + x)
        shift = 0 if i % 2 == 0 else c - len(x)
        ts.append([v + shift if v >= 0 else v for v in t] + [-1] * (c - len(t)))
    nan_row = [np.nan] + [0.5] * (c - 2) + [1.0]  # NaN in slice 0, the positive in slice 2
    xs.append(nan_row)
    ts.append([c - 1] + [-1] * (c - 1))
    x, t = np.array(xs), np.array(ts)
    weight = np.linspace(0.5, 2.0, c) if weighted else None
    loss, grad, values = cuda_emu.run(emulator, x, t, dtype=dtype, p=p, weight=weight, slices=3)
    ref_loss, ref_grad = _oracle_raw(values, t, p=p, weight=weight)
    for i, name in enumerate(INF_CASES):
        assert_close(loss[i], ref_loss[i], rtol=1e-6, atol=1e-6, what=f"{name}: loss")
        assert_close(grad[i], ref_grad[i], rtol=1e-6, atol=1e-6, what=f"{name}: grad")
    assert np.isnan(loss[-1]) and np.isnan(grad[-1]).all() and np.isnan(ref_loss[-1])


def test_emulated_split_margin_ties_and_half_rounding(emulator):
    """Ties at the margin in float64 (the double margin), and half gradients rounded once
    (one tile: each value written once from float32, the positives' too)."""
    import oracle

    x, t, margin = MARGIN_TIES["float64"]
    for p in (1, 2):
        loss, grad, _ = cuda_emu.run(emulator, np.array(x), np.array(t), dtype="float64", p=p,
                                     margin=margin, slices=2)  # fmt: skip
        assert loss[0] == 0.0 and (grad == 0.0).all()
    rng = np.random.default_rng(43)
    n, c, k = 3, 320, 200
    x = rng.integers(-8, 9, size=(n, c)) / 4
    t = np.stack([rng.permutation(c)[:k] for _ in range(n)])
    t[2, 5] = t[2, 4]
    weight = rng.integers(128, 512, size=c) / 256
    scale = np.array([0.25, 2.0, 0.5])
    for dtype in ("float16", "bfloat16"):
        for p in (1, 2):
            _, grad, values = cuda_emu.run(emulator, x, t, dtype=dtype, p=p, weight=weight,
                                           scale=scale, slices=3)  # fmt: skip
            _, ref_grad = oracle.multilabel_margin_dense(values, t, p=p, weight=weight)
            _, expected = cuda_emu.to_storage(ref_grad * scale[:, None], dtype)
            assert np.array_equal(grad, expected), (dtype, p, (grad != expected).sum())


def test_emulated_split_is_bitwise_repeatable(emulator):
    """Inexact float32 sums (normal scores): two runs agree bit for bit; different slice
    counts agree to rounding."""
    rng = np.random.default_rng(17)
    x = rng.normal(size=(2, 900))
    t = rng.integers(-1, 900, size=(2, 64))
    t[:, 0] = [3, 5]
    w = rng.uniform(0.5, 2.0, 900)
    a = cuda_emu.run(emulator, x, t, p=2, weight=w, slices=3)
    b = cuda_emu.run(emulator, x, t, p=2, weight=w, slices=3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = cuda_emu.run(emulator, x, t, p=2, weight=w, slices=5)
    assert_close(c[0], a[0], rtol=1e-5, atol=1e-5, what="S=5 vs S=3 loss")
    assert_close(c[1], a[1], rtol=1e-5, atol=1e-5, what="S=5 vs S=3 grad")


def test_split_heuristic(monkeypatch):
    """S so that N·S reaches BLOCKS_PER_SM blocks per SM, at most C / MIN_SLICE slices; S = 1
    when N fills the GPU or the row is too short to cut; the one-block kernel (0) for K > TILE."""
    assert cb.slices(64, 10**6, 32, 132) == -(-cb.BLOCKS_PER_SM * 132 // 64)
    assert cb.slices(4096, 4096, 64, 132) == 1  # N fills the GPU
    assert cb.slices(64, 10**6, cb.TILE + 1, 132) == 0  # more positive slots than a tile
    assert cb.slices(64, 10**6, cb.TILE, 132) > 1
    assert cb.slices(8, cb.MIN_SLICE, 8, 132) == 1  # one slice's worth of classes
    assert cb.slices(8, 3 * cb.MIN_SLICE, 8, 132) == 3
    assert cb.slices(1, 10**9, 8, 10**4) == cb.MAX_SLICES
    monkeypatch.setattr(cb, "MIN_SLICE", 16)
    assert cb.slices(2, 100, 5, 2) == 4  # what a test sets to cut small problems
    assert cb.split_entry_points("float32", "int64") == (
        "xm_multilabel_hinge_f32_i64_setup", "xm_multilabel_hinge_f32_judge",
        "xm_multilabel_hinge_f32_finish",
    )  # fmt: skip


def _source_defines() -> dict[str, int]:
    """The kernel's integer #defines, evaluated (XM_TILE, XM_TAB_A, ...)."""
    raw = dict(re.findall(r"^#define (XM_\w+) ([^/\n]+)", cb.source(), flags=re.M))
    out: dict[str, int] = {}

    def value(name):
        if name not in out:
            expr = re.sub(r"XM_\w+", lambda m: str(value(m.group(0))), raw[name].strip())
            out[name] = int(eval(expr, {"__builtins__": {}}))  # integer arithmetic only
        return out[name]

    for name in ("XM_TILE", "XM_THREADS", "XM_TAB_A", "XM_TAB_I", "XM_PART"):
        value(name)
    return out


def test_split_scratch_layout_matches_the_source():
    """The launcher's scratch sizes are the kernel's (XM_TAB_A, XM_TAB_I, XM_PART)."""
    d = _source_defines()
    assert (d["XM_TILE"], d["XM_THREADS"]) == (cb.TILE, cb.THREADS) == (cuda_emu.TILE, 256)
    assert (d["XM_TAB_A"], d["XM_TAB_I"], d["XM_PART"]) == (cb.TAB_A, cb.TAB_I, cb.PART)


@pytest.mark.parametrize(
    ("dtype", "p", "want_grad"),
    [("float32", 2, True), ("float16", 1, False)],
)
def test_emulated_split_kernels_have_no_data_race(tsan_emulator, dtype, p, want_grad):
    """The split path under ThreadSanitizer: setup, judge (3 slices: head, vector body and tail
    of misaligned rows; the per-warp compaction buffers and bins of p = 2), finish; a valid
    row, an invalid one and a NaN one."""
    rng = np.random.default_rng(9)
    c = 150
    x = rng.integers(-20, 21, size=(3, c)) / 4
    t = rng.integers(0, c, size=(3, 40))
    t[1, 7] = c  # invalid
    x[2, 70] = np.nan
    kw = {"weight": rng.uniform(0.5, 2.0, c), "scale": [0.5, 2.0, 1.0] if want_grad else None}
    env = {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66 report_signal_unsafe=0"}
    try:
        cuda_emu.run(tsan_emulator, x, t, dtype=dtype, p=p, want_grad=want_grad, env=env,
                     slices=3, **kw)  # fmt: skip
    except cuda_emu.EmulatorError as err:
        pytest.fail(f"ThreadSanitizer: {err}")


# ---------------------------------------------------------------------------------------------
# host code without a GPU
# ---------------------------------------------------------------------------------------------
def test_source_is_found_and_points_at_its_file():
    code = cb.source()
    first = code.splitlines()[0]
    assert first == f'#line 1 "{cb.source_path().as_posix()}"'
    assert "multilabel_hinge_impl" in code and cb.source_path().is_file()


def test_module_is_compiled_once_per_device_and_source_read_once(monkeypatch):
    """No file I/O or compile on the hot path: the source is read once per process and the
    module compiled once per (device, architecture, source)."""
    reads, hashes, compiles = [], [], []
    monkeypatch.setattr(cb, "_MODULES", {})
    cb.source.cache_clear()
    cb._digest.cache_clear()
    real_read, real_sha = Path.read_text, cb.hashlib.sha256
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or real_read(self, *a, **k))  # fmt: skip
    monkeypatch.setattr(cb.hashlib, "sha256", lambda *a: hashes.append(1) or real_sha(*a))

    class FakeCupy:
        current = 0

        class cuda:
            @staticmethod
            def Device():
                return types.SimpleNamespace(id=FakeCupy.current,
                                             compute_capability=("90", "80")[FakeCupy.current])  # fmt: skip

        @staticmethod
        def RawModule(code, options):
            compiles.append(code)
            return object()

    try:
        first = cb._module(FakeCupy)
        assert cb._module(FakeCupy) is first and cb._module(FakeCupy) is first
        FakeCupy.current = 1
        second = cb._module(FakeCupy)
        assert second is not first and cb._module(FakeCupy) is second
        assert reads == [cb.source_path()] and len(hashes) == 1 and len(compiles) == 2
        assert compiles[0].startswith("#line 1 ") and "multilabel_hinge_impl" in compiles[0]
    finally:
        cb.source.cache_clear()
        cb._digest.cache_clear()


def test_cache_key():
    a = cb.cache_key(0, "90", "code")
    assert a == cb.cache_key(0, "90", "code")
    assert a != cb.cache_key(1, "90", "code")
    assert a != cb.cache_key(0, "80", "code")
    assert a != cb.cache_key(0, "90", "code2")


def test_entry_points():
    assert cb.entry_point("float32", "int64") == "xm_multilabel_hinge_f32_i64"
    assert cb.entry_point("torch.bfloat16", "torch.int32") == "xm_multilabel_hinge_bf16_i32"
    for score in ("float16", "bfloat16", "float32", "float64"):
        for target in ("int32", "int64"):
            assert cb.entry_point(score, target) in cb.source()
    with pytest.raises(ValueError, match="scores must be float16, bfloat16, float32 or float64"):
        cb.entry_point("int8", "int64")
    with pytest.raises(ValueError, match="targets must be int32 or int64"):
        cb.entry_point("float32", "uint8")


class _FakeCupy(types.ModuleType):
    """Just enough of CuPy for the launcher, recording which device was current when each
    array was allocated, the module compiled and the kernel launched."""

    def __init__(self):
        super().__init__("cupy")
        self.current = 0
        self.events = []  # (what, current device)
        self.launches = []  # (kernel, grid, block, number of arguments)
        fake = self

        class Device:
            def __init__(self, index=None):
                self.id = fake.current if index is None else index
                self.compute_capability = "90"
                self.attributes = {"MultiProcessorCount": 2}
                self._previous = []

            def __enter__(self):
                self._previous.append(fake.current)
                fake.current = self.id
                return self

            def __exit__(self, *exc):
                fake.current = self._previous.pop()

        class Stream:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

        class Module:
            def get_function(self, name):
                fake.events.append(("get_function", fake.current))

                def launch(grid, block, args):
                    fake.events.append(("launch", fake.current))
                    fake.launches.append((name, grid, block, len(args)))

                return launch

        def raw_module(code, options):
            fake.events.append(("compile", fake.current))
            return Module()

        self.cuda = types.SimpleNamespace(Device=Device, get_current_stream=Stream)
        self.RawModule = raw_module
        for name in ("float16", "float32", "float64", "int32", "int64"):
            setattr(self, name, np.dtype(name))

    def array(self, shape, dtype, device=None):
        return _FakeArray(shape, dtype, self.current if device is None else device)

    def empty(self, shape, dtype):
        self.events.append(("empty", self.current))
        return self.array(shape, dtype)

    def asarray(self, a, dtype=None):
        self.events.append(("asarray", self.current))
        if isinstance(a, _FakeArray):
            return self.array(a.shape, dtype or a.dtype)
        return self.array(np.shape(a), dtype or np.asarray(a).dtype)

    def broadcast_to(self, a, shape):
        return self.array(shape, a.dtype, a.device.id)

    def ascontiguousarray(self, a):
        self.events.append(("ascontiguousarray", self.current))
        return self.array(a.shape, a.dtype)


class _FakeArray:
    """A CuPy-like array on a device (no data)."""

    _next = 0x10000

    def __init__(self, shape, dtype, device):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        strides, step = [], self.itemsize
        for extent in reversed(self.shape):
            strides.insert(0, step)
            step *= extent
        self.strides = tuple(strides)
        self.device = types.SimpleNamespace(id=device)
        self.data = types.SimpleNamespace(ptr=_FakeArray._next)
        _FakeArray._next += 0x10000


@pytest.mark.parametrize("grad_scale", [None, 0.5, "array"])
def test_arrays_are_allocated_and_launched_on_the_scores_device(monkeypatch, grad_scale):
    """Arrays on device 1 while device 0 is current: outputs and scratch are allocated, the
    module compiled and the kernel launched with device 1 current (CuPy allocates on the
    current device; the launcher used to allocate before entering the device), and device 0
    is current again afterwards. Half scores with K > 256 also get the float32 gradient
    scratch; ``grad_scale`` may be a number (value_and_grad's folded 1/C) or an array."""
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cb, "_MODULES", {})
    x = _FakeArray((3, 500), "float16", device=1)
    t = _FakeArray((3, 300), "int64", device=1)
    scale = _FakeArray((3,), "float32", device=1) if grad_scale == "array" else grad_scale
    loss, grad = cb.hinge(x, t, margin=1.0, p=1, weight=None, want_grad=True, grad_scale=scale)
    assert fake.current == 0
    assert loss.device.id == grad.device.id == 1 and grad.shape == (3, 500)
    kinds = [what for what, _ in fake.events]
    assert kinds.count("empty") == 4  # loss, grad, bitmap, float32 gradient scratch
    assert kinds.count("compile") == 1 and kinds[-2:] == ["get_function", "launch"]
    assert all(device == 1 for _, device in fake.events), fake.events
    assert fake.launches == [("xm_multilabel_hinge_f16_i64", (3,), (256,), 20)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_path_is_allocated_and_launched_on_the_scores_device(monkeypatch, dtype):
    """Few rows on a device of 2 SMs (the fake's MultiProcessorCount, read from the scores'
    device): setup (N), judge (N, S), finish (N), their scratch allocated on device 1."""
    fake = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cb, "_MODULES", {})
    cb._device_sm_count.cache_clear()
    try:
        x = _FakeArray((3, 50000), dtype, device=1)
        t = _FakeArray((3, 40), "int32", device=1)
        loss, grad = cb.hinge(x, t, margin=1.0, p=2, weight=None, want_grad=True, grad_scale=0.5)
    finally:
        cb._device_sm_count.cache_clear()
    s = cb.slices(3, 50000, 40, 2)
    assert s == 3 and fake.current == 0 and loss.device.id == grad.device.id == 1
    assert [what for what, _ in fake.events].count("empty") == 6  # loss, grad, 2 tables, 2 partials
    assert all(device == 1 for _, device in fake.events), fake.events
    code = cb._SCORE_CODES[dtype]
    assert fake.launches == [
        (f"xm_multilabel_hinge_{code}_i32_setup", (3,), (256,), 12),
        (f"xm_multilabel_hinge_{code}_judge", (3, s), (256,), 15),
        (f"xm_multilabel_hinge_{code}_finish", (3,), (256,), 13),
    ]


def test_torch_tensors_take_a_number_as_scale():
    """value_and_grad folds the reduction's factor in as a Python float: the torch side of the
    launcher turns it into an (N,) tensor on the scores' device, as it does a tensor."""
    torch = pytest.importorskip("torch")
    frame = cb._Frame(torch.zeros(3, 4))
    out = frame.as_acc(0.25, "float32", 3)
    assert out.dtype == torch.float32 and out.shape == (3,) and bool((out == 0.25).all())
    out = frame.as_acc(torch.tensor([2.0], dtype=torch.float64), "float32", 3)
    assert out.is_contiguous() and out.tolist() == [2.0, 2.0, 2.0]


@pytest.mark.skipif(GPU, reason="checks the no-GPU answers")
def test_without_a_device_cupy_is_unusable_and_says_why():
    status = {s.name: s for s in xmargin.backends.explain()}["cupy"]
    assert not status.usable
    assert "not installed" in status.reason or "no CUDA device" in status.reason
    x, t = np.zeros((2, 3)), np.array([[0, -1, 1], [1, 2, 0]])
    with pytest.raises(ValueError, match=r"backend 'cupy' \(from backend=\) cannot run here"):
        xmargin.multilabel_margin_loss(x, t, backend="cupy")


# ---------------------------------------------------------------------------------------------
# on a GPU
# ---------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_gpu_cupy_arrays(dtype, p, weighted):
    import cupy

    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 1000)).astype(dtype)
    t = rng.integers(-1, 1000, size=(17, 300))
    w = rng.uniform(0.5, 2, 1000) if weighted else None
    loss, grad = cb.hinge(cupy.asarray(x), cupy.asarray(t), margin=0.5, p=p,
                          weight=None if w is None else cupy.asarray(w), want_grad=True)  # fmt: skip
    ref_loss, ref_grad = reference.hinge_numpy(
        x.astype(np.float64), t, margin=0.5, p=p, weight=w, want_grad=True
    )
    tol = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-12}[dtype]
    assert_close(cupy.asnumpy(loss), ref_loss, rtol=tol, atol=tol, what="cupy loss")
    assert_close(
        cupy.asnumpy(grad).astype(np.float64), ref_grad, rtol=tol, atol=tol, what="cupy grad"
    )
    again = cb.hinge(cupy.asarray(x), cupy.asarray(t), margin=0.5, p=p,
                     weight=None if w is None else cupy.asarray(w), want_grad=True)  # fmt: skip
    assert bool((again[0] == loss).all()) and bool((again[1] == grad).all())  # deterministic


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no CUDA device")
def test_gpu_value_and_grad_on_cupy():
    import cupy

    x = cupy.asarray(np.random.default_rng(1).normal(size=(8, 50)))
    t = cupy.asarray(np.random.default_rng(2).integers(-1, 50, size=(8, 50)))
    loss, g = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(x, t)
    assert isinstance(g, cupy.ndarray)
    ref_loss, ref_g = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
        cupy.asnumpy(x), cupy.asnumpy(t)
    )
    assert_close(float(loss), ref_loss, rtol=1e-12, atol=1e-12, what="loss")
    assert_close(cupy.asnumpy(g), ref_g, rtol=1e-12, atol=1e-12, what="grad")


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_gpu_torch_tensors_with_autograd_on_a_side_stream(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(size=(9, 300)), device="cuda").to(getattr(torch, dtype))
    t = torch.tensor(rng.integers(-1, 300, size=(9, 300)), device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        leaf = x.clone().requires_grad_()
        out = xmargin.multilabel_margin_loss(leaf, t, backend="cupy", reduction="sum")
        out.backward()
    torch.cuda.synchronize()
    ref_leaf = x.double().cpu().requires_grad_()
    ref = xmargin.multilabel_margin_loss(ref_leaf, t.cpu(), backend="reference", reduction="sum")
    ref.backward()
    tol = 1e-5 if dtype == "float32" else 1.6e-2
    assert_close(
        out.detach().double().cpu(), ref.detach(), rtol=tol, atol=tol, what="torch+cupy loss"
    )
    assert_close(
        leaf.grad.double().cpu(), ref_leaf.grad, rtol=tol, atol=tol, what="torch+cupy grad"
    )


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
def test_gpu_split_path(monkeypatch, dtype, p):
    """The split path on the device (S > 1 by a large SM count), misaligned rows
    (C odd: scalar head and tail around the vector body), T = 0 and invalid rows: the
    reference's values and gradients, the one-block kernel's to rounding, bitwise repeatable."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(31 + p)
    n, c, k = 6, 20011, 64
    x = rng.normal(size=(n, c))
    t = rng.integers(-1, c, size=(n, k))
    t[1, 0] = -1  # T = 0
    t[2, 3] = c  # invalid: NaN row
    w = rng.uniform(0.5, 2.0, c)
    xt = torch.tensor(x, device="cuda").to(getattr(torch, dtype))
    tt, wt = torch.tensor(t, device="cuda"), torch.tensor(w, device="cuda")
    scale = torch.tensor(rng.uniform(0.5, 2.0, n) / c, device="cuda")  # as the loss layer
    kw = {"margin": 0.5, "p": p, "weight": wt, "want_grad": True, "grad_scale": scale}
    monkeypatch.setattr(cb, "SM_COUNT", 64)
    assert cb.slices(n, c, k, 64) > 1
    loss, grad = cb.hinge(xt, tt, **kw)
    again = cb.hinge(xt, tt, **kw)
    monkeypatch.setattr(cb, "slices", lambda *a: 0)  # the one-block kernel, for comparison
    one_loss, one_grad = cb.hinge(xt, tt, **kw)
    torch.cuda.synchronize()
    # bitwise, NaN rows included (torch.equal calls NaN unequal to itself: seen failing on an
    # H200 with identical values)
    assert bitwise_equal(loss, again[0]) and bitwise_equal(grad, again[1])
    ok = np.arange(n) != 2
    values = xt.double().cpu().numpy()[ok]
    ref_loss, ref_grad = reference.hinge_numpy(values, t[ok], margin=0.5, p=p, weight=w,
                                               want_grad=True)  # fmt: skip
    ref_grad = ref_grad * scale.cpu().numpy()[ok, None]
    tol = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-5, "float64": 1e-12}[dtype]
    gtol = tol * np.abs(ref_grad).max()
    for (a, g), what in (((loss, grad), "split"), ((one_loss, one_grad), "one-block")):
        a, g = a.double().cpu().numpy(), g.double().cpu().numpy()
        assert np.isnan(a[2]) and np.isnan(g[2]).all(), what
        assert_close(a[ok], ref_loss, rtol=tol, atol=tol, what=f"{what} loss")
        assert_close(g[ok], ref_grad, rtol=tol, atol=gtol, what=f"{what} grad")


def _two_devices() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() >= 2
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not GPU or not _two_devices(), reason="needs two CUDA devices")
def test_gpu_second_device():
    """CuPy arrays and torch tensors on device 1 while device 0 is current: outputs and scratch
    live on device 1, the kernel runs there, and device 0 stays current."""
    import cupy

    rng = np.random.default_rng(21)
    x = rng.normal(size=(5, 400)).astype(np.float16)
    t = rng.integers(-1, 400, size=(5, 300))
    ref_loss, ref_grad = reference.hinge_numpy(
        x.astype(np.float64), t, margin=1.0, p=1, weight=None, want_grad=True
    )
    with cupy.cuda.Device(0):
        with cupy.cuda.Device(1):
            xc, tc = cupy.asarray(x), cupy.asarray(t)
        loss, grad = cb.hinge(xc, tc, margin=1.0, p=1, weight=None, want_grad=True)
        assert cupy.cuda.Device().id == 0
        assert loss.device.id == grad.device.id == 1
        assert_close(cupy.asnumpy(loss), ref_loss, rtol=2e-3, atol=2e-3, what="device 1 loss")
        assert_close(cupy.asnumpy(grad).astype(np.float64), ref_grad, rtol=2e-3, atol=2e-3,
                     what="device 1 grad")  # fmt: skip
    torch = pytest.importorskip("torch")
    torch.cuda.set_device(0)
    xt = torch.tensor(x, device="cuda:1")
    tt = torch.tensor(t, device="cuda:1")
    loss, grad = cb.hinge(xt, tt, margin=1.0, p=1, weight=None, want_grad=True, grad_scale=0.5)
    torch.cuda.synchronize(1)
    assert torch.cuda.current_device() == 0 and loss.device == grad.device == xt.device
    assert_close(grad.double().cpu(), ref_grad * 0.5, rtol=2e-3, atol=2e-3, what="torch cuda:1")
