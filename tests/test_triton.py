"""The triton backend against the reference: on the CPU through Triton's interpreter
(TRITON_INTERPRET=1, set here when no CUDA device is present; that is how CI runs it) and, with
the ``gpu`` mark, on a CUDA device. Also: autograd through the torch.library op, opcheck,
torch.compile(fullgraph=True) with -1 targets, determinism, dispatch errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")  # conftest has set TRITON_INTERPRET=1 already when there is no GPU

CUDA = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

import xmargin  # noqa: E402
from xmargin.backends import reference  # noqa: E402
from xmargin.backends import triton as tb  # noqa: E402

from conftest import assert_close  # noqa: E402

DEVICES = [
    pytest.param(
        "cpu", marks=pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1")
    ),
    pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device")]
    ),
]
TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-5, "bfloat16": 1e-5}


@pytest.fixture
def small_blocks(monkeypatch):
    """Force several threshold tiles and class chunks on small problems."""
    monkeypatch.setattr(tb, "BLOCK_T_RANGE", (2, 4))
    monkeypatch.setattr(tb, "BLOCK_C_RANGE", (8, 16))


def _run_both(
    x, t, *, margin=1.0, p=1, weight=None, device="cpu", dtype="float32", tdtype=torch.int64
):
    """(triton loss, grad) and the reference's on the same (rounded) values."""
    xt = torch.tensor(x).to(getattr(torch, dtype)).to(device)
    tt = torch.tensor(t).to(tdtype).to(device)
    wt = None if weight is None else torch.tensor(weight).to(device)
    loss, grad = tb.hinge(xt, tt, margin=margin, p=p, weight=wt, want_grad=True)
    ref_loss, ref_grad = reference.hinge_numpy(
        xt.double().cpu().numpy(), t, margin=margin, p=p, weight=weight, want_grad=True
    )
    assert grad.dtype == xt.dtype and grad.shape == xt.shape
    return loss.double().cpu().numpy(), grad.double().cpu().numpy(), ref_loss, ref_grad


SHAPES = {
    "C=1": (3, 1, 1),
    "C=37,K=C": (4, 37, 37),
    "T=0": (2, 9, 0),
    "all-positive": (2, 6, 6),
    "K>C": (3, 5, 12),
    "wide": (2, 300, 20),
}


def _problem(shape, seed):
    n, c, k = SHAPES[shape]
    rng = np.random.default_rng(seed)
    x = rng.integers(-6, 7, size=(n, c)) / 2  # halves: exact ties at the margin
    t = rng.integers(-1, c, size=(n, k))
    if shape == "all-positive":
        t = np.stack([rng.permutation(c) for _ in range(n)])
    if n >= 2 and k >= 3:
        t[0, :3] = [c - 1, c - 1, -1]  # duplicate, then terminator, then values after it
    return x, t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("p", "margin", "weighted"), [(1, 1.0, False), (2, 0.5, True), (1, -0.5, True)]
)
def test_parity_shapes_and_options(device, shape, p, margin, weighted):
    x, t = _problem(shape, seed=len(shape) + p)
    weight = np.linspace(-1.0, 2.0, x.shape[1]) if weighted else None
    loss, grad, ref_loss, ref_grad = _run_both(
        x, t, margin=margin, p=p, weight=weight, device=device
    )
    assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5, what=f"triton loss {shape}")
    assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5, what=f"triton grad {shape}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("tdtype", [torch.int32, torch.int64])
def test_parity_dtypes(device, dtype, tdtype):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 40))
    t = rng.integers(-1, 40, size=(3, 12))
    loss, grad, ref_loss, ref_grad = _run_both(x, t, device=device, dtype=dtype, tdtype=tdtype, p=2)
    tol = TOL[dtype] if dtype in ("float32", "float64") else 1e-5
    # half inputs are compared with the reference on the same rounded values; the gradient is
    # rounded once to the half dtype at the end
    gtol = {"float16": 1e-3, "bfloat16": 8e-3}.get(dtype, tol)
    assert_close(loss, ref_loss, rtol=tol, atol=tol, what=f"{dtype} loss")
    assert_close(grad, ref_grad, rtol=gtol, atol=gtol, what=f"{dtype} grad")


