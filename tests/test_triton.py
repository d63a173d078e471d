"""The triton backend against the reference: on the CPU through Triton's interpreter
(TRITON_INTERPRET=1, set here when no CUDA device is present; that is how CI runs it) and, with
the ``gpu`` mark, on a CUDA device. Also: autograd through the torch.library op, opcheck,
torch.compile(fullgraph=True) with -1 targets, determinism, dispatch errors, and rows split
across programs (forced on small problems through ``programs_per_row``).

What the interpreter cannot see is checked on compiled artifacts. The launcher's own
specialisations (tests/tools/compile_triton.py: real shapes, every score dtype, both target
dtypes, p, weight, loss-only / gradient / scaled gradient, specialised by Triton's launch-time
binder; every launch of a case: the one-program-per-row kernel, or, where the launcher splits
rows for 132 SMs, the split kernel on (N, S) and its finishing kernel) are compiled for sm_80
and sm_90, and every variant must keep to these budgets:

* margin: a ``.param .f64`` kernel parameter, read with 64-bit loads (an fp32 margin flips
  float64 ties, and the interpreter, which passes the Python float, cannot show it);
* spills 0, stack frame 0 bytes, local memory 0 bytes: the launcher sets ``maxnreg`` (two
  programs per SM) so that ptxas fits the kernel in registers instead of spilling to reach an
  occupancy target of its own, and a stack frame here could only hold spills;
* registers ≤ 128 for 8-warp variants (BLOCK_C = 1024: the ``maxnreg`` that keeps two programs
  of 256 threads on an SM), ≤ 128 for 4-warp float32-path variants (C ≤ 512) and ≤ 192 for
  float64 variants (4 warps; measured ≤ 176): a change that raises register pressure by more
  than that shows up here before it shows up as spills or lost occupancy on a GPU (the split
  kernel measured ≤ 96 at 8 warps and ≤ 118 in float64, the finishing kernel ≤ 38; the
  margin checks below apply to the two kernels that take a margin);
* shared memory (static + what Triton requests at launch) ≤ 8 KiB per program (measured
  ≤ 5 KiB: the scratch of sorts, scans and layout conversions), so that shared memory never
  limits occupancy before registers do (an A100 SM has 164 KiB, an H100 SM 228 KiB).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")  # conftest has set TRITON_INTERPRET=1 already when there is no GPU

CUDA = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

import xmargin  # noqa: E402
from xmargin.backends import reference  # noqa: E402
from xmargin.backends import triton as tb  # noqa: E402

from conftest import assert_close, bitwise_equal  # noqa: E402

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
        "maxnreg": 128,
        "S": 1,
        "SLICE": 32768,
    }
    assert tb.launch_config(4096, 4096, 4, False) == {
        "BLOCK_T": 16,
        "BLOCK_C": 1024,
        "num_warps": 8,
        "maxnreg": 128,
        "S": 1,
        "SLICE": 4096,
    }
    assert tb.launch_config(8, 100, 64, True) == {
        "BLOCK_T": 64,
        "BLOCK_C": 128,
        "num_warps": 4,
        "maxnreg": 255,
        "S": 1,
        "SLICE": 100,
    }
    assert tb.launch_config(8, 100, 1000, True)["BLOCK_T"] == 64
    assert tb.launch_config(1, 10**6, 32, True)["BLOCK_C"] == 512


def test_split_heuristic():
    """Rows are split when N is small against the SM count and K fits one tile: the issue's
    (64, 10⁶, 32) on an H100's 132 SMs gets 4 slices of 245 chunks (256 programs, one wave);
    N that fills the GPU, K > BLOCK_T, or rows of a few chunks are not split."""
    cfg = tb.launch_config(64, 10**6, 32, False, 132)
    assert (cfg["S"], cfg["SLICE"]) == (4, 245 * 1024)
    assert tb.launch_config(64, 10**6, 32, True, 132)["S"] == 4  # float64: 4 × 489 chunks
    assert tb.launch_config(2, 10**6, 32, False, 132)["S"] > 100  # N = 2: most of the slots
    for shape in [(4096, 4096, 64), (4096, 32768, 16), (264, 10**6, 32), (64, 10**6, 257),
                  (64, 4000, 32), (64, 10**6, 100, True)]:  # fmt: skip
        assert tb.launch_config(*shape[:3], len(shape) > 3, 132)["S"] == 1, shape
    for n, c, k in [(1, 10**6, 1), (7, 123457, 16), (100, 10**5, 200), (150, 10**6, 8)]:
        cfg = tb.launch_config(n, c, k, False, 132)
        s, width = cfg["S"], cfg["SLICE"]
        assert s >= 2 and width % cfg["BLOCK_C"] == 0 and width % 32 == 0, (n, c, k, cfg)
        assert (s - 1) * width < c <= s * width, (n, c, k, cfg)  # no empty slice
        assert width >= tb.MIN_SLICE_CHUNKS * cfg["BLOCK_C"]


def test_split_is_taken_by_the_launcher():
    """launch_plan's grid: (N, S) and a finishing (N, S) where the heuristic splits (meta
    tensors stand for an H100: 132 SMs; CPU tensors for the interpreter's INTERPRETER_SMS),
    one (N,) program per row otherwise. Fails if the split is never taken."""
    for device, n, c, k, s in [("meta", 64, 10**6, 32, 4), ("cpu", 2, 66000, 3, 4)]:
        x = torch.empty((n, c), device=device)
        t = torch.zeros((n, k), dtype=torch.int64, device=device)
        for want in (True, False):
            _, _, steps = tb.launch_plan(x, t, margin=1.0, p=2, weight=None, want_grad=want)
            assert [(name, grid) for name, grid, _, _ in steps] == [
                ("multilabel_hinge_split_kernel", (n, s)),
                ("multilabel_hinge_finish_kernel", (n, s if want else 1)),
            ], (device, want)
    x = torch.empty((4096, 4096), device="meta")
    t = torch.zeros((4096, 64), dtype=torch.int64, device="meta")
    _, _, steps = tb.launch_plan(x, t, margin=1.0, p=1, weight=None, want_grad=True)
    assert [(name, grid) for name, grid, _, _ in steps] == [("multilabel_hinge_kernel", (4096,))]


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


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_autograd_gradient_in_forward_or_recomputed(device, recompute, monkeypatch):
    """The GPU backends form the gradient in forward when autograd needs it (one kernel pass,
    the reduction's scale folded in) and backward only scales it; a loss-only forward when
    nothing needs it. A backend flagged ``grad_in_backward`` (a memory-bound kernel) runs a
    loss-only forward and one scaled gradient pass in backward. Both give the reference's
    gradient."""
    import dataclasses

    from xmargin.backends import _registry

    calls = []
    real = tb.hinge

    def spy(x, t, **kw):
        calls.append((kw["want_grad"], kw.get("grad_scale") is not None))
        return real(x, t, **kw)

    monkeypatch.setattr(tb, "hinge", spy)
    if recompute:
        flagged = dataclasses.replace(_registry._REGISTRY["triton"], grad_in_backward=True)
        monkeypatch.setitem(_registry._REGISTRY, "triton", flagged)
    x = torch.randn(3, 9, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.tensor([[0, 4, -1], [8, 8, 1], [-1, 0, 0]], device=device)
    with torch.no_grad():
        xmargin.multilabel_margin_loss(x, t, backend="triton")
    assert calls == [(False, False)]  # nothing needs a gradient
    calls.clear()
    loss = xmargin.multilabel_margin_loss(x, t, backend="triton")
    assert calls == ([(False, False)] if recompute else [(True, True)])
    (loss * 3.0).backward()
    assert calls == ([(False, False), (True, True)] if recompute else [(True, True)])
    x2 = x.detach().cpu().requires_grad_()  # the reference runs on the CPU
    (xmargin.multilabel_margin_loss(x2, t.cpu(), backend="reference") * 3.0).backward()
    assert_close(x.grad.cpu(), x2.grad.cpu(), rtol=1e-12, atol=1e-12, what="gradient")


@pytest.mark.parametrize("device", DEVICES)
def test_half_gradient_under_loss_scaling(device):
    """float16 scores on the thin path: the gradient gets grad_output (a loss scale) before it
    is rounded, as PyTorch's: entries of 2.5e-5 / 1024 are not rounded to 0 first (a gradient
    kept from forward in float16 and scaled in backward gave 0 there)."""
    n, c = 8, 1024
    x = torch.zeros(n, c, dtype=torch.float16, device=device, requires_grad=True)
    t = torch.full((n, 2), -1, device=device)
    t[:, 0] = 0
    (xmargin.multilabel_margin_loss(x, t, margin=1e-4, p=2, backend="triton") * 1024.0).backward()
    x64 = torch.zeros(n, c, dtype=torch.float64, requires_grad=True)
    (xmargin.multilabel_margin_loss(x64, t.cpu(), margin=1e-4, p=2, backend="reference")
     * 1024.0).backward()  # fmt: skip
    assert (x.grad[:, 1:] != 0).all(), "negatives' gradients rounded to 0"
    assert_close(x.grad.double().cpu(), x64.grad, rtol=2e-3, atol=0, what="float16 gradient")


@pytest.mark.parametrize("device", DEVICES)
def test_half_gradient_under_torch_compile_does_not_overflow(device):
    """float16 under torch.compile: a positive with 69,999 negatives above it has a raw
    gradient of -69,999, beyond float16, and about -1 after the mean's 1/C; a raw gradient
    kept from forward overflowed to -inf before the scale reached it."""
    c = 70_000
    x0 = torch.zeros(1, c, dtype=torch.float16, device=device)
    x0[0, 0] = -1.0
    t = torch.tensor([[0, -1]], device=device)

    def f(x, t):
        return xmargin.multilabel_margin_loss(x, t, backend="triton")

    x = x0.clone().requires_grad_()
    torch.compile(f, backend="eager", fullgraph=True)(x, t).backward()
    x64 = x0.double().cpu().requires_grad_()
    xmargin.multilabel_margin_loss(x64, t.cpu(), backend="reference").backward()
    assert torch.isfinite(x.grad).all()
    assert_close(x.grad.double().cpu(), x64.grad, rtol=2e-3, atol=1e-7, what="compiled grad")


TOOLS = Path(__file__).parent / "tools"


def _compile_tool():
    """tests/tools/compile_triton.py as a module (its specialisation needs no compiler)."""
    import importlib.util

    name = "xmargin_tests_compile_triton"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TOOLS / "compile_triton.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


WHOLE, SPLIT, FINISH = (
    "multilabel_hinge_kernel", "multilabel_hinge_split_kernel", "multilabel_hinge_finish_kernel"
)  # fmt: skip
# budgets of the compiled variants (see the module docstring)
REG_BUDGET = {("f32", 8): 128, ("f32", 4): 128, ("f64", 4): 192}
SMEM_BUDGET = 8 * 1024


@pytest.mark.slow
def test_kernel_compiles_for_sm80_and_sm90():
    """Ahead-of-time compilation for Ampere and Hopper (no GPU needed) of exactly the
    specialisations the launcher produces (tests/tools/compile_triton.py); every variant keeps
    to the budgets of the module docstring."""
    import json
    import subprocess

    tool = TOOLS / "compile_triton.py"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, without its warning
    result = subprocess.run(
        [sys.executable, str(tool), "80", "90"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(ln) for ln in result.stdout.splitlines() if ln.startswith("{")]
    assert len(rows) == 2 * len(_compile_tool().launch_items())
    assert {r["arch"] for r in rows} == {80, 90}
    dtypes = {"float16", "bfloat16", "float32", "float64"}
    assert {r["scores"] for r in rows} == dtypes
    # the split grid is compiled for every score dtype and p (the launcher's own choice at
    # N < 264), loss-only and with gradients
    split = {(r["scores"], r["p"], r["want_grad"]) for r in rows if r["kernel"] == SPLIT}
    assert split == {(d, p, g) for d in dtypes for p in (1, 2) for g in (False, True)}
    assert {r["kernel"] for r in rows} == {WHOLE, SPLIT, FINISH}
    for r in rows:
        what = (
            f"sm_{r['arch']} {r['kernel']} {r['scores']} {r['targets']} {tuple(r['shape'])} "
            f"p={r['p']} weight={r['weight']} {r['mode']} grid={r['grid']} "
            f"(BLOCK_T={r['BLOCK_T']} BLOCK_C={r['BLOCK_C']} warps={r['num_warps']})"
        )
        # the launcher's block sizes and split (meta tensors: META_SMS), specialised as Triton
        # does at launch (strides of 1)
        n = r["shape"][0]
        cfg = tb.launch_config(*r["shape"], r["scores"] == "float64")
        assert (r["BLOCK_T"], r["BLOCK_C"]) == (cfg["BLOCK_T"], cfg["BLOCK_C"]), what
        if r["kernel"] == WHOLE:
            assert r["grid"] == [n] and cfg["S"] == 1, what
        else:
            rows_s = cfg["S"] if r["kernel"] == SPLIT or r["want_grad"] else 1
            assert r["grid"] == [n, rows_s] and cfg["S"] > 1, what
        if r["kernel"] != FINISH:
            assert r["num_warps"] == cfg["num_warps"], what
            assert {"stride_xc", "stride_tk", "stride_gc"} <= set(r["specialised"]), what
            assert r["margin_param"] == "f64", f"{what}: margin is .{r['margin_param']}"
            assert r["margin_loads"] and all(t.endswith("64") for t in r["margin_loads"]), what
        else:
            assert "stride_gc" in r["specialised"] and r["margin_param"] is None, what
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, f"{what}: spills {r}"
        assert r["stack_frame"] == 0 and r["stack"] == 0 and r["local"] == 0, f"{what}: {r}"
        cls = ("f64" if r["scores"] == "float64" else "f32", r["num_warps"])
        assert r["reg"] <= REG_BUDGET[cls], f"{what}: {r['reg']} registers > {REG_BUDGET[cls]}"
        smem = r["shared"] + r["dyn_shared"]
        assert smem <= SMEM_BUDGET, f"{what}: {smem} bytes of shared memory"


def test_margin_is_specialised_as_float64():
    """Triton types a Python float argument as fp32: the margin parameter is annotated
    tl.float64, so that the launch-time binder (the one JITFunction.run uses, here on the
    launcher's real arguments for an sm_90 target, no GPU needed) gives it fp64 for every
    score dtype. The compiled PTX is checked by test_kernel_compiles_for_sm80_and_sm90."""
    compile_triton = _compile_tool()
    for score in ("float64", "float32", "float16"):
        case = {"shape": [8, 100, 5], "scores": score, "targets": "int64", "p": 1,
                "weight": False, "mode": "grad", "want_grad": True, "scale": False}  # fmt: skip
        spec = compile_triton.specialise(case, 90)
        assert spec["signature"]["margin"] == "fp64", (score, spec["signature"])
        assert spec["options"].maxnreg == tb.launch_config(8, 100, 5, score == "float64")["maxnreg"]


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
    "only positive at +inf": ([0.0, 0.5, _INF, 0.2], [2, -1, -1, -1]),
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


# ---------------------------------------------------------------------------------------------
# issue 12: +inf positives in float64, the float64 margin, half gradients, devices, barriers
# ---------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("blocks", ["default", "small"])
def test_float64_positive_at_plus_inf(device, blocks, request):
    """A positive scoring +inf violates nothing: x = [0, .5, inf, .2], t = [2, -1, ...] has
    loss 0 and a zero gradient in float64 (the ranking's padding slots once took class 0's
    place after a +inf threshold and made class 0 a positive). Also with the +inf positive
    duplicated over several tiles (BLOCK_T = 4, the last tile part padding) and beside finite
    positives."""
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    x = np.array([[0.0, 0.5, np.inf, 0.2]] * 3)
    t = np.array(
        [
            [2, -1, -1, -1, -1, -1, -1],
            [2, 2, 2, 2, 2, 2, -1],  # six slots of the +inf positive: tiles of 4 and 2
            [1, 3, 2, 1, 3, 2, 2],  # finite positives beside it, duplicated across tiles
        ]
    )
    for p in (1, 2):
        loss, grad = _triton_np(x, t, device=device, p=p)
        ref_loss, ref_grad = oracle_dense(x, t, p=p)
        assert loss[0] == 0.0 and loss[1] == 0.0 and (grad[:2] == 0.0).all(), (loss, grad)
        assert_close(loss, ref_loss, rtol=1e-15, atol=0, what=f"+inf positive loss p={p}")
        assert_close(grad, ref_grad, rtol=1e-15, atol=0, what=f"+inf positive grad p={p}")


def oracle_dense(x, t, **kw):
    import oracle

    return oracle.multilabel_margin_dense(x, t, **kw)


# (scores, targets, margin) at an exact tie of the float64 definition: margin − x_k + x_j ≤ 0
# in float64, > 0 with the margin rounded to float32 (0.1 → 0.10000000149)
MARGIN_TIES = {
    "float64": ([[0.1, 0.0, -1.0]], [[0, -1, -1]], 0.1),
    # float32 scores: x_k − x_j = fp32(0.1) − 1e-9 lies strictly between 0.1 and fp32(0.1)
    "float32": ([[-1e-9, -0.1, -1.0]], [[0, -1, -1]], 0.1),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_margin_ties_follow_the_float64_definition(device, dtype):
    """The comparison x_j > x_k − margin uses the margin in float64 (as the oracle does): at a
    tie the pair does not count, loss and gradient exactly 0. With an fp32 margin (a Python
    float argument, as Triton specialises it) the float64 case gave loss 1.5e-9 and gradient
    [-1, 1, 0]; the interpreter passes the Python float, so the compiled kernel's parameter
    type is checked by test_margin_is_specialised_as_float64 and the AOT test."""
    x, t, margin = MARGIN_TIES[dtype]
    x = np.array(x, dtype=dtype)
    ref_loss, ref_grad = oracle_dense(x.astype(np.float64), np.array(t), margin=margin)
    assert ref_loss[0] == 0.0 and (ref_grad == 0.0).all()
    for p in (1, 2):
        loss, grad = _triton_np(x, np.array(t), device=device, p=p, margin=margin)
        assert loss[0] == 0.0 and (grad == 0.0).all(), (dtype, p, loss, grad)


def _round_half(values, dtype, device):
    """float64 values (exact in float32) rounded once to a half dtype as the kernel's
    conversion rounds, back as float64: to nearest even, except that Triton's interpreter
    converts float32 to bfloat16 by truncation (round toward zero; a GPU rounds to nearest)."""
    if dtype == "bfloat16" and device == "cpu":
        bits = np.asarray(values, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
        return bits.view(np.float32).astype(np.float64)
    return torch.tensor(values, dtype=torch.float64).to(getattr(torch, dtype)).double().numpy()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("scaled", [False, True])
def test_half_gradient_is_rounded_once(device, dtype, p, scaled, small_blocks):
    """Rows with several threshold tiles (K = 20, BLOCK_T = 4) sum the tiles' gradient
    contributions in float32 and round once to the half dtype: the gradient equals the float64
    oracle rounded once. The inputs make every float32 partial sum exact (scores in quarters,
    weights in 256ths, scales powers of two), so any difference is a second rounding: adding
    each tile to a gradient stored in the half dtype missed this in most rows."""
    rng = np.random.default_rng(31 + p)
    n, c, k = 4, 37, 20
    x = rng.integers(-12, 13, size=(n, c)) / 4
    t = np.stack([rng.permutation(c)[:k] for _ in range(n)])
    t[1, 7] = -1  # two tiles, the second part padding
    t[2, 5] = t[2, 4]  # a duplicate
    t[3, 2] = -1  # one tile: written directly
    weight = rng.integers(128, 512, size=c) / 256
    scale = torch.tensor([0.25, 2.0, 0.5, 1.0], device=device) if scaled else None
    loss, grad = tb.hinge(
        _half_tensor(x, dtype, device),
        torch.tensor(t, device=device),
        margin=1.0,
        p=p,
        weight=torch.tensor(weight, device=device),
        want_grad=True,
        grad_scale=scale,
    )
    loss, grad = loss.double().cpu().numpy(), grad.double().cpu().numpy()
    ref_loss, ref_grad = oracle_dense(x, t, p=p, weight=weight)
    if scaled:
        ref_grad = ref_grad * scale.cpu().numpy()[:, None]
    assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6, what="loss")
    expected = _round_half(ref_grad, dtype, device)
    assert np.array_equal(grad, expected), (
        f"{dtype} p={p}: {(grad != expected).sum()} of {grad.size} gradient values differ "
        f"from the once-rounded oracle, e.g. {grad[grad != expected][:4]} vs "
        f"{expected[grad != expected][:4]}"
    )


def _half_tensor(x, dtype, device):
    return torch.tensor(x, dtype=torch.float64).to(getattr(torch, dtype)).to(device)


C_BEYOND_HALF = 66000  # more classes than float16's largest finite value (65504)


def _wide_half_problem():
    """Two rows over C = 66000 classes, every negative violating both positives."""
    c = C_BEYOND_HALF
    x = np.zeros((2, c))
    x[0, 1], x[1, 0] = -2.0, 0.5
    t = np.array([[0, 1, -1], [0, -1, 0]])
    return x, t


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("device", DEVICES)
def test_half_gradient_scale_is_applied_before_rounding(device):
    """Raw float16 gradients (a direct backend call, no scale) are what the dtype can hold: a
    positive with more than 65504 negatives above it gets -inf, as documented. The scale (the
    loss layer's 1/C or 1/(N·C), or autograd's grad_output) is applied in float32 before the
    gradient is rounded to float16, so the scaled gradient is finite and exact to one
    rounding."""
    x, t = _wide_half_problem()
    xt, tt = _half_tensor(x, "float16", device), torch.tensor(t, device=device)
    _, ref_grad = oracle_dense(x, t)
    _, raw = tb.hinge(xt, tt, margin=1.0, p=1, weight=None, want_grad=True)
    raw = raw.double().cpu().numpy()
    assert np.isneginf(raw[0, :2]).all() and np.isneginf(raw[1, 0])  # -65998 and -65999
    assert np.isfinite(np.delete(raw, [0, 1], axis=1)).all()
    for scale in (1.0 / C_BEYOND_HALF, torch.full((2,), 0.5 / C_BEYOND_HALF, device=device)):
        _, g = tb.hinge(xt, tt, margin=1.0, p=1, weight=None, want_grad=True, grad_scale=scale)
        factor = scale if isinstance(scale, float) else 0.5 / C_BEYOND_HALF
        g = g.double().cpu().numpy()
        assert np.isfinite(g).all()
        # one rounding: half an ulp, relative 2^-11 (normal) or 2^-25 absolute (subnormal)
        assert_close(g, ref_grad * factor, rtol=2**-11, atol=2**-25, what="scaled gradient")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_half_gradient_through_the_loss_layer(device, reduction):
    """value_and_grad and autograd fold the reduction's 1/C or 1/(N·C) into the kernel's
    scale: float16 gradients stay finite with C > 65504 (value_and_grad handed the triton
    backend a Python float, which its launcher could not take)."""
    x, t = _wide_half_problem()
    n, c = x.shape
    ref_loss, ref_grad = oracle_dense(x, t)
    factor = 1.0 / (n * c) if reduction == "mean" else 1.0 / c
    xt, tt = _half_tensor(x, "float16", device), torch.tensor(t, device=device)
    vg = xmargin.value_and_grad(xmargin.multilabel_margin_loss)
    loss, g = vg(xt, tt, reduction=reduction, backend="triton")
    leaf = xt.clone().requires_grad_()
    xmargin.multilabel_margin_loss(leaf, tt, reduction=reduction, backend="triton").backward()
    for what, grad in (("value_and_grad", g), ("autograd", leaf.grad)):
        assert grad.dtype == torch.float16
        grad = grad.double().cpu().numpy()
        assert np.isfinite(grad).all(), what
        assert_close(grad, ref_grad * factor, rtol=2**-10, atol=2**-24, what=f"{what} grad")
    assert_close(float(loss), ref_loss.sum() * factor, rtol=1e-3, atol=0, what="loss")


def test_device_guard_makes_the_scores_device_current(monkeypatch):
    """Triton launches on the current device (and its current stream): the launcher makes the
    scores' device current, so that a tensor on cuda:1 runs on cuda:1 (recorded here with a
    stand-in for torch.cuda.device; the two-device run is test_gpu_second_device)."""
    made = []

    class Recorder:
        def __init__(self, device):
            made.append(device)

    monkeypatch.setattr(torch.cuda, "device", Recorder)
    guard = tb._device_guard(torch.device("cuda", 1))
    assert isinstance(guard, Recorder) and made == [torch.device("cuda", 1)]
    with tb._device_guard(torch.device("cpu")):  # the interpreter: nothing to switch
        pass
    assert made == [torch.device("cuda", 1)]


@pytest.mark.parametrize("device", DEVICES)
def test_launch_happens_inside_the_device_guard(device, monkeypatch):
    """The kernel is launched while the scores' device is current (and only then)."""
    events = []

    class Guard:
        def __init__(self, dev):
            self.dev = dev

        def __enter__(self):
            events.append(("enter", self.dev))

        def __exit__(self, *exc):
            events.append(("exit", self.dev))

    real = tb._kernels()

    class Spy:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                events.append(("launch", self.name))
                return getattr(real, self.name)[grid](*args, **kwargs)

            return launch

    class Kernels:
        def __getattr__(self, name):
            return Spy(name)

    monkeypatch.setattr(tb, "_device_guard", Guard)
    monkeypatch.setattr(tb, "_kernels", Kernels)
    x = torch.randn(3, 7, dtype=torch.float64, device=device)
    t = torch.tensor([[0, 4, -1], [6, 6, 1], [-1, 0, 0]], device=device)
    ref, _ = reference.hinge_numpy(x.cpu().numpy(), t.cpu().numpy(), margin=1.0, p=1,
                                   weight=None, want_grad=False)  # fmt: skip
    loss, _ = tb.hinge(x, t, margin=1.0, p=1, weight=None, want_grad=False)
    assert events == [("enter", x.device), ("launch", "multilabel_hinge_kernel"),
                      ("exit", x.device)]  # fmt: skip
    assert_close(loss.cpu(), ref, rtol=1e-12, atol=1e-12, what="guarded launch")
    # split rows: both launches inside one guard
    events.clear()
    monkeypatch.setattr(tb, "programs_per_row", lambda *a, **k: 2)
    monkeypatch.setattr(tb, "BLOCK_C_RANGE", (8, 16))
    loss, _ = tb.hinge(x, t, margin=1.0, p=1, weight=None, want_grad=False)
    assert events == [("enter", x.device), ("launch", "multilabel_hinge_split_kernel"),
                      ("launch", "multilabel_hinge_finish_kernel"), ("exit", x.device)]  # fmt: skip
    assert_close(loss.cpu(), ref, rtol=1e-12, atol=1e-12, what="guarded split launch")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_gpu_second_device():
    """Tensors on cuda:1 while cuda:0 is current: the kernel runs on cuda:1 (a launch on the
    current device would read another device's memory), the current device is unchanged."""
    rng = np.random.default_rng(12)
    torch.cuda.set_device(0)
    x = torch.tensor(rng.normal(size=(5, 300)), device="cuda:1")
    t = torch.tensor(rng.integers(-1, 300, size=(5, 40)), device="cuda:1")
    loss, grad = tb.hinge(x, t, margin=1.0, p=2, weight=None, want_grad=True)
    torch.cuda.synchronize(1)
    assert torch.cuda.current_device() == 0 and loss.device == x.device == grad.device
    ref_loss, ref_grad = reference.hinge_numpy(
        x.cpu().numpy(), t.cpu().numpy(), margin=1.0, p=2, weight=None, want_grad=True
    )
    assert_close(loss.cpu(), ref_loss, rtol=1e-12, atol=1e-12, what="cuda:1 loss")
    assert_close(grad.cpu(), ref_grad, rtol=1e-12, atol=1e-12, what="cuda:1 grad")


