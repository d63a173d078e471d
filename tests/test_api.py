"""The public API: PyTorch's names, parameters and order; loss objects; import hygiene."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

import xmargin

FUNCTIONS = [
    "soft_margin_loss",
    "multilabel_soft_margin_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
]
CLASSES = [
    "SoftMarginLoss",
    "MultiLabelSoftMarginLoss",
    "MultiMarginLoss",
    "MultiLabelMarginLoss",
    "HingeEmbeddingLoss",
    "MarginRankingLoss",
]
EXTRA_KEYWORDS = {
    "multilabel_margin_loss": ["margin", "p", "weight", "neg_weight", "negatives", "backend"]
}


def _params(fn):
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(fn).parameters.values()
        if p.kind != p.VAR_KEYWORD
    ]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functional_signature_matches_torch(name):
    torch = pytest.importorskip("torch")
    ours = _params(getattr(xmargin, name))
    theirs = _params(getattr(torch.nn.functional, name))
    extra = EXTRA_KEYWORDS.get(name, [])
    assert [(n, d) for n, _, d in ours if n not in extra] == [(n, d) for n, _, d in theirs]
    # PyTorch's parameters stay positional-or-keyword in the same order; additions are keyword-only
    assert [n for n, k, _ in ours if k == inspect.Parameter.KEYWORD_ONLY] == extra


@pytest.mark.parametrize("name", CLASSES)
def test_class_signature_matches_torch(name):
    torch = pytest.importorskip("torch")
    ours = _params(getattr(xmargin, name).__init__)[1:]
    theirs = _params(getattr(torch.nn, name).__init__)[1:]
    extra = EXTRA_KEYWORDS["multilabel_margin_loss"] if name == "MultiLabelMarginLoss" else []
    assert [(n, d) for n, _, d in ours if n not in extra] == [(n, d) for n, _, d in theirs]


def test_loss_objects_call_forward_and_repr():
    x = np.array([[0.1, 0.2, 0.4, 0.8]])
    loss = xmargin.MultiMarginLoss(p=2, margin=0.5, reduction="sum")
    assert repr(loss) == "MultiMarginLoss(p=2, margin=0.5, weight=None, reduction='sum')"
    assert loss(x, np.array([3])) == loss.forward(x, np.array([3]))
    assert loss(x, np.array([3])) == xmargin.multi_margin_loss(
        x, np.array([3]), p=2, margin=0.5, reduction="sum"
    )
    assert (loss.p, loss.margin, loss.weight, loss.reduction) == (2, 0.5, None, "sum")
    w = xmargin.MultiLabelSoftMarginLoss(weight=np.ones(4))
    assert repr(w) == "MultiLabelSoftMarginLoss(weight=<array shape=(4,)>, reduction='mean')"
    mr = xmargin.MarginRankingLoss(margin=0.1)
    assert mr(np.array([1.0]), np.array([0.0]), np.array([-1.0])) == pytest.approx(1.1)
    assert repr(xmargin.HingeEmbeddingLoss()) == "HingeEmbeddingLoss(margin=1.0, reduction='mean')"


def test_loss_object_options_are_read_only():
    loss = xmargin.MultiLabelMarginLoss()
    with pytest.raises(AttributeError, match="read-only"):
        loss.reduction = "sum"
    with pytest.raises(AttributeError, match="read-only"):
        loss.anything = 1
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = loss.nope


def test_loss_object_legacy_arguments():
    # PyTorch's warning: a UserWarning with its text (torch.nn.SoftMarginLoss does the same)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        loss = xmargin.SoftMarginLoss(size_average=False)
    assert loss.reduction == "sum"


def test_loss_objects_with_torch_parity():
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 5, dtype=torch.float64)
    t = torch.tensor([[0, 2, -1, 0, 0], [4, 4, 1, -1, 0], [1, 2, 3, 4, 0]])
    for red in ("none", "mean", "sum"):
        ours = xmargin.MultiLabelMarginLoss(reduction=red)(x, t)
        theirs = torch.nn.MultiLabelMarginLoss(reduction=red)(x, t)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_import_loads_no_framework():
    code = (
        "import sys, xmargin, xmargin.targets, xmargin.backends;"
        "import numpy as np;"
        "xmargin.multilabel_margin_loss(np.zeros((2, 3)), np.array([[0, -1, 1], [2, 1, 0]]));"
        "xmargin.value_and_grad(xmargin.multi_margin_loss)(np.zeros((2, 3)), np.array([0, 2]));"
        "bad = [m for m in ('torch', 'cupy', 'triton', 'jax', 'dask', 'array_api_strict')"
        " if m in sys.modules];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"imported at import/NumPy use: {result.stdout}{result.stderr}"


def test_public_names():
    for name in [*FUNCTIONS, *CLASSES, "value_and_grad", "targets", "backends", "options"]:
        assert name in xmargin.__all__ and hasattr(xmargin, name)
