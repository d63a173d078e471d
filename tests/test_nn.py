"""xmargin.nn: torch.nn.Module losses, drop-ins for torch.nn.<Loss> (values and gradients
against PyTorch in float64, buffers, state_dict, dtype/device moves, repr, compile)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xmargin  # noqa: E402
import xmargin.nn as xnn  # noqa: E402

from conftest import assert_close  # noqa: E402

N, C = 5, 7


def _inputs(name: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Float64 inputs valid for both libraries, one set per loss."""
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(N, C)) * 2.0)
    if name == "MultiLabelMarginLoss":
        t = torch.full((N, C), -1, dtype=torch.long)
        for i in range(N):
            k = int(rng.integers(0, 4))
            t[i, :k] = torch.tensor(rng.permutation(C)[:k])
        return x, t
    if name == "MultiMarginLoss":
        return x, torch.tensor(rng.integers(0, C, size=N))
    if name == "MultiLabelSoftMarginLoss":
        return x, torch.tensor(rng.integers(0, 2, size=(N, C)).astype(np.float64))
    if name in ("SoftMarginLoss", "HingeEmbeddingLoss"):
        return x, torch.tensor(rng.choice([-1.0, 1.0], size=(N, C)))
    if name == "MarginRankingLoss":
        x2 = torch.tensor(rng.normal(size=N))
        return x[:, 0].clone(), x2, torch.tensor(rng.choice([-1.0, 1.0], size=N))
    raise AssertionError(name)


# (class name, constructor keywords valid for both libraries)
CASES = [
    ("SoftMarginLoss", {}),
    ("MultiLabelSoftMarginLoss", {"weight": "w"}),
    ("MultiMarginLoss", {"p": 2, "margin": 0.7, "weight": "w"}),
    ("MultiLabelMarginLoss", {}),
    ("HingeEmbeddingLoss", {"margin": 0.5}),
    ("MarginRankingLoss", {"margin": 0.3}),
]


def _kwargs(kw: dict, reduction: str) -> dict:
    w = torch.linspace(0.5, 2.0, C, dtype=torch.float64)
    return {**{k: (w.clone() if v == "w" else v) for k, v in kw.items()}, "reduction": reduction}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("name", "kw"), CASES, ids=[c[0] for c in CASES])
def test_same_values_and_gradients_as_torch_nn(name, kw, reduction):
    ours = getattr(xnn, name)(**_kwargs(kw, reduction))
    theirs = getattr(torch.nn, name)(**_kwargs(kw, reduction))
    assert isinstance(ours, torch.nn.Module)
    args = _inputs(name, seed=len(name))
    scores = 2 if name == "MarginRankingLoss" else 1  # (targets take no gradient)
    a = [v.clone().requires_grad_() if i < scores else v for i, v in enumerate(args)]
    b = [v.clone().requires_grad_() if i < scores else v for i, v in enumerate(args)]
    out, ref = ours(*a), theirs(*b)
    assert_close(out.detach(), ref.detach(), rtol=1e-12, atol=1e-14, what=f"{name} value")
    seed = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    leaves = [v for v in a if v.requires_grad]
    g_ours = torch.autograd.grad(out, leaves, seed)
    g_ref = torch.autograd.grad(ref, [v for v in b if v.requires_grad], seed)
    for i, (g1, g2) in enumerate(zip(g_ours, g_ref, strict=True)):
        assert_close(g1, g2, rtol=1e-12, atol=1e-14, what=f"{name} grad {i}")


@pytest.mark.parametrize("name", ["MultiLabelSoftMarginLoss", "MultiMarginLoss",
                                  "MultiLabelMarginLoss"])  # fmt: skip
def test_weight_is_a_buffer(name):
    w = torch.linspace(0.5, 2.0, C)
    crit = getattr(xnn, name)(weight=w)
    assert dict(crit.named_buffers())["weight"] is crit.weight
    sd = crit.state_dict()
    assert list(sd) == ["weight"] and torch.equal(sd["weight"], w)
    other = getattr(xnn, name)(weight=torch.zeros(C))
    other.load_state_dict(sd)
    assert torch.equal(other.weight, w)
    assert crit.double().weight.dtype == torch.float64  # cast with the model
    assert crit.to(torch.float32).weight.dtype == torch.float32
    # None, as in PyTorch: no state
    assert getattr(xnn, name)().weight is None
    assert getattr(xnn, name)().state_dict() == {}


def test_the_weight_buffer_is_what_forward_uses():
    x, t = _inputs("MultiLabelMarginLoss", seed=3)
    crit = xnn.MultiLabelMarginLoss(weight=torch.ones(C, dtype=torch.float64))
    base = crit(x, t)
    crit.load_state_dict({"weight": torch.full((C,), 2.0, dtype=torch.float64)})
    assert_close(crit(x, t), 2 * base, rtol=1e-14, atol=0, what="weight from state_dict")
    expected = xmargin.multilabel_margin_loss(x, t, weight=torch.full((C,), 2.0).double())
    assert_close(crit(x, t), expected, rtol=0, atol=0, what="functional")