class _ScratchHazards:
    """Records the memory operations of interpreted programs and reports, per program, two
    accesses of one address by different operations, at least one of them a write (atomics
    among themselves excepted), with no tl.debug_barrier between them: on a GPU the lanes of
    two such operations belong to different threads, and nothing orders them. Two operations
    on the same pointer tensor (a read-modify-write of the same lanes) are one thread's."""

    def __init__(self):
        self.program = None
        self.epoch = 0
        self.barriers = 0  # in all programs
        self.seen = {}  # address -> [(epoch, op, kind, line)]
        self.hazards = []

    @staticmethod
    def _line():
        frame = sys._getframe(2)
        while frame is not None and not frame.f_code.co_filename.endswith("multilabel_hinge.py"):
            frame = frame.f_back
        return None if frame is None else frame.f_lineno

    def access(self, builder, ptrs, mask, kind):
        if builder.grid_idx != self.program:
            self.program, self.epoch, self.seen = builder.grid_idx, 0, {}
        data = np.asarray(ptrs.data)
        live = np.broadcast_to(np.asarray(mask.data, dtype=bool), data.shape)
        op = (data.shape, data.tobytes())
        line = self._line()
        for addr in np.unique(data[live]).tolist():
            entries = self.seen.setdefault(addr, [])
            for epoch, other, other_kind, other_line in entries:
                if epoch != self.epoch or other == op or "w" not in (kind + other_kind):
                    continue
                if kind == other_kind == "aw":
                    continue
                if len(self.hazards) < 8:
                    self.hazards.append((self.program, other_kind, other_line, kind, line))
            entries.append((self.epoch, op, kind, line))

    def barrier(self):
        self.epoch += 1
        self.barriers += 1


