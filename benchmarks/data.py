"""The real multi-label data sets (CAL500, bibtex) from ``../shared/data``, or look-alikes.

ARFF in the MULAN/MEKA format: CAL500 is dense and names its label count in the relation
(``-C 174``: the first 174 attributes are labels); bibtex rows are sparse (``{index value,...}``)
and its labels are the attributes named ``TAG_*`` (the last 159). When a file is missing, a
generated data set with the same shape statistics stands in, and ``Dataset.source`` says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# shape statistics of the real files (shared/data/README.md), for the stand-ins
STATS = {
    "CAL500": {
        "n": 502,
        "d": 68,
        "labels": 174,
        "mean": 26.0,
        "min": 13,
        "max": 48,
        "sparse": False,
        "shape": 8.0,
    },
    "bibtex": {
        "n": 7395,
        "d": 1836,
        "labels": 159,
        "mean": 2.4,
        "min": 1,
        "max": 28,
        "sparse": True,
        "shape": 1.0,
    },
}


@dataclass
class Dataset:
    name: str
    X: np.ndarray  # (n, d) float32 features
    Y: np.ndarray  # (n, L) uint8 multi-hot labels
    source: str  # the file read, or "generated (...)"

    @property
    def labels_per_sample(self) -> np.ndarray:
        return self.Y.sum(axis=1)

    def describe(self) -> str:
        k = self.labels_per_sample
        return (
            f"{self.name}: {self.X.shape[0]} samples, {self.X.shape[1]} features, "
            f"{self.Y.shape[1]} labels, {k.mean():.1f} labels/sample ({k.min()}-{k.max()}) "
            f"[{self.source}]"
        )


def data_dir() -> Path:
    """``$XMARGIN_DATA``, else ``../shared/data`` next to the project."""
    env = os.environ.get("XMARGIN_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def read_arff(path: Path) -> tuple[str, list[str], np.ndarray]:
    """(relation, attribute names, values (n, attributes) float32); dense and sparse rows."""
    relation, names, rows = "", [], []
    in_data = False
    with path.open() as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            if not in_data:
                low = line.lower()
                if low.startswith("@relation"):
                    relation = line[len("@relation") :].strip().strip("'\"")
                elif low.startswith("@attribute"):
                    rest = line[len("@attribute") :].strip()
                    name = rest[1 : rest.index("'", 1)] if rest.startswith("'") else rest.split()[0]
                    names.append(name)
                elif low.startswith("@data"):
                    in_data = True
                continue
            row = np.zeros(len(names), dtype=np.float32)
            if line.startswith("{"):
                for item in line.strip("{}").split(","):
                    item = item.strip()
                    if item:
                        i, v = item.split()
                        row[int(i)] = float(v)
            else:
                for i, v in enumerate(line.split(",")):
                    row[i] = 0.0 if v.strip() in ("?", "") else float(v)
            rows.append(row)
    return relation, names, np.stack(rows) if rows else np.zeros((0, len(names)), np.float32)


def _label_columns(relation: str, names: list[str]) -> np.ndarray:
    match = re.search(r"-C\s+(-?\d+)", relation)
    if match:  # MEKA: -C n = the first n attributes, -C -n = the last n
        n = int(match.group(1))
        idx = np.arange(len(names))
        return idx[:n] if n > 0 else idx[n:]
    return np.array([i for i, name in enumerate(names) if name.startswith("TAG_")])


def generated(name: str, seed: int = 0) -> Dataset:
    """A stand-in with the real set's shape statistics and learnable labels."""
    s = STATS[name]
    rng = np.random.default_rng(seed)
    if s["sparse"]:
        X = (rng.random((s["n"], s["d"])) < 0.03).astype(np.float32)
    else:
        X = rng.normal(size=(s["n"], s["d"])).astype(np.float32)
    W = rng.normal(size=(s["d"], s["labels"])) / np.sqrt(s["d"] * (0.03 if s["sparse"] else 1.0))
    scores = X @ W + rng.normal(scale=0.5, size=(s["n"], s["labels"]))
    # labels per sample: a gamma law with the real mean (shape picked to match the spread)
    k = rng.gamma(s["shape"], s["mean"] / s["shape"], s["n"])
    k = np.clip(np.rint(k), s["min"], s["max"]).astype(int)
    order = np.argsort(-scores, axis=1)
    Y = np.zeros((s["n"], s["labels"]), dtype=np.uint8)
    for i in range(s["n"]):
        Y[i, order[i, : k[i]]] = 1
    return Dataset(name, X, Y, f"generated ({name}-like: file not found in {data_dir()})")


def load(name: str) -> Dataset:
    """CAL500 or bibtex from :func:`data_dir`, else a generated stand-in."""
    path = data_dir() / f"{name}.arff"
    if not path.is_file():
        return generated(name)
    relation, names, values = read_arff(path)
    labels = _label_columns(relation, names)
    features = np.setdiff1d(np.arange(len(names)), labels)
    return Dataset(name, values[:, features], values[:, labels].astype(np.uint8), str(path))


def split(n: int, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed train/test split of n samples (same seed, same split)."""
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * (1 - test_fraction))
    return np.sort(order[:cut]), np.sort(order[cut:])