@pytest.mark.parametrize("device", DEVICES)
def test_several_tiles_and_chunks(device, small_blocks):
    rng = np.random.default_rng(5)
    for _ in range(4):
        x = rng.integers(-6, 7, size=(3, 37)) / 2
        t = rng.integers(0, 37, size=(3, 20))  # up to 20 positives: 5+ tiles of 4
        t[1, 13] = -1
        x[2, 5] = np.nan
        for p in (1, 2):
            loss, grad, ref_loss, ref_grad = _run_both(
                x, t, p=p, device=device, dtype="float64", weight=rng.uniform(-1, 2, 37)
            )
            assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12, what=f"tiles loss p={p}")
            assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12, what=f"tiles grad p={p}")


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    rng = np.random.default_rng(9)
    base = torch.tensor(rng.normal(size=(20, 6)), dtype=torch.float32, device=device)
    x = base.T  # (6, 20) with strides (1, 6)
    t_full = torch.tensor(rng.integers(-1, 20, size=(6, 16)), device=device)
    t = t_full[:, ::2]  # column stride 2
    loss, grad = tb.hinge(x, t, margin=1.0, p=1, weight=None, want_grad=True)
    ref_loss, ref_grad = reference.hinge_numpy(
        x.cpu().double().numpy(), t.cpu().numpy(), margin=1.0, p=1, weight=None, want_grad=True
    )
    assert_close(loss.cpu(), ref_loss, rtol=1e-5, atol=1e-5, what="strided loss")
    assert_close(grad.cpu(), ref_grad, rtol=1e-5, atol=1e-5, what="strided grad")


@pytest.mark.parametrize("device", DEVICES)
def test_deterministic(device):
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(size=(4, 200)), dtype=torch.float32, device=device)
    t = torch.tensor(rng.integers(0, 200, size=(4, 40)), device=device)
    runs = [tb.hinge(x, t, margin=1.0, p=2, weight=None, want_grad=True) for _ in range(3)]
    for loss, grad in runs[1:]:
        assert torch.equal(loss, runs[0][0]) and torch.equal(grad, runs[0][1])


@pytest.mark.parametrize("device", DEVICES)
def test_loss_only_matches(device):
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(size=(3, 50)), device=device)
    t = torch.tensor(rng.integers(-1, 50, size=(3, 50)), device=device)
    with_grad, _ = tb.hinge(x, t, margin=1.0, p=1, weight=None, want_grad=True)
    loss, none = tb.hinge(x, t, margin=1.0, p=1, weight=None, want_grad=False)
    assert none is None and torch.equal(loss, with_grad)


