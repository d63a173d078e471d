"""Mixed-framework inputs (the scores decide, targets and weights follow), array-api-strict's
virtual devices, and extreme label counts (C = 10^6 with K << C) on every backend."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xmargin
from xmargin import backends

import oracle
from conftest import assert_close

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 9))
IDX = RNG.integers(-1, 9, size=(5, 4))
CLS = RNG.integers(0, 9, size=5)
W = RNG.uniform(0.5, 2, size=9)


def _frameworks():
    out = {"numpy": np.asarray}
    try:
        import torch

        out["torch"] = torch.from_numpy
    except ImportError:
        pass
    try:
        import array_api_strict as xs

        out["array_api_strict"] = xs.asarray
    except ImportError:
        pass
    try:
        import jax.numpy as jnp

        out["jax"] = jnp.asarray
    except ImportError:
        pass
    return out


FRAMEWORKS = _frameworks()


@pytest.mark.parametrize("score_fw", FRAMEWORKS)
@pytest.mark.parametrize("target_fw", FRAMEWORKS)
def test_targets_and_weights_follow_the_scores(score_fw, target_fw):
    to_scores, to_targets = FRAMEWORKS[score_fw], FRAMEWORKS[target_fw]
    x = to_scores(X.astype(np.float32))
    expected = xmargin.multilabel_margin_loss(
        X.astype(np.float32), IDX, weight=W.astype(np.float32), reduction="none"
    )
    out = xmargin.multilabel_margin_loss(
        x, to_targets(IDX), weight=to_targets(W.astype(np.float32)), reduction="none"
    )
    assert type(out).__module__.split(".")[0] == type(x).__module__.split(".")[0]
    assert_close(np.asarray(out), expected, rtol=1e-6, atol=1e-6, what=f"{score_fw} <- {target_fw}")
    out = xmargin.multi_margin_loss(x, to_targets(CLS), reduction="none")
    assert_close(np.asarray(out), xmargin.multi_margin_loss(X.astype(np.float32), CLS, reduction="none"),
                 rtol=1e-6, atol=1e-6, what="multi_margin")  # fmt: skip


def test_zero_copy_between_host_frameworks():
    torch = pytest.importorskip("torch")
    from xmargin._xp import same_namespace

    scores = torch.zeros(5, 4)
    host = np.arange(20, dtype=np.int64).reshape(5, 4)
    from array_api_compat import array_namespace

    out = same_namespace("f", array_namespace(scores), "input", scores, "target", host)
    assert isinstance(out, torch.Tensor) and out.data_ptr() == host.ctypes.data  # no copy
    back = same_namespace("f", np, "input", np.zeros(3), "target", torch.arange(3))
    assert isinstance(back, np.ndarray)


def test_a_torch_tensor_that_requires_grad_is_not_detached_silently():
    """NumPy scores make a NumPy result: a torch argument that wants a gradient would lose it,
    so it is refused with the argument's name instead of being detached."""
    torch = pytest.importorskip("torch")
    b = torch.from_numpy(X[:, 0].copy()).requires_grad_()
    y = np.sign(RNG.normal(size=5))
    with pytest.raises(TypeError, match=r"argument 'input2' is a torch tensor that requires grad"):
        xmargin.margin_ranking_loss(X[:, 1], b, y)
    w = torch.from_numpy(W.copy()).requires_grad_()
    with pytest.raises(TypeError, match=r"argument 'weight' is a torch tensor that requires grad"):
        xmargin.multilabel_soft_margin_loss(X, (IDX[:, :1] > 0) * np.ones((5, 9)), weight=w)
    out = xmargin.margin_ranking_loss(X[:, 1], b.detach(), y)  # detached: converted, zero-copy
    ref = np.maximum(0, -y * (X[:, 1] - X[:, 0])).mean()
    assert isinstance(out, (np.ndarray, np.generic)) and abs(float(out) - ref) < 1e-12


def test_host_targets_go_to_a_virtual_device():
    xs = pytest.importorskip("array_api_strict")
    dev = xs.Device("device1")
    x = xs.asarray(X, device=dev)
    out = xmargin.multilabel_margin_loss(x, IDX, weight=W, reduction="none")  # NumPy targets
    assert out.device == dev
    assert_close(np.asarray(xs.asarray(out, device=xs.Device("CPU_DEVICE"))),
                 xmargin.multilabel_margin_loss(X, IDX, weight=W, reduction="none"),
                 rtol=1e-12, atol=1e-12, what="device1")  # fmt: skip


def test_no_device_to_host_moves():
    torch = pytest.importorskip("torch")
    with pytest.raises(
        ValueError,
        match=r"argument 'target' is a torch.Tensor on meta .* does not move data off a device",
    ):
        xmargin.multilabel_margin_loss(X, torch.zeros(5, 4, dtype=torch.int64, device="meta"))
    da = pytest.importorskip("dask.array")
    with pytest.raises(
        TypeError, match=r"argument 'target' is a lazy Dask array .* compute\(\) it first"
    ):
        xmargin.multilabel_margin_loss(X, da.from_array(IDX))
    with pytest.raises(
        ValueError, match=r"argument 'target' is on device meta but 'input' is on device cpu"
    ):
        xmargin.multilabel_margin_loss(
            torch.zeros(5, 9), torch.zeros(5, 4, dtype=torch.int64, device="meta")
        )


