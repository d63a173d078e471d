"""Every bad input raises ValueError/TypeError naming the argument, the expectation and the value
(DESIGN.md §4); PyTorch's own error inputs are in test_parity_torch.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xmargin

X = np.zeros((2, 3))
PM1 = np.ones((2, 3))
IDX = np.array([[0, -1, -1], [1, 2, -1]])
Y = np.array([0, 2])

CALLS = {
    "soft_margin_loss": lambda **kw: xmargin.soft_margin_loss(X, PM1, **kw),
    "multilabel_soft_margin_loss": lambda **kw: xmargin.multilabel_soft_margin_loss(X, PM1, **kw),
    "multi_margin_loss": lambda **kw: xmargin.multi_margin_loss(X, Y, **kw),
    "multilabel_margin_loss": lambda **kw: xmargin.multilabel_margin_loss(X, IDX, **kw),
    "hinge_embedding_loss": lambda **kw: xmargin.hinge_embedding_loss(X, PM1, **kw),
    "margin_ranking_loss": lambda **kw: xmargin.margin_ranking_loss(X, X, PM1, **kw),
}


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("reduction", ["abc", "MEAN", None, 1])
def test_bad_reduction(name, reduction):
    with pytest.raises(ValueError, match=rf"{name}: .*argument 'reduction' must be one of"):
        CALLS[name](reduction=reduction)


@pytest.mark.parametrize("name", CALLS)
def test_classes_validate_at_construction(name):
    cls = {
        "soft_margin_loss": xmargin.SoftMarginLoss,
        "multilabel_soft_margin_loss": xmargin.MultiLabelSoftMarginLoss,
        "multi_margin_loss": xmargin.MultiMarginLoss,
        "multilabel_margin_loss": xmargin.MultiLabelMarginLoss,
        "hinge_embedding_loss": xmargin.HingeEmbeddingLoss,
        "margin_ranking_loss": xmargin.MarginRankingLoss,
    }[name]
    with pytest.raises(ValueError, match="reduction"):
        cls(reduction="avg")


@pytest.mark.parametrize("name", ["multi_margin_loss", "multilabel_margin_loss"])
@pytest.mark.parametrize("p", [0, 3, 1.5, "1", None])
def test_bad_p(name, p):
    with pytest.raises(ValueError, match=rf"argument 'p' must be 1 .* got {p!r}"):
        CALLS[name](p=p)


def test_bad_p_in_classes():
    with pytest.raises(ValueError, match="p"):
        xmargin.MultiMarginLoss(p=3)
    with pytest.raises(ValueError, match="p"):
        xmargin.MultiLabelMarginLoss(p=0)


@pytest.mark.parametrize(
    "name",
    ["multi_margin_loss", "multilabel_margin_loss", "hinge_embedding_loss", "margin_ranking_loss"],
)
def test_bad_margin(name):
    with pytest.raises(TypeError, match="argument 'margin' must be a real number"):
        CALLS[name](margin="1")
    with pytest.raises(TypeError, match="argument 'margin'"):
        CALLS[name](margin=np.ones(2))
    with pytest.raises(ValueError, match="argument 'margin' must be a number, got nan"):
        CALLS[name](margin=float("nan"))
    # an infinite margin is a number: every hinge is active (or none for -inf)
    assert not np.isnan(float(CALLS[name](margin=float("-inf"))))


@pytest.mark.parametrize(
    ("name", "call"),
    [
        (
            "multi_margin_loss",
            lambda: xmargin.multi_margin_loss(np.zeros((2, 0)), np.zeros(2, int)),
        ),
        (
            "multilabel_margin_loss",
            lambda: xmargin.multilabel_margin_loss(np.zeros((2, 0)), np.zeros((2, 0), int)),
        ),
        (
            "multilabel_soft_margin_loss",
            lambda: xmargin.multilabel_soft_margin_loss(np.zeros((2, 0)), np.zeros((2, 0))),
        ),
        ("multi_margin_loss", lambda: xmargin.multi_margin_loss(np.zeros(0), np.zeros((), int))),
        (
            "multilabel_margin_loss",
            lambda: xmargin.multilabel_margin_loss(np.zeros((2, 3, 4)), np.zeros((2, 3, 4), int)),
        ),
        (
            "multi_margin_loss",
            lambda: xmargin.multi_margin_loss(np.zeros((2, 3, 4)), np.zeros((2, 3), int)),
        ),
        (
            "multilabel_soft_margin_loss",
            lambda: xmargin.multilabel_soft_margin_loss(np.float64(1.0), np.float64(1.0)),
        ),
    ],
)
def test_bad_input_shape(name, call):
    with pytest.raises(ValueError, match=rf"{name}: argument 'input' must .*C >= 1"):
        call()


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (
            lambda: xmargin.multilabel_margin_loss(X, np.zeros(3, int)),
            r"argument 'target' must have shape \(N, K\) with N = 2.*got|inconsistent target size: \[3\]",
        ),
        (
            lambda: xmargin.multilabel_margin_loss(X, np.zeros((3, 3), int)),
            r"inconsistent target size: \[3, 3\] for input of size: \[2, 3\]",
        ),
        (
            lambda: xmargin.multilabel_margin_loss(np.zeros(3), np.zeros((1, 3), int)),
            r"argument 'target' must have shape \(K,\) or 0-d",
        ),
        (
            lambda: xmargin.multi_margin_loss(X, np.zeros(3, int)),
            r"Expected target size \[2\], but got \[3\]",
        ),
        (
            lambda: xmargin.multi_margin_loss(X, np.zeros((), int)),
            r"Expected target size \[2\], but got \[\]",
        ),
        (
            lambda: xmargin.soft_margin_loss(X, np.ones(2)),
            r"argument 'target' of shape \[2\] must broadcast to input's shape \[2, 3\]",
        ),
        (
            lambda: xmargin.soft_margin_loss(np.zeros(3), np.ones((2, 3))),
            r"argument 'target' of shape \[2, 3\] must broadcast",
        ),
        (
            lambda: xmargin.multilabel_soft_margin_loss(X, np.ones(4)),
            r"argument 'target' of shape \[4\]",
        ),
        (
            lambda: xmargin.hinge_embedding_loss(X, np.ones(4)),
            r"must broadcast to one shape, got shapes input: \[2, 3\], target: \[4\]",
        ),
        (
            lambda: xmargin.margin_ranking_loss(X, np.zeros((2, 4)), PM1),
            r"input1: \[2, 3\], input2: \[2, 4\]",
        ),
        (
            lambda: xmargin.margin_ranking_loss(X, np.zeros(3), PM1),
            r"'input1', 'input2' and 'target' must have the same number of dimensions",
        ),
    ],
)
def test_target_shape_mismatch(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize("name", ["multi_margin_loss", "multilabel_margin_loss"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool])
def test_index_targets_must_be_integers(name, dtype):
    target = (Y if name == "multi_margin_loss" else IDX).astype(dtype)
    fn = getattr(xmargin, name)
    with pytest.raises(
        TypeError, match=r"argument 'target' must have an integer dtype .*got dtype"
    ):
        fn(X, target)


@pytest.mark.parametrize("name", CALLS)
def test_integer_scores_refused(name):
    fn = getattr(xmargin, name)
    xi = np.zeros((2, 3), dtype=np.int64)
    args = {
        "soft_margin_loss": (xi, PM1),
        "multilabel_soft_margin_loss": (xi, PM1),
        "multi_margin_loss": (xi, Y),
        "multilabel_margin_loss": (xi, IDX),
        "hinge_embedding_loss": (xi, PM1),
        "margin_ranking_loss": (xi, X, PM1),
    }[name]
    with pytest.raises(
        TypeError,
        match=r"argument 'input1?' must have a real floating-point dtype .* got dtype int64",
    ):
        fn(*args)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (
            lambda: xmargin.multi_margin_loss(X, Y, weight=np.ones((2, 3))),
            r"weight must be one-dimensional.*got shape \[2, 3\]",
        ),
        (
            lambda: xmargin.multi_margin_loss(X, Y, weight=np.float64(1.0)),
            r"weight must be one-dimensional",
        ),
        (
            lambda: xmargin.multi_margin_loss(X, Y, weight=np.ones(4)),
            r"inconsistent weight size, expected 3 but got \[4\]",
        ),
        (
            lambda: xmargin.multilabel_margin_loss(X, IDX, weight=np.ones(2)),
            r"inconsistent weight size, expected 3 but got \[2\]",
        ),
        (
            lambda: xmargin.multilabel_margin_loss(X, IDX, weight=np.ones((1, 3))),
            r"weight must be one-dimensional",
        ),
        (
            lambda: xmargin.multilabel_soft_margin_loss(X, PM1, weight=np.ones(4)),
            r"argument 'weight' of shape \[4\] must broadcast",
        ),
    ],
)
def test_bad_weight(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize(
    ("target", "where", "value"),
    [
        ([[0, 3, -1], [1, 2, -1]], "[0, 1]", 3),
        ([[0, -1, 5], [1, 2, -1]], "[0, 2]", 5),  # after the terminator: PyTorch checks it too
        ([[0, -1, -1], [-2, 2, -1]], "[1, 0]", -2),
        ([[0, -1, -1], [1, 2, -1]], None, None),
    ],
)
def test_multilabel_target_range(target, where, value):
    t = np.array(target)
    if where is None:
        xmargin.multilabel_margin_loss(X, t)
        return
    with pytest.raises(
        ValueError, match=rf"target{re.escape(where)} = {value}, but .* must lie in \[-1, 3\)"
    ):
        xmargin.multilabel_margin_loss(X, t)


def test_multilabel_target_range_vector_and_scalar():
    with pytest.raises(ValueError, match=r"target\[2\] = 7"):
        xmargin.multilabel_margin_loss(np.zeros(3), np.array([0, -1, 7]))
    with pytest.raises(ValueError, match=r"target\[\] = 1"):
        xmargin.multilabel_margin_loss(np.float64(0.0), np.array(1))


@pytest.mark.parametrize("bad", [-1, 3, 100])
def test_multi_margin_target_range(bad):
    with pytest.raises(ValueError, match=rf"target\[1\] = {bad}, but .* must lie in \[0, 3\)"):
        xmargin.multi_margin_loss(X, np.array([0, bad]))


def test_mixed_namespaces_follow_the_scores():
    """Targets and weights of another framework are converted to the scores' (see
    test_interop.py); what cannot be converted is a clear error."""
    torch = pytest.importorskip("torch")
    out = xmargin.multilabel_margin_loss(X, torch.tensor(IDX))
    assert isinstance(out, (np.ndarray, np.generic))
    out = xmargin.multi_margin_loss(torch.zeros(2, 3), torch.tensor(Y), weight=np.ones(3))
    assert isinstance(out, torch.Tensor)
    with pytest.raises(ValueError, match=r"argument 'input2' is a torch.Tensor on meta"):
        xmargin.margin_ranking_loss(np.zeros(3), torch.zeros(3, device="meta"), np.ones(3))


def test_mixed_devices_torch():
    torch = pytest.importorskip("torch")
    with pytest.raises(
        ValueError, match=r"argument 'target' is on device meta but 'input' is on device cpu"
    ):
        xmargin.soft_margin_loss(torch.zeros(3), torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match=r"argument 'weight' is on device meta"):
        xmargin.multilabel_margin_loss(
            torch.zeros(2, 3), torch.tensor(IDX), weight=torch.ones(3, device="meta")
        )


def test_mixed_devices_array_api_strict():
    xs = pytest.importorskip("array_api_strict")
    d1 = xs.Device("device1")
    x = xs.zeros((2, 3), dtype=xs.float64)
    t = xs.asarray(IDX, device=d1)
    with pytest.raises(ValueError, match=r"argument 'target' is on device .*device1.* but 'input'"):
        xmargin.multilabel_margin_loss(x, t)


def test_not_an_array():
    with pytest.raises(TypeError, match=r"argument 'input' must be an array .* got builtins.str"):
        xmargin.soft_margin_loss("x", PM1)
    with pytest.raises(
        TypeError,
        match=r"argument 'target' must be an array \(of any framework\), a number or a list",
    ):
        xmargin.soft_margin_loss(X, object())


def test_python_lists_as_targets_are_converted():
    assert xmargin.multi_margin_loss(X, [0, 2]) == xmargin.multi_margin_loss(X, Y)
    assert xmargin.multilabel_margin_loss(X, IDX.tolist()) == xmargin.multilabel_margin_loss(X, IDX)


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"unknown backend 'fast'.*valid choices: .*'portable'"):
        xmargin.multilabel_margin_loss(X, IDX, backend="fast")


def test_weight_requiring_grad_is_refused():
    torch = pytest.importorskip("torch")
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"argument 'weight' requires grad.*weight.detach\(\)"):
        xmargin.multi_margin_loss(x, torch.tensor(Y), weight=w)
    with torch.no_grad():  # evaluation with a trainable weight is fine
        xmargin.multilabel_margin_loss(x, torch.tensor(IDX), weight=w)


def test_value_and_grad_errors():
    with pytest.raises(TypeError, match="argument 'fn' must be one of the xmargin losses"):
        xmargin.value_and_grad(np.sum)
    with pytest.raises(ValueError, match=r"argument 'argnums' must be one of \(0,\)"):
        xmargin.value_and_grad(xmargin.soft_margin_loss, argnums=1)
    with pytest.raises(ValueError, match=r"argument 'argnums'"):
        xmargin.value_and_grad(xmargin.margin_ranking_loss, argnums=(0, 2))
    with pytest.raises(TypeError, match="multi_margin_loss"):
        xmargin.value_and_grad(xmargin.multi_margin_loss)(X, Y, bogus=1)


def test_errors_are_also_runtime_errors():
    """Code written for torch.nn.functional catches RuntimeError; it keeps working."""
    with pytest.raises(RuntimeError):
        xmargin.multilabel_margin_loss(X, np.zeros((3, 3), int))
    with pytest.raises(RuntimeError):
        xmargin.multi_margin_loss(X, Y.astype(float))


# --------------------------------------------------------------------------------------------
# arrays of other frameworks beside Dask scores, loss objects, helpers (issue 10, item 12)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", ["torch", "array_api_strict"])
def test_dask_scores_with_other_frameworks_arrays(framework):
    """Host arrays of another framework are converted for Dask scores, as for NumPy ones."""
    da = pytest.importorskip("dask.array")
    mod = pytest.importorskip(framework)
    x = np.random.default_rng(0).normal(size=(4, 3))
    w = np.array([1.0, 2.0, 0.5])
    dx = da.from_array(x, chunks=2)
    calls = [
        ("multilabel_soft_margin_loss", (x > 0) * 1.0, {"weight": w}),
        ("multi_margin_loss", np.array([0, 2, 1, 1]), {"weight": w}),
        ("multilabel_margin_loss", np.array([[0, -1], [2, 1], [1, -1], [0, 2]]), {"weight": w}),
    ]
    for name, target, kw in calls:
        fn = getattr(xmargin, name)
        want = float(fn(x, target, **kw))
        got = fn(dx, mod.asarray(target), weight=mod.asarray(w))
        assert float(got.compute()) == pytest.approx(want, rel=1e-12), name


def test_dask_scores_with_a_device_array_name_the_argument():
    da = pytest.importorskip("dask.array")
    torch = pytest.importorskip("torch")
    dx = da.from_array(np.zeros((2, 3)), chunks=1)
    meta = torch.zeros(3, dtype=torch.float64, device="meta")
    with pytest.raises(
        ValueError, match=r"multi_margin_loss: argument 'weight' is a torch.Tensor on meta"
    ):
        xmargin.multi_margin_loss(dx, np.array([0, 1]), weight=meta)


def test_loss_object_repr_with_a_list_weight():
    assert repr(xmargin.MultiMarginLoss(weight=[1.0, 2.0])) == (
        "MultiMarginLoss(p=1, margin=1.0, weight=[1.0, 2.0], reduction='mean')"
    )
    assert "weight=<array shape=(3,)>" in repr(xmargin.MultiLabelMarginLoss(weight=np.ones(3)))


def test_loss_object_backend_is_checked_at_construction():
    with pytest.raises(
        ValueError, match=r"MultiLabelMarginLoss: argument 'backend' must be None .* got 'nonsense'"
    ):
        xmargin.MultiLabelMarginLoss(backend="nonsense")
    with pytest.raises(ValueError, match=r"argument 'backend'.* got 3"):
        xmargin.MultiLabelMarginLoss(backend=3)
    xmargin.MultiLabelMarginLoss(backend="portable")  # known: fine (usability is per call)


@pytest.mark.parametrize("rows", [[["a"]], [[1, "2"]], [[1.5]], [[True]], ["ab"], [[None]]])
def test_pad_names_the_argument(rows):
    with pytest.raises(
        TypeError, match=r"pad: row 0 of argument 'ragged_lists' must be a sequence of int"
    ):
        xmargin.targets.pad(rows)


# --------------------------------------------------------------------------------------------
# a target that requires grad (issue 10, item 14): PyTorch's rule per loss
# --------------------------------------------------------------------------------------------
def test_soft_margin_target_requiring_grad_is_refused_as_in_pytorch():
    torch = pytest.importorskip("torch")
    x = torch.zeros(3, dtype=torch.float64)
    y = torch.ones(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'target'"):
        torch.nn.functional.soft_margin_loss(x, y)
    with pytest.raises(
        ValueError, match=r"soft_margin_loss: argument 'target' requires grad.*target.detach"
    ):
        xmargin.soft_margin_loss(x, y)
    with torch.no_grad():  # as in PyTorch: nothing is recorded, nothing to refuse
        assert (
            xmargin.soft_margin_loss(x, y).item()
            == torch.nn.functional.soft_margin_loss(x, y).item()
        )


@pytest.mark.parametrize(
    "name", ["multilabel_soft_margin_loss", "hinge_embedding_loss", "margin_ranking_loss"]
)
def test_target_gradients_where_pytorch_gives_them(name):
    """The element-wise losses PyTorch composes from differentiable operations give a target
    gradient there; xmargin gives the same one."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.rand(3, 4, dtype=torch.float64, generator=g) * 2 - 1
    ours, theirs = y.clone().requires_grad_(), y.clone().requires_grad_()
    args = (x, x.detach().flip(0)) if name == "margin_ranking_loss" else (x,)
    out = getattr(xmargin, name)(*args, ours)
    ref = getattr(torch.nn.functional, name)(*args, theirs)
    if not ref.requires_grad or ref.grad_fn is None:
        return
    (g_ours,) = torch.autograd.grad(out, ours, allow_unused=True)
    (g_theirs,) = torch.autograd.grad(ref, theirs, allow_unused=True)
    if g_theirs is None:
        assert g_ours is None or bool((g_ours == 0).all())
    else:
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)
