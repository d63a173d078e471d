"""Property tests (hypothesis): every hinge backend against the literal-loop oracle.

Scores are drawn on a grid of halves so that exact ties (a hinge of exactly 0) are frequent.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmargin.backends import numba as numba_backend
from xmargin.backends import portable, reference

import oracle
from conftest import assert_close

BACKENDS = {
    "numba": numba_backend.hinge,
    "portable": portable.hinge,
    "reference": reference.hinge,
}


def _triton_on_numpy(x, t, **kw):
    """The triton backend on NumPy inputs: through torch tensors on the GPU, or on the CPU
    under Triton's interpreter."""
    import torch

    from xmargin.backends import triton as tb

    device = "cuda" if torch.cuda.is_available() else "cpu"
    w = kw.pop("weight")
    loss, grad = tb.hinge(
        torch.from_numpy(x).to(device),
        torch.from_numpy(t).to(device),
        weight=None if w is None else torch.from_numpy(w).to(device),
        **kw,
    )
    return loss.cpu().numpy(), None if grad is None else grad.cpu().numpy()


try:
    import torch
    import triton  # noqa: F401

    TRITON = os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()
except ImportError:
    TRITON = False
if TRITON:
    BACKENDS["triton"] = _triton_on_numpy
# the interpreter is slow: fewer examples for the Triton kernel on the CPU
FEW = settings(max_examples=30, deadline=None)


@st.composite
def hinge_problems(draw):
    n = draw(st.integers(0, 5))
    c = draw(st.integers(1, 9))
    k = draw(st.integers(0, 11))
    x = (
        np.array(
            draw(st.lists(st.integers(-6, 6), min_size=n * c, max_size=n * c)), dtype=np.float64
        ).reshape(n, c)
        / 2
    )
    t = np.array(
        draw(st.lists(st.integers(-1, c - 1), min_size=n * k, max_size=n * k)), dtype=np.int64
    ).reshape(n, k)
    margin = draw(st.sampled_from([1.0, 0.0, 0.5, -1.0, 2.0]))
    p = draw(st.sampled_from([1, 2]))
    weight = None
    if draw(st.booleans()):
        weight = np.array(draw(st.lists(st.integers(-3, 3), min_size=c, max_size=c)), float) / 2
    if n and draw(st.booleans()):  # a NaN somewhere
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, c - 1))] = np.nan
    return x, t, margin, p, weight


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
@given(problem=hinge_problems())
def test_hinge_matches_oracle(backend, problem):
    _check_against_oracle(backend, problem)


@pytest.mark.skipif(not TRITON, reason="triton: needs a CUDA device or TRITON_INTERPRET=1")
@given(problem=hinge_problems())
@FEW
def test_triton_hinge_matches_oracle(problem):
    _check_against_oracle("triton", problem)


def _check_against_oracle(backend, problem):
    x, t, margin, p, weight = problem
    n, c = x.shape
    loss, grad = BACKENDS[backend](x, t, margin=margin, p=p, weight=weight, want_grad=True)
    ref_loss, ref_grad = oracle.multilabel_margin(x, t, margin=margin, p=p, weight=weight)
    ref_loss = np.asarray(ref_loss, dtype=float).reshape(n) * c  # the contract is before 1/C
    ref_grad = np.asarray(ref_grad, dtype=float).reshape(n, c) * c
    assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12, what=f"{backend} loss")
    assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12, what=f"{backend} grad")
    loss_only, none = BACKENDS[backend](x, t, margin=margin, p=p, weight=weight, want_grad=False)
    assert none is None
    assert_close(loss_only, loss, rtol=0, atol=0, what=f"{backend} loss without grad")


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
@given(
    seed=st.integers(0, 2**32 - 1),
    c=st.integers(2, 300),
    t_frac=st.floats(0.0, 1.0),
)
def test_hinge_float32_close_to_float64(backend, seed, c, t_frac):
    """float32 scores keep float64-oracle accuracy (accumulation is wider)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(3, c)).astype(np.float32)
    k = max(1, int(t_frac * c))
    t = np.stack([rng.permutation(c)[:k] for _ in range(3)])
    loss32, grad32 = BACKENDS[backend](x, t, margin=1.0, p=1, weight=None, want_grad=True)
    loss64, grad64 = BACKENDS[backend](
        x.astype(np.float64), t, margin=1.0, p=1, weight=None, want_grad=True
    )
    assert_close(loss32, loss64, rtol=1e-5, atol=1e-5, what="float32 vs float64 loss")
    assert_close(grad32, grad64, rtol=0, atol=0, what="float32 vs float64 grad (counts)")
