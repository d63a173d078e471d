"""fused_linear_multilabel_margin_loss (DESIGN.md §10): value and gradients with respect to
hidden, weight and bias equal the unfused loss on hidden @ weight.T + bias (the unfused loss is
itself checked against the literal-loop oracle elsewhere; here torch float64 autograd through
it is the reference), for every chunk size, option, backend and framework; label-parallel over
2 and 3 gloo processes equals one process; errors."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xmargin

from conftest import assert_close

torch = pytest.importorskip("torch")

fused = xmargin.fused_linear_multilabel_margin_loss
vg = xmargin.value_and_grad(fused, argnums=(0, 1, 3))
CPU_BACKENDS = ["numba", "reference", "portable"]


def _problem(seed, n=7, d=5, c=29, k=4):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, d))
    W = rng.normal(size=(c, d))
    b = rng.normal(size=c)
    t = rng.integers(-1, c, (n, k))
    t[0] = [2, 2, -1, 5]  # a repeat, a terminator, a value after it
    t[1] = -1  # no positive
    t[2] = [c - 1, 0, 13, 14]
    return h, W, b, t


def _unfused(h, W, b, t, reduction="mean", row_weights=None, **kw):
    """Loss and gradients (hidden, weight, bias) of the unfused loss by torch autograd."""
    th, tW = torch.tensor(h, requires_grad=True), torch.tensor(W, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    kw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    if "class_weight" in kw:
        kw["weight"] = kw.pop("class_weight")
    scores = th @ tW.T + (0 if tb is None else tb)
    loss = xmargin.multilabel_margin_loss(scores, torch.tensor(t), reduction=reduction, **kw)
    out = loss if row_weights is None else loss * torch.tensor(row_weights)
    out.sum().backward()
    return (loss.detach().numpy(), th.grad.numpy(), tW.grad.numpy(),
            None if tb is None else tb.grad.numpy())  # fmt: skip


def _close(got, want, what, tol=1e-12):
    for name, g, w in zip(("loss", "hidden", "weight", "bias"), got, want, strict=True):
        if w is None:
            assert g is None, f"{what}: {name}"
            continue
        assert_close(np.asarray(g), np.asarray(w), rtol=tol, atol=tol, what=f"{what} {name}")


OPTIONS = {
    "plain": {},
    "p=2,margin": {"p": 2, "margin": 0.5},
    "class_weight": {"class_weight": np.linspace(0.5, 2.0, 29)},
    "neg_weight": {"neg_weight": np.where(np.arange(29) % 4 == 0, 0.0, np.linspace(2, 0.2, 29))},
    "k=3": {"negatives": 3, "p": 2},
    "k=C": {"negatives": 29},
    "candidates": {"negatives": np.random.default_rng(1).integers(-1, 29, (7, 6))},
    "all": {"negatives": 2, "p": 2, "class_weight": np.linspace(0.5, 2.0, 29),
            "neg_weight": np.linspace(2, 0.2, 29)},
}  # fmt: skip


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("chunk", [1, 7, 29, 1000])
def test_value_and_grad_equals_unfused(backend, options, chunk):
    h, W, b, t = _problem(3)
    kw = OPTIONS[options]
    loss, (gh, gw, gb) = vg(h, W, t, b, chunk_size=chunk, backend=backend, **kw)
    _close((loss, gh, gw, gb), _unfused(h, W, b, t, **kw), f"{backend} {options} chunk={chunk}")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_autograd_equals_unfused(reduction, bias, dtype):
    h, W, b, t = _problem(5)
    b = b if bias else None
    dt = getattr(torch, dtype)
    th = torch.tensor(h, dtype=dt, requires_grad=True)
    tW = torch.tensor(W, dtype=dt, requires_grad=True)
    tb = None if b is None else torch.tensor(b, dtype=dt, requires_grad=True)
    loss = fused(th, tW, torch.tensor(t), tb, reduction, chunk_size=8, p=2)
    assert loss.dtype == dt
    rw = np.linspace(0.5, 1.5, 7) if reduction == "none" else None  # per-row grad_output
    (loss if rw is None else loss * torch.tensor(rw, dtype=dt)).sum().backward()
    # the reference on the same (rounded) inputs in float64
    want = _unfused(th.detach().double().numpy(), tW.detach().double().numpy(),
                    None if tb is None else tb.detach().double().numpy(), t, reduction,
                    row_weights=rw, p=2)  # fmt: skip
    tol = 1e-12 if dtype == "float64" else 2e-5
    got = (loss.detach().double().numpy(), th.grad.double().numpy(), tW.grad.double().numpy(),
           None if tb is None else tb.grad.double().numpy())  # fmt: skip
    _close(got, want, f"torch {dtype} {reduction}", tol)


def test_jax_jit_grad():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    h, W, b, t = _problem(7)
    for red in ("mean", "none"):
        ref = vg(h, W, t, b, red, chunk_size=6, negatives=3)
        with jax.enable_x64(True):

            def f(h_, W_, b_, red=red):
                out = fused(h_, W_, jnp.asarray(t), b_, red, chunk_size=6, negatives=3)
                return jnp.sum(out)

            args = (jnp.asarray(h), jnp.asarray(W), jnp.asarray(b))
            val = jax.jit(f)(*args)
            grads = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(*args)
        assert_close(float(val), float(np.sum(ref[0])), rtol=1e-12, atol=1e-12, what="jax loss")
        for g, want in zip(grads, ref[1], strict=True):
            assert_close(np.asarray(g), want, rtol=1e-12, atol=1e-12, what=f"jax grad {red}")


def test_nan_and_bad_rows_match_unfused():
    h, W, b, t = _problem(9)
    h[3, 1] = np.nan
    with xmargin.options(check_values=False):
        t[4, 0] = 99  # out of range: a NaN row
        loss, (gh, gw, gb) = vg(h, W, t, b, "none", chunk_size=5)
        want = _unfused(h, W, b, t, "none")
    assert np.isnan(loss[3]) and np.isnan(loss[4]) and np.all(np.isfinite(np.delete(loss, [3, 4])))
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(want[0]))
    assert_close(np.delete(loss, [3, 4]), np.delete(want[0], [3, 4]), rtol=1e-12, atol=1e-12,
                 what="finite rows")  # fmt: skip
    assert np.all(np.isnan(gh[[3, 4]])) and np.all(np.isnan(gw)) and np.all(np.isnan(gb))
    assert np.all(np.isfinite(np.delete(gh, [3, 4], axis=0)))


def test_second_derivative_and_torch_func_raise():
    h, W, b, t = _problem(11)
    th = torch.tensor(h, requires_grad=True)
    loss = fused(th, torch.tensor(W), torch.tensor(t), torch.tensor(b), p=2)
    (g,) = torch.autograd.grad(loss, th, create_graph=True)
    with pytest.raises(xmargin.XMarginTypeError, match="no second derivative"):
        g.sum().backward()
    with pytest.raises(xmargin.XMarginTypeError, match=r"torch\.func transforms"):
        torch.func.grad(lambda a: fused(a, torch.tensor(W), torch.tensor(t)))(torch.tensor(h))


def test_no_grad_and_value_only():
    h, W, b, t = _problem(13)
    want = _unfused(h, W, b, t)[0]
    with torch.no_grad():
        got = fused(torch.tensor(h), torch.tensor(W, requires_grad=True), torch.tensor(t),
                    torch.tensor(b))  # fmt: skip
    assert not got.requires_grad
    assert_close(got.item(), want, rtol=1e-13, atol=1e-13, what="no_grad")
    assert_close(float(fused(h, W, t, b)), want, rtol=1e-13, atol=1e-13, what="numpy")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hidden": np.zeros(3)}, xmargin.XMarginValueError, r"'hidden' must have shape \(N, D\)"),
        ({"weight": np.zeros((4, 2))}, xmargin.XMarginValueError,
         r"'weight' must have shape \(C, D\) with D = 3"),
        ({"bias": np.zeros(5)}, xmargin.XMarginValueError, r"'bias' must have shape \(C,\) = \(4,\)"),
        ({"target": np.zeros((3, 1), np.int64)}, xmargin.XMarginValueError,
         r"'target' must have shape \(N, K\) with N = 2"),
        ({"target": np.array([[4], [0]])}, xmargin.XMarginValueError, r"'target' is out of range"),
        ({"chunk_size": 0}, xmargin.XMarginValueError, r"'chunk_size' must be None or an int >= 1"),
        ({"class_start": 1}, xmargin.XMarginValueError, r"needs group="),
        ({"num_classes": 8}, xmargin.XMarginValueError, r"needs group="),
        ({"group": object()}, xmargin.XMarginValueError, r"'num_classes' is required"),
        ({"group": object(), "num_classes": 6, "class_start": 3}, xmargin.XMarginValueError,
         r"classes \[3, 7\) must lie in \[0, num_classes = 6\)"),
        ({"negatives": 0}, xmargin.XMarginValueError, r"'negatives' must be an int >= 1"),
        ({"neg_weight": np.ones(3)}, xmargin.XMarginValueError, r"inconsistent neg_weight size"),
        ({"class_weight": -np.ones(4)}, None, None),
        ({"p": 3}, xmargin.XMarginValueError, r"p"),
        ({"backend": "nope"}, xmargin.XMarginValueError, r"unknown backend 'nope'"),
    ],
)  # fmt: skip
def test_errors(kwargs, error, match):
    args = {"hidden": np.zeros((2, 3)), "weight": np.zeros((4, 3)),
            "target": np.array([[1, -1], [0, 2]]), "bias": np.zeros(4)} | kwargs  # fmt: skip
    if error is None:  # (a negative class weight is allowed, as in multilabel_margin_loss)
        fused(**args)
        return
    with pytest.raises(error, match=r"^fused_linear_multilabel_margin_loss: .*" + match):
        fused(**args)


# --------------------------------------------------------------------------------------------
# label-parallel: 2 and 3 gloo processes against one
# --------------------------------------------------------------------------------------------
LABEL_PARALLEL = {
    "plain": {"p": 1},
    "p=2,weights": {"p": 2, "class_weight": np.linspace(0.5, 2.0, 31),
                    "neg_weight": np.linspace(2.0, 0.2, 31), "reduction": "none"},
    "k=4": {"negatives": 4, "reduction": "sum"},
    "candidates": {"negatives": np.random.default_rng(2).integers(-1, 31, (9, 7))},
}  # fmt: skip


def label_parallel_case(case):
    """The problem of a label-parallel case (also built by each worker process)."""
    rng = np.random.default_rng(17)
    h = rng.normal(size=(9, 6))
    W = rng.normal(size=(31, 6))
    b = rng.normal(size=31)
    t = rng.integers(-1, 31, (9, 5))
    t[0] = [30, 0, 15, -1, 3]
    kw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v)
          for k, v in LABEL_PARALLEL[case].items()}  # fmt: skip
    kw["chunk_size"] = 4
    return h, W, b, t, kw


def shard_bounds(c, world):
    """Unequal shards: rank r holds [lo, hi), the cuts at C·(r/world)²."""
    cuts = [c * r * r // (world * world) for r in range(world)] + [c]
    return list(itertools.pairwise(cuts))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_label_parallel_equals_one_process(world, tmp_path):
    """Every case in one launch of ``world`` processes (gloo), each rank's gradients against
    the unfused loss's rows of its shard."""
    pytest.importorskip("torch.distributed")
    worker = Path(__file__).parent / "tools" / "label_parallel_worker.py"
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(worker), str(r), str(world), str(port),
                               str(tmp_path), *LABEL_PARALLEL], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for r in range(world)]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    for case in LABEL_PARALLEL:
        h, W, b, t, kw = label_parallel_case(case)
        kw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        kw.pop("chunk_size")
        red = kw.pop("reduction", "mean")
        rw = np.linspace(0.5, 1.5, 9) if red == "none" else None
        want = _unfused(h, W, b, t, red, row_weights=rw, **kw)
        for r in range(world):
            got = np.load(tmp_path / f"{case}-rank{r}.npz")
            lo, hi = shard_bounds(W.shape[0], world)[r]
            _close((got["loss"], got["h"], got["W"], got["b"]),
                   (want[0], want[1], want[2][lo:hi], want[3][lo:hi]),
                   f"{case} rank {r}/{world}")  # fmt: skip


