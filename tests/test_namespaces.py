"""Every loss on every namespace (the ``xp`` fixture) gives NumPy's float64 numbers, keeps the
input's namespace, device and dtype, and half precision works with float32 accumulation."""

from __future__ import annotations

import numpy as np
import pytest

import xmargin

import oracle
from conftest import assert_close

RNG = np.random.default_rng(7)
X = RNG.normal(size=(6, 5))
X2 = RNG.normal(size=(6, 5))
PM1 = np.where(RNG.random((6, 5)) > 0.5, 1.0, -1.0)
Y01 = (PM1 + 1) / 2
IDX = RNG.integers(-1, 5, size=(6, 5))
IDX_NARROW = RNG.integers(-1, 5, size=(6, 2))
CLS = RNG.integers(0, 5, size=6)
W = RNG.uniform(0.5, 2.0, size=5)
V = RNG.uniform(0.25, 3.0, size=5)
# candidate negatives: repeats, -1 padding anywhere, some the row's own positives
CAND = RNG.integers(-1, 5, size=(6, 4))

# name -> (positional arrays as NumPy, keyword options, which positional args are scores)
CASES = {
    "soft_margin": ("soft_margin_loss", (X, PM1), {}, (0,)),
    "multilabel_soft_margin": ("multilabel_soft_margin_loss", (X, Y01), {}, (0,)),
    "multilabel_soft_margin_weight": ("multilabel_soft_margin_loss", (X, Y01, W), {}, (0,)),
    "multi_margin": ("multi_margin_loss", (X, CLS), {}, (0,)),
    "multi_margin_p2_weight": (
        "multi_margin_loss",
        (X, CLS),
        {"p": 2, "weight": W, "margin": 0.5},
        (0,),
    ),
    "multilabel_margin": ("multilabel_margin_loss", (X, IDX), {}, (0,)),
    "multilabel_margin_options": (
        "multilabel_margin_loss",
        (X, IDX_NARROW),
        {"margin": 0.3, "p": 2, "weight": W},
        (0,),
    ),
    "multilabel_margin_mined": (
        "multilabel_margin_loss",
        (X, IDX_NARROW),
        {"negatives": 2, "neg_weight": V, "weight": W, "p": 2},
        (0,),
    ),
    "multilabel_margin_candidates": (
        "multilabel_margin_loss",
        (X, IDX),
        {"negatives": CAND, "neg_weight": V, "margin": 0.5},
        (0,),
    ),
    "hinge_embedding": ("hinge_embedding_loss", (X, PM1), {"margin": 0.7}, (0,)),
    "margin_ranking": ("margin_ranking_loss", (X, X2, PM1), {"margin": 0.2}, (0, 1)),
}


def _convert(xp, value, dtype=None):
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and dtype is not None:
            return xp.asarray(value, dtype=dtype)
        return xp.asarray(value)
    return value


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", CASES)
def test_loss_on_namespace(xp, case, reduction):
    name, args, kwargs, scores = CASES[case]
    fn = getattr(xmargin, name)
    expected = fn(*args, **kwargs, reduction=reduction)
    xargs = [_convert(xp, a) for a in args]
    xkwargs = {k: _convert(xp, v) for k, v in kwargs.items()}
    out = fn(*xargs, **xkwargs, reduction=reduction)
    assert type(out).__module__.split(".")[0] == type(xargs[0]).__module__.split(".")[0], (
        f"{case}: result is a {type(out)}, input a {type(xargs[0])}"
    )
    assert out.dtype == xargs[0].dtype
    assert_close(xp.to_numpy(out), expected, rtol=1e-12, atol=1e-12, what=f"{case} on {xp}")

    _, grads = xmargin.value_and_grad(fn, argnums=scores)(*xargs, **xkwargs, reduction=reduction)
    _, ref_grads = xmargin.value_and_grad(fn, argnums=scores)(*args, **kwargs, reduction=reduction)
    for i, g, ref in zip(scores, grads, ref_grads, strict=True):
        assert type(g) is type(xargs[i]) and g.dtype == xargs[i].dtype
        assert tuple(g.shape) == tuple(args[i].shape)
        assert_close(xp.to_numpy(g), ref, rtol=1e-12, atol=1e-12, what=f"{case} grad {i} on {xp}")