def test_a_list_weight_becomes_a_tensor():
    crit = xnn.MultiMarginLoss(weight=[1, 2, 3])
    assert isinstance(crit.weight, torch.Tensor) and crit.weight.tolist() == [1.0, 2.0, 3.0]
    assert crit.weight.dtype == torch.get_default_dtype()


def test_inside_a_model_it_moves_and_saves_with_it():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(4, C), torch.nn.Identity())
            self.crit = xnn.MultiLabelMarginLoss(p=2, weight=torch.linspace(1, 2, C))

        def forward(self, h, t):
            return self.crit(self.body(h), t)

    model = Model().double()
    assert model.crit.weight.dtype == torch.float64
    assert "crit.weight" in model.state_dict()
    h = torch.randn(N, 4, dtype=torch.float64)
    _, t = _inputs("MultiLabelMarginLoss", seed=5)
    loss = model(h, t)
    loss.backward()
    logits = model.body(h).detach().requires_grad_()
    ref = xmargin.multilabel_margin_loss(logits, t, p=2, weight=model.crit.weight)
    assert_close(loss.detach(), ref.detach(), rtol=1e-14, atol=0, what="model loss")
    assert model.body[0].weight.grad is not None


def test_extra_repr():
    assert repr(xnn.MultiLabelMarginLoss()) == "MultiLabelMarginLoss(reduction='mean')"
    assert repr(xnn.MultiLabelMarginLoss(margin=0.5, p=2, backend="reference")) == (
        "MultiLabelMarginLoss(reduction='mean', margin=0.5, p=2, backend='reference')"
    )
    assert repr(xnn.MultiMarginLoss(p=2, reduction="sum")) == (
        "MultiMarginLoss(p=2, margin=1.0, reduction='sum')"
    )
    assert repr(xnn.HingeEmbeddingLoss()) == "HingeEmbeddingLoss(margin=1.0, reduction='mean')"
    assert repr(xnn.SoftMarginLoss(reduction="none")) == "SoftMarginLoss(reduction='none')"


def test_bad_options_fail_when_built():
    with pytest.raises(ValueError, match=r"MultiMarginLoss.*reduction"):
        xnn.MultiMarginLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"MultiLabelMarginLoss.*'p'"):
        xnn.MultiLabelMarginLoss(p=3)
    with pytest.raises(ValueError, match=r"MultiLabelMarginLoss.*'backend'"):
        xnn.MultiLabelMarginLoss(backend="nonsense")
    with pytest.raises((TypeError, ValueError), match=r"HingeEmbeddingLoss.*margin"):
        xnn.HingeEmbeddingLoss(margin="one")


def test_legacy_arguments_warn_as_in_pytorch():
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        crit = xnn.SoftMarginLoss(size_average=False)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        ref = torch.nn.SoftMarginLoss(size_average=False)
    assert crit.reduction == ref.reduction == "sum"
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


def test_options_are_attributes_as_in_pytorch():
    x, t = _inputs("MultiLabelMarginLoss", seed=7)
    crit = xnn.MultiLabelMarginLoss()
    crit.reduction = "sum"
    crit.margin = 0.5
    expected = xmargin.multilabel_margin_loss(x, t, reduction="sum", margin=0.5)
    assert_close(crit(x, t), expected, rtol=0, atol=0, what="changed options")


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_compiles_fullgraph(name):
    kw = dict(CASES)[name]
    crit = getattr(xnn, name)(**_kwargs(kw, "mean"))
    args = _inputs(name, seed=11)
    compiled = torch.compile(crit, fullgraph=True, backend="eager")
    assert_close(compiled(*args), crit(*args), rtol=1e-14, atol=0, what=f"compiled {name}")


def test_lazy_attribute_and_no_torch_at_import():
    import subprocess
    import sys

    code = (
        "import sys, xmargin; assert 'torch' not in sys.modules; "
        "m = xmargin.nn; assert 'torch' in sys.modules; print(m.MultiLabelMarginLoss.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "MultiLabelMarginLoss"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_moves_the_weight_buffer():
    crit = xnn.MultiLabelMarginLoss(weight=torch.linspace(1, 2, C)).cuda()
    assert crit.weight.device.type == "cuda"
    x, t = _inputs("MultiLabelMarginLoss", seed=13)
    out = crit(x.cuda(), t.cuda())
    ref = xmargin.multilabel_margin_loss(x, t, weight=torch.linspace(1, 2, C).double())
    assert_close(out.cpu(), ref, rtol=1e-12, atol=1e-14, what="cuda")
