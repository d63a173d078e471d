"""JAX: every loss under jax.grad, jax.jit and jax.vmap (default 32-bit JAX and with x64),
value checks skipped under tracing, the row-wise losses' analytic gradients (custom_vjp)."""

from __future__ import annotations

import numpy as np
import pytest

import xmargin

from conftest import assert_close

jax = pytest.importorskip("jax")
jnp = jax.numpy

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 7))
X2 = RNG.normal(size=(6, 7))
PM1 = np.where(RNG.random((6, 7)) > 0.5, 1.0, -1.0)
IDX = RNG.integers(-1, 7, size=(6, 4))
CLS = RNG.integers(0, 7, size=6)
W = RNG.uniform(0.5, 2.0, size=7)

CASES = {  # name -> (loss, positional args as NumPy, keyword options, number of score args)
    "soft_margin": ("soft_margin_loss", (X, PM1), {}, 1),
    "multilabel_soft_margin": ("multilabel_soft_margin_loss", (X, (PM1 + 1) / 2), {"weight": W}, 1),
    "multi_margin": ("multi_margin_loss", (X, CLS), {"p": 2, "margin": 0.7, "weight": W}, 1),
    "multilabel_margin": ("multilabel_margin_loss", (X, IDX), {"margin": 0.5, "weight": W}, 1),
    "multilabel_margin_p2": ("multilabel_margin_loss", (X, IDX), {"p": 2}, 1),
    "hinge_embedding": ("hinge_embedding_loss", (X, PM1), {"margin": 0.4}, 1),
    "margin_ranking": ("margin_ranking_loss", (X, X2, PM1), {"margin": 0.1}, 2),
}


def _jax_args(args, kwargs, dtype):
    cast = [jnp.asarray(a.astype(dtype)) if a.dtype.kind == "f" else jnp.asarray(a) for a in args]
    kw = {
        k: jnp.asarray(v.astype(dtype)) if isinstance(v, np.ndarray) else v
        for k, v in kwargs.items()
    }
    return cast, kw


@pytest.fixture(params=["x32", "x64"])
def precision(request):
    if request.param == "x64":
        with jax.enable_x64(True):
            yield np.float64, 1e-12
    else:
        yield np.float32, 2e-5