def _record_hazards(monkeypatch) -> _ScratchHazards:
    """A _ScratchHazards fed by the interpreter's loads, stores, atomics and barriers."""
    from triton.runtime import interpreter as ti

    rec = _ScratchHazards()
    real_load, real_store = (
        ti.InterpreterBuilder.create_masked_load,
        ti.InterpreterBuilder.create_masked_store,
    )
    real_rmw = ti.InterpreterBuilder.create_atomic_rmw

    def load(self, ptrs, mask, *args, **kwargs):
        rec.access(self, ptrs, mask, "r")
        return real_load(self, ptrs, mask, *args, **kwargs)

    def store(self, ptrs, value, mask, *args, **kwargs):
        rec.access(self, ptrs, mask, "w")
        return real_store(self, ptrs, value, mask, *args, **kwargs)

    def rmw(self, op, ptr, val, mask, *args, **kwargs):
        rec.access(self, ptr, mask, "aw")
        return real_rmw(self, op, ptr, val, mask, *args, **kwargs)

    monkeypatch.setattr(ti.InterpreterBuilder, "create_masked_load", load)
    monkeypatch.setattr(ti.InterpreterBuilder, "create_masked_store", store)
    monkeypatch.setattr(ti.InterpreterBuilder, "create_atomic_rmw", rmw)
    monkeypatch.setattr(ti.InterpreterBuilder, "create_barrier", lambda self: rec.barrier())
    return rec


