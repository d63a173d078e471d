"""The wheel carries kernels/ (as xmargin/_kernels), a source checkout finds it too, and the
installed (non-editable) package computes PyTorch's values with its shipped kernels."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
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
    assert "xmargin/py.typed" in names  # typed package (PEP 561)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "LICENSE"
    version = next(n for n in names if n.endswith(".dist-info/METADATA"))
    import xmargin

    meta = zipfile.ZipFile(wheel).read(version).decode()
    assert f"\nVersion: {xmargin.__version__}\n" in meta  # one version, from __init__.py
    assert not [n for n in names if n.startswith("tests/") or n.startswith("kernels/")]
    _check_installed_wheel(wheel, tmp_path)


# Run in a fresh interpreter whose only xmargin is the installed wheel (cwd outside the checkout):
# PyTorch's own reference inputs against torch.nn.functional, and the Triton kernel loaded from
# the installed xmargin/_kernels (in the interpreter when there is no GPU).
_INSTALLED_CHECK = textwrap.dedent(
    """
    import importlib.util, os, sys, torch, torch.nn.functional as F
    import xmargin
    from xmargin._resources import kernels_dir
    site = sys.argv[1]
    assert xmargin.__file__.startswith(site), xmargin.__file__
    assert str(kernels_dir()).startswith(site), kernels_dir()
    x = torch.tensor([[0.1, 0.2, 0.4, 0.8, 0.3, 0.9, 0.05]], dtype=torch.float64)
    t = torch.tensor([[2, 0, 6, -1, 4, -1, 6]])
    for red in ("none", "mean", "sum"):
        ours = xmargin.multilabel_margin_loss(x, t, reduction=red)
        theirs = F.multilabel_margin_loss(x, t, reduction=red)
        assert torch.allclose(ours, theirs, rtol=1e-12, atol=0), (red, ours, theirs)
        y = torch.tensor([3])
        assert torch.allclose(
            xmargin.multi_margin_loss(x[:, :4], y, reduction=red),
            F.multi_margin_loss(x[:, :4], y, reduction=red), rtol=1e-12, atol=0)
    gpu = torch.cuda.is_available()
    if importlib.util.find_spec("triton") and (gpu or os.environ.get("TRITON_INTERPRET") == "1"):
        dev = "cuda" if gpu else "cpu"
        xt, tt = x.to(dev), t.to(dev)
        ours = xmargin.multilabel_margin_loss(xt, tt, backend="triton").cpu()
        assert torch.allclose(ours, F.multilabel_margin_loss(x, t), rtol=1e-12, atol=0)
    print("ok")
    """
)


def _check_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    run = subprocess.run(
        [sys.executable, "-c", _INSTALLED_CHECK, str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (
        run.stdout[-2000:] + run.stderr[-3000:]
    )
