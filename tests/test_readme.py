"""The README's Python snippets run as written, in order, in one fresh interpreter (what a
newcomer pasting them does): ```python blocks are run, ```text blocks are not."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_there_are_snippets():
    assert len(_blocks()) >= 5


@pytest.mark.slow
def test_readme_snippets_run(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    pytest.importorskip("dask.array")
    code = "\n\n".join(_blocks())
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    env.pop("TRITON_INTERPRET", None)
    env.pop("XMARGIN_BACKEND", None)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
