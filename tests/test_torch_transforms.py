"""torch.compile (fullgraph, static and dynamic shapes) and torch.func (grad, vmap, jacrev,
jvp) on all six losses: values and gradients equal to eager / to a loop over the batch, value
checks skipped inside transforms (a vmapped tensor has no single value), never a wrong number.
"""

from __future__ import annotations

import numpy as np
import pytest

import xmargin

from conftest import assert_close

torch = pytest.importorskip("torch")

G = torch.Generator().manual_seed(0)
X = torch.randn(4, 5, dtype=torch.float64, generator=G) * 2
PM1 = torch.randint(0, 2, (4, 5), generator=G).double() * 2 - 1
IDX = torch.tensor([[0, 4, -1, 0, 0], [2, 2, 1, -1, 0], [-1, 0, 0, 0, 0], [3, -1, 4, 0, 0]])
W5 = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)

# name -> (loss, the non-score arguments, keyword options); the scores come first, except for
# margin_ranking_loss whose second score argument is fixed here
CASES = {
    "soft_margin": (xmargin.soft_margin_loss, (PM1,), {}),
    "multilabel_soft_margin": (xmargin.multilabel_soft_margin_loss, ((PM1 + 1) / 2,), {"weight": W5}),
    "multi_margin": (xmargin.multi_margin_loss, (torch.tensor([0, 4, 2, 1]),), {"p": 2, "weight": W5}),
    "multilabel_margin": (xmargin.multilabel_margin_loss, (IDX,), {"margin": 0.7}),
    "multilabel_margin_p2": (xmargin.multilabel_margin_loss, (IDX,), {"p": 2, "weight": W5}),
    "hinge_embedding": (xmargin.hinge_embedding_loss, (PM1,), {"margin": 0.5}),
    "margin_ranking": (xmargin.margin_ranking_loss, (X.flip(0), PM1), {"margin": 0.1}),
}  # fmt: skip


def _call(case, x, *rest, reduction="mean"):
    fn, args, kw = CASES[case]
    return fn(x, *(rest or args), **kw, reduction=reduction)


# --------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("case", CASES)
def test_compile_fullgraph_equals_eager(case, dynamic):
    torch._dynamo.reset()

    def f(x):
        return _call(case, x, reduction="sum")

    compiled = torch.compile(f, fullgraph=True, dynamic=dynamic)
    for x0 in (X, X[:3] * 0.5):  # a second shape: recompiled (static) or reused (dynamic)
        x = x0.clone().requires_grad_()
        xe = x0.clone().requires_grad_()
        rows = x.shape[0]
        if case != "margin_ranking" and rows != X.shape[0]:
            # the other arguments follow the batch
            fn, args, kw = CASES[case]
            cut = tuple(v[:rows] if v.ndim else v for v in args)

            def g(a, fn=fn, cut=cut, kw=kw):
                return fn(a, *cut, **kw, reduction="sum")

            out = torch.compile(g, fullgraph=True, dynamic=dynamic)(x)
            want = g(xe)
        elif case == "margin_ranking" and rows != X.shape[0]:
            continue
        else:
            out, want = compiled(x), f(xe)
        (g,) = torch.autograd.grad(out, x)
        (g_want,) = torch.autograd.grad(want, xe)
        assert_close(out.detach(), want.detach(), rtol=1e-12, atol=1e-12, what=f"{case} value")
        assert_close(g, g_want, rtol=1e-12, atol=1e-12, what=f"{case} grad")


# --------------------------------------------------------------------------------------------
# torch.func
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_func_grad_equals_value_and_grad(case):
    g = torch.func.grad(lambda x: _call(case, x))(X)
    fn, args, kw = CASES[case]
    _, want = xmargin.value_and_grad(fn)(X.numpy(), *(a.numpy() for a in args),
                                         **{k: (v.numpy() if torch.is_tensor(v) else v)
                                            for k, v in kw.items()})  # fmt: skip
    assert_close(g, want, rtol=1e-12, atol=1e-12, what=f"{case} torch.func.grad")