@pytest.mark.parametrize(
    "name, args",
    [
        (
            "soft_margin_loss",
            lambda xs, d: (xs.asarray(X, device=d), xs.asarray(np.sign(X), device=d)),
        ),
        (
            "multilabel_soft_margin_loss",
            lambda xs, d: (xs.asarray(X, device=d), xs.asarray((X > 0) * 1.0, device=d)),
        ),
        ("multi_margin_loss", lambda xs, d: (xs.asarray(X, device=d), xs.asarray(CLS, device=d))),
        (
            "multilabel_margin_loss",
            lambda xs, d: (xs.asarray(X, device=d), xs.asarray(IDX, device=d)),
        ),
        (
            "hinge_embedding_loss",
            lambda xs, d: (xs.asarray(X, device=d), xs.asarray(np.sign(X), device=d)),
        ),
        (
            "margin_ranking_loss",
            lambda xs, d: (
                xs.asarray(X, device=d),
                xs.asarray(X[::-1].copy(), device=d),
                xs.asarray(np.sign(X), device=d),
            ),
        ),
    ],
)
def test_array_api_strict_virtual_devices(name, args):
    """Every creation call passes device=: results and gradients stay on the scores' device."""
    xs = pytest.importorskip("array_api_strict")
    dev = xs.Device("device1")
    fn = getattr(xmargin, name)
    a = args(xs, dev)
    for reduction in ("none", "mean", "sum"):
        out = fn(*a, reduction=reduction)
        assert out.device == dev
        loss, g = xmargin.value_and_grad(fn)(*a, reduction=reduction)
        assert loss.device == dev and g.device == dev
    ref = fn(*[np.asarray(xs.asarray(v, device=xs.Device("CPU_DEVICE"))) for v in a])
    got = fn(*a)
    assert_close(
        float(xs.asarray(got, device=xs.Device("CPU_DEVICE"))),
        ref,
        rtol=1e-12,
        atol=1e-12,
        what=name,
    )


# ---------------------------------------------------------------------------------------------
# extreme label counts
# ---------------------------------------------------------------------------------------------
def _extreme(n, c, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c)).astype(np.float32)
    t = np.stack([rng.choice(c, size=k, replace=False) for _ in range(n)])
    t[0, k // 2 :] = -1  # a shorter row
    return x, t


@pytest.mark.parametrize("backend", ["reference", "portable"])
def test_a_million_classes_with_narrow_targets(backend):
    x, t = _extreme(2, 10**6, 32)
    ref_loss, ref_grad = oracle.multilabel_margin_dense(x.astype(np.float64), t)
    hinge = backends.get(backend).load()
    loss, grad = hinge(x, t, margin=1.0, p=1, weight=None, want_grad=True)
    assert_close(loss, ref_loss, rtol=1e-5, atol=0, what=f"{backend} C=1e6 loss")
    assert_close(grad, ref_grad, rtol=0, atol=0, what=f"{backend} C=1e6 grad (counts)")
    out = xmargin.multilabel_margin_loss(x, t, backend=backend, reduction="none")
    assert_close(out, ref_loss / 10**6, rtol=1e-5, atol=0, what="through the loss")


def test_reference_extra_memory_is_order_n_c():
    """At C = 10^6, K = 32 the reference kernel allocates O(N·C), not O(N·T·C)."""
    n, c, k = 4, 10**6, 32
    x, t = _extreme(n, c, k, seed=1)
    hinge = backends.get("reference").load()
    import os

    os.environ["XMARGIN_NUM_THREADS"] = "1"  # one block at a time: the peak is deterministic
    try:
        tracemalloc.start()
        hinge(x, t, margin=1.0, p=1, weight=None, want_grad=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        del os.environ["XMARGIN_NUM_THREADS"]
    scores_bytes = n * c * 4
    # the gradient output (N·C) plus block scratch: a small multiple of N·C, far below N·T·C
    assert peak < 8 * scores_bytes, (
        f"peak {peak / 2**20:.0f} MiB for {scores_bytes / 2**20:.0f} MiB of scores"
    )
    assert peak < n * k * c * 4 / 4


@pytest.mark.parametrize("backend", ["reference", "portable", "triton"])
def test_ragged_targets_on_every_backend(backend):
    """Ragged label lists through xmargin.targets.pad, on every backend usable here."""
    torch = pytest.importorskip("torch")
    if backend not in backends.available(torch.zeros(1, 1)):
        pytest.skip(
            f"{backend}: {dict((s.name, s.reason) for s in backends.explain(torch.zeros(1, 1)))[backend]}"
        )
    rng = np.random.default_rng(3)
    c = 3000
    ragged = [list(rng.choice(c, size=s, replace=False)) for s in (0, 1, 7, 30)]
    x = torch.tensor(rng.normal(size=(4, c)), dtype=torch.float32)
    t = xmargin.targets.pad(ragged, like=x)
    assert isinstance(t, torch.Tensor) and t.shape == (4, 30)
    out = xmargin.multilabel_margin_loss(x, t, backend=backend, reduction="none")
    wide = np.full((4, c), -1)
    for i, r in enumerate(ragged):
        wide[i, : len(r)] = r
    ref = torch.nn.functional.multilabel_margin_loss(
        x.double(), torch.tensor(wide), reduction="none"
    )
    assert_close(out.double(), ref, rtol=1e-5, atol=1e-6, what=f"ragged via {backend}")
