"""The benchmark suite and the training demo: data loading, metrics against brute force, and
small end-to-end runs (timings are not asserted; speed is measured, not tested)."""

from __future__ import annotations

import csv
import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import _common, data, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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
    """The metrics by scikit-learn's definitions, pair by pair (ranking loss: a tie counts as
    wrong, samples without a (true, false) pair count 0; coverage: 0 for no true label)."""
    rl, cov, hits = [], [], {1: [], 3: [], 5: []}
    for s, y in zip(scores, Y.astype(bool), strict=True):
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        if len(pos) and len(neg):
            wrong = sum(1.0 for i, j in itertools.product(pos, neg) if s[j] >= s[i])
            rl.append(wrong / (len(pos) * len(neg)))
        else:
            rl.append(0.0)
        cov.append(max(sum(1 for v in s if v >= s[i]) for i in pos) if len(pos) else 0)
        order = sorted(range(len(s)), key=lambda j: (-s[j], j))  # ties: lower class first
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
        assert m[f"p@{k}"] == pytest.approx(prec[k])
    assert m["hamming@0"] == pytest.approx(((scores > 0) != Y.astype(bool)).mean())


def test_training_demo_runs_and_frameworks_agree(monkeypatch, tmp_path):
    monkeypatch.setenv("XMARGIN_DATA", str(tmp_path))  # generated data: no files needed
    ds = data.generated("CAL500")
    prob = train.prepare(ds, epochs=2)
    for model in ("linear", "mlp"):
        for loss, negs in train.RUNS:
            opts = train.loss_options(loss, negs, prob.Y_train)
            s_np, curve_np, _ = train.train_array(
                prob, model, loss, np, 2, np.asarray, np.asarray, opts
            )
            s_t, _curve_t, _ = train.train_torch(prob, model, loss, 2, "cpu", opts)
            assert np.isfinite(s_np).all() and len(curve_np) == 2
            # same initial weights, batches and updates: the two frameworks agree
            np.testing.assert_allclose(s_np, s_t, rtol=2e-3, atol=2e-3)
    assert train.main(["--epochs", "1", "--datasets", "CAL500", "--no-save"]) == 0


def test_training_demo_loss_options():
    Y = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0]])
    assert train.loss_options("margin", "all", Y) == {}
    assert train.loss_options("soft", "top-5", Y) == {}
    assert train.loss_options("margin", "top-20", Y) == {"negatives": 20}
    v = train.loss_options("margin", "inv-freq", Y)["neg_weight"]
    # 1 / (n_j + 1) = 1/4, 1/2, 1 scaled to mean 1
    np.testing.assert_allclose(v, np.array([0.25, 0.5, 1.0]) / (1.75 / 3), rtol=1e-6)


@pytest.fixture(scope="module")
def smoke_rows():
    """A tiny run of the suite: the fixed-cost goal case, a sweep point and one other loss."""
    from benchmarks import suite

    cases = suite.multilabel_cases([(8, 16, 2)], {"N": 8, "C": 16, "T": [1, 2]}, [], "cpu")
    cases += suite.other_cases(8, 12, "cpu", losses=["margin_ranking_loss"])
    return cases, suite.run_cases(cases, device="cpu", backends=["numba", "reference", "portable"],
                                  with_compile=False, rounds=3, block_s=0.001, run="quick",
                                  quiet=True)  # fmt: skip


def test_suite_smoke(smoke_rows):
    cases, rows = smoke_rows
    assert {r["parity"] for r in rows} == {"ok"}
    names = {r["backend"] for r in rows}
    assert {"torch", "numba", "reference", "portable", "xmargin[torch]", "xmargin[numpy]"} <= names
    assert all(r["ms_min"] <= r["ms"] <= r["ms_max"] and r["ms"] > 0 for r in rows)
    assert all(r["rounds"] == 3 and r["seeds"] == 3 for r in rows)
    assert len([c for c in cases if c.loss == "multilabel_margin_loss"]) == 2  # (8, 16, 2) once
    assert all(len(c.inputs) == 3 for c in cases)
    # three distinct inputs per case
    x0, x1 = cases[0].inputs[0][0], cases[0].inputs[1][0]
    assert not bool((x0 == x1).all())


