"""Dask: every loss stays lazy (building the result computes nothing), reduction="none" keeps
the batch chunks, mean/sum reduce across them, value_and_grad too; and a run on a
dask.distributed LocalCluster over 10^6 samples."""

from __future__ import annotations

import numpy as np
import pytest

import xmargin

from conftest import assert_close

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

RNG = np.random.default_rng(0)
N, C = 250, 12
X = RNG.normal(size=(N, C))
X2 = RNG.normal(size=(N, C))
PM1 = np.where(RNG.random((N, C)) > 0.5, 1.0, -1.0)
IDX = RNG.integers(-1, C, size=(N, 5))
CLS = RNG.integers(0, C, size=N)
W = RNG.uniform(0.5, 2.0, size=C)
CHUNKS = 60

CASES = {  # name -> (loss, args, kwargs, row-wise)
    "soft_margin": ("soft_margin_loss", (X, PM1), {}),
    "multilabel_soft_margin": ("multilabel_soft_margin_loss", (X, (PM1 + 1) / 2), {"weight": W}),
    "multi_margin": ("multi_margin_loss", (X, CLS), {"p": 2, "weight": W}),
    "multilabel_margin": ("multilabel_margin_loss", (X, IDX), {"margin": 0.5, "weight": W}),
    "hinge_embedding": ("hinge_embedding_loss", (X, PM1), {"margin": 0.3}),
    "margin_ranking": ("margin_ranking_loss", (X, X2, PM1), {"margin": 0.2}),
}


def _refuse(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def _lazy(a):
    return da.from_array(a, chunks=(CHUNKS, *a.shape[1:]))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", CASES)
def test_lazy_chunked_and_equal_to_numpy(case, reduction):
    name, args, kwargs = CASES[case]
    fn = getattr(xmargin, name)
    dargs = [_lazy(a) for a in args]
    dkw = {
        k: da.from_array(v, chunks=5) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()
    }
    with dask.config.set(scheduler=_refuse):  # nothing may run while building
        out = fn(*dargs, **dkw, reduction=reduction)
        n_scores = 2 if name == "margin_ranking_loss" else 1
        loss, grads = xmargin.value_and_grad(fn, argnums=tuple(range(n_scores)))(
            *dargs, **dkw, reduction=reduction
        )
    assert isinstance(out, da.Array) and all(isinstance(g, da.Array) for g in grads)
    if reduction == "none":
        assert out.chunks[0] == dargs[0].chunks[0], "the batch chunks are kept"
    ref = fn(*args, **kwargs, reduction=reduction)
    _, ref_grads = xmargin.value_and_grad(fn, argnums=tuple(range(n_scores)))(
        *args, **kwargs, reduction=reduction
    )
    with dask.config.set(scheduler="sync"):
        assert_close(out.compute(), ref, rtol=1e-12, atol=1e-12, what=f"{case} {reduction}")
        assert_close(loss.compute(), ref, rtol=1e-12, atol=1e-12, what=f"{case} value_and_grad")
        for g, r in zip(grads, ref_grads, strict=True):
            assert g.shape == r.shape
            assert_close(g.compute(), r, rtol=1e-12, atol=1e-12, what=f"{case} grad")


def test_class_axis_chunks_and_bad_targets():
    """Chunked classes are joined per row; a bad target gives a NaN row (no checks on lazy
    arrays) and an unknown backend fails at build time."""
    x = da.from_array(X, chunks=(CHUNKS, 5))
    bad = IDX.copy()
    bad[7, 2] = 40
    out = xmargin.multilabel_margin_loss(x, da.from_array(bad, chunks=(100, 5)), reduction="none")
    with dask.config.set(scheduler="sync"):
        values = out.compute()
    assert np.isnan(values[7]) and np.isfinite(np.delete(values, 7)).all()
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        xmargin.multilabel_margin_loss(x, da.from_array(IDX, chunks=CHUNKS), backend="nope")


@pytest.mark.slow
def test_a_million_samples_on_a_local_cluster():
    distributed = pytest.importorskip("distributed")
    n, c, k = 10**6, 40, 6
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):  # fmt: skip
        rs = da.random.RandomState(0)
        x = rs.normal(size=(n, c), chunks=(100_000, c)).astype(np.float32)
        t = rs.randint(-1, c, size=(n, k), chunks=(100_000, k))
        y = rs.randint(0, c, size=(n,), chunks=100_000)
        mean = xmargin.multilabel_margin_loss(x, t)
        rows = xmargin.multilabel_margin_loss(x, t, reduction="none")
        mm = xmargin.multi_margin_loss(x, y, reduction="sum")
        assert rows.chunks[0] == x.chunks[0]
        mean_v, rows_v, mm_v, xs, ts, ys = dask.compute(mean, rows, mm, x, t, y)
    # the same data in one eager NumPy call (reference backend), accumulated in float64
    ref_rows = xmargin.multilabel_margin_loss(xs, ts, reduction="none")
    assert_close(rows_v, ref_rows, rtol=1e-6, atol=1e-7, what="rows on the cluster vs NumPy")
    assert_close(mean_v, ref_rows.astype(np.float64).mean(), rtol=1e-5, atol=0,
                 what="mean over 10^6 rows")  # fmt: skip
    assert_close(mm_v, float(xmargin.multi_margin_loss(xs, ys, reduction="sum")),
                 rtol=1e-5, atol=0, what="multi_margin sum")  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_half_precision_accumulates_in_float32(case):
    """float16 in, float16 out, but rows are summed in float32: the mean of 10^5 rows of
    float16 losses would overflow a float16 sum (max 65504) or lose itself to rounding."""
    name, args, kwargs = CASES[case]
    fn = getattr(xmargin, name)
    kw = {k: v.astype(np.float16) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    kw64 = {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    for reduction, reps, chunk in (("mean", 400, 25_000), ("sum", 4, 200)):
        big = [np.tile(a, (reps,) + (1,) * (a.ndim - 1)) for a in args]  # reps * 250 rows
        h = [a.astype(np.float16) if a.dtype.kind == "f" else a for a in big]
        dh = [da.from_array(a, chunks=(chunk, *a.shape[1:])) for a in h]
        with dask.config.set(scheduler="sync"):
            out = fn(*dh, **kw, reduction=reduction).compute()
        assert out.dtype == np.float16, out.dtype
        # float64 on the same float16-rounded values: an independent accumulation
        h64 = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in h]
        exact = fn(*h64, **kw64, reduction=reduction)
        assert_close(out, exact, rtol=2e-3, atol=0, what=f"{case} float16 {reduction}")


def test_explicit_backends_apply_to_every_chunk():
    x, t = _lazy(X), _lazy(IDX)
    ref = xmargin.multilabel_margin_loss(X, IDX, reduction="none")
    for backend in ("reference", "portable"):
        out = xmargin.multilabel_margin_loss(x, t, backend=backend, reduction="none")
        with dask.config.set(scheduler="sync"):
            assert_close(out.compute(), ref, rtol=1e-12, atol=1e-12, what=backend)