@pytest.mark.parametrize("case", CASES)
def test_func_vmap_over_scores_and_targets(case):
    """vmap over a batch of score matrices (and of targets): equal to a Python loop."""
    xs = torch.stack([X, X * 0.5 + 0.1, -X])
    got = torch.func.vmap(lambda x: _call(case, x, reduction="none"))(xs)
    want = torch.stack([_call(case, x, reduction="none") for x in xs])
    assert_close(got, want, rtol=1e-12, atol=1e-12, what=f"{case} vmap over scores")
    fn, args, kw = CASES[case]
    # vmap over the targets too (the first non-score argument), scores shared or batched
    batch_args = torch.stack([args[0], args[0].flip(0)])

    def one(x, a):
        return fn(x, a, *args[1:], **kw, reduction="none")

    got = torch.func.vmap(one, in_dims=(None, 0))(X, batch_args)
    want = torch.stack([one(X, a) for a in batch_args])
    assert_close(got, want, rtol=1e-12, atol=1e-12, what=f"{case} vmap over targets")
    got = torch.func.vmap(one)(xs[:2], batch_args)
    want = torch.stack([one(x, a) for x, a in zip(xs[:2], batch_args, strict=True)])
    assert_close(got, want, rtol=1e-12, atol=1e-12, what=f"{case} vmap over both")


@pytest.mark.parametrize("case", CASES)
def test_func_jacrev_and_jacfwd(case):
    jac = torch.func.jacrev(lambda x: _call(case, x, reduction="none"))(X)
    rows = []
    for i in range(_call(case, X, reduction="none").numel()):
        x = X.clone().requires_grad_()
        (g,) = torch.autograd.grad(_call(case, x, reduction="none").reshape(-1)[i], x)
        rows.append(g)
    want = torch.stack(rows).reshape(jac.shape)
    assert_close(jac, want, rtol=1e-12, atol=1e-12, what=f"{case} jacrev")
    fwd = torch.func.jacfwd(lambda x: _call(case, x, reduction="none"))(X)
    assert_close(fwd, want, rtol=1e-12, atol=1e-12, what=f"{case} jacfwd")


def test_vmap_with_a_batched_weight():
    ws = torch.stack([W5, W5.flip(0)])

    def one(w):
        return xmargin.multilabel_margin_loss(X, IDX, weight=w, reduction="none")

    got = torch.func.vmap(one)(ws)
    want = torch.stack([one(w) for w in ws])
    assert_close(got, want, rtol=1e-12, atol=1e-12, what="vmap over weights")


def test_value_checks_are_skipped_inside_transforms():
    """A bad target cannot be reported inside vmap (no single value): its row is NaN, as
    with checks off; outside the transform the same call raises."""
    bad = IDX.clone()
    bad[1, 3] = 9
    with pytest.raises(ValueError, match=r"target\[1, 3\] = 9"):
        xmargin.multilabel_margin_loss(X, bad)
    got = torch.func.vmap(lambda x: xmargin.multilabel_margin_loss(x, bad, reduction="none"))(
        torch.stack([X, X])
    )
    assert torch.isnan(got[:, 1]).all() and not torch.isnan(got[:, [0, 2, 3]]).any()
    g = torch.func.grad(lambda x: xmargin.multilabel_margin_loss(x, bad, reduction="sum"))(X)
    assert torch.isnan(g[1]).all() and not torch.isnan(g[[0, 2, 3]]).any()
    # the {0, 1} label warning reads values too: silent inside vmap, given outside
    y01 = (PM1 + 1) / 2
    with pytest.warns(UserWarning, match="to_pm1"):
        xmargin.soft_margin_loss(X, y01)
    torch.func.vmap(lambda y: xmargin.soft_margin_loss(X, y))(torch.stack([y01, y01]))


def test_numpy_results_unchanged_by_the_torch_glue():
    """value_and_grad on NumPy (no autograd) gives the same numbers as torch.func.grad."""
    x = np.asarray(X)
    _, g = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(x, IDX.numpy(), p=2)
    g_torch = torch.func.grad(lambda a: xmargin.multilabel_margin_loss(a, IDX, p=2))(X)
    assert_close(g, g_torch, rtol=1e-15, atol=1e-15, what="numpy vs torch.func")