@pytest.mark.parametrize("case", CASES)
def test_grad_jit_vmap(case, precision):
    dtype, tol = precision
    name, args, kwargs, n_scores = CASES[case]
    fn = getattr(xmargin, name)
    np_args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in args]
    np_kw = {k: v.astype(dtype) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    ref, ref_grads = xmargin.value_and_grad(fn, argnums=tuple(range(n_scores)))(*np_args, **np_kw)
    jargs, jkw = _jax_args(args, kwargs, dtype)

    def f(*scores):
        return fn(*scores, *jargs[n_scores:], **jkw)

    value = f(*jargs[:n_scores])
    assert_close(np.asarray(value), ref, rtol=tol, atol=tol, what=f"{case} value")
    grads = jax.grad(f, argnums=tuple(range(n_scores)))(*jargs[:n_scores])
    for g, r in zip(grads, ref_grads, strict=True):
        assert g.dtype == jargs[0].dtype
        if case != "margin_ranking":  # exact ties aside (see test_tie_conventions)
            assert_close(np.asarray(g), r, rtol=tol, atol=tol, what=f"{case} jax.grad")
    jitted = jax.jit(lambda *a: fn(*a, **jkw))(*jargs)
    assert_close(np.asarray(jitted), ref, rtol=tol, atol=tol, what=f"{case} jit")
    # vmap over a leading batch of 3 copies: every slice gives the same loss
    batched = [jnp.stack([a, a, a]) for a in jargs]
    per = jax.vmap(lambda *a: fn(*a, **jkw))(*batched)
    assert per.shape == (3,)
    assert_close(np.asarray(per), np.full(3, ref), rtol=tol, atol=tol, what=f"{case} vmap")
    jit_grad = jax.jit(jax.grad(f))(*jargs[:n_scores])
    assert_close(np.asarray(jit_grad), np.asarray(grads[0]), rtol=tol, atol=tol, what="jit(grad)")


def test_value_checks_are_skipped_under_tracing():
    x = jnp.asarray(X, dtype=jnp.float32)
    bad = IDX.copy()
    bad[2, 1] = 99  # out of range
    with pytest.raises(ValueError, match=r"target\[2, 1\] = 99"):
        xmargin.multilabel_margin_loss(x, jnp.asarray(bad))  # eager: checked
    out = jax.jit(lambda a, t: xmargin.multilabel_margin_loss(a, t, reduction="none"))(
        x, jnp.asarray(bad)
    )
    assert np.isnan(np.asarray(out)[2]) and np.isfinite(np.delete(np.asarray(out), 2)).all()
    with pytest.warns(UserWarning, match="to_pm1"):  # eager: the label warning
        xmargin.soft_margin_loss(x, jnp.asarray((PM1 + 1) / 2))
    jax.jit(lambda a, y: xmargin.soft_margin_loss(a, y))(x, jnp.asarray((PM1 + 1) / 2))  # no error


def test_nan_rows_have_nan_gradients_under_jax_grad():
    x = np.array([[np.nan, 0.0, 1.0], [0.2, 0.1, 0.0]], dtype=np.float32)
    t = np.array([[2, -1, 0], [0, -1, -1]])
    g = jax.grad(lambda a: xmargin.multilabel_margin_loss(a, jnp.asarray(t), reduction="sum"))(
        jnp.asarray(x)
    )
    g = np.asarray(g)
    assert np.isnan(g[0]).all() and np.isfinite(g[1]).all()


def test_int32_keys_are_split_when_they_would_overflow(monkeypatch):
    """Without x64, JAX indices are 32-bit: multiplicities go in row groups that fit."""
    from xmargin.backends import portable

    t = jnp.asarray(RNG.integers(-1, 7, size=(6, 5)))
    full = np.asarray(portable.multiplicities(jnp, t, 7))
    monkeypatch.setattr(portable, "_INT32_KEYS", 20)  # 2 rows of 8 keys per group
    split = np.asarray(portable.multiplicities(jnp, t, 7))
    assert np.array_equal(full, split)
    ref = np.asarray(portable.multiplicities(np, np.asarray(t), 7))
    assert np.array_equal(full, ref)


def test_tie_conventions():
    """At an exact tie jax.grad takes JAX's subgradient for clip (1/2); value_and_grad keeps
    PyTorch's (1). Both are valid subgradients; documented."""
    a, b, y = jnp.asarray([1.0]), jnp.asarray([1.0]), jnp.asarray([1.0])
    g = jax.grad(lambda u: xmargin.margin_ranking_loss(u, b, y, reduction="sum"))(a)
    _, ga = xmargin.value_and_grad(xmargin.margin_ranking_loss)(a, b, y, reduction="sum")
    assert float(g[0]) == -0.5 and float(ga[0]) == -1.0


def test_bad_concrete_targets_inside_jit_give_nan_rows():
    """Targets closed over by a jitted function are concrete, but checks inside jit cannot read
    anything: the bad row becomes NaN instead of a silently wrong number."""
    bad = IDX.copy()
    bad[1, 0] = 50
    t = jnp.asarray(bad)
    out = jax.jit(lambda a: xmargin.multilabel_margin_loss(a, t, reduction="none"))(jnp.asarray(X))
    out = np.asarray(out)
    assert np.isnan(out[1]) and np.isfinite(np.delete(out, 1)).all()
    y = jnp.asarray(np.where(CLS == 0, 9, CLS))
    out = np.asarray(
        jax.jit(lambda a: xmargin.multi_margin_loss(a, y, reduction="none"))(jnp.asarray(X))
    )
    assert np.array_equal(np.isnan(out), CLS == 0)


def test_float32_scores_with_x64_enabled():
    """x64 on, float32 scores: the hinge accumulates in float64, gradients come back float32."""
    with jax.enable_x64(True):
        x = jnp.asarray(X, dtype=jnp.float32)
        g = jax.grad(lambda a: xmargin.multilabel_margin_loss(a, jnp.asarray(IDX)))(x)
        assert g.dtype == jnp.float32
        _, ref = xmargin.value_and_grad(xmargin.multilabel_margin_loss)(X.astype(np.float32), IDX)
        assert_close(np.asarray(g), ref, rtol=1e-6, atol=1e-6, what="x64 + float32")
