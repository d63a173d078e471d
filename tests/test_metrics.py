"""xmargin.metrics.precision_at_k against a brute-force definition, on every namespace."""

from __future__ import annotations

import numpy as np
import pytest

from xmargin.metrics import precision_at_k


def _brute(scores, labels, k):
    out = []
    for s, y in zip(scores.tolist(), labels.tolist(), strict=True):
        if any(v != v for v in s):
            out.append(float("nan"))
            continue
        order = sorted(range(len(s)), key=lambda j: (-s[j], j))  # ties: lower index first
        out.append(sum(1 for j in order[:k] if y[j] != 0) / k)
    return float(np.mean(out)) if out else float("nan")


def _namespaces():
    out = [("numpy", np.asarray)]
    for name in ("torch", "jax.numpy", "array_api_strict"):
        try:
            mod = __import__(name, fromlist=["asarray"])
        except ImportError:
            continue
        out.append((name, mod.asarray))
    return out


@pytest.mark.parametrize(("ns", "asarray"), _namespaces(), ids=[n for n, _ in _namespaces()])
@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_matches_the_definition_with_ties(ns, asarray, k):
    rng = np.random.default_rng(k)
    scores = rng.integers(-2, 3, size=(25, 7)).astype(np.float32)  # many ties
    labels = (rng.random((25, 7)) < 0.35).astype(np.int32)
    got = precision_at_k(asarray(scores), asarray(labels), k)
    assert float(got) == pytest.approx(_brute(scores, labels, k), abs=1e-6), ns
    assert type(got).__module__.split(".")[0] == type(asarray(scores)).__module__.split(".")[0]


def test_nan_rows_empty_batch_and_bool_labels():
    s = np.array([[0.3, np.nan, 0.1], [0.9, 0.2, 0.4]])
    y = np.array([[True, False, False], [False, False, True]])
    assert np.isnan(float(precision_at_k(s, y, 1)))
    assert float(precision_at_k(s[1:], y[1:], 2)) == pytest.approx(0.5)
    assert np.isnan(float(precision_at_k(np.zeros((0, 3)), np.zeros((0, 3)), 1)))


def test_errors_name_the_argument():
    s, y = np.zeros((2, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"precision_at_k: argument 'k' must be >= 1, got 0"):
        precision_at_k(s, y, 0)
    with pytest.raises(TypeError, match=r"argument 'k' must be an int, got float 1.5"):
        precision_at_k(s, y, 1.5)
    with pytest.raises(ValueError, match=r"must both have shape \(N, C\)"):
        precision_at_k(s, y[:, :2], 1)
    with pytest.raises(TypeError, match="real floating"):
        precision_at_k(s.astype(np.int64), y, 1)
