"""``fused_linear_multilabel_margin_loss``: the pairwise hinge of ``hidden @ weight.T + bias``
without the (N, C) scores (DESIGN.md §10), optionally with the classes sharded over the ranks of
a ``torch.distributed`` process group (label-parallel).

Method, for one row with hidden state h (D,), T positive slots t_k and classes j:

1. The positives' scores s_k = h·W[t_k] + b[t_k] by a gather of T rows of W (N·K·D work and
   memory); label-parallel, the rank holding t_k computes it and an all-reduce (sum, the others
   adding exact zeros) gives every rank all of them.
2. The classes stream in chunks of ``chunk_size``: the chunk's logits L = h·W[chunk]ᵀ + b are
   one matmul, and the backend's hinge (any registered kernel: numba on the CPU, Triton on
   CUDA, portable anywhere) judges them against the row's thresholds on the (N, K + chunk)
   problem [s, L] with targets [0 … K−1]: the chunk's own positives hold −inf (no negative),
   so the kernel returns the loss of the chunk's pairs, the negatives' gradient g_j (N, chunk)
   and the positives' share of it, −Σ_j w_k·v_j·h'(…) (N, K). The negatives' gradient goes
   straight into grad_hidden += g·W[chunk], grad_weight[chunk] = gᵀ·h, grad_bias[chunk] = Σ_n g.
3. After the last chunk the positives' gradients G (N, K), summed over the chunks (and over
   the ranks), are scattered: grad_hidden += Σ_k G_k·W[t_k], grad_weight[t_k] += G_k·h,
   grad_bias[t_k] += G_k; the per-row losses are summed over chunks (and ranks).

With ``negatives`` (an int k or (N, M) candidate classes) the chunks only mine: a running top-k
of each row's negatives (ties to the lower class index, NaN first, as
:func:`xmargin.mine_negatives`); the hinge then runs once on [s, the chosen negatives' logits]
(N, K + M), each logit a gathered dot product. The normalisation is 1/C with C the number of
classes (``num_classes`` label-parallel), as for the unfused loss.

Memory beyond the inputs and the parameter gradients: O(N·chunk + N·K·D + N·D). The gradient is
formed in the forward pass; autograd's backward scales it by ``grad_output`` (a second pass with
per-row scales for ``reduction="none"``).
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from . import backends
from ._errors import XMarginTypeError, XMarginValueError
from ._interop import compute_dtype, is_jax, is_torch, native
from ._xp import (
    apply_reduction,
    astype,
    check_float,
    device,
    index_dtype,
    namespace_of,
    on_host,
    reduction_scale,
    same_namespace,
    shape_str,
)
from .losses._public import public_loss
from .losses._rowwise import (
    check_index_dtype,
    check_weight_values,
    class_weight,
    index_target,
    index_values,
    row_options,
)
from .negatives import (
    _check_k_named,
    _member,
    _select,
    candidate_rows,
    check_negatives,
    positive_slots,
)

__all__ = ["fused_linear_multilabel_margin_loss"]

Array = Any
FN = "fused_linear_multilabel_margin_loss"
# default chunk: about 2**22 logits (16 MiB in float32) per matmul, at least 512 classes: a
# chunk's matmul and kernel call then dwarf its Python overhead (measured ~60 µs per chunk)
CHUNK_ELEMS = 1 << 22


def _fused_linear_multilabel_margin_loss(
    hidden: Array,
    weight: Array,
    target: Array,
    bias: Array | None = None,
    reduction: str = "mean",
    *,
    margin: float = 1.0,
    p: int = 1,
    class_weight: Array | None = None,
    neg_weight: Array | None = None,
    negatives: int | Array | None = None,
    chunk_size: int | None = None,
    backend: str | None = None,
    group: Any = None,
    class_start: int = 0,
    num_classes: int | None = None,
    argnums: tuple[int, ...] = (),
) -> tuple[Array, tuple[Array, ...]]:
    """``multilabel_margin_loss(hidden @ weight.T + bias, target, ...)`` without the scores.

    ``hidden`` (N, D), ``weight`` (C, D) and ``bias`` (C,) are laid out as in
    ``torch.nn.Linear``; ``target`` (N, K) holds class indices padded with -1 (positives before
    the first -1), as for :func:`xmargin.multilabel_margin_loss`, whose options ``margin``,
    ``p``, ``neg_weight``, ``negatives`` and ``backend`` mean the same here (``class_weight``
    is its ``weight``). The value and the gradients with respect to ``hidden``, ``weight`` and
    ``bias`` (torch autograd, or :func:`xmargin.value_and_grad` with ``argnums`` among
    ``(0, 1, 3)``) equal the unfused loss's, but classes stream through in chunks of
    ``chunk_size`` (default: about 4M logits per chunk) and (N, C) is never held: extra memory
    O(N·chunk + N·K·D).

    Label-parallel: with ``group`` (a ``torch.distributed`` process group) each rank passes
    its shard of the classes, ``weight`` (C_local, D) and ``bias`` holding classes
    [``class_start``, ``class_start`` + C_local) of ``num_classes``; ``hidden``, ``target``
    (global class indices), ``class_weight`` and ``neg_weight`` ((num_classes,)) are the same
    on every rank. Ranks exchange O(N·K + N·D) numbers per call (all-reduces of the positive
    scores, the positives' gradients, the loss rows and grad_hidden); the result equals one
    process holding all classes, to float rounding. Works with any backend torch.distributed
    has (gloo on CPUs, NCCL on GPUs).

    >>> import numpy as np, xmargin
    >>> rng = np.random.default_rng(0)
    >>> h, W, b = rng.normal(size=(4, 3)), rng.normal(size=(10, 3)), rng.normal(size=10)
    >>> t = np.array([[1, 4, -1], [0, -1, -1], [9, 8, 7], [-1, -1, -1]])
    >>> fused = xmargin.fused_linear_multilabel_margin_loss(h, W, t, b, chunk_size=3)
    >>> bool(np.isclose(fused, xmargin.multilabel_margin_loss(h @ W.T + b, t)))
    True
    """
    prob = _Problem(hidden, weight, target, bias, reduction, margin, p, class_weight,
                    neg_weight, negatives, chunk_size, backend, group, class_start,
                    num_classes)  # fmt: skip
    if argnums:
        loss_rows, grads = prob.run(want_grad=True, row_scale=prob.grad_scale())
        wanted = {0: grads[0], 1: grads[1], 3: grads[2]}
        return prob.reduce(loss_rows), tuple(wanted[i] for i in argnums)
    if is_torch(prob.hidden):
        from .adapters.torch_fused import fused_loss

        return fused_loss(prob), ()
    if is_jax(prob.hidden):
        from .adapters.jax_fused import fused_loss as jax_fused_loss

        return jax_fused_loss(prob), ()
    loss_rows, _ = prob.run(want_grad=False)
    return prob.reduce(loss_rows), ()


class _Problem:
    """A checked call: the arrays in the compute dtype, the options, and :meth:`run`."""

    def __init__(self, hidden, weight, target, bias, reduction, margin, p, cw, nw, negatives,
                 chunk_size, backend, group, class_start, num_classes):  # fmt: skip
        hidden = native(hidden)
        xp = namespace_of(FN, "hidden", hidden)
        check_float(FN, "hidden", xp, hidden)
        self.red, self.p, self.margin = row_options(FN, None, None, reduction, p, margin)
        if hidden.ndim != 2:
            raise XMarginValueError(
                f"{FN}: argument 'hidden' must have shape (N, D), got shape "
                f"{shape_str(tuple(hidden.shape))}"
            )
        n, d = hidden.shape
        weight = same_namespace(FN, xp, "hidden", hidden, "weight", weight)
        check_float(FN, "weight", xp, weight)
        if weight.ndim != 2 or weight.shape[1] != d or weight.shape[0] == 0:
            raise XMarginValueError(
                f"{FN}: argument 'weight' must have shape (C, D) with D = {d} (the layout of "
                f"torch.nn.Linear) and C >= 1, got shape {shape_str(tuple(weight.shape))}"
            )
        c_local = weight.shape[0]
        if bias is not None:
            bias = same_namespace(FN, xp, "hidden", hidden, "bias", bias)
            check_float(FN, "bias", xp, bias)
            if tuple(bias.shape) != (c_local,):
                raise XMarginValueError(
                    f"{FN}: argument 'bias' must have shape (C,) = ({c_local},), got shape "
                    f"{shape_str(tuple(bias.shape))}"
                )
        self.group = group
        self.class_start, c = _shard(group, class_start, num_classes, c_local)
        self.c, self.c_local = c, c_local
        target = index_target(FN, target)
        if tuple(target.shape[:1]) != (n,) or target.ndim != 2:
            raise XMarginValueError(
                f"{FN}: argument 'target' must have shape (N, K) with N = {n} (class indices "
                f"padded with -1), got shape {shape_str(tuple(target.shape))}"
            )
        check_index_dtype(FN, target)
        k = target.shape[1]
        self.cd = cd = compute_dtype(xp, hidden.dtype)
        self.xp, self.n, self.d, self.k = xp, n, d, k
        self.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        t, bad = index_values(FN, xp, hidden, target, (n, k), -1, c,
                              f"targets of {c} classes")  # fmt: skip
        self.t, self.bad = t, bad
        self.w = class_weight(FN, xp, hidden, cw, c, cd, name="class_weight")
        self.v = class_weight(FN, xp, hidden, nw, c, cd, name="neg_weight")
        self.poison = None if self.v is None else check_weight_values(FN, xp, self.v, "neg_weight")
        self.negatives = None if negatives is None else _negatives(xp, hidden, t, negatives, n, c)
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise XMarginValueError(
                f"{FN}: argument 'chunk_size' must be None or an int >= 1 (classes per chunk), "
                f"got {chunk_size!r}"
            )
        self.chunk = chunk_size or max(512, CHUNK_ELEMS // max(n, 1))
        backends.resolve(backend, hidden, FN)  # an unknown or unusable backend fails now
        self.backend = backend
        self.hidden, self.weight, self.bias = hidden, weight, bias

    # ---------------------------------------------------------------------------------------
    def with_arrays(self, hidden: Array, weight: Array, bias: Array | None) -> _Problem:
        """The same call on other arrays of the same shapes (autodiff tracers, detached)."""
        other = copy.copy(self)
        other.hidden, other.weight, other.bias = hidden, weight, bias
        return other

    def grad_scale(self) -> float:
        """The reduction's factor of every gradient row (1/C included)."""
        return reduction_scale(self.red, self.n) / self.c

    def reduce(self, loss_rows: Array) -> Array:
        """1/C, the reduction and the output dtype."""
        loss = apply_reduction(self.xp, loss_rows / self.c, self.red)
        return astype(self.xp, loss, self.dtypes[0])

    def run(self, *, want_grad: bool, row_scale: Any = 1.0) -> tuple[Array, tuple[Array, ...]]:
        """The loss rows (N,) before the 1/C and, with ``want_grad``, the gradients of
        Σ_n row_scale[n]·loss_rows[n] (``row_scale`` a number or (N,); the caller folds the
        1/C and the reduction in) with respect to hidden, weight and bias (None without
        bias), in their dtypes. Computed in ``hidden``'s compute dtype (float32 for half and
        float32 inputs, float64 for float64)."""
        xp, cd = self.xp, self.cd
        h = astype(xp, self.hidden, cd)
        if self.poison is not None:  # an unchecked bad neg_weight: every row NaN
            h = xp.where(self.poison, xp.nan, h)
        W = astype(xp, self.weight, cd)
        b = None if self.bias is None else astype(xp, self.bias, cd)
        if not isinstance(row_scale, (int, float)):
            row_scale = xp.reshape(astype(xp, row_scale, cd), (-1, 1))
        state = _State(self, h, W, b, want_grad, row_scale)
        if self.negatives is None:
            for c0 in range(0, self.c_local, self.chunk):
                state.chunk(c0, min(self.c_local, c0 + self.chunk))
        else:
            state.selected(self.negatives)
        return state.finish()


def _shard(group: Any, class_start: Any, num_classes: Any, c_local: int) -> tuple[int, int]:
    """(class_start, C) checked: without a group the shard is every class."""
    for name, value in (("class_start", class_start), ("num_classes", num_classes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise XMarginTypeError(f"{FN}: argument '{name}' must be an int, got {value!r}")
    if group is not None and num_classes is None:
        raise XMarginValueError(
            f"{FN}: with group= (label-parallel) argument 'num_classes' is required: the "
            f"number of classes over all ranks (this rank's weight holds {c_local} of them, "
            f"from class_start = {class_start})"
        )
    c = c_local if num_classes is None else num_classes
    if group is None and (class_start != 0 or c != c_local):
        raise XMarginValueError(
            f"{FN}: class_start = {class_start} and num_classes = {num_classes} describe a "
            f"shard of the classes, which needs group= (a torch.distributed process group); "
            f"without one, weight holds all C = {c_local} classes"
        )
    if class_start < 0 or class_start + c_local > c:
        raise XMarginValueError(
            f"{FN}: this rank's classes [{class_start}, {class_start + c_local}) must lie in "
            f"[0, num_classes = {c})"
        )
    return class_start, c


def _negatives(xp: Any, ref: Array, t: Array, negatives: Any, n: int, c: int) -> int | Array:
    chosen = check_negatives(FN, negatives, n, True)
    if isinstance(chosen, int):
        return _check_k_named(FN, chosen)
    return candidate_rows(FN, xp, ref, t, chosen, n, c)


class _State:
    """The sums of one call: loss rows, the positives' gradients, grad_hidden and the
    parameter gradients, filled chunk by chunk."""

    def __init__(
        self, prob: _Problem, h: Array, W: Array, b: Array | None, want_grad: bool, scale: Any
    ):
        xp = prob.xp
        self.prob, self.xp, self.h, self.W, self.b, self.want = prob, xp, h, W, b, want_grad
        self.scale = scale  # each gradient row's factor: a number or (N, 1)
        n, k, cd = prob.n, prob.k, prob.cd
        dev = device(h)
        idt = index_dtype(xp)
        t = prob.t
        self.valid, slots = positive_slots(xp, t, prob.c)
        local = self.valid & (t >= prob.class_start) & (t < prob.class_start + prob.c_local)
        self.local = local
        self.t_local = xp.where(local, t - prob.class_start, 0)
        # 1. the positives' scores (label-parallel: each from the rank holding its class)
        rows = xp.take(W, xp.reshape(self.t_local, (-1,)), axis=0)  # (N·K, D)
        self.w_pos = xp.reshape(rows, (n, k, prob.d))
        s = xp.sum(self.w_pos * h[:, None, :], axis=2)
        if b is not None:
            s = s + xp.reshape(xp.take(b, xp.reshape(self.t_local, (-1,))), (n, k))
        s = _all_reduce(prob.group, xp.where(local, s, 0.0))
        self.s = xp.where(self.valid, s, -xp.inf)  # (unused slots: no pair, see below)
        # (out-of-range targets were checked, or replaced and their rows returned in prob.bad)
        bad_t = xp.zeros((n,), dtype=xp.bool, device=dev) if prob.bad is None else prob.bad
        marker = -1 - astype(xp, bad_t, idt)[:, None]  # -2: a NaN row (the kernels' own rule)
        self.tg = xp.concat([xp.where(self.valid, slots, -1), marker], axis=1)
        self.wg_pos = None
        if prob.w is not None:
            wt = xp.reshape(xp.take(prob.w, xp.reshape(xp.where(self.valid, t, 0), (-1,))), (n, k))
            self.wg_pos = xp.where(self.valid, wt, 0.0)
        self.loss = xp.zeros((n,), dtype=cd, device=dev)
        self.g_pos = xp.zeros((n, k), dtype=cd, device=dev)
        self.g_h = xp.zeros((n, prob.d), dtype=cd, device=dev)
        # the parameter gradients: one buffer each, written chunk by chunk where the namespace
        # allows it (NumPy, torch, CuPy), else the chunks' rows concatenated at the end (JAX)
        self.in_place = type(h).__module__.split(".")[0] in ("numpy", "torch", "cupy")
        shape_w = (prob.c_local, prob.d) if want_grad and self.in_place else (0, prob.d)
        # (every row written by a chunk, or zeros for negatives=)
        fill = xp.empty if prob.negatives is None else xp.zeros
        self.g_w = fill(shape_w, dtype=cd, device=dev)
        self.g_b = fill(shape_w[:1], dtype=cd, device=dev)
        self.parts: list[tuple[Array, Array]] = []
        self.g_sel: tuple[Array, Array] | None = None  # selected negatives' (cols, grads)
        self.replicated = False  # loss rows and positives' gradients already complete

    def _hinge(self, scores: Array, v_neg: Array | None) -> tuple[Array, Array]:
        """The backend's hinge on [s, scores] (N, K + m): loss rows and the gradient."""
        return self._hinge_on(self.xp.concat([self.s, scores], axis=1), v_neg)

    def _hinge_on(self, xg: Array, v_neg: Array | None) -> tuple[Array, Array]:
        """The backend's hinge on xg = [s, scores of m classes]."""
        xp, prob = self.xp, self.prob
        n, k = prob.n, prob.k
        m = xg.shape[1] - k
        chosen = backends.resolve(prob.backend, xg, FN)
        kw: dict[str, Any] = {}
        if self.wg_pos is not None:
            kw["weight"] = xp.concat(
                [self.wg_pos, xp.zeros((n, m), dtype=prob.cd, device=device(xg))], axis=1
            )
        if v_neg is not None:  # (m,) shared by the rows (a chunk) or (N, m) (chosen classes)
            lead = (n, k) if v_neg.ndim == 2 else (k,)
            zeros = xp.zeros(lead, dtype=prob.cd, device=device(xg))
            kw["neg_weight"] = xp.concat([zeros, v_neg], axis=-1)
        loss, grad = chosen.load()(xg, self.tg, margin=prob.margin, p=prob.p,
                                   want_grad=self.want, **({"weight": None} | kw))  # fmt: skip
        return astype(xp, loss, prob.cd), grad

    def chunk(self, c0: int, c1: int) -> None:
        """Classes [c0, c1) of this rank: logits, the hinge, the gradients."""
        xp, prob = self.xp, self.prob
        k = prob.k
        Wc = self.W[c0:c1, :]
        bc = None if self.b is None else self.b[c0:c1]
        if self.in_place:
            # NumPy, torch, CuPy: the matmul writes the logits straight into the kernel's
            # (N, K + m) buffer, and the chunk's positives get −inf by one scatter of the N·K
            # targets: no (N, m) temporaries
            xg = _linear_into(xp, self.s, self.h, Wc, bc)
            if k:
                in_chunk = self.local & (self.t_local >= c0) & (self.t_local < c1)
                cols = xp.where(in_chunk, self.t_local - c0 + k, 0)  # (others: column 0 ...)
                old = xp.take_along_axis(xg, cols, axis=1)  # (... rewritten with its value)
                _put_along_rows(xg, cols, xp.where(in_chunk, -xp.inf, old))
        else:
            logits = self.h @ xp.matrix_transpose(Wc)
            if bc is not None:
                logits = logits + bc[None, :]
            cls = xp.arange(prob.class_start + c0, prob.class_start + c1, dtype=prob.t.dtype,
                            device=device(logits))  # fmt: skip
            logits = xp.where(self._is_pos(cls), -xp.inf, logits)  # a positive is no negative
            xg = xp.concat([self.s, logits], axis=1)
        v = None if prob.v is None else prob.v[prob.class_start + c0 : prob.class_start + c1]
        loss, grad = self._hinge_on(xg, v)
        self.loss = self.loss + loss
        if self.want:  # the negatives' share, folded in now: nothing of size (N, C) is kept
            self.g_pos = self.g_pos + astype(xp, grad[:, :k], prob.cd)
            g = astype(xp, grad[:, k:], prob.cd)
            # the row scale on the small factors: (s·g)·Wc = s·(g·Wc), (s·g)ᵀ·h = gᵀ·(s·h)
            scale = self.scale
            self.g_h = self.g_h + (g @ Wc) * scale
            hs = self.h * scale
            gw = xp.matrix_transpose(g) @ hs
            if isinstance(scale, (int, float)):
                gb = xp.sum(g, axis=0) * scale
            else:
                gb = xp.reshape(xp.matrix_transpose(scale) @ g, (-1,))
            if self.in_place:
                self.g_w[c0:c1, :] = gw
                self.g_b[c0:c1] = gb
            else:
                self.parts.append((gw, gb))

    def _chunk_positives(self, c0: int, c1: int, cls: Array) -> Array:
        """(N, c1 − c0): which of the chunk's classes are positives of each row; by one scatter
        of the N·K targets where arrays are written in place, else :meth:`_is_pos`."""
        if not self.in_place or not self.prob.k:
            return self._is_pos(cls)
        xp = self.xp
        in_chunk = self.local & (self.t_local >= c0) & (self.t_local < c1)
        # column 0 takes the writes of the slots outside the chunk (all False)
        cols = xp.where(in_chunk, self.t_local - c0 + 1, 0)
        mask = xp.zeros((self.prob.n, c1 - c0 + 1), dtype=xp.bool, device=device(cls))
        _put_along_rows(mask, cols, in_chunk)
        return mask[:, 1:]

    def _is_pos(self, cls: Array) -> Array:
        """(N, m): class cls[j] is a positive of row n (one sorted search of the targets)."""
        n = self.prob.n
        every = self.xp.broadcast_to(cls[None, :], (n, cls.shape[0]))
        return _member(self.xp, self.prob.t, n, self.prob.c, every, FN)

    def selected(self, negatives: int | Array) -> None:
        """negatives=: mine (k) over the chunks, then one hinge on the chosen negatives."""
        xp, prob = self.xp, self.prob
        cols = self._mine(negatives) if isinstance(negatives, int) else negatives
        local = (cols >= prob.class_start) & (cols < prob.class_start + prob.c_local)
        c_loc = xp.where(local, cols - prob.class_start, 0)
        n, m = cols.shape
        w_sel = xp.reshape(xp.take(self.W, xp.reshape(c_loc, (-1,)), axis=0), (n, m, prob.d))
        logit = xp.sum(w_sel * self.h[:, None, :], axis=2)
        if self.b is not None:
            logit = logit + xp.reshape(xp.take(self.b, xp.reshape(c_loc, (-1,))), (n, m))
        logit = _all_reduce(prob.group, xp.where(local, logit, 0.0))
        logit = xp.where(cols >= 0, logit, -xp.inf)
        v = None
        if prob.v is not None:
            v = xp.reshape(xp.take(prob.v, xp.reshape(xp.where(cols >= 0, cols, 0), (-1,))),
                           (n, m))  # fmt: skip
        loss, grad = self._hinge(logit, v)
        self.loss = loss
        self.replicated = True  # (every rank judged all the chosen negatives: no sum)
        if self.want:
            k = prob.k
            self.g_pos = astype(xp, grad[:, :k], prob.cd)
            g = xp.where(local, astype(xp, grad[:, k:], prob.cd), 0.0)
            self.g_sel = (c_loc, g)
            self.w_sel = w_sel

    def _mine(self, k: int) -> Array:
        """Each row's k hardest negatives over all classes (and ranks), as global indices."""
        xp, prob = self.xp, self.prob
        n = prob.n
        idt = index_dtype(xp)
        dev = device(self.h)
        best_key = xp.full((n, 0), -xp.inf, dtype=prob.cd, device=dev)
        best_idx = xp.full((n, 0), -1, dtype=idt, device=dev)
        best_pos = xp.zeros((n, 0), dtype=xp.bool, device=dev)
        for c0 in range(0, prob.c_local, self.prob.chunk):
            c1 = min(prob.c_local, c0 + prob.chunk)
            logits = self.h @ xp.matrix_transpose(self.W[c0:c1, :])
            if self.b is not None:
                logits = logits + self.b[None, c0:c1]
            cls = xp.arange(prob.class_start + c0, prob.class_start + c1, dtype=idt, device=dev)
            # candidates so far first (all of lower class index): _select's stable order
            # (is positive, −score, position) then breaks ties by class index
            keys = xp.concat([best_key, logits], axis=1)
            is_pos = xp.concat([best_pos, self._chunk_positives(c0, c1, cls)], axis=1)
            idx = xp.concat([best_idx, xp.broadcast_to(cls[None, :], (n, c1 - c0))], axis=1)
            best_key, best_idx, best_pos = _keep_top(xp, keys, idx, is_pos, k)
        if prob.group is not None:  # every rank's top k, then the global top k
            keys = _all_gather(prob.group, best_key)
            idx = _all_gather(prob.group, best_idx)
            is_pos = _all_gather(prob.group, astype(xp, best_pos, xp.int8)) != 0
            best_key, best_idx, best_pos = _keep_top(xp, keys, idx, is_pos, k, by_index=True)
        return xp.where(best_pos, -1, best_idx)

    def finish(self) -> tuple[Array, tuple[Array, ...]]:
        xp, prob = self.xp, self.prob
        group = None if self.replicated else prob.group
        loss = _all_reduce(group, self.loss)
        if not self.want:
            return loss, ()
        h, g_h, g_w, g_b = self.h, self.g_h, self.g_w, self.g_b
        if self.parts:
            g_w = xp.concat([gw for gw, _ in self.parts], axis=0)
            g_b = xp.concat([gb for _, gb in self.parts], axis=0)
        elif g_w.shape[0] != prob.c_local:  # (no chunk wrote them: negatives=)
            g_w = xp.zeros((prob.c_local, prob.d), dtype=prob.cd, device=device(h))
            g_b = xp.zeros((prob.c_local,), dtype=prob.cd, device=device(h))
        if self.g_sel is not None:  # the selected negatives' share
            c_loc, g = self.g_sel
            g = g * self.scale
            g_h = g_h + xp.sum(g[:, :, None] * self.w_sel, axis=1)
            g_w = _index_add(xp, g_w, c_loc, g[:, :, None] * h[:, None, :])
            g_b = _index_add(xp, g_b, c_loc, g)
        # the positives' share, from the per-threshold sums of every chunk and rank
        g_pos = xp.where(self.local, _all_reduce(group, self.g_pos) * self.scale, 0.0)
        g_h = g_h + xp.sum(g_pos[:, :, None] * self.w_pos, axis=1)
        g_w = _index_add(xp, g_w, self.t_local, g_pos[:, :, None] * h[:, None, :])
        g_b = _index_add(xp, g_b, self.t_local, g_pos)
        g_h = _all_reduce(prob.group, g_h)
        # a NaN row (NaN loss) has a NaN gradient in every class, as in the unfused loss: its
        # grad_hidden row, and all of grad_weight and grad_bias (each sums over the rows)
        nan_rows = xp.isnan(loss)
        g_h = xp.where(nan_rows[:, None], xp.nan, g_h)
        any_nan = xp.any(nan_rows)
        # (on the host the flag is read for free, and (C, D) is not rewritten without a NaN)
        if not on_host(loss) or bool(any_nan):
            g_w = xp.where(any_nan, xp.nan, g_w)
            g_b = xp.where(any_nan, xp.nan, g_b)
        dts = prob.dtypes
        return loss, (
            astype(xp, g_h, dts[0]),
            astype(xp, g_w, dts[1]),
            None if self.b is None else astype(xp, g_b, dts[2]),
        )


def _linear_into(xp: Any, s: Array, h: Array, Wc: Array, bc: Array | None) -> Array:
    """A new (N, K + m) array [s, h·Wcᵀ + bc], the matmul writing into its columns."""
    n, k = s.shape
    m = Wc.shape[0]
    if is_torch(h):
        import torch

        out = torch.empty((n, k + m), dtype=h.dtype, device=h.device)
        out[:, :k] = s
        if bc is None:
            torch.mm(h, Wc.T, out=out[:, k:])
        else:
            torch.addmm(bc, h, Wc.T, out=out[:, k:])
        return out
    lib = sys.modules[type(h).__module__.split(".")[0]]  # NumPy or CuPy
    out = lib.empty((n, k + m), dtype=h.dtype)
    out[:, :k] = s
    lib.matmul(h, Wc.T, out=out[:, k:])
    if bc is not None:
        out[:, k:] += bc
    return out


def _put_along_rows(a: Array, cols: Array, vals: Array) -> None:
    """a[n, cols[n, j]] = vals[n, j], in place (NumPy, torch, CuPy)."""
    if is_torch(a):
        a.scatter_(1, cols, vals)
        return
    lib = sys.modules[type(a).__module__.split(".")[0]]  # NumPy or CuPy
    a[lib.arange(a.shape[0])[:, None], cols] = vals


def _keep_top(xp: Any, keys: Array, idx: Array, is_pos: Array, k: int, by_index: bool = False):
    """The first k columns of each row in the order (is positive, −key (NaN first), index)."""
    if by_index:  # (gathered from several ranks: put them in class order first)
        order = xp.argsort(idx, axis=1, stable=True)
        keys, idx, is_pos = (xp.take_along_axis(a, order, axis=1) for a in (keys, idx, is_pos))
    cols = _select(xp, keys, is_pos, k)  # -1 beyond the row's count of non-positives
    safe = xp.where(cols >= 0, cols, 0)
    pick = [xp.take_along_axis(a, safe, axis=1) for a in (keys, idx)]
    gone = cols < 0
    return (xp.where(gone, -xp.inf, pick[0]), xp.where(gone, -1, pick[1]),
            gone | xp.take_along_axis(is_pos, safe, axis=1))  # fmt: skip


def _index_add(xp: Any, out: Array, rows: Array, vals: Array) -> Array:
    """``out`` plus ``vals`` (N, K, ...) added at rows ``rows`` (N, K) of ``out`` (repeats add
    up; vals 0 where nothing is to be added); NumPy, torch and CuPy add into ``out`` itself."""
    flat_rows = xp.reshape(rows, (-1,))
    flat = xp.reshape(vals, (flat_rows.shape[0], *tuple(out.shape[1:])))
    if is_torch(out):  # (in place: ``out`` is a buffer of this call)
        import torch

        return out.index_add_(0, flat_rows.to(torch.int64), flat)
    if is_jax(out):
        return out.at[flat_rows].add(flat)
    mod = type(out).__module__.split(".")[0]
    if mod == "numpy":
        import numpy as np

        np.add.at(out, flat_rows, flat)  # (in place: ``out`` is a buffer of this call)
        return out
    if mod == "cupy":
        cupyx = sys.modules.get("cupyx") or __import__("cupyx")
        cupyx.scatter_add(out, flat_rows, flat)  # (in place, as above)
        return out
    # any other namespace: sorted segment sums (prefix sums differenced per class)
    order = xp.argsort(flat_rows, stable=True)
    sr = xp.take(flat_rows, order)
    sv = xp.take(flat, order, axis=0)
    zero = xp.zeros((1, *tuple(out.shape[1:])), dtype=out.dtype, device=device(out))
    csum = xp.concat([zero, xp.cumulative_sum(sv, axis=0)], axis=0)
    classes = xp.arange(out.shape[0], dtype=sr.dtype, device=device(out))
    lo = xp.searchsorted(sr, classes, side="left")
    hi = xp.searchsorted(sr, classes, side="right")
    return out + (xp.take(csum, hi, axis=0) - xp.take(csum, lo, axis=0))


def _all_reduce(group: Any, a: Array) -> Array:
    """Σ over the ranks of ``group`` (None: ``a``)."""
    if group is None:
        return a
    import torch.distributed as dist

    out = a.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


def _all_gather(group: Any, a: Array) -> Array:
    """Every rank's ``a`` (N, m), concatenated along the columns in rank order."""
    import torch
    import torch.distributed as dist

    parts = [torch.empty_like(a) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, a.contiguous(), group=group)
    return torch.cat(parts, dim=1)


fused_linear_multilabel_margin_loss = public_loss(_fused_linear_multilabel_margin_loss, (0, 1, 3))