def test_shard_bounds_cover_the_classes():
    for c, world in ((31, 2), (31, 3), (12, 3)):
        bounds = shard_bounds(c, world)
        assert bounds[0][0] == 0 and bounds[-1][1] == c
        assert all(lo < hi for lo, hi in bounds)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert len({hi - lo for lo, hi in bounds}) > 1 or c % world == 0


# --------------------------------------------------------------------------------------------
# xmargin.nn.FusedLinearMultiLabelMarginLoss
# --------------------------------------------------------------------------------------------
def test_module_is_linear_plus_the_unfused_loss():
    import xmargin.nn

    torch.manual_seed(3)
    head = xmargin.nn.FusedLinearMultiLabelMarginLoss(5, 29, negatives=4, p=2, chunk_size=6,
                                                     neg_weight=np.linspace(1, 2, 29))  # fmt: skip
    torch.manual_seed(3)
    linear = torch.nn.Linear(5, 29)  # the same initialisation
    assert torch.equal(head.weight, linear.weight) and torch.equal(head.bias, linear.bias)
    assert set(head.state_dict()) == {"weight", "bias", "neg_weight"}
    head.double()
    linear.double()
    h, _, _, t = _problem(21)
    x = torch.tensor(h)
    loss = head(x, torch.tensor(t))
    loss.backward()
    ref = xmargin.multilabel_margin_loss(
        linear(x), torch.tensor(t), negatives=4, p=2, neg_weight=head.neg_weight
    )
    ref.backward()
    assert_close(loss.item(), ref.item(), rtol=1e-12, atol=1e-12, what="module loss")
    assert_close(head.weight.grad.numpy(), linear.weight.grad.numpy(), rtol=1e-12, atol=1e-12,
                 what="module weight grad")  # fmt: skip
    assert_close(head.bias.grad.numpy(), linear.bias.grad.numpy(), rtol=1e-12, atol=1e-12,
                 what="module bias grad")  # fmt: skip
    assert torch.equal(head.logits(x), linear(x))
    assert "negatives=4" in repr(head) and "num_classes=29" in repr(head)


