"""The wheel carries kernels/ (as xmargin/_kernels) and a source checkout finds it too."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from xmargin._resources import kernels_dir

ROOT = Path(__file__).resolve().parents[1]


def test_source_checkout_finds_kernels():
    d = kernels_dir()
    assert (d / "triton").is_dir() and (d / "cuda").is_dir()


@pytest.mark.slow
def test_wheel_carries_kernels(tmp_path):
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    pytest.importorskip("build")
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "__pycache__", "dist", "build"
        ),
    )
    out = tmp_path / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = out.glob("xmargin-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    kernel_files = [n for n in names if n.startswith("xmargin/_kernels/")]
    expected = {
        "xmargin/_kernels/" + str(p.relative_to(ROOT / "kernels"))
        for p in (ROOT / "kernels").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert expected <= set(kernel_files), sorted(expected - set(kernel_files))
    assert "xmargin/__init__.py" in names
    assert not [n for n in names if n.startswith("tests/") or n.startswith("kernels/")]
