"""xmargin.keras: Keras 3 losses on Keras' torch and JAX backends, each in a subprocess of its
own (Keras fixes its backend at import). Values against PyTorch float64 / the loop oracle with
Keras' reduction rules applied here, get_config/from_config, a compile/fit/evaluate round trip
and a saved model that loads again; a clear error on an unsupported backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")
torch = pytest.importorskip("torch")
F = torch.nn.functional

import oracle  # noqa: E402

N, C = 6, 5
W = [1.0, 2.0, 3.0, 0.5, 1.5]

SCRIPT = (
    textwrap.dedent(
        """
    import json, sys
    import numpy as np
    import keras
    import xmargin.keras as xk

    d = dict(np.load(sys.argv[1]))
    out = {"backend": keras.backend.backend()}
    cases = {
        "mlm": (xk.MultiLabelMarginLoss(margin=0.7, p=2, weight=__W__), d["t_idx"], d["x"]),
        "mm": (xk.MultiMarginLoss(p=2, margin=0.5, weight=__W__), d["t_cls"], d["x"]),
        "mlsm": (xk.MultiLabelSoftMarginLoss(weight=__W__), d["t_01"], d["x"]),
        "sm": (xk.SoftMarginLoss(), d["t_pm"], d["x"]),
        "he": (xk.HingeEmbeddingLoss(margin=0.5), d["t_pm"], d["x"]),
        "mr": (xk.MarginRankingLoss(margin=0.1), d["t_pair"], d["x"][:, :2]),
    }
    for key, (loss, y_true, y_pred) in cases.items():
        again = type(loss).from_config(loss.get_config())
        summed = type(loss).from_config({**loss.get_config(), "reduction": "sum"})
        out[key] = {
            "default": float(loss(y_true, y_pred)),
            "weighted": float(loss(y_true, y_pred, sample_weight=d["sw"])),
            "sum": float(summed(y_true, y_pred)),
            "from_config": float(again(y_true, y_pred)),
            "config_equal": again.get_config() == loss.get_config(),
        }
    # a model trained with the loss, evaluated, saved and loaded
    keras.utils.set_random_seed(0)
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(__C__)(inp))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=xk.MultiLabelMarginLoss(p=2))
    before = [np.array(v) for v in model.get_weights()]
    hist = model.fit(d["h"], d["t_fit"], epochs=3, batch_size=8, verbose=0)
    after = [np.array(v) for v in model.get_weights()]
    pred = np.asarray(model.predict(d["h"], verbose=0), dtype=np.float64)
    out["fit"] = {
        "history": [float(v) for v in hist.history["loss"]],
        "changed": any(not np.array_equal(a, b) for a, b in zip(before, after)),
        "evaluate": float(model.evaluate(d["h"], d["t_fit"], verbose=0)),
        "pred": pred.tolist(),
    }
    path = sys.argv[2]
    model.save(path)
    loaded = keras.models.load_model(path)
    out["fit"]["loaded_loss"] = type(loaded.loss).__name__
    out["fit"]["loaded_evaluate"] = float(loaded.evaluate(d["h"], d["t_fit"], verbose=0))
    # an unsupported backend is refused when the loss is built
    keras.backend.backend = lambda: "tensorflow"
    try:
        xk.SoftMarginLoss()
    except TypeError as exc:
        out["tf_error"] = str(exc)
    print(json.dumps(out))
    """
    )
    .replace("__W__", repr(W))
    .replace("__C__", str(C))
)


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t_idx = np.full((N, C), -1)
    for i in range(N):
        k = int(rng.integers(0, 4))
        t_idx[i, :k] = rng.permutation(C)[:k]
    t_fit = np.full((32, C), -1)
    t_fit[:, 0] = rng.integers(0, C, 32)
    t_fit[::2, 1] = (t_fit[::2, 0] + 1) % C
    return {
        "x": rng.normal(size=(N, C)).astype(np.float32),
        "t_idx": t_idx,
        "t_cls": rng.integers(0, C, N),
        "t_01": (rng.random((N, C)) > 0.5).astype(np.float32),
        "t_pm": np.where(rng.random((N, C)) > 0.5, 1.0, -1.0).astype(np.float32),
        "t_pair": np.where(rng.random(N) > 0.5, 1.0, -1.0).astype(np.float32),
        "sw": np.linspace(0.0, 2.0, N).astype(np.float32),
        "h": rng.normal(size=(32, 3)).astype(np.float32),
        "t_fit": t_fit,
    }


def _per_sample(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each loss's value per sample, in float64, from PyTorch or the loop oracle."""
    x = torch.tensor(d["x"], dtype=torch.float64)
    w = torch.tensor(W, dtype=torch.float64)
    t_pm = torch.tensor(d["t_pm"], dtype=torch.float64)
    rows, _ = oracle.multilabel_margin(d["x"].astype(np.float64), d["t_idx"], margin=0.7, p=2,
                                       weight=np.array(W))  # fmt: skip
    return {
        "mlm": np.asarray(rows, dtype=np.float64),
        "mm": F.multi_margin_loss(
            x, torch.tensor(d["t_cls"]), p=2, margin=0.5, weight=w, reduction="none"
        ).numpy(),
        "mlsm": F.multilabel_soft_margin_loss(
            x, torch.tensor(d["t_01"], dtype=torch.float64), weight=w, reduction="none"
        ).numpy(),
        "sm": F.soft_margin_loss(x, t_pm, reduction="none").mean(-1).numpy(),
        "he": F.hinge_embedding_loss(x, t_pm, margin=0.5, reduction="none").mean(-1).numpy(),
        "mr": F.margin_ranking_loss(
            x[:, 0], x[:, 1], torch.tensor(d["t_pair"]).double(), margin=0.1, reduction="none"
        ).numpy(),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[dict[str, np.ndarray], Path]:
    d = _data()
    path = tmp_path_factory.mktemp("keras") / "data.npz"
    np.savez(path, **d)
    return d, path


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_keras_losses(backend, data, tmp_path):
    d, path = data
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    env.pop("TRITON_INTERPRET", None)
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), str(tmp_path / "model.keras")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["backend"] == backend

    sw = d["sw"].astype(np.float64)
    for key, rows in _per_sample(d).items():
        got = out[key]
        # Keras: sum_over_batch_size = Σ values / N (sample weights multiply the values)
        expected = {"default": rows.mean(), "weighted": (rows * sw).sum() / N,
                    "sum": rows.sum()}  # fmt: skip
        for what, value in expected.items():
            assert got[what] == pytest.approx(value, rel=2e-6, abs=1e-6), (backend, key, what)
        assert got["from_config"] == got["default"], (backend, key)
        assert got["config_equal"], (backend, key)

    fit = out["fit"]
    assert fit["changed"] and all(np.isfinite(fit["history"]))
    # evaluate's loss is the loss of the model's own predictions (computed independently)
    pred = np.array(fit["pred"])
    rows, _ = oracle.multilabel_margin(pred, d["t_fit"], p=2)
    assert fit["evaluate"] == pytest.approx(np.mean(rows), rel=1e-5)
    assert fit["loaded_loss"] == "MultiLabelMarginLoss"
    assert fit["loaded_evaluate"] == pytest.approx(fit["evaluate"], rel=1e-6)
    assert "Keras backend 'tensorflow' is not supported" in out["tf_error"]
    assert "SoftMarginLoss" in out["tf_error"]


def test_float_class_indices_are_refused():
    """Keras would cast targets to float32; the index losses keep them integer and refuse
    float ones, as the functional forms do (a float index is no class)."""
    import keras

    if keras.backend.backend() not in ("torch", "jax"):
        pytest.skip(f"Keras runs on {keras.backend.backend()} in this process")
    import xmargin.keras as xk

    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="multilabel_margin_loss"):
        xk.MultiLabelMarginLoss()(np.array([[0.0, -1.0], [1.0, -1.0]]), x)
    with pytest.raises(ValueError, match=r"y_pred' must have shape \(\.\.\., 2\)"):
        xk.MarginRankingLoss()(np.ones(2, np.float32), x)