@pytest.mark.parametrize("case", CASES)
def test_float32(xp, case):
    name, args, kwargs, _ = CASES[case]
    fn = getattr(xmargin, name)
    expected = fn(*args, **kwargs, reduction="none")
    xargs = [_convert(xp, a, "float32") for a in args]
    xkwargs = {k: _convert(xp, v, "float32") for k, v in kwargs.items()}
    out = fn(*xargs, **xkwargs, reduction="none")
    assert out.dtype == xp.module.float32
    assert_close(xp.to_numpy(out), expected, rtol=2e-6, atol=2e-6, what=f"{case} float32 on {xp}")


HALF = ["float16", "bfloat16"]


@pytest.mark.parametrize("half", HALF)
@pytest.mark.parametrize("case", CASES)
def test_half_precision_torch(case, half):
    torch = pytest.importorskip("torch")
    name, args, kwargs, scores = CASES[case]
    fn = getattr(xmargin, name)
    dtype = getattr(torch, half)
    # the same rounded inputs, as torch tensors in the half dtype
    targs = [
        torch.from_numpy(a).to(dtype) if a.dtype.kind == "f" else torch.from_numpy(a) for a in args
    ]
    tkw = {
        k: (
            torch.from_numpy(v).to(dtype)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f"
            else torch.from_numpy(v)
            if isinstance(v, np.ndarray)
            else v
        )
        for k, v in kwargs.items()
    }
    ref, ref_grads = _float64_reference(torch, case, name, targs, tkw, scores)
    for i in scores:
        targs[i].requires_grad_()
    out = fn(*targs, **tkw, reduction="none")
    assert out.dtype == dtype
    tol = {"float16": 2e-3, "bfloat16": 1.6e-2}[half]
    assert_close(out.detach().double(), ref, rtol=tol, atol=tol, what=f"{case} {half}")
    out.sum().backward()
    for i, ref_g in zip(scores, ref_grads, strict=True):
        g = targs[i].grad
        assert g.dtype == dtype
        # one rounding of a float32-accumulated gradient to the half dtype
        scale = float(abs(ref_g).max()) or 1.0
        assert_close(g.double(), ref_g, rtol=tol, atol=tol * scale, what=f"{case} {half} grad {i}")


def _float64_reference(torch, case, name, targs, tkw, scores):
    """Values and gradients of sum(loss) on the (rounded) inputs in float64, from
    torch.nn.functional, or from the literal-loop oracle for options PyTorch lacks."""
    if case.startswith("multilabel_margin_"):
        x = targs[0].double().numpy()
        kw = {k: (v.double().numpy() if isinstance(v, torch.Tensor) and v.is_floating_point()
                  else v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in tkw.items()}  # fmt: skip
        losses, grads = oracle.multilabel_margin(x, targs[1].numpy(), **kw)
        return np.asarray(losses), [np.asarray(grads)]
    a64 = [a.double() if a.is_floating_point() else a for a in targs]
    for i in scores:
        a64[i].requires_grad_()
    kw64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in tkw.items()}
    ref = getattr(torch.nn.functional, name)(*a64, **kw64, reduction="none")
    ref.sum().backward()
    return ref.detach(), [a64[i].grad for i in scores]


def test_half_precision_numpy():
    x = X.astype(np.float16)
    out = xmargin.multilabel_margin_loss(x, IDX, reduction="none")
    assert out.dtype == np.float16
    ref = xmargin.multilabel_margin_loss(x.astype(np.float64), IDX, reduction="none")
    assert_close(out, ref, rtol=2e-3, atol=2e-3, what="numpy float16")
    _, g = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(x, IDX)
    assert g.dtype == np.float16