def test_one_thread_rows(smoke_rows):
    _, rows = smoke_rows
    names = {r["backend"] for r in rows}
    for name in ("torch", "numba", "reference", "xmargin[numpy]", "xmargin[torch]"):
        one = _common.one_thread(name)
        assert one in names
        assert {r["threads"] for r in rows if r["backend"] == one} == {1}
        # a one-thread row is compared with torch[1 thread]
        assert {r["vs"] for r in rows if r["backend"] == one} == {"torch[1 thread]"}
    assert "portable[1 thread]" not in names
    assert _common.one_thread("xmargin[numpy]") == "xmargin[numpy, 1 thread]"
    for r in rows:
        if r["backend"] in ("torch", "torch[1 thread]"):
            assert r["speedup_vs_torch"] == pytest.approx(1.0)


def test_provenance_in_every_csv_row(smoke_rows, tmp_path):
    _, rows = smoke_rows
    path = tmp_path / "r.csv"
    path.write_text("device,run,backend\ncpu,quick,stale\n")  # an old row without provenance
    _common.write_csv(path, rows, key=("device", "run", "backend", "loss", "case", "N", "C", "T",
                                       "mode"), require="git_commit")  # fmt: skip
    with path.open(newline="") as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) and "stale" not in {r["backend"] for r in read}
    for r in read:
        for k in (*_common.PROVENANCE, "threads"):
            assert r[k], k
        assert re.fullmatch(r"[0-9a-f]{4,40}(\+dirty)?|unknown", r["git_commit"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", r["timestamp_utc"])
        assert r["machine"] == _common.machine_name()
        assert r["torch_version"] == torch.__version__
    assert _common.git_commit(tmp_path) == "unknown"  # not a checkout


def test_timer_on_a_tiny_case():
    seen = {}

    def sleeper():
        time.sleep(0.002)

    def probe(key):
        def fn():
            seen[key] = (torch.get_num_threads(), os.environ.get(_common.THREADS_ENV))

        return fn

    t = _common.time_rounds({"sleep": sleeper, "one": probe("one"), "default": probe("default")},
                            threads={"one": 1}, rounds=3, block_s=0.001)  # fmt: skip
    s = t["sleep"].stats()
    assert s["rounds"] == 3 and s["calls"] >= 3
    assert 0.002 <= s["ms_min"] / 1e3 <= s["ms"] / 1e3 <= s["ms_max"] / 1e3 < 1.0
    assert len(s["round_ms"].split()) == 3 and s["iqr_ms"] >= 0
    assert seen["one"] == (1, "1")
    assert seen["default"][1] == os.environ.get(_common.THREADS_ENV)
    assert os.environ.get(_common.THREADS_ENV) == seen["default"][1]  # restored
    # budgets: more rounds while they fit, never fewer than asked
    t = _common.time_rounds({"f": lambda: None}, rounds=3, max_rounds=5, budget_s=10, block_s=0.001)
    assert t["f"].stats()["rounds"] == 5
    assert _common.paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 2.0]) == (3.0, 2.0, 4.0)


def test_goals_table(smoke_rows):
    from benchmarks import suite

    _, rows = smoke_rows
    goals = suite.goals(rows)
    assert [g["case"] for g in goals] == ["fixed cost"]  # the only goal case that ran
    g = goals[0]
    assert g["goal"] == 0.4 and g["met"] in ("yes", "no") and g["numpy_met"] in ("yes", "no")
    assert g["ratio_min"] <= g["ratio"] <= g["ratio_max"]
    assert g["ratio_default"] is not None
    lines = suite.goals_lines(goals)
    assert len(lines) == 3 and lines[2].startswith("| fixed cost | 8 | 16 | 2 |")