def test_backward_twice_raises_and_grad_output_scales():
    h, W, b, t = _problem(23)
    th = torch.tensor(h, requires_grad=True)
    loss = fused(th, torch.tensor(W), torch.tensor(t), torch.tensor(b))
    (3.0 * loss).backward(retain_graph=True)
    want = _unfused(h, W, b, t)[1]
    assert_close(th.grad.numpy(), 3.0 * want, rtol=1e-12, atol=1e-12, what="grad_output 3")
    with pytest.raises(xmargin.XMarginTypeError, match="backward through the same loss twice"):
        loss.backward()


@pytest.mark.parametrize("negatives", [None, 3])
def test_any_namespace_array_api_strict(negatives):
    xs = pytest.importorskip("array_api_strict")
    h, W, b, t = _problem(25)
    want = _unfused(h, W, b, t, negatives=negatives)
    loss, grads = vg(xs.asarray(h), xs.asarray(W), xs.asarray(t), xs.asarray(b), chunk_size=6,
                     negatives=negatives)  # fmt: skip
    assert type(loss).__module__.startswith("array_api_strict")
    _close((float(loss), *(np.asarray(g) for g in grads)), want, "array-api-strict")


@pytest.mark.parametrize("negatives", [None, 2])
def test_triton_kernel_per_chunk(negatives):
    """The per-chunk judging on the Triton kernel (in its interpreter here; CUDA on a GPU)."""
    pytest.importorskip("triton")
    import os

    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")  # (conftest sets it without a GPU)
    h, W, b, t = _problem(27, n=4, c=16)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    th = torch.tensor(h, device=dev, requires_grad=True)
    tW = torch.tensor(W, device=dev, requires_grad=True)
    loss = fused(th, tW, torch.tensor(t, device=dev), torch.tensor(b, device=dev), p=2,
                 chunk_size=5, negatives=negatives, backend="triton")  # fmt: skip
    loss.backward()
    want = _unfused(h, W, b, t, p=2, negatives=negatives)
    _close((loss.item(), th.grad.cpu().numpy(), tW.grad.cpu().numpy(), None),
           (want[0], want[1], want[2], None), "triton per chunk")  # fmt: skip


def test_torch_compile_runs_it_eagerly():
    h, W, b, t = _problem(29)
    th = torch.tensor(h, requires_grad=True)
    tW, tt, tb = torch.tensor(W), torch.tensor(t), torch.tensor(b)
    loss = torch.compile(lambda a: fused(a, tW, tt, tb, p=2) * 2.0)(th)
    loss.backward()
    want = _unfused(h, W, b, t, p=2)
    assert_close(loss.item(), 2.0 * want[0], rtol=1e-12, atol=1e-12, what="compiled loss")
    assert_close(th.grad.numpy(), 2.0 * want[1], rtol=1e-12, atol=1e-12, what="compiled grad")