@pytest.mark.skipif(not INTERPRETED, reason="records the interpreter's memory operations")
@pytest.mark.parametrize(
    ("dtype", "p", "want_grad"),
    [
        ("float32", 1, False),
        ("float32", 2, True),
        ("float64", 2, False),
        ("float64", 1, True),
        ("float16", 2, True),  # the float32 gradient scratch of several tiles
    ],
)
def test_scratch_reuse_is_separated_by_barriers(dtype, p, want_grad, small_blocks, monkeypatch):
    """Every tile reuses the row's scratch (sorted thresholds, classes, prefix sums, bitmap,
    gradient accumulator): between an access of one tile and a conflicting access of the
    next, in every path (also loss-only), there is a tl.debug_barrier. The interpreter runs a
    program's lanes in lock step and cannot race, so the order is checked instead: loss-only
    rows had no barrier between one tile's binary searches and the next tile's writes."""
    rec = _record_hazards(monkeypatch)
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 9, size=(2, 37)) / 4
    t = rng.integers(0, 37, size=(2, 13))  # four tiles of BLOCK_T = 4
    t[1, 6] = -1
    _triton_np(x.astype(dtype), t, device="cpu", p=p, want_grad=want_grad,
               weight=rng.uniform(0.5, 2.0, 37), scale=[0.5, 2.0] if want_grad else None)  # fmt: skip
    assert rec.epoch > 0 and not rec.hazards, (
        "unordered conflicting accesses (program, first kind, line, second kind, line): "
        f"{rec.hazards}"
    )


