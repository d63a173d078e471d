"""The benchmark suite and the training demo: data loading, metrics against brute force, and
small end-to-end runs (timings are not asserted; speed is measured, not tested)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmarks import data, train

pytest.importorskip("torch")


def test_read_dense_and_sparse_arff(tmp_path):
    dense = tmp_path / "dense.arff"
    dense.write_text(
        "@relation 'toy: -C 2'\n@attribute a {0,1}\n@attribute b {0,1}\n@attribute f1 numeric\n"
        "@attribute f2 numeric\n@data\n1,0,0.5,-1.5\n0,1,2,?\n"
    )
    relation, names, values = data.read_arff(dense)
    assert relation == "toy: -C 2" and names == ["a", "b", "f1", "f2"]
    assert values.tolist() == [[1, 0, 0.5, -1.5], [0, 1, 2, 0]]
    assert data._label_columns(relation, names).tolist() == [0, 1]
    sparse = tmp_path / "sparse.arff"
    sparse.write_text(
        "@relation bib\n@attribute w0 {0,1}\n@attribute w1 {0,1}\n@attribute TAG_x {0,1}\n"
        "@attribute TAG_y {0,1}\n@data\n{0 1,3 1}\n{1 1,2 1,3 1}\n"
    )
    relation, names, values = data.read_arff(sparse)
    assert values.tolist() == [[1, 0, 0, 1], [0, 1, 1, 1]]
    assert data._label_columns(relation, names).tolist() == [2, 3]


def test_load_falls_back_to_generated_data(monkeypatch, tmp_path):
    monkeypatch.setenv("XMARGIN_DATA", str(tmp_path))
    ds = data.load("CAL500")
    assert ds.source.startswith("generated") and str(tmp_path) in ds.source
    assert ds.X.shape == (502, 68) and ds.Y.shape == (502, 174)
    k = ds.labels_per_sample
    assert 20 < k.mean() < 32 and k.min() >= 13 and k.max() <= 48


@pytest.mark.skipif(not (data.data_dir() / "CAL500.arff").is_file(), reason="shared/data absent")
def test_real_cal500_matches_its_readme():
    ds = data.load("CAL500")
    assert ds.X.shape == (502, 68) and ds.Y.shape == (502, 174)
    assert ds.labels_per_sample.mean() == pytest.approx(26.0, abs=0.1)


def _brute(scores, Y):
    """The metrics by their definitions, pair by pair."""
    rl, cov, hits = [], [], {1: [], 3: [], 5: []}
    for s, y in zip(scores, Y.astype(bool), strict=True):
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        if len(pos) and len(neg):
            wrong = sum(1.0 if s[j] > s[i] else 0.5 if s[j] == s[i] else 0.0
                        for i, j in itertools.product(pos, neg))  # fmt: skip
            rl.append(wrong / (len(pos) * len(neg)))
        if len(pos):
            cov.append(max(sum(1 for v in s if v >= s[i]) for i in pos))
        order = sorted(range(len(s)), key=lambda j: -s[j])
        for k in hits:
            hits[k].append(sum(y[j] for j in order[:k]) / k)
    return np.mean(rl), np.mean(cov), {k: np.mean(v) for k, v in hits.items()}


def test_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.integers(-3, 4, size=(40, 9)).astype(float)  # many ties
    Y = (rng.random((40, 9)) < 0.3).astype(np.uint8)
    Y[0] = 0
    Y[1] = 1
    rl, cov, prec = _brute(scores, Y)
    m = train.metrics(scores, Y)
    assert m["ranking_loss"] == pytest.approx(rl)
    assert m["coverage"] == pytest.approx(cov)
    for k in (1, 3, 5):
        # ties in the top-k are broken by position in both; compare only untied rows' values
        assert m[f"p@{k}"] == pytest.approx(prec[k], abs=0.1)
    assert m["hamming@0"] == pytest.approx(((scores > 0) != Y.astype(bool)).mean())
    untied = rng.normal(size=(30, 7))
    Y2 = (rng.random((30, 7)) < 0.4).astype(np.uint8)
    _, _, prec2 = _brute(untied, Y2)
    for k in (1, 3, 5):
        assert train.metrics(untied, Y2)[f"p@{k}"] == pytest.approx(prec2[k])


def test_training_demo_runs_and_frameworks_agree(monkeypatch, tmp_path):
    monkeypatch.setenv("XMARGIN_DATA", str(tmp_path))  # generated data: no files needed
    ds = data.generated("CAL500")
    prob = train.prepare(ds, epochs=2)
    for model in ("linear", "mlp"):
        for loss in ("margin", "soft"):
            s_np, curve_np, _ = train.train_array(prob, model, loss, np, 2, np.asarray, np.asarray)
            s_t, _curve_t, _ = train.train_torch(prob, model, loss, 2, "cpu")
            assert np.isfinite(s_np).all() and len(curve_np) == 2
            # same initial weights, batches and updates: the two frameworks agree
            np.testing.assert_allclose(s_np, s_t, rtol=2e-3, atol=2e-3)
    assert train.main(["--epochs", "1", "--datasets", "CAL500", "--no-save"]) == 0


def test_suite_smoke():
    from benchmarks import suite

    cases = suite.multilabel_cases([(8, 30, 3)], {"N": 8, "C": 30, "T": [1, 3]}, [], "cpu")
    cases += suite.other_cases(8, 12, "cpu")
    rows = suite.run_cases(cases, device="cpu", backends=["reference", "portable"], with_compile=False,
                           repeats=1, device_name="test", run="quick")  # fmt: skip
    assert {r["parity"] for r in rows} == {"ok"}
    names = {r["backend"] for r in rows}
    assert {"torch", "reference", "portable", "xmargin[torch]", "xmargin[numpy]"} <= names
    assert all(r["ms"] > 0 for r in rows)
    assert len([c for c in cases if c.loss == "multilabel_margin_loss"]) == 2  # (8, 30, 3) once
