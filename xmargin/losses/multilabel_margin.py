"""multilabel_margin_loss: the pairwise multilabel hinge, through the backend registry."""

from __future__ import annotations

from typing import Any

from .. import backends
from .._config import readable
from .._interop import compute_dtype, is_dask, is_torch
from .._xp import astype, compiling, requires_grad, same_namespace
from ..negatives import candidates, check_negatives, gather_problem, scatter_rows
from ._dask import rowwise_dask
from ._public import public_loss
from ._rowwise import (
    check_index_dtype,
    check_on_nan,
    check_target_rows,
    check_weight_values,
    class_weight,
    finish,
    index_target,
    index_values_unchecked,
    row_options,
    run_core,
    scores_as_matrix,
)

Array = Any


def _multilabel_margin_loss(
    input: Array,
    target: Array,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    *,
    margin: float = 1.0,
    p: int = 1,
    weight: Array | None = None,
    neg_weight: Array | None = None,
    negatives: int | Array | None = None,
    backend: str | None = None,
    argnums: tuple[int, ...] = (),
) -> tuple[Array, tuple[Array, ...]]:
    """Pairwise multilabel hinge: every positive class should outscore every negative by ``margin``.

    For a sample with scores ``x`` (C,) and target row ``t``, the positives are the entries of
    ``t`` before its first negative value, counted with multiplicity; the negatives are the
    other classes::

        loss = (1/C) · Σ_{k positive} w[t_k] · Σ_{j negative} max(0, margin − x[t_k] + x[j])^p

    At the defaults (``margin=1``, ``p=1``, ``weight=None``) this is exactly
    ``torch.nn.functional.multilabel_margin_loss``: ``input`` 0-d, (C,) or (N, C) (N may be 0),
    ``target`` of the same shape holding class indices padded with -1. xmargin adds, keyword
    only: any ``margin``, ``p=2`` (squared hinge), a per-class ``weight`` (C,) for positives,
    targets of shape (N, K) with any K (K ≪ C for many classes; see
    :func:`xmargin.targets.pad`), any integer target dtype, float16/bfloat16 (float32
    accumulation), NaN propagation (a sample with a NaN score, a positive and a negative gets
    NaN loss and gradient; PyTorch returns 0), mean over N = 0 is NaN, and ``backend`` to pick an
    implementation of the hinge (see :mod:`xmargin.backends`). Every target value, also after
    the first -1, must lie in [-1, C), as in PyTorch. The gradient at a zero hinge is 0.

    Negatives (DESIGN.md §9), keyword only:

    * ``neg_weight`` v (C,): finite weights >= 0 of each class *as a negative*; the pair
      (t_k, j) adds ``w[t_k] · v[j] · max(0, margin − x[t_k] + x[j])^p``. A negative of weight
      0 forms no pair (it adds 0 even beside an infinite score). Checked with value checks
      on; unchecked (checks off, ``jax.jit``) a bad one makes every row NaN.
    * ``negatives``: None (every non-positive class, PyTorch's), an int k (each row's k
      highest-scoring negatives, ties to the lower class index, NaN first: see
      :func:`xmargin.mine_negatives`; the gradient reaches the chosen negatives and the
      positives only, as through a max), or an (N, M) integer array of candidate negatives
      per row (e.g. an ANN shortlist): -1 anywhere is padding, a listed positive of the row
      and a repeated class are ignored; a value outside [-1, C) raises with value checks on
      and makes its row NaN otherwise. The normalisation stays 1/C, so k >= C − T gives the
      full loss. The NaN rule then looks at the positives and the chosen negatives; a row
      with no chosen negative has loss 0. The hinge runs on the gathered (N, K + M)
      scores: O(C) selection (NumPy) or a sort, then O((K + M) log K) per row.

    The cost is O(C log C) per sample instead of PyTorch's O(positives × C).

    >>> import numpy as np, xmargin
    >>> x = np.array([[0.1, 0.2, 0.4, 0.8]]); y = np.array([[3, 0, -1, 1]])
    >>> round(float(xmargin.multilabel_margin_loss(x, y)), 6)   # PyTorch's documented example
    0.85
    >>> round(float(xmargin.multilabel_margin_loss(x, np.array([[3, 0]]), margin=0.5, p=2)), 6)
    0.2525
    >>> round(float(xmargin.multilabel_margin_loss(x, y, negatives=1)), 6)  # class 2 only
    0.475
    >>> v = np.array([1.0, 0.0, 2.0, 1.0])   # class 1 is no negative, class 2 counts twice
    >>> round(float(xmargin.multilabel_margin_loss(x, y, neg_weight=v)), 6)
    0.95
    """
    if (  # the thin torch path: the common eager call, in O(1) Python work
        not argnums
        and weight is None
        and neg_weight is None
        and negatives is None
        and (backend is None or backend == "numba")  # (others: the general path resolves)
        and size_average is None
        and reduce is None
        and is_torch(input)
    ):
        from ..adapters.torch import fast_multilabel_margin_loss

        out = fast_multilabel_margin_loss(input, target, reduction, margin, p, backend)
        if out is not None:
            return out, ()
    fn = "multilabel_margin_loss"
    red, p, margin = row_options(fn, size_average, reduce, reduction, p, margin)
    input, xp, n, c = scores_as_matrix(fn, input)
    target = index_target(fn, target)
    t_shape = tuple(target.shape)
    matrix = input.ndim == 2
    check_target_rows(fn, target, n, tuple(input.shape))
    cd = compute_dtype(xp, input.dtype)
    w = class_weight(fn, xp, input, weight, c, cd)
    v = class_weight(fn, xp, input, neg_weight, c, cd, name="neg_weight")
    check_index_dtype(fn, target)
    poison = None if v is None else check_weight_values(fn, xp, v, "neg_weight")
    neg = None if negatives is None else check_negatives(fn, negatives, n, matrix)
    k = t_shape[-1] if t_shape else 1
    if is_dask(input):  # lazily, batch chunk by batch chunk (each chunk picks its backend)
        if backend is not None:
            backends.get(backend)  # an unknown name fails now, not at compute()
        target = same_namespace(fn, xp, "input", input, "target", target)
        return rowwise_dask(
            _multilabel_margin_loss, input, target, n=n, c=c, t_shape=(n, k), reduction=red,
            matrix_out=matrix, weight=w, neg_weight=v, argnums=argnums,
            candidates=None if neg is None or isinstance(neg, int) else neg,
            options={"margin": margin, "p": p, "backend": backend}
            | ({"negatives": neg} if isinstance(neg, int) else {}),
        )  # fmt: skip
    if compiling():  # torch.compile: resolved once, at trace time
        from ..adapters.torch_compile import backend_while_compiling

        chosen = backends.get(backend_while_compiling(backend, input))
    else:
        chosen = backends.resolve(backend, input)
    # Targets go to the kernel as they are: every backend gives a row holding a value outside
    # [-1, C) NaN loss and gradient (the kernel contract, §5). Value checks then look at the
    # loss, and read the targets only where it has a NaN; switched off, they cost nothing.
    t = index_values_unchecked(fn, xp, input, target, (n, k), -1, c)
    verify = check_on_nan(fn, target, -1, c, f"targets of an input with C = {c}")
    # half precision goes to the backends that read it natively, the others get float32
    x = xp.reshape(input if chosen.half_precision else astype(xp, input, cd), (n, c))
    if poison is not None:  # an unchecked bad neg_weight: every row NaN, without a sync
        x = xp.where(poison, xp.nan, x)
    # negatives: the hinge runs on the positives and each row's chosen negatives, gathered
    cand = None if neg is None else candidates(fn, xp, input, x, t, neg)
    plain = cand is None  # (no gather: the kernels take neg_weight as they are)
    if is_torch(x) and compiling() and plain:  # one opaque torch.library op in the graph
        from ..adapters.torch_compile import pairwise_hinge

        want_grad = bool(argnums) or (requires_grad(x) and not chosen.recomputes_grad(x.dtype))
        loss_raw, grad_raw = pairwise_hinge(
            x, t, margin, p, w, want_grad, chosen.name, neg_weight=v
        )
        return finish(xp, loss_raw, grad_raw if argnums else None, c=c, reduction=red,
                      matrix_out=matrix, input=input)  # fmt: skip
    if is_torch(x) and not argnums and plain:
        from ..adapters import torch as adapter

        if adapter.plain_eager():  # the thin path: one autograd node, reduction included
            loss = adapter.hinge_loss(
                x, t, w, margin, p, red, chosen, matrix, input.dtype, neg_weight=v
            )
            if verify is not None and bool(xp.any(xp.isnan(loss))):
                verify()  # raises, naming the bad target, if that is where the NaN comes from
            return loss, ()
    hinge = chosen.load()
    fold = chosen.scales_grad and bool(argnums)  # value_and_grad: scale inside the kernel
    factor = (1.0 / (n * c) if red == "mean" and n else 1.0 / c) if fold else None

    def core(x, t, *ops, want_grad, grad_scale=None):
        cand, w, v = ops if len(ops) == 3 else (None, *ops)
        kw = {} if grad_scale is None else {"grad_scale": grad_scale}
        if want_grad and factor is not None:
            kw["grad_scale"] = factor
        if cand is None:
            if v is not None:
                kw["neg_weight"] = v
            loss, grad = hinge(x, t, margin=margin, p=p, weight=w, want_grad=want_grad, **kw)
        else:  # the gathered problem, its gradient scattered back to the C classes
            xg, tg, wg, vg, cols = gather_problem(xp, x, t, cand, w, v)
            if vg is not None:
                kw["neg_weight"] = vg
            loss, grad = hinge(xg, tg, margin=margin, p=p, weight=wg, want_grad=want_grad, **kw)
            if grad is not None:  # a NaN row is NaN in every class, as without negatives
                grad = scatter_rows(xp, cols, grad, c)
                grad = xp.where(xp.isnan(loss)[:, None], xp.nan, grad)
        # autograd and JAX's custom_vjp want cotangents in the primal's dtype
        return astype(xp, loss, cd), None if grad is None else astype(xp, grad, x.dtype)

    rows = (t,) if cand is None else (t, cand)
    loss_raw, grad_raw = run_core(
        core, x, rows, (w, v), want_grad=bool(argnums), recompute=chosen.recomputes_grad(x.dtype)
    )
    loss_raw = astype(xp, loss_raw, cd)
    if verify is not None:
        nan = xp.any(xp.isnan(loss_raw))
        if readable(nan) and bool(nan):  # (inside jax.jit nothing can be read)
            verify()
    if factor is not None:  # the gradient is final already: only its shape and dtype
        loss, _ = finish(xp, loss_raw, None, c=c, reduction=red, matrix_out=matrix, input=input)
        grad = astype(xp, xp.reshape(grad_raw, tuple(input.shape)), input.dtype)
        return loss, (grad,)
    return finish(xp, loss_raw, grad_raw, c=c, reduction=red, matrix_out=matrix, input=input)


multilabel_margin_loss = public_loss(_multilabel_margin_loss)