def test_markdown_report(smoke_rows, tmp_path):
    from benchmarks import __main__ as cli
    from benchmarks import suite

    _, rows = smoke_rows
    prov = _common.provenance()
    header = cli._header(prov, _common.default_threads(), "quick", "settings")
    cli._markdown(rows, suite.goals_lines(suite.goals(rows)), header, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert prov["git_commit"] in text and prov["torch_version"] in text
    assert "## Goals" in text and "| fixed cost |" in text and "numba[1 thread]" in text


def test_roofline_model_without_a_gpu():
    """The model runs anywhere, labels itself an estimate, and its floor is the bytes that
    must move at the device's bandwidth (checked by hand for one shape)."""
    from benchmarks import roofline

    rows = roofline.model_rows([(64, 1_000_000, 32)])
    fwd_bwd = next(r for r in rows if r["mode"] == "fwd+bwd")
    must = 64 * 1_000_000 * 4 * 2 + 64 * 33 * 8 + 64 * 4  # x read, grad written, prefix, loss
    assert fwd_bwd["must_move_mb"] == pytest.approx(must / 1e6)
    assert fwd_bwd["floor_us"] == pytest.approx(must / 3350e3)
    assert fwd_bwd["estimate_us"] >= fwd_bwd["floor_us"]
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--device", "cuda", "--model"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ESTIMATE" in out.stdout and "64  1000000" in out.stdout


def test_gpu_check_says_when_there_is_no_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: gpu_check would run the GPU suite")
    out = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert out.returncode == 2 and "no CUDA device" in out.stdout


def test_runs_write_committed_results_only_with_save():
    """``make demo`` must not rewrite the committed results: a run writes to
    benchmarks/output (ignored by git) unless --save is given."""
    import subprocess

    assert _common.out_dir(True) == _common.RESULTS
    out = _common.out_dir(False)
    assert out == _common.OUTPUT and out.is_dir()
    probe = out / "probe.csv"
    probe.write_text("x\n")
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=_common.ROOT)
        assert ignored.returncode == 0, "benchmarks/output is not ignored by git"
    finally:
        probe.unlink()


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
            ],
        ),
    ],
)
def test_gpu_variants_give_the_default_results(device):
    """Every launch variant of benchmarks.gpu_variants (forced row splits, block sizes, warps;
    CuPy's one-block and split kernels on a GPU) computes what the default launch does: the
    tuning table only compares variants that are right (on the CPU: Triton's interpreter)."""
    from benchmarks import gpu_variants

    usable = __import__("xmargin").backends.available(torch.zeros(1, 1, device=device))
    backends = [b for b in ("triton", "cupy") if b in usable]
    if not backends:
        pytest.skip(f"no GPU backend runs on {device} here")
    shape = (1, 150, 3) if device == "cpu" else (24, 70_001, 9)
    rows = gpu_variants.run([shape], backends, device, rep=1)
    expected = sum(len(getattr(gpu_variants, f"{b}_variants")()) for b in backends) * 2
    assert len(rows) == expected, [r["variant"] for r in rows]
    wrong = [(r["backend"], r["variant"], r["mode"], r["matches_default"]) for r in rows
             if r["matches_default"] not in ("same", "close")]  # fmt: skip
    assert not wrong, wrong


def test_xmc_zipf_targets():
    from benchmarks import xmc

    t = xmc.zipf_targets(500, 1000, 5.0, seed=3)
    counts = (t >= 0).sum(axis=1)
    assert counts.min() >= 1 and 4.0 < counts.mean() < 6.0
    for row in t:  # distinct, sorted, -1 padded at the end
        labels = row[row >= 0]
        assert len(set(labels.tolist())) == len(labels) and np.all(np.diff(labels) > 0)
        assert np.all(row[len(labels) :] == -1)
    # the head of the Zipf law is the most frequent
    freq = np.bincount(t[t >= 0], minlength=1000)
    assert freq[:10].sum() > freq[500:510].sum() * 5


def test_xmc_benchmark_smoke(tmp_path, monkeypatch):
    from benchmarks import xmc

    monkeypatch.setattr(xmc, "N", 16)
    monkeypatch.setattr(xmc, "D", 8)
    for name in xmc.CONTENDERS:  # in this process (the suite runs each in a fresh one)
        out = xmc.worker(name, 300, "cpu", 1)
        assert out["ms"] > 0 and out["ms_min"] <= out["ms"] <= out["ms_max"]
        assert np.isfinite(out["extra_mb"])
    assert xmc._fits("torch", 10**12, "cpu") is not None and xmc._fits("fused", 10**12, "cpu") is None
