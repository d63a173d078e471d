"""docs/architecture.md matches the code: every path it names exists, and every
``file.py:name`` it cites is defined in that file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _resolve(path: str) -> Path | None:
    for base in (ROOT, ROOT / "xmargin", ROOT / "xmargin" / "backends", ROOT / "xmargin" / "losses",
                 ROOT / "xmargin" / "adapters"):  # fmt: skip
        if (base / path).exists():
            return base / path
    return None


def test_named_paths_exist():
    paths = set(re.findall(r"`((?:xmargin|kernels|tests|benchmarks)/[\w/.]+?)`", DOC))
    assert len(paths) > 10
    # (xmargin/_kernels is where the wheel puts kernels/)
    missing = [p for p in paths if not (ROOT / p).exists() and "<" not in p and "_kernels" not in p]
    assert not missing, f"docs/architecture.md names missing paths: {missing}"


def test_cited_definitions_exist():
    cites = re.findall(r"`([\w/]+\.py):(\w+)`", DOC)
    assert len(cites) >= 5
    wrong = []
    for path, name in cites:
        file = _resolve(path)
        if file is None or not re.search(rf"^\s*(def|class) {name}\b", file.read_text(), re.M):
            wrong.append(f"{path}:{name}")
    assert not wrong, f"docs/architecture.md cites definitions that are not there: {wrong}"