# ---------------------------------------------------------------------------------------------
# issue 12 item 2: rows split across programs (grid (N, S), a fixed-order finishing kernel)
# ---------------------------------------------------------------------------------------------
def _force_split(monkeypatch, s):
    """Every launch whose K fits one tile splits its rows into ``s`` slices; BLOCK_C = 16,
    so that slices are 32 classes (a bitmap word) or more and several chunks long."""
    monkeypatch.setattr(tb, "BLOCK_C_RANGE", (8, 16))
    monkeypatch.setattr(tb, "programs_per_row", lambda *args, **kwargs: s)


def _grid(x, t, want_grad=True):
    _, _, steps = tb.launch_plan(x, t, margin=1.0, p=1, weight=None, want_grad=want_grad)
    return [(name, grid) for name, grid, _, _ in steps]


def _split_problem(seed, n=4, c=70, k=12):
    """Scores in quarters (exact in every dtype; ties at the margin), K ≠ C, a row with a
    terminator and valid values after it, a row with T = 0, duplicates, and positives in
    every slice."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, size=(n, c)) / 4
    t = rng.integers(0, c, size=(n, k))
    t[1, 4] = -1  # T = 4, then valid values after the terminator
    t[2, 0] = -1  # T = 0
    t[3, :3] = [c - 1, c - 1, 5]  # a duplicate
    return x, t


SPLIT_GTOL = {"float16": 1e-3, "bfloat16": 8e-3, "float32": 1e-5, "float64": 1e-12}


SPLIT_DTYPES = ["float16", "bfloat16", "float32", "float64"]


@pytest.mark.skipif(not INTERPRETED, reason="forces the split on interpreted programs")
@pytest.mark.parametrize("dtype", SPLIT_DTYPES)
@pytest.mark.parametrize("p", [1, 2])
def test_split_rows_match_the_oracle(dtype, p, monkeypatch):
    """The split path (forced: S = 2, 3 or 5 over 3 chunks of 32 classes, S = 5 with two
    slices empty) gives the oracle's loss and gradient (on the same rounded scores, per-dtype
    tolerances) for weight / no weight, grad_scale none / a number / (N,) (the cases rotate
    S, weight and scale so that each dtype and p meets several), K ≠ C, T = 0, duplicates and
    values after the terminator; the loss-only launch gives the same loss."""
    x, t = _split_problem(seed=17 * p + len(dtype))
    n, c = x.shape
    xt = _half_tensor(x, dtype, "cpu")
    xr = xt.double().numpy()  # the values the kernel sees
    tt = torch.tensor(t)
    rng = np.random.default_rng(p)
    w = rng.integers(128, 512, size=c) / 256
    row_scale = np.array([0.5, -2.0, 1.0, 4.0])
    tol = TOL[dtype]
    i = (SPLIT_DTYPES.index(dtype) + p) % 3
    for s in [(2, 3, 5)[i]]:
        _force_split(monkeypatch, s)
        assert _grid(xt, tt) == [
            ("multilabel_hinge_split_kernel", (n, s)),
            ("multilabel_hinge_finish_kernel", (n, s)),
        ]
        weight = w if i != 1 else None
        scale = [None, 0.125, torch.tensor(row_scale)][i]
        loss, grad = tb.hinge(xt, tt, margin=1.0, p=p, want_grad=True, grad_scale=scale,
                              weight=None if weight is None else torch.tensor(weight))  # fmt: skip
        only, _ = tb.hinge(xt, tt, margin=1.0, p=p, want_grad=False,
                           weight=None if weight is None else torch.tensor(weight))  # fmt: skip
        ref_loss, ref_grad = oracle_dense(xr, t, p=p, weight=weight)
        factor = {0: 1.0, 1: 0.125, 2: row_scale[:, None]}[i]
        what = f"S={s} {dtype} p={p} weight={weight is not None} scale={i}"
        assert grad.dtype == xt.dtype
        assert_close(loss.double().numpy(), ref_loss, rtol=tol, atol=tol, what=f"{what} loss")
        assert torch.equal(only, loss), what
        gtol = SPLIT_GTOL[dtype]
        assert_close(grad.double().numpy(), ref_grad * factor, rtol=gtol, atol=gtol,
                     what=f"{what} grad")  # fmt: skip


@pytest.mark.skipif(not INTERPRETED, reason="forces the split on interpreted programs")
@pytest.mark.parametrize(("tdtype", "p"), [("int32", 2), ("int64", 1)])
def test_split_rows_nan_rules(tdtype, p, monkeypatch):
    """Split rows keep the NaN rules: a target outside [-1, C) anywhere in the row (also after
    the terminator; int64 compared as 64-bit) makes the whole row NaN, the gradient NaN
    whatever the scale (also 0); a NaN score in one slice makes the row NaN in every slice; a
    NaN score in a row without positives does not. Other rows exact."""
    _force_split(monkeypatch, 3)
    c, k = 70, 11
    t, bad = _invalid_target_rows(c, k, wide=tdtype == "int64")
    t = t.astype(tdtype)
    n = t.shape[0]
    rng = np.random.default_rng(13 + p)
    x = rng.integers(-6, 7, size=(n, c)) / 2
    x[0, 66] = np.nan  # valid row 0: NaN in the last slice, positives in the first
    x[5, c - 1] = np.nan  # valid row 5: a positive's score
    x[7, 3] = np.nan  # no positives (and invalid anyway)
    weight = rng.uniform(0.5, 2.0, c)
    scale = rng.uniform(-2.0, 2.0, n)
    scale[1] = 0.0
    assert _grid(torch.tensor(x), torch.tensor(t))[0] == ("multilabel_hinge_split_kernel", (n, 3))
    loss, grad = _triton_np(x, t, device="cpu", p=p, weight=weight, scale=scale)
    only, _ = _triton_np(x, t, device="cpu", p=p, weight=weight, want_grad=False)
    assert np.isnan(loss[bad]).all() and np.isnan(only[bad]).all() and np.isnan(grad[bad]).all()
    ref_loss, ref_grad = _oracle_raw(x[~bad], t[~bad], p=p, weight=weight)
    assert np.isnan(ref_loss[0]) and np.isnan(ref_loss[1])  # rows 0 and 5 of x
    assert_close(loss[~bad], ref_loss, rtol=1e-12, atol=1e-12, what="valid rows' loss")
    assert_close(only[~bad], ref_loss, rtol=1e-12, atol=1e-12, what="valid rows' loss only")
    assert_close(grad[~bad], ref_grad * scale[~bad, None], rtol=1e-12, atol=1e-12,
                 what="valid rows' grad")  # fmt: skip
    # a row with a NaN score and no positives is not NaN
    xa = np.arange(64.0).reshape(1, 64) / 8
    xa[0, 40] = np.nan
    ta = np.arange(64)[::-1][None, :16].copy()
    ta[0, :] = -1
    la, ga = _triton_np(xa, ta, device="cpu", p=p)
    assert la[0] == 0.0 and (ga == 0.0).all()


@pytest.mark.skipif(not INTERPRETED, reason="forces the split on interpreted programs")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize(("dtype", "p"), [("float32", 2), ("float64", 1)])
def test_split_rows_infinite_scores(dtype, p, monkeypatch):
    """±inf scores in split rows, each case's classes spread over three slices (class j of
    INF_CASES at column 13·j of 70): the oracle's IEEE values, loss and gradient."""
    _force_split(monkeypatch, 3)
    x6, t6 = _inf_problem()
    n, c = x6.shape[0], 70
    x = np.full((n, c), -100.0)
    x[:, 13 * np.arange(x6.shape[1])] = x6
    t = np.where(t6 >= 0, 13 * t6, -1)
    x = x.astype(dtype)
    weight = np.linspace(0.5, 2.0, c)
    loss, grad = _triton_np(x, t, device="cpu", p=p, weight=weight)
    ref_loss, ref_grad = _oracle_raw(x.astype(np.float64), t, p=p, weight=weight)
    for i, name in enumerate(INF_CASES):
        assert_close(loss[i], ref_loss[i], rtol=1e-6, atol=1e-6, what=f"{name}: loss")
        assert_close(grad[i], ref_grad[i], rtol=1e-6, atol=1e-6, what=f"{name}: grad")