@pytest.mark.parametrize("device", DEVICES)
def test_through_the_loss_with_autograd(device):
    rng = np.random.default_rng(6)
    x = torch.tensor(rng.normal(size=(3, 5)), device=device, requires_grad=True)
    t = torch.tensor([[0, 4, -1, 1, 1], [2, 2, 2, -1, 3], [-1, 0, 0, 0, 0]], device=device)

    def f(x):
        return xmargin.multilabel_margin_loss(x, t, backend="triton", reduction="sum", margin=0.7)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7)
    ref = torch.nn.functional.multilabel_margin_loss(x, t, reduction="none")
    ours = xmargin.multilabel_margin_loss(x, t, backend="triton", reduction="none")
    assert_close(ours.detach().cpu(), ref.detach().cpu(), rtol=1e-12, atol=1e-12, what="vs torch")


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x = torch.randn(3, 6, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.tensor([[0, 5, -1, 2, 2, 2], [4, 4, 1, 0, -1, 3], [-1, 0, 0, 0, 0, 0]], device=device)
    import xmargin.adapters.torch_compile  # noqa: F401 - registers the op (loaded lazily otherwise)

    op = torch.ops.xmargin.pairwise_hinge.default
    for want in (True, False):
        args = (x if want else x.detach(), t, 1.0, 1, None, want, "triton")
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph_with_terminators(device):
    x = torch.randn(4, 7, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.tensor(
        [
            [0, 3, -1, 2, 1, 1, 1],
            [6, 6, 1, -1, 0, 0, 0],
            [-1, 0, 0, 0, 0, 0, 0],
            [5, 4, 3, 2, 1, 0, 6],
        ],
        device=device,
    )
    compiled = torch.compile(
        lambda x, t: xmargin.multilabel_margin_loss(x, t, backend="triton"), fullgraph=True
    )
    out = compiled(x, t)
    (g,) = torch.autograd.grad(out, x)
    x2 = x.detach().clone().requires_grad_()
    ref = torch.nn.functional.multilabel_margin_loss(x2, t)  # eager PyTorch is right here
    (g_ref,) = torch.autograd.grad(ref, x2)
    assert_close(out.detach().cpu(), ref.detach().cpu(), rtol=1e-12, atol=1e-12, what="compiled")
    assert_close(g.cpu(), g_ref.cpu(), rtol=1e-12, atol=1e-12, what="compiled grad")


@pytest.mark.skipif(CUDA, reason="the CPU refusal needs a machine where tensors are on the CPU")
def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, t = torch.zeros(2, 3), torch.tensor([[0, -1, 1], [1, 2, 0]])
    with pytest.raises(ValueError, match=r"no CUDA device.*set TRITON_INTERPRET=1"):
        xmargin.multilabel_margin_loss(x, t, backend="triton")
    assert "triton" not in xmargin.backends.available(x)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "triton" in xmargin.backends.available(x)


def test_launch_heuristics():
    assert tb.launch_config(4096, 32768, 32768, False) == {
        "BLOCK_T": 256,
        "BLOCK_C": 1024,
        "num_warps": 8,
    }
    assert tb.launch_config(4096, 4096, 4, False) == {
        "BLOCK_T": 16,
        "BLOCK_C": 1024,
        "num_warps": 8,
    }
    assert tb.launch_config(8, 100, 64, True) == {"BLOCK_T": 64, "BLOCK_C": 128, "num_warps": 4}
    assert tb.launch_config(8, 100, 1000, True)["BLOCK_T"] == 64
    assert tb.launch_config(1, 10**6, 32, True)["BLOCK_C"] == 512


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
def test_gpu_large_c_and_cupy():
    rng = np.random.default_rng(0)
    c = 10**6
    x = torch.tensor(rng.normal(size=(2, c)), dtype=torch.float32, device="cuda")
    t = torch.tensor(rng.integers(0, c, size=(2, 32)), device="cuda")
    loss, grad = tb.hinge(x, t, margin=1.0, p=1, weight=None, want_grad=True)
    ref_loss, ref_grad = reference.hinge_numpy(
        x.cpu().numpy(), t.cpu().numpy(), margin=1.0, p=1, weight=None, want_grad=True
    )
    assert_close(loss.cpu(), ref_loss, rtol=1e-5, atol=1e-5, what="C=1e6 loss")
    assert_close(grad.cpu(), ref_grad, rtol=1e-5, atol=1e-6, what="C=1e6 grad")
    cupy = pytest.importorskip("cupy")
    xc, tc = cupy.asarray(x.cpu().numpy()), cupy.asarray(t.cpu().numpy())
    lc, gc = tb.hinge(xc, tc, margin=1.0, p=1, weight=None, want_grad=True)
    assert isinstance(lc, cupy.ndarray) and isinstance(gc, cupy.ndarray)
    assert_close(cupy.asnumpy(lc), ref_loss, rtol=1e-5, atol=1e-5, what="cupy via dlpack")


@pytest.mark.parametrize("device", DEVICES)
def test_grad_scale_inside_the_kernel(device):
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.normal(size=(4, 30)), device=device)
    t = torch.tensor(rng.integers(-1, 30, size=(4, 8)), device=device)
    scale = torch.tensor([2.0, -0.5, 0.0, 3.0], dtype=torch.float64, device=device)
    _, grad = tb.hinge(x, t, margin=1.0, p=2, weight=None, want_grad=True)
    _, scaled = tb.hinge(x, t, margin=1.0, p=2, weight=None, want_grad=True, grad_scale=scale)
    assert_close(scaled.cpu(), (grad * scale[:, None]).cpu(), rtol=1e-12, atol=1e-12, what="scaled")


@pytest.mark.parametrize("device", DEVICES)
def test_autograd_recomputes_in_backward(device, monkeypatch):
    """GPU backends: a loss-only forward, then one scaled gradient pass in backward."""
    calls = []
    real = tb.hinge

    def spy(x, t, **kw):
        calls.append((kw["want_grad"], kw.get("grad_scale") is not None))
        return real(x, t, **kw)

    monkeypatch.setattr(tb, "hinge", spy)
    x = torch.randn(3, 9, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.tensor([[0, 4, -1], [8, 8, 1], [-1, 0, 0]], device=device)
    loss = xmargin.multilabel_margin_loss(x, t, backend="triton")
    assert calls == [(False, False)]
    loss.backward()
    assert calls == [(False, False), (True, True)]
    x2 = x.detach().clone().requires_grad_()
    xmargin.multilabel_margin_loss(x2, t, backend="reference").backward()
    assert_close(x.grad.cpu(), x2.grad.cpu(), rtol=1e-12, atol=1e-12, what="recomputed grad")


@pytest.mark.slow
def test_kernel_compiles_for_sm80_and_sm90():
    """Ahead-of-time compilation for Ampere and Hopper (no GPU needed): every variant builds,
    without register spills."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).parent / "tools" / "compile_triton.py"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, str(tool), "80", "90"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("sm_")]
    assert len(lines) == 10 and all(": ok" in ln for ln in lines), result.stdout
    for ln in lines:
        if "LOCAL:" in ln:
            assert "LOCAL:0 " in ln and "STACK:0 " in ln, f"register spills: {ln}"


# ---------------------------------------------------------------------------------------------
# the kernel's own contract, checked against the independent oracle (tests/oracle.py)
# ---------------------------------------------------------------------------------------------
def _triton_np(x, t, *, device, p=1, margin=1.0, weight=None, want_grad=True, scale=None):
    """The triton kernel on NumPy inputs (x already in its dtype, t in its target dtype)."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    tt = torch.from_numpy(np.ascontiguousarray(t)).to(device)
    wt = None if weight is None else torch.from_numpy(np.asarray(weight)).to(device)
    st = None if scale is None else torch.from_numpy(np.asarray(scale, np.float64)).to(device)
    loss, grad = tb.hinge(xt, tt, margin=margin, p=p, weight=wt, want_grad=want_grad, grad_scale=st)
    return loss.double().cpu().numpy(), None if grad is None else grad.double().cpu().numpy()


def _oracle_raw(x, t, **kw):
    """The literal-loop oracle as raw sums (it returns values after the 1/C)."""
    import oracle

    c = np.asarray(x).shape[1]
    losses, grads = oracle.multilabel_margin(x, t, **kw)
    return np.array(losses) * c, np.array(grads, dtype=np.float64).reshape(-1, c) * c


def _invalid_target_rows(c, k, wide):
    """(N, K) targets, and which rows hold a value outside [-1, C) (also after the terminator,
    also past the first tile of K); valid rows sit between the invalid ones."""
    fill = [(i * 3) % c for i in range(k)]  # valid filler

    def row(*head, tail=()):
        r = list(head) + fill[len(head) : k - len(tail)] + list(tail)
        return r[:k]

    rows = [
        (row(0, 2, -1), False),
        (row(0, 2, -1, tail=(-2,)), True),  # -2 after the terminator, in the last column
        (row(-7, 1, 2), True),  # first entry
        (row(1, c, -1), True),  # C before the terminator
        (row(3, -1, 0, tail=(c + 5,)), True),  # C + 5 after the terminator, last column
        (row(c - 1, 1, 0, 2), False),  # K positives: three tiles
        (row(tail=(-1, c)), True),  # three tiles of positives, the terminator, then C
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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tdtype", ["int32", "int64"])
@pytest.mark.parametrize("p", [1, 2])
def test_invalid_targets_give_nan_rows(device, tdtype, p, small_blocks):
    """Any target outside [-1, C), anywhere in the row, makes that row's loss and gradient NaN
    (the gradient NaN whatever grad_scale is); the other rows are exact. int64 targets are
    compared as 64-bit values. Several tiles (BLOCK_T = 4 < K) and chunks."""
    c, k = 7, 11
    t, bad = _invalid_target_rows(c, k, wide=tdtype == "int64")
    t = t.astype(tdtype)
    n = t.shape[0]
    rng = np.random.default_rng(11)
    x = rng.integers(-6, 7, size=(n, c)) / 2
    weight = rng.uniform(0.5, 2.0, c)
    scale = rng.uniform(-2.0, 2.0, n)
    scale[1] = 0.0  # NaN also times 0
    loss, grad = _triton_np(x, t, device=device, p=p, weight=weight, scale=scale)
    only, none = _triton_np(x, t, device=device, p=p, weight=weight, want_grad=False)
    assert none is None
    assert np.isnan(loss[bad]).all() and np.isnan(only[bad]).all()
    assert np.isnan(grad[bad]).all()
    ref_loss, ref_grad = _oracle_raw(x[~bad], t[~bad], p=p, weight=weight)
    assert_close(loss[~bad], ref_loss, rtol=1e-12, atol=1e-12, what="valid rows' loss")
    assert_close(only[~bad], ref_loss, rtol=1e-12, atol=1e-12, what="valid rows' loss only")
    assert_close(
        grad[~bad], ref_grad * scale[~bad, None], rtol=1e-12, atol=1e-12, what="valid grads"
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("dtype", "s"),
    [("float64", 1e2), ("float64", 1e4), ("float64", 1e6), ("float32", 1e2), ("float32", 1e3)],
)
@pytest.mark.parametrize("p", [1, 2])
def test_precision_at_large_scores(device, dtype, s, p, small_blocks):
    """Scores s + N(0, 1): the sums are formed relative to a pivot per tile, so the loss stays
    within a few ulps of the float64 oracle (on the same rounded scores) however large s is.
    Several tiles and chunks, weights, gradients."""
    import oracle

    rng = np.random.default_rng(int(s) + p)
    n, c, k = 3, 40, 14
    x = (s + rng.normal(size=(n, c))).astype(dtype)
    t = np.stack([rng.permutation(c)[:k] for _ in range(n)])
    t[1, 9] = -1
    t[2, 3] = t[2, 2]  # a duplicate
    weight = rng.uniform(0.5, 2.0, c)
    loss, grad = _triton_np(x, t, device=device, p=p, weight=weight)
    ref_loss, ref_grad = oracle.multilabel_margin_dense(x.astype(np.float64), t, p=p, weight=weight)
    # measured: a few ulps (≤ 3e-16 in float64, ≤ 1e-7 in float32); before the pivot float32
    # at s = 1e3 was 2e-2 off, float64 at s = 1e6 5e-5
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
}


def _inf_problem():
    """The cases of INF_CASES padded to one (N, C) problem (padding: finite scores far below
    every threshold, so they change nothing)."""
    c = max(len(x) for x, _ in INF_CASES.values())
    kk = max(len(t) for _, t in INF_CASES.values())
    xs, ts = [], []
    for x, t in INF_CASES.values():
        xs.append(list(x) + [-100.0] * (c - len(x)))
        ts.append(list(t) + [-1] * (kk - len(t)))
    return np.array(xs), np.array(ts)


# the interpreter evaluates both arms of every tl.where in NumPy: inf − inf in the arm not taken
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("blocks", ["default", "small"])
def test_infinite_scores_follow_the_definition(device, dtype, p, weighted, blocks, request):
    """±inf scores: each pair counts iff x_j > x_k − margin, with W·max(0, ·)^p in IEEE
    arithmetic (an infinite hinge is +inf, a class no threshold is below adds nothing): the
    literal oracle's values, loss and gradient, without NaN from inf − inf or 0·inf."""
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    x, t = _inf_problem()
    x = x.astype(dtype)
    weight = np.linspace(0.5, 2.0, x.shape[1]) if weighted else None
    loss, grad = _triton_np(x, t, device=device, p=p, weight=weight)
    ref_loss, ref_grad = _oracle_raw(x.astype(np.float64), t, p=p, weight=weight)
    names = list(INF_CASES)
    for i, name in enumerate(names):
        assert_close(loss[i], ref_loss[i], rtol=1e-6, atol=1e-6, what=f"{name}: loss")
        assert_close(grad[i], ref_grad[i], rtol=1e-6, atol=1e-6, what=f"{name}: grad")
