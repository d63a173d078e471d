"""Gradients: torch.autograd.gradcheck (float64) through every loss, and value_and_grad."""

from __future__ import annotations

import numpy as np
import pytest

import xmargin

import oracle
from conftest import assert_close

torch = pytest.importorskip("torch")


def _x(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    # spread-out scores: gradcheck's finite differences stay away from the hinges' kinks
    return (torch.randn(*shape, dtype=torch.float64, generator=g) * 3).requires_grad_()


def _pm1(*shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, shape, generator=g).double() * 2 - 1


W5 = torch.linspace(0.5, 2, 5, dtype=torch.float64)
IDX = torch.tensor([[0, 4, -1], [2, 2, 1], [-1, 0, 0], [3, -1, 4]])

# case -> (loss, score inputs, the other positional arguments, keyword options)
CASES = {
    "soft_margin": (xmargin.soft_margin_loss, (_x(4, 5),), (_pm1(4, 5),), {}),
    "multilabel_soft_margin": (
        xmargin.multilabel_soft_margin_loss,
        (_x(4, 5),),
        ((_pm1(4, 5) + 1) / 2, W5),
        {},
    ),
    "multi_margin": (
        xmargin.multi_margin_loss,
        (_x(4, 5),),
        (torch.tensor([0, 4, 2, 1]),),
        {"p": 2, "margin": 1.5, "weight": W5},
    ),
    "multilabel_margin": (xmargin.multilabel_margin_loss, (_x(4, 5),), (IDX,), {}),
    "multilabel_margin_p2_weight": (
        xmargin.multilabel_margin_loss,
        (_x(4, 5),),
        (IDX,),
        {"margin": 2.0, "p": 2, "weight": torch.tensor([1.0, 0.5, 2.0, -1.0, 3.0]).double()},
    ),
    "hinge_embedding": (xmargin.hinge_embedding_loss, (_x(4, 5),), (_pm1(4, 5),), {"margin": 0.5}),
    "margin_ranking": (
        xmargin.margin_ranking_loss,
        (_x(4, 5), _x(1, 5, seed=3)),
        (_pm1(4, 1),),
        {"margin": 0.1},
    ),
}


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", CASES)
def test_gradcheck(case, reduction):
    fn, scores, rest, kwargs = CASES[case]

    def f(*s):
        return fn(*s, *rest, **kwargs, reduction=reduction)

    assert torch.autograd.gradcheck(f, scores, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", CASES)
def test_autograd_equals_value_and_grad(case, reduction):
    """torch autograd and the analytic gradients agree, on torch tensors and on NumPy arrays."""
    fn, scores, rest, kwargs = CASES[case]
    out = fn(*scores, *rest, **kwargs, reduction=reduction)
    grads = torch.autograd.grad(out.sum(), scores)
    argnums = tuple(range(len(scores)))
    for to_ns in (lambda a: a, lambda a: a.detach().numpy()):
        args = [to_ns(a) for a in (*scores, *rest)]
        kw = {k: to_ns(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        loss, vg = xmargin.value_and_grad(fn, argnums=argnums)(*args, **kw, reduction=reduction)
        assert_close(np.asarray(loss), out.detach(), rtol=1e-12, atol=1e-12, what=f"{case} loss")
        for g, ref in zip(vg, grads, strict=True):
            assert not getattr(g, "requires_grad", False)
            assert_close(np.asarray(g), ref, rtol=1e-12, atol=1e-12, what=f"{case} grad")


def test_multilabel_margin_backward_scales_by_grad_output():
    x = _x(3, 6)
    t = torch.tensor([[0, 1, -1, 0, 0, 0], [5, 5, 5, 5, 5, 5], [2, 0, 3, -1, 1, 1]])
    out = xmargin.multilabel_margin_loss(x, t, reduction="none")
    seed = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    (g,) = torch.autograd.grad(out, x, seed)
    ref_x = x.detach().clone().requires_grad_()
    (ref,) = torch.autograd.grad(
        torch.nn.functional.multilabel_margin_loss(ref_x, t, reduction="none"), ref_x, seed
    )
    assert_close(g, ref, rtol=1e-12, atol=1e-12, what="scaled backward")


def test_no_graph_without_requires_grad():
    x = _x(2, 3).detach()
    out = xmargin.multilabel_margin_loss(x, torch.tensor([[0, -1, 1], [2, 1, 0]]))
    assert not out.requires_grad
    with torch.no_grad():
        out = xmargin.multilabel_margin_loss(_x(2, 3), torch.tensor([[0, -1, 1], [2, 1, 0]]))
    assert not out.requires_grad


def test_value_and_grad_with_loss_objects():
    x = np.array([[0.1, 0.2, 0.4, 0.8]])
    y = np.array([[3, 0]])
    obj = xmargin.MultiLabelMarginLoss(margin=0.5, p=2, reduction="sum")
    loss, g = xmargin.value_and_grad(obj)(x, y)
    loss2, g2 = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
        x, y, reduction="sum", margin=0.5, p=2
    )
    assert loss == loss2 and np.array_equal(g, g2)
    mr = xmargin.MarginRankingLoss(margin=0.3)
    a, b, t = np.array([0.1, 0.5]), np.array([0.2, 0.1]), np.array([1.0, -1.0])
    loss, (ga, gb) = xmargin.value_and_grad(mr, argnums=(0, 1))(a, b, t)
    assert np.array_equal(ga, -gb)


def test_reduction_none_gradient_is_that_of_the_sum():
    x = np.random.default_rng(0).normal(size=(4, 5))
    t = np.array([[0, 1, -1, 0, 0], [4, -1, 0, 0, 0], [1, 2, 3, -1, 0], [-1, 0, 0, 0, 0]])
    _, g_none = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(x, t, reduction="none")
    _, g_sum = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(x, t, reduction="sum")
    _, g_mean = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(x, t, reduction="mean")
    assert np.array_equal(g_none, g_sum)
    assert_close(g_mean, g_sum / 4, rtol=1e-15, atol=0, what="mean = sum / N")


# the torch.library op behind multilabel_margin_loss on the default CPU backends (the Triton
# tests cover backend="triton"): opcheck (schema, fake tensor, autograd registration) and
# torch.compile(fullgraph=True) with automatic dispatch, -1 terminators, p = 2 and weights.
OP_T = torch.tensor([[0, 5, -1, 2, 2, 2], [4, 4, 1, 0, -1, 3], [-1, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("backend", ["reference", "portable"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_opcheck_on_cpu_backends(backend, p, weighted):
    x = _x(3, 6, seed=5)
    w = torch.linspace(0.5, 2.0, 6, dtype=torch.float64) if weighted else None
    scale = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    import xmargin.adapters.torch_compile  # noqa: F401 - registers the op (loaded lazily otherwise)

    op = torch.ops.xmargin.pairwise_hinge.default
    for want in (True, False):
        xx = x if want else x.detach()
        torch.library.opcheck(op, (xx, OP_T, 0.7, p, w, want, backend))
        torch.library.opcheck(op, (xx.detach(), OP_T, 0.7, p, w, want, backend, scale))


@pytest.mark.parametrize(("p", "weighted"), [(1, False), (2, True)])
def test_torch_compile_fullgraph_with_automatic_dispatch(p, weighted):
    x = _x(3, 6, seed=6)
    w = torch.linspace(0.5, 2.0, 6, dtype=torch.float64) if weighted else None

    def f(x, t):
        return xmargin.multilabel_margin_loss(x, t, margin=0.7, p=p, weight=w)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x, OP_T)
    (g,) = torch.autograd.grad(out, x)
    x_np = x.detach().numpy()
    ref, ref_g = oracle.multilabel_margin(
        x_np, OP_T.numpy(), margin=0.7, p=p, weight=None if w is None else w.numpy()
    )
    assert_close(out.detach().numpy(), np.mean(ref), rtol=1e-12, atol=1e-12, what="compiled")
    assert_close(g.numpy(), np.asarray(ref_g) / 3, rtol=1e-12, atol=1e-12, what="compiled grad")


def test_retained_graph_gives_the_same_gradient_twice():
    """The thin path hands the kernel's gradient to autograd as it is when grad_output is 1;
    a kept graph must not see it modified by the first accumulation."""
    x = _x(5, 7, seed=11)
    t = torch.tensor(np.random.default_rng(0).integers(-1, 7, size=(5, 7)))
    for p in (1, 2):
        for reduction in ("mean", "sum", "none"):
            leaf = x.detach().clone().requires_grad_()
            loss = xmargin.multilabel_margin_loss(leaf, t, p=p, reduction=reduction).sum()
            loss.backward(retain_graph=True)
            first = leaf.grad.clone()
            loss.backward(retain_graph=True)
            loss.backward()
            assert torch.equal(leaf.grad, 3 * first), (p, reduction)
            _, g = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(
                x.detach().numpy(), t.numpy(), p=p, reduction=reduction
            )
            assert_close(first, g, rtol=1e-12, atol=1e-15, what=f"p={p} {reduction}")


def test_retained_graph_after_an_inplace_change_raises():
    """The first backward hands the kernel's gradient to autograd and a second one computes it
    again; if the input changed in place meanwhile, that raises (as autograd does for a
    modified saved tensor) instead of giving the gradient at the new values."""
    x = _x(4, 6, seed=3)
    t = torch.tensor([[0, 2, -1], [1, -1, -1], [5, 4, 3], [0, -1, -1]])
    leaf = x.detach().clone().requires_grad_()
    base = leaf * 1.0  # a non-leaf, which may be changed in place
    loss = xmargin.multilabel_margin_loss(base, t)
    loss.backward(retain_graph=True)
    first = leaf.grad.clone()
    with torch.no_grad():
        base.add_(1.0)
    with pytest.raises(RuntimeError, match="the input of the loss is at version"):
        loss.backward()
    assert torch.equal(leaf.grad, first)
    # the same for targets changed in place
    leaf2 = x.detach().clone().requires_grad_()
    t2 = t.clone()
    loss2 = xmargin.multilabel_margin_loss(leaf2, t2)
    loss2.backward(retain_graph=True)
    t2[0, 0] = 5
    with pytest.raises(RuntimeError, match="the target of the loss is at version"):
        loss2.backward()