@pytest.mark.skipif(not INTERPRETED, reason="forces the split on interpreted programs")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_split_rows_are_deterministic_and_match_one_program_per_row(monkeypatch):
    """Two runs of the split path are bitwise equal (no float atomics; the partials are summed
    in a fixed order); the split and the one-program-per-row path differ by rounding only.
    Also C < K (K > C with C = 5: two of three slices empty) and a float64 +inf positive."""
    rng = np.random.default_rng(21)
    x = torch.tensor(rng.normal(size=(3, 100)), dtype=torch.float32)
    t = torch.tensor(rng.integers(0, 100, size=(3, 16)))
    kw = {"margin": 1.0, "p": 2, "weight": None, "want_grad": True}
    _force_split(monkeypatch, 1)
    whole = tb.hinge(x, t, **kw)
    assert _grid(x, t)[0] == ("multilabel_hinge_kernel", (3,))
    _force_split(monkeypatch, 4)
    runs = [tb.hinge(x, t, **kw) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert_close(runs[0][0], whole[0], rtol=1e-5, atol=0, what="split vs whole loss")
    assert_close(runs[0][1], whole[1], rtol=1e-5, atol=1e-5, what="split vs whole grad")
    _force_split(monkeypatch, 3)
    xs = np.array([[0.0, 0.5, np.inf, 0.2, -1.0], [1.0, -1.0, 0.5, 0.5, 2.0]])
    ts = np.array([[2, -1, 0, 0, 0, 0, 0, 0], [3, 1, 3, -1, 0, 2, 4, 4]])
    for p in (1, 2):
        loss, grad = _triton_np(xs, ts, device="cpu", p=p)
        ref_loss, ref_grad = oracle_dense(xs, ts, p=p)
        assert loss[0] == 0.0 and (grad[0] == 0.0).all()
        assert_close(loss, ref_loss, rtol=1e-15, atol=0, what=f"C < K loss p={p}")
        assert_close(grad, ref_grad, rtol=1e-15, atol=1e-15, what=f"C < K grad p={p}")


@pytest.mark.skipif(not INTERPRETED, reason="records the interpreter's memory operations")
@pytest.mark.parametrize(("dtype", "p", "want_grad"), [("float32", 2, True), ("float64", 1, False)])
def test_split_scratch_is_separated_by_barriers(dtype, p, want_grad, monkeypatch):
    """The split kernel's programs write their scratch (bitmap words of their slice, sorted
    table, prefix sums) and read it back across lanes: a barrier separates each write from
    other operations' reads, as in test_scratch_reuse_is_separated_by_barriers."""
    _force_split(monkeypatch, 3)
    rec = _record_hazards(monkeypatch)
    rng = np.random.default_rng(4)
    x = rng.integers(-8, 9, size=(2, 70)) / 4
    t = rng.integers(0, 70, size=(2, 13))
    t[1, 6] = -1
    _triton_np(x.astype(dtype), t, device="cpu", p=p, want_grad=want_grad,
               weight=rng.uniform(0.5, 2.0, 70), scale=[0.5, 2.0] if want_grad else None)  # fmt: skip
    assert rec.barriers > 0 and not rec.hazards, (
        "unordered conflicting accesses (program, first kind, line, second kind, line): "
        f"{rec.hazards}"
    )


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("p", [1, 2])
def test_gpu_split_rows(dtype, p, monkeypatch):
    """On a GPU, the launcher's own split (N = 16 rows of 200,000 classes, the device's SM
    count): the reference's values and gradients, bitwise-equal reruns, and the
    one-program-per-row path within rounding."""
    rng = np.random.default_rng(p)
    n, c, k = 16, 200_000, 32
    x = _half_tensor(rng.normal(size=(n, c)), dtype, "cuda")
    t = torch.tensor(rng.integers(-1, c, size=(n, k)), device="cuda")
    assert _grid(x, t)[0][0] == "multilabel_hinge_split_kernel"
    # the loss layer's scale (mean over N, 1/C): an unscaled float16 gradient of 200,000
    # classes overflows to -inf, correctly rounded (|g| > 65,504; seen on an H200)
    row_scale = np.full(n, 1.0 / (n * c))
    kw = {"margin": 1.0, "p": p, "weight": None, "want_grad": True,
          "grad_scale": torch.tensor(row_scale, device="cuda")}  # fmt: skip
    runs = [tb.hinge(x, t, **kw) for _ in range(2)]
    assert bitwise_equal(runs[0][0], runs[1][0]) and bitwise_equal(runs[0][1], runs[1][1])
    ref_loss, ref_grad = reference.hinge_numpy(
        x.double().cpu().numpy(), t.cpu().numpy(), margin=1.0, p=p, weight=None, want_grad=True
    )
    ref_grad = ref_grad * row_scale[:, None]
    tol = {"float64": 1e-10, "float32": 1e-4}.get(dtype, 1e-3)
    assert_close(runs[0][0].cpu(), ref_loss, rtol=tol, atol=tol, what="split loss")
    scale = np.abs(ref_grad).max()
    gtol = SPLIT_GTOL[dtype] if dtype != "float32" else 1e-4
    assert_close(runs[0][1].double().cpu(), ref_grad, rtol=gtol, atol=gtol * scale,
                 what="split grad")  # fmt: skip
    monkeypatch.setattr(tb, "programs_per_row", lambda *a, **kw: 1)
    whole = tb.hinge(x, t, **kw)
    assert_close(runs[0][0].cpu(), whole[0].cpu(), rtol=tol, atol=tol, what="split vs whole")


@pytest.mark.skipif(not INTERPRETED, reason="forces the split on interpreted programs")
def test_split_rows_property(monkeypatch):
    """Hypothesis: random small problems (C from 1, K up to 16, any T, values after the
    terminator, ties in halves, p, weight) through a forced split of 2 to 6 slices (often more
    slices than chunks) give the oracle's loss and gradient in float64."""
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @st.composite
    def problems(draw):
        n = draw(st.integers(1, 3))
        c = draw(st.integers(1, 100))
        k = draw(st.integers(1, 16))
        x = draw(st.lists(st.integers(-6, 6), min_size=n * c, max_size=n * c))
        t = draw(st.lists(st.integers(-1, c - 1), min_size=n * k, max_size=n * k))
        s = draw(st.integers(2, 6))
        p = draw(st.sampled_from([1, 2]))
        weighted = draw(st.booleans())
        return np.array(x, float).reshape(n, c) / 2, np.array(t).reshape(n, k), s, p, weighted

    @hyp.settings(max_examples=15, deadline=None, database=None)
    @hyp.given(problems())
    def check(problem):
        x, t, s, p, weighted = problem
        _force_split(monkeypatch, s)
        assert _grid(torch.tensor(x), torch.tensor(t))[0][0] == "multilabel_hinge_split_kernel"
        weight = np.linspace(0.5, 2.0, x.shape[1]) if weighted else None
        loss, grad = _triton_np(x, t, device="cpu", p=p, weight=weight)
        ref_loss, ref_grad = oracle_dense(x, t, p=p, weight=weight)
        assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12, what=f"S={s} p={p} loss")
        assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12, what=f"S={s} p={p} grad")

    check()
