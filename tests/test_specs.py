"""The loss classes of the three layers (framework-free ``xmargin``, ``xmargin.nn``,
``xmargin.keras``) are built from one declaration per loss (``xmargin._specs``): the same six
names, the same options with the functionals' defaults, the same checks."""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import pickle

import numpy as np
import pytest

import xmargin
from xmargin import _specs

P = inspect.Parameter
FUNCTIONALS = {
    "SoftMarginLoss": xmargin.soft_margin_loss,
    "MultiLabelSoftMarginLoss": xmargin.multilabel_soft_margin_loss,
    "MultiMarginLoss": xmargin.multi_margin_loss,
    "MultiLabelMarginLoss": xmargin.multilabel_margin_loss,
    "HingeEmbeddingLoss": xmargin.hinge_embedding_loss,
    "MarginRankingLoss": xmargin.margin_ranking_loss,
}
INPUTS = {"MarginRankingLoss": ["input1", "input2", "target"]}


def _layers() -> list:
    layers = [xmargin.modules]
    with contextlib.suppress(ImportError):  # (no torch)
        layers.append(importlib.import_module("xmargin.nn"))
    try:
        import keras

        if keras.backend.backend() in ("torch", "jax"):
            layers.append(importlib.import_module("xmargin.keras"))
    except ImportError:
        pass
    return layers


LAYERS = _layers()
IDS = [layer.__name__ for layer in LAYERS]


def _sig(fn) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_one_spec_per_functional():
    assert {spec.name: spec.functional for spec in _specs.SPECS} == FUNCTIONALS
    assert list(_specs.NAMES) == sorted(FUNCTIONALS)
    assert set(_specs.NAMES) <= set(xmargin.__all__)
    for name in _specs.NAMES:
        assert getattr(xmargin, name) is getattr(xmargin.modules, name)


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
def test_the_same_six_classes(layer):
    # (xmargin.nn also has the fused linear + hinge head, a module of its own kind)
    extra = ["FusedLinearMultiLabelMarginLoss"] if layer.__name__ == "xmargin.nn" else []
    assert layer.__all__ == [*_specs.NAMES, *extra]
    for name in _specs.NAMES:
        cls = getattr(layer, name)
        assert inspect.isclass(cls) and cls.__name__ == name and cls.__module__ == layer.__name__
        assert cls.__doc__ and cls.__init__.__qualname__ == f"{name}.__init__"


@pytest.mark.parametrize("layer", [m for m in LAYERS if m.__name__ != "xmargin.keras"],
                         ids=[i for i in IDS if i != "xmargin.keras"])  # fmt: skip
def test_constructor_and_call_follow_the_functional(layer):
    for name, functional in FUNCTIONALS.items():
        cls = getattr(layer, name)
        inputs = INPUTS.get(name, ["input", "target"])
        # the constructor: the functional's parameters but the arrays, as they are there
        assert _sig(cls.__init__)[1:] == _sig(functional)[len(inputs) :], name
        assert [p[0] for p in _sig(cls.forward)] == ["self", *inputs], name
        # the defaults, as options of a default object (size_average/reduce are not kept)
        obj = cls()
        for option, _, default in _sig(functional)[len(inputs) :]:
            if option not in _specs.LEGACY:
                assert getattr(obj, option) == default, (name, option)
            else:
                assert not hasattr(obj, option), (name, option)


def test_keras_constructor_follows_the_functional():
    if "xmargin.keras" not in IDS:
        pytest.skip("Keras on its torch or jax backend is not available")
    import xmargin.keras as xk

    for name, functional in FUNCTIONALS.items():
        cls = getattr(xk, name)
        options = [(n, P.POSITIONAL_OR_KEYWORD, d) for n, _, d in _sig(functional)
                   if d is not P.empty and n not in ("size_average", "reduce", "reduction")]  # fmt: skip
        keras_own = [("reduction", P.KEYWORD_ONLY, "sum_over_batch_size"),
                     ("name", P.KEYWORD_ONLY, None), ("dtype", P.KEYWORD_ONLY, None)]  # fmt: skip
        assert _sig(cls.__init__)[1:] == options + keras_own, name
        config = cls().get_config()
        assert {k: config[k] for k, _, _ in options} == {k: d for k, _, d in options}, name
        assert config["name"] == functional.__name__


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
def test_the_same_checks_in_every_layer(layer):
    with pytest.raises(ValueError, match=r"MultiLabelMarginLoss.*'p'"):
        layer.MultiLabelMarginLoss(p=3)
    with pytest.raises(ValueError, match=r"MultiLabelMarginLoss.*'backend'"):
        layer.MultiLabelMarginLoss(backend="nonsense")
    with pytest.raises(TypeError, match=r"HingeEmbeddingLoss.*'margin'"):
        layer.HingeEmbeddingLoss(margin="one")
    with pytest.raises(ValueError, match=r"MultiMarginLoss.*'p'"):
        layer.MultiMarginLoss(2.5)
    # a wrong call: the TypeError of a hand-written __init__
    with pytest.raises(TypeError, match=r"^MultiMarginLoss.__init__\(\) got an unexpected keyword"):
        layer.MultiMarginLoss(nope=1)
    if layer.__name__ != "xmargin.keras":
        with pytest.raises(ValueError, match=r"SoftMarginLoss.*reduction"):
            layer.SoftMarginLoss(reduction="avg")
        with pytest.raises(TypeError, match=r"takes from 1 to 4 positional arguments"):
            layer.MultiLabelMarginLoss(None, None, "mean", 0.5)  # margin is keyword-only


@pytest.mark.parametrize("layer", [m for m in LAYERS if m.__name__ != "xmargin.keras"],
                         ids=[i for i in IDS if i != "xmargin.keras"])  # fmt: skip
def test_a_subclass_inherits_the_class_of_its_spec(layer):
    class Mine(layer.MultiMarginLoss):
        pass

    loss = Mine(p=2, margin=0.5, reduction="sum")
    assert repr(loss).startswith("Mine(p=2, margin=0.5")
    x, t = np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([3])
    if layer.__name__ == "xmargin.nn":
        import torch

        x, t = torch.tensor(x), torch.tensor(t)
    expected = xmargin.multi_margin_loss(x, t, p=2, margin=0.5, reduction="sum")
    assert float(loss(x, t)) == float(expected)


@pytest.mark.parametrize("layer", LAYERS, ids=IDS)
def test_copies_and_pickles(layer):
    loss = layer.MultiLabelMarginLoss(margin=0.5, p=2)
    state = (lambda obj: obj.get_config()) if layer.__name__ == "xmargin.keras" else repr
    for again in (copy.deepcopy(loss), pickle.loads(pickle.dumps(loss))):
        assert type(again) is type(loss) and state(again) == state(loss)


def test_a_class_must_match_its_spec():
    with pytest.raises(TypeError, match="declared for SoftMarginLoss"):

        class Other(xmargin.modules._Loss, spec=_specs.SPEC["SoftMarginLoss"]):
            pass
