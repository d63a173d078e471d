"""Triton kernels of the pairwise multilabel hinge (device code only; the launch lives in
``xmargin/backends/triton.py``).

Three kernels: ``multilabel_hinge_kernel``, one program per sample (row), and for rows split
across programs (see "Split rows" below) ``multilabel_hinge_split_kernel`` and
``multilabel_hinge_finish_kernel``. With x the row's scores, t its targets and T the number of
entries before the first negative target (the positive slots, duplicates included), they
compute

    loss = Σ_{k < T} W[t_k] · Σ_{j negative} V_j · max(0, x_j − thr_k)^p,
    thr_k = x[t_k] − margin

and, when asked, d loss / d x, in O(C log T + T log T) work (DESIGN.md §5). W (``weight``,
HAS_WEIGHT) weighs the positive slots, V (``neg_weight``, HAS_NEG_WEIGHT) the negatives; each
is 1 without its flag, else read from row n through a row stride (0 for a (C,) weight shared
by every row, C for an (N, C) one; int64 offsets). A negative with V_j = 0 forms no pair: it
adds nothing (selected away, never multiplied: 0·inf would be NaN) and stays out of the
histogram of phase 3, but it is still a negative for the NaN rule.

0. One pass over the K targets: T, and whether the row holds any value outside [-1, C) (also
   after the terminator; int64 targets compared as 64-bit). Such a row gets loss NaN and an
   all-NaN gradient row (not scaled) and nothing else of it is read: the targets may hold
   anything, the caller need not validate them.
1. Bitmap of the row's positive classes (scratch, one bit per class; integer atomics).
2. The thresholds, in tiles of BLOCK_T slots, sorted by (threshold, class) (tl.sort of 64-bit
   keys; float64 thresholds are ranked by comparisons, RANK_CHUNK slots at a time); prefix sums
   A0 = ΣW, A1 = ΣW·thr', A2 = ΣW·thr'² of each tile go to scratch, with thr' = thr − piv and
   x' = x − piv relative to a pivot per tile (the score of its median threshold, 0 if that
   is not finite): the sums below are shift-invariant, and relative to the pivot they do not
   cancel when the scores are large and close together.
3. Every class j, in chunks of BLOCK_C: cnt_j = #{thresholds of the tile below x_j}, a binary
   search of depth ⌈log2(T_tile + 1)⌉ on the unshifted thresholds. For a negative class the
   tile adds
       loss += A0[cnt]·x'_j − A1[cnt]                     (p = 1)
       loss += A0[cnt]·x'_j² − 2·x'_j·A1[cnt] + A2[cnt]   (p = 2)
       d/dx_j += A0[cnt]  (p = 1)  or  2·(A0[cnt]·x'_j − A1[cnt])  (p = 2)
   and a histogram of cnt (and, for p = 2, of Σ x' per cnt) is kept in registers. With
   neg_weight the loss and gradient terms are multiplied by V_j, and the histogram gains the
   per-bin sums Σ V_j (and, for p = 2, Σ V_j·x'_j instead of Σ x'_j).
4. The sorted threshold s has above_s = #{negatives j : x_j > thr_s} = Σ_{v ≥ s} hist[v]
   (x_j > thr_s ⇔ cnt_j > s), so its class gets
       d/dx[c_s] = −m_s · W_s · above_s                       (p = 1)
       d/dx[c_s] = −2 · m_s · W_s · Σ_{x_j > thr_s} (x'_j − thr'_s)   (p = 2)
   where m_s counts the duplicates of c_s in the tile (they sort next to each other); the first
   of a run writes the sum, so no two lanes write one address. With neg_weight, the derivative
   of Σ_j V_j·W_s·max(0, x_j − thr_s)^p with respect to x[c_s] (thr_s = x[c_s] − margin) is
       d/dx[c_s] = −m_s · W_s · Σ_{x_j > thr_s} V_j = −m_s·W_s·aboveV_s              (p = 1)
       d/dx[c_s] = −2·m_s·W_s · Σ_{x_j > thr_s} V_j·(x'_j − thr'_s)
                 = −2·m_s·W_s · (aboveVX_s − thr'_s·aboveV_s)                         (p = 2)
   with aboveV_s = Σ_{v ≥ s} histV[v], aboveVX_s = Σ_{v ≥ s} histVX[v] (suffix sums).

Infinite scores follow the definition in IEEE arithmetic (each pair W·max(0, x_j − thr_k)^p,
counted iff x_j > thr_k): a −inf threshold (positive at −inf) is below every x > −inf and
enters A1 as W·(−inf), so those classes get +inf; x_j = +inf gives A0·inf − A1 = +inf; a
+inf threshold is below nothing and a class at −inf above nothing, so they add nothing (no
0·inf or inf − inf reaches a result; the one form that could, A0·x'² − 2·x'·A1 + A2 for p = 2,
is replaced by the infinite A0·x' − A1 where that is infinite).

The margin is a float64 kernel parameter (annotated ``tl.float64``: a Python float argument
would be specialised as fp32, and margin 0.1 would become 0.100000001). Thresholds are formed
as x[t_k] − margin in float64, as the float64 definition does; scores of float16, bfloat16 and
float32 are compared in float32 with those thresholds rounded down to float32 (exact: no
float32 lies strictly between a threshold and its rounded-down value) and summed in float32
(thr' rounded once from float64); float64 scores use float64 throughout.

Gradients: the per-row scale (HAS_SCALE) multiplies each contribution in F, before any rounding
to the gradient's dtype. A row with several tiles adds each tile's contribution to what the
tiles before it wrote; for float16/bfloat16 gradients (ACC_GRAD) those partial sums live in a
float32 scratch row (acc_ptr) and are rounded to the half dtype once, at the end, so a half
gradient is one rounding off the exact value. A raw half gradient (no scale) is what the dtype
can hold: a positive with more than 65504 negatives above it overflows float16 to −inf; the
loss layer passes its 1/C or 1/(N·C) as the scale, which keeps it finite.

Barriers: the tiles of a row reuse its scratch (ts, cls, pre, acc); a tl.debug_barrier ends
every tile in every path (loss-only too), so one tile's reads land before the next tile's
writes, and others separate each write from the reads of other lanes within a tile.

Determinism: every sum has a fixed order (register reductions, chunks in sequence) and the only
atomics are integer ORs, so equal inputs give bitwise equal outputs. That includes the
neg_weight per-bin sums Σ V_j and Σ V_j·x'_j: they go through ``_sum_per_bin`` (a sort and a
segmented scan, the p = 2 path's), in F, not through float atomics nor fixed point. Every
memory access is masked to the row, whatever the targets hold.

Split rows (grid (N, S); the launcher splits when N is small against the SM count and K <=
BLOCK_T, so a row's positives are one tile). Program (n, s) of ``multilabel_hinge_split_kernel``
does phases 0 and 2 for row n itself (every program of the row builds the same sorted table in
its own scratch: O(K log K) work, no dependence between programs and no third launch), phase
1 for its slice only (the slice's bitmap words are zeroed and its positives' bits set: slices
are whole 32-class words), then phase 3 over its slice [s·SLICE, (s + 1)·SLICE) of the
classes, writing each negative's gradient in its final value (one tile: nothing to add later)
and 0 at the positives. Instead of phase 4 it writes the slice's partials: the loss Σ over its
negatives, hist[u] (its negatives with u + 1 thresholds below) and, for p = 2, hist_x[u] (the
sum of their x'; with neg_weight the sum of V·x'), with neg_weight hist_v[u] (the sum of
their V), a flag word (NaN score seen, negative seen, invalid targets) and T.
``multilabel_hinge_finish_kernel`` then, per row, sums the S partials in the fixed order
s = 0, 1, ..., S − 1 (counts are integers; the float sums are the only ones whose order
matters, and it is fixed) and runs phase 4 on the totals with the table of program (n, 0):

    loss_n = Σ_s part_s
    d/dx[c_s] = −m_s·W_s·above_s   (p = 1),  −2·m_s·W_s·(Σ_{v ≥ s} hist_x[v] − thr'_s·above_s)
    above_s = Σ_{v ≥ s} hist[v],   hist = Σ_s hist_s,   hist_x = Σ_s hist_x_s

(with neg_weight, aboveV_s = Σ_{v ≥ s} hist_v[v], hist_v = Σ_s hist_v_s, takes above_s's
place as a factor; the same algebra as phase 4: the bins of all slices are relative to the
same sorted table and pivot). The positives' gradient is a plain store over the split
kernel's 0: one rounding to a half dtype, and the scale applied before it. The NaN rule needs
the whole row: its flags are ORed over the slices, and in a NaN row every finishing program
fills its own slice with NaN. Results equal the one-program-per-row kernel's up to the order of the float sums
(rounding), and are bitwise repeatable: no float atomics, no order that depends on timing.

The split kernel issues the next chunk's loads (scores and bitmap words) before working on
the current chunk, so that each program has two chunks' DRAM round trips in flight: a
program is otherwise bound by one round trip per chunk, not by bandwidth. The
one-program-per-row kernel does the same where its registers allow (PREFETCH: the launcher
sets it except for p = 2 and neg-weighted gradients, which sit at the 128-register limit of
two programs per SM without it).

Per-bin sums for p = 2 and neg_weight (``_sum_per_bin``, ``_sum_per_bin2`` for two value
vectors under one sort): lanes sorted by (bin, lane) with one int32 key
bin·BLOCK_C + lane (it was an int64 key (bin << 32) | lane: the same order, so the same sums,
at half the compare-swap width), then a segmented scan; see that function for why not a
one-hot reduction or atomics.
"""

import triton
import triton.language as tl


@triton.jit
def _sortable(v):
    """float32 -> int32 with the same order under signed comparison."""
    b = v.to(tl.int32, bitcast=True)
    return tl.where(b < 0, b ^ 0x7FFFFFFF, b)


@triton.jit
def _round_down_f32(v):
    """The largest float32 <= v (v float64): x > v <=> x > result for every float32 x."""
    r = v.to(tl.float32)
    b = r.to(tl.int32, bitcast=True)
    # next float32 towards -inf: one ulp down in magnitude for r > 0, up for r < 0, and
    # -denorm_min (bits 0x80000001) for r == 0
    down = tl.where(r > 0, b - 1, tl.where(r < 0, b + 1, -2147483647)).to(tl.float32, bitcast=True)
    return tl.where(r.to(tl.float64) > v, down, r)


@triton.jit
def _min_combine(a, b):
    return tl.minimum(a, b)


@triton.jit
def _or_combine(a, b):
    return a | b


@triton.jit
def _segmented_add(va, fa, vb, fb):
    # combine of an inclusive scan that restarts where a flag is set
    return tl.where(fb, vb, va + vb), fa | fb


@triton.jit
def _sum_per_bin(values, bins, hit, count, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """Σ values per bin (bins in [0, BLOCK_T), lanes with hit) in a fixed order: the lanes are
    sorted by (bin, lane), then a segmented scan sums each bin's run; ``count`` is the per-bin
    histogram of the same lanes.

    Why a sort: Triton has no register scatter-add and float atomics would make the sum's order
    (and so its rounding) depend on timing. A one-hot [BLOCK_C, BLOCK_T] reduction is
    deterministic too, but costs BLOCK_C·BLOCK_T selects and a cross-warp reduction of
    BLOCK_T columns per chunk (262,144 at 1024 × 256). The sort key is one int32,
    bin·BLOCK_C + lane (< 2^19), instead of the former (bin << 32 | lane) int64: the same
    order, so the same sums bitwise, with half the registers and shuffles per compare-swap of
    the bitonic network."""
    lane_s, is_start, last = _bin_order(bins, hit, count, BLOCK_C, BLOCK_T)
    v_s = tl.gather(values, lane_s, 0)
    scan, _ = tl.associative_scan((v_s, is_start), 0, _segmented_add)
    return tl.where(count > 0, tl.gather(scan, last, 0), 0.0)


@triton.jit
def _sum_per_bin2(values, values2, bins, hit, count, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """``_sum_per_bin`` of two value vectors under one sort (the costly part: a neg_weight
    p = 2 chunk needs Σ V and Σ V·x' per bin), scanned one after the other (one scan of both
    held both in registers at once: float64 went past its register budget)."""
    lane_s, is_start, last = _bin_order(bins, hit, count, BLOCK_C, BLOCK_T)
    v_s = tl.gather(values, lane_s, 0)
    scan, _ = tl.associative_scan((v_s, is_start), 0, _segmented_add)
    sums = tl.where(count > 0, tl.gather(scan, last, 0), 0.0)
    u_s = tl.gather(values2, lane_s, 0)
    scan2, _ = tl.associative_scan((u_s, is_start), 0, _segmented_add)
    return sums, tl.where(count > 0, tl.gather(scan2, last, 0), 0.0)


@triton.jit
def _bin_order(bins, hit, count, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """The lanes sorted by (bin, lane) for ``_sum_per_bin``: (lane_s, is_start, last), the
    lane at each sorted position, whether a bin's run starts there, and each bin's last
    sorted position."""
    tl.static_assert((BLOCK_T + 1) * BLOCK_C < 2**31)
    lane = tl.arange(0, BLOCK_C)
    key = tl.where(hit, bins, BLOCK_T) * BLOCK_C + lane
    key = tl.sort(key)
    lane_s = key % BLOCK_C
    bin_s = key // BLOCK_C
    starts = tl.cumsum(count, 0) - count  # first sorted lane of each bin
    first = tl.gather(starts, tl.minimum(bin_s, BLOCK_T - 1), 0)
    is_start = (lane == first) & (bin_s < BLOCK_T)
    last = tl.maximum(starts + count - 1, 0)
    return lane_s, is_start, last


@triton.jit
def _check_targets(
    t_row,  # the row's targets
    stride_tk,  # column stride of t
    K,  # number of target columns
    C,  # number of classes
    BLOCK_T: tl.constexpr,  # entries read at a time
):
    """(T, bad): T the index of the first negative target (K when there is none), bad whether
    the row holds any value outside [-1, C), also after the terminator. A bad row gets T = 0
    (no tiles: it is filled with NaN at the end). One pass over the K entries: the search for
    the terminator checks the entries it reads, the second loop the rest. v keeps the targets'
    width, so int64 values are compared as 64-bit numbers (2**32 + 1 is out of range, not
    class 1)."""
    slot = tl.arange(0, BLOCK_T)
    n_pos = K
    bad = tl.zeros([BLOCK_T], tl.int32)
    k0 = 0
    while k0 < n_pos:
        idx = k0 + slot
        inside = idx < K
        v = tl.load(t_row + idx.to(tl.int64) * stride_tk, mask=inside, other=0)
        n_pos = tl.minimum(n_pos, tl.min(tl.where((v < 0) & inside, idx, K), 0))
        bad |= (inside & ((v < -1) | (v >= C))).to(tl.int32)
        k0 += BLOCK_T
    while k0 < K:
        idx = k0 + slot
        inside = idx < K
        v = tl.load(t_row + idx.to(tl.int64) * stride_tk, mask=inside, other=0)
        bad |= (inside & ((v < -1) | (v >= C))).to(tl.int32)
        k0 += BLOCK_T
    bad_row = tl.max(bad, 0) > 0
    return tl.where(bad_row, 0, n_pos), bad_row


@triton.jit
def _tile_table(
    x_row,  # the row's scores
    stride_xc,  # column stride of x
    t_row,  # the row's targets
    stride_tk,  # column stride of t
    w_row,  # the row's class weights (HAS_WEIGHT): w_ptr + row · stride_wn
    ts_row,  # (BLOCK_T,) F scratch: out, the sorted thresholds rounded down for compares
    cls_row,  # (BLOCK_T,) int32 scratch (the float64 ranking)
    pre_row,  # (3, BLOCK_T + 1) F scratch: out, prefix sums of W, W·thr', W·thr'²
    s0,  # first positive slot of the tile
    n_pos,  # T
    C,  # number of classes
    margin64,  # the margin, float64
    P: tl.constexpr,  # 1 or 2
    HAS_WEIGHT: tl.constexpr,  # per-class weights
    F: tl.constexpr,  # tl.float32 or tl.float64
    BLOCK_T: tl.constexpr,  # slots per tile
):
    """Phase 2 of the module docstring for the tile of slots [s0, s0 + BLOCK_T): the
    thresholds sorted by (threshold, class), written to ts_row and pre_row (a barrier ends
    it). Returns (c_s, ok_s, n_t, piv, thr, w_s): the sorted classes (0 in padding slots),
    which slots hold one, their number, the tile's pivot, thr' = thr − piv and W per slot."""
    IS_F64: tl.constexpr = tl.float64 == F
    RANK_CHUNK: tl.constexpr = 16 if BLOCK_T > 16 else BLOCK_T
    slot = tl.arange(0, BLOCK_T)
    n_t = tl.minimum(n_pos - s0, BLOCK_T)
    ok = slot < n_t
    c = tl.load(t_row + (s0 + slot).to(tl.int64) * stride_tk, mask=ok, other=0).to(tl.int32)
    ok = ok & (c >= 0) & (c < C)
    # padding: class 2**31 - 1 (never loaded), so that (inf, class) ranks it after every
    # slot, also after a positive at +inf (as class 0 it took that one's slot in the
    # float64 ranking, and class 0 became a positive)
    c = tl.where(ok, c, 0x7FFFFFFF)
    x_c = tl.load(x_row + c.to(tl.int64) * stride_xc, mask=ok, other=0.0)
    if IS_F64:
        thr_cmp = tl.where(ok, x_c.to(tl.float64) - margin64, float("inf"))
        # rank by (threshold, class, slot): O(BLOCK_T²) compares, float64 only, against
        # RANK_CHUNK slots at a time read back from scratch (a BLOCK_T² block of float64
        # compares held at once took every register there is)
        tl.store(ts_row + slot, thr_cmp)
        tl.store(cls_row + slot, c)
        tl.debug_barrier()
        a = thr_cmp[:, None]
        ca = c[:, None]
        rank = tl.zeros([BLOCK_T], tl.int32)
        for j0 in range(0, BLOCK_T, RANK_CHUNK):
            other = j0 + tl.arange(0, RANK_CHUNK)
            b = tl.load(ts_row + other)[None, :]
            cb = tl.load(cls_row + other)[None, :]
            before = (b < a) | (
                (b == a) & ((cb < ca) | ((cb == ca) & (other[None, :] < slot[:, None])))
            )
            rank += tl.sum(before.to(tl.int32), 1)
        tl.debug_barrier()  # every read of the unsorted slots before the scatter
        tl.store(cls_row + rank, c)
        tl.debug_barrier()
        c_s = tl.load(cls_row + slot)
    else:
        thr_cmp = _round_down_f32(x_c.to(tl.float64) - margin64)
        key = (_sortable(thr_cmp).to(tl.int64) << 32) | c.to(tl.int64)
        key = tl.where(ok, key, 0x7FFFFFFFFFFFFFFF)  # padding sorts last
        key = tl.sort(key)
        c_s = (key & 0xFFFFFFFF).to(tl.int32)
    ok_s = slot < n_t
    c_s = tl.where(ok_s & (c_s >= 0) & (c_s < C), c_s, 0)  # memory-safe whatever happened
    x_s = tl.load(x_row + c_s.to(tl.int64) * stride_xc, mask=ok_s, other=0.0)
    if IS_F64:
        ts = x_s.to(tl.float64) - margin64
    else:
        ts = _round_down_f32(x_s.to(tl.float64) - margin64)
    # Sums relative to a pivot: with x' = x − piv and thr' = (x[c] − piv) − margin,
    #     Σ W·(x − thr)^p = Σ W·(x' − thr')^p,
    # but A0·x² − 2·x·A1 + A2 cancels catastrophically when the scores are large and close
    # together (float32 scores ~1e3 lost 1e-2 of the loss), A0·x'² − 2·x'·A1' + A2' does
    # not: piv is the score of the tile's median threshold (0 if that is not finite), so
    # x − piv is exact for scores within a factor 2 of it (Sterbenz) and x', thr' are of the
    # size of the hinges. Only the sums move: every comparison uses the unshifted ts.
    xf = x_s.to(F)
    piv = tl.sum(tl.where(slot == (n_t - 1) // 2, xf, 0.0), 0)
    piv = tl.where(piv - piv == 0.0, piv, 0.0)
    # thr', the threshold for sums: formed in float64 with the float64 margin, rounded once
    thr = ((x_s.to(tl.float64) - piv.to(tl.float64)) - margin64).to(F)
    if HAS_WEIGHT:
        w_s = tl.load(w_row + c_s, mask=ok_s, other=0.0).to(F)
    else:
        w_s = tl.where(ok_s, 1.0, 0.0).to(F)
    wt = tl.where(ok_s, w_s * thr, 0.0)
    tl.store(ts_row + slot, tl.where(ok_s, ts, float("inf")))
    tl.store(pre_row, 0.0)
    tl.store(pre_row + 1 + slot, tl.cumsum(w_s, 0))
    tl.store(pre_row + (BLOCK_T + 1), 0.0)
    tl.store(pre_row + (BLOCK_T + 1) + 1 + slot, tl.cumsum(wt, 0))
    if P == 2:
        tl.store(pre_row + 2 * (BLOCK_T + 1), 0.0)
        tl.store(pre_row + 2 * (BLOCK_T + 1) + 1 + slot, tl.cumsum(wt * thr, 0))
    tl.debug_barrier()
    return c_s, ok_s, n_t, piv, thr, w_s


@triton.jit
def _load_chunk(
    x_row,  # the row's scores
    stride_xc,  # column stride of x
    b_row,  # the row's bitmap of positives
    cols,  # (BLOCK_C,) int32 classes of the chunk
    end,  # classes >= end are not read
):
    """The chunk's scores (x's dtype, 0 past end) and bitmap words."""
    in_row = cols < end
    xr = tl.load(x_row + cols.to(tl.int64) * stride_xc, mask=in_row, other=0.0)
    word = tl.load(b_row + cols // 32, mask=in_row, other=0)
    return xr, word


@triton.jit
def _judge_chunk(
    xr,  # (BLOCK_C,) the chunk's scores, as loaded (_load_chunk)
    word,  # (BLOCK_C,) their bitmap words
    ts_row,  # the tile's sorted thresholds (compare values)
    pre_row,  # the tile's prefix sums
    cols,  # (BLOCK_C,) int32 classes of the chunk
    end,  # classes >= end are not read (C, or the end of the slice)
    n_t,  # thresholds in the tile
    top,  # the largest power of two <= n_t (1 when n_t = 0)
    piv,  # the tile's pivot
    P: tl.constexpr,  # 1 or 2
    F: tl.constexpr,  # tl.float32 or tl.float64
    BLOCK_T: tl.constexpr,  # slots per tile
):
    """Phase 3 for one chunk of classes: returns (xv, in_row, neg, cnt, hit, a0, lin, term)
    with cnt the number of the tile's thresholds below x, hit the negatives with cnt > 0,
    a0 = A0[cnt], lin = A0[cnt]·x' − A1[cnt] and term the chunk's per-lane loss."""
    in_row = cols < end
    xv = xr.to(F)
    neg = in_row & (((word >> (cols % 32)) & 1) == 0)
    cnt = tl.zeros(cols.shape, tl.int32)
    step = top
    while step > 0:
        probe = cnt + step
        ahead = probe <= n_t
        v = tl.load(ts_row + probe - 1, mask=ahead, other=float("inf"))
        cnt = tl.where(ahead & (v < xv), probe, cnt)
        step = step // 2
    hit = neg & (cnt > 0)
    xs = xv - piv  # x'
    a0 = tl.load(pre_row + cnt)
    a1 = tl.load(pre_row + (BLOCK_T + 1) + cnt)
    # Σ W·(x' − thr') over the cnt thresholds below x. Infinite scores (DESIGN.md §3 in
    # IEEE arithmetic) need no case of their own here: −inf thresholds sort first and
    # are below every x > −inf, so they enter A1 as W·(−inf) and lin = +inf for every
    # such x, as each of their pairs is; x = +inf gives A0·inf − A1 = +inf; +inf
    # thresholds are below no x, so no prefix read here holds one; x = −inf has cnt = 0.
    lin = a0 * xs - a1
    if P == 1:
        term = tl.where(hit, lin, 0.0)
    else:
        # where lin is infinite so is the squared sum, but A0·x'² − 2·x'·A1 + A2 may
        # read inf − inf
        a2 = tl.load(pre_row + 2 * (BLOCK_T + 1) + cnt)
        sq = a0 * xs * xs - 2.0 * xs * a1 + a2
        term = tl.where(hit, tl.where(lin - lin == 0.0, sq, lin), 0.0)
    return xv, in_row, neg, cnt, hit, xs, a0, lin, term


@triton.jit
def _load_neg_weights(
    v_row,  # the row's negative weights: v_ptr + row · stride_vn (contiguous columns)
    cols,  # (BLOCK_C,) int32 classes of the chunk
    end,  # classes >= end are not read
):
    """The chunk's V (0 past end)."""
    return tl.load(v_row + cols, mask=cols < end, other=0.0)


@triton.jit
def _weigh_negatives(
    vr,  # (BLOCK_C,) the chunk's V, as loaded
    hit,  # negatives with a threshold below them (_judge_chunk)
    term,  # the chunk's per-lane loss
    F: tl.constexpr,  # tl.float32 or tl.float64
):
    """neg_weight in phase 3: (v, hit, term) with the lanes of V = 0 dropped from hit (they
    form no pair: no loss, no gradient, no histogram entry) and the loss term times V. A
    select, never a product with the dropped lanes: V = 0 beside an infinite hinge is 0, not
    0·inf = NaN."""
    v = vr.to(F)
    hit = hit & (v != 0.0)
    return v, hit, tl.where(hit, v * term, 0.0)


@triton.jit
def _bin_chunk(
    cnt,  # (BLOCK_C,) thresholds below each lane
    hit,  # lanes that enter the histogram
    xs,  # their x'
    v,  # their V (HAS_NEG_WEIGHT)
    hist,  # (BLOCK_T,) int32 running per-bin counts
    hist_v,  # (BLOCK_T,) F running Σ V per bin (HAS_NEG_WEIGHT)
    hist_x,  # (BLOCK_T,) F running Σ x' per bin, Σ V·x' with HAS_NEG_WEIGHT (P = 2)
    P: tl.constexpr,
    HAS_NEG_WEIGHT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """Phase 3's histogram of one chunk added to the running one (bin cnt − 1).

    With neg_weight the positives need Σ V_j and Σ V_j·x'_j per bin (module docstring,
    phase 4), float sums that must stay bitwise repeatable. The kernel's counts are a register
    histogram, not atomics, and the p = 2 path already sums floats per bin deterministically
    (``_sum_per_bin``: a sort by (bin, lane) and a segmented scan, in F): the weighted sums
    take that path too, both under one sort for p = 2. No fixed point is needed, so V's range
    and precision are limited by F's rounding only, as the unweighted Σ x' per bin is (float64
    against the literal oracle, V and W in [1e-3, 1e3]: measured ≤ 1e-14 relative). The int32
    counts are still kept: the _sum_per_bin runs and the positives' above > 0 test read them."""
    bins = cnt - 1
    chunk_hist = tl.histogram(bins, BLOCK_T, mask=hit)
    hist += chunk_hist
    if HAS_NEG_WEIGHT:
        v_hit = tl.where(hit, v, 0.0)
        if P == 1:
            hist_v += _sum_per_bin(v_hit, bins, hit, chunk_hist, BLOCK_C, BLOCK_T)
        else:
            sv, svx = _sum_per_bin2(
                v_hit, tl.where(hit, v * xs, 0.0), bins, hit, chunk_hist, BLOCK_C, BLOCK_T
            )
            hist_v += sv
            hist_x += svx
    elif P == 2:
        xs_hit = tl.where(hit, xs, 0.0)
        hist_x += _sum_per_bin(xs_hit, bins, hit, chunk_hist, BLOCK_C, BLOCK_T)
    return hist, hist_v, hist_x


@triton.jit
def _positive_grads(
    c_s,  # (BLOCK_T,) the tile's classes in sorted order
    ok_s,  # slots that hold a positive
    n_t,  # their number
    w_s,  # W per slot
    thr,  # thr' per slot
    hist,  # (BLOCK_T,) int32: negatives with u + 1 thresholds below (over the whole row)
    hist_v,  # (BLOCK_T,) F: the sum of their V (HAS_NEG_WEIGHT)
    hist_x,  # (BLOCK_T,) F: the sum of their x', of V·x' with HAS_NEG_WEIGHT (p = 2)
    P: tl.constexpr,  # 1 or 2
    HAS_NEG_WEIGHT: tl.constexpr,  # per-negative weights V
    F: tl.constexpr,  # tl.float32 or tl.float64
    BLOCK_T: tl.constexpr,  # slots per tile
):
    """Phase 4: (first, gm), the slots that write (the first of each run of a duplicated
    class) and the unscaled gradient m_s·g_s each of them adds to its class."""
    slot = tl.arange(0, BLOCK_T)
    above = tl.sum(hist, 0) - (tl.cumsum(hist, 0) - hist)  # Σ_{v > s} hist over cnt
    if HAS_NEG_WEIGHT:
        # Σ V_j over the negatives above thr_s (V = 0 ones are not in the bins), a suffix
        # sum: a float total minus a prefix would not be exactly 0 where no V is left
        above_f = tl.cumsum(hist_v, 0, reverse=True)
    else:
        above_f = above.to(F)
    if P == 1:
        g_pos = -w_s * above_f
    else:
        # Σ_{x_j > thr_s} V_j·(x_j − thr_s) = Σ V_j·(x'_j − thr'_s) (V_j = 1 without
        # neg_weight), from a suffix sum over the bins (a total minus a prefix would read
        # inf − inf). Infinite where it must be: a −inf thr' gives −(−inf)·above; the +inf
        # negatives all sit in one bin, above every threshold below +inf, so above_x = +inf
        # for each s at or below it
        above_x = tl.cumsum(hist_x, 0, reverse=True)
        spread = above_x - tl.where(above > 0, thr, 0.0) * above_f
        g_pos = tl.where(above > 0, -2.0 * w_s * spread, 0.0)
    # duplicates of a class are adjacent: the first of each run writes m·g
    prev = tl.gather(c_s, tl.maximum(slot - 1, 0), 0)
    first = ok_s & ((slot == 0) | (prev != c_s))
    start = tl.where(first, slot, BLOCK_T)
    nxt = tl.associative_scan(start, 0, _min_combine, reverse=True)  # next run start >= s
    run_end = tl.gather(nxt, tl.minimum(slot + 1, BLOCK_T - 1), 0)
    run_end = tl.where(slot + 1 < BLOCK_T, run_end, BLOCK_T)
    run_end = tl.minimum(run_end, n_t)
    m = (run_end - slot).to(F)
    return first, m * g_pos


@triton.jit
def multilabel_hinge_kernel(
    x_ptr,  # (N, C) scores: float16, bfloat16, float32 or float64, any strides
    stride_xn,  # row stride of x, in elements
    stride_xc,  # column stride of x
    t_ptr,  # (N, K) targets, int32 or int64, any values (a row outside [-1, C) gets NaN)
    stride_tn,  # row stride of t
    stride_tk,  # column stride of t
    w_ptr,  # (C,) or (N, C) per-class weights of positives in F (read only when HAS_WEIGHT)
    stride_wn,  # row stride of w: 0 for (C,), C for (N, C) (columns contiguous)
    v_ptr,  # (C,) or (N, C) weights of negatives in F (read only when HAS_NEG_WEIGHT)
    stride_vn,  # row stride of v: 0 for (C,), C for (N, C) (columns contiguous)
    loss_ptr,  # (N,) out, F: the raw loss of each row (before the 1/C)
    grad_ptr,  # (N, C) out, x's dtype: d loss / d x (written only when WANT_GRAD)
    stride_gn,  # row stride of grad
    stride_gc,  # column stride of grad
    bits_ptr,  # (N, words) int32 scratch: bitmap of the row's positive classes
    words,  # ceil(C / 32)
    ts_ptr,  # (N, BLOCK_T) F scratch: a tile's sorted thresholds, rounded down for compares
    cls_ptr,  # (N, BLOCK_T) int32 scratch: a tile's classes in sorted order (float64 path)
    pre_ptr,  # (N, 3, BLOCK_T + 1) F scratch: prefix sums of W, W·thr', W·thr'² over a tile
    scale_ptr,  # (N,) F: factor of each gradient row (read only when HAS_SCALE)
    acc_ptr,  # (N, C) F scratch, contiguous: the gradient of rows with several tiles (ACC_GRAD)
    C,  # number of classes
    K,  # number of target columns
    # the hinge margin, a float64 parameter (a Python float argument would be specialised as
    # fp32: margin 0.1 became 0.100000001, and float64 ties flipped)
    margin: tl.float64,
    P: tl.constexpr,  # 1: hinge, 2: squared hinge
    HAS_WEIGHT: tl.constexpr,  # per-class weights of positives
    HAS_NEG_WEIGHT: tl.constexpr,  # per-class weights of negatives (neg_weight)
    WANT_GRAD: tl.constexpr,  # also write d loss / d x
    HAS_SCALE: tl.constexpr,  # multiply gradient row n by scale[n] (autograd's grad_output)
    ACC_GRAD: tl.constexpr,  # half gradients: rows with several tiles accumulate in acc_ptr
    F: tl.constexpr,  # compare/accumulate dtype: tl.float64 for float64 scores, else tl.float32
    BLOCK_C: tl.constexpr,  # classes per chunk
    BLOCK_T: tl.constexpr,  # positive slots per tile (a power of two)
    PREFETCH: tl.constexpr,  # load the next chunk before working on this one (registers allow)
):
    """One program per row, every tile of thresholds in sequence (phases 0-4)."""
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_xn
    t_row = t_ptr + row * stride_tn
    g_row = grad_ptr + row * stride_gn
    b_row = bits_ptr + row * words
    ts_row = ts_ptr + row * BLOCK_T
    cls_row = cls_ptr + row * BLOCK_T
    pre_row = pre_ptr + row * (3 * (BLOCK_T + 1))
    a_row = acc_ptr + row * C
    w_row = w_ptr + row * stride_wn
    v_row = v_ptr + row * stride_vn
    slot = tl.arange(0, BLOCK_T)
    lane = tl.arange(0, BLOCK_C)
    if HAS_SCALE:
        g_scale = tl.load(scale_ptr + row).to(F)
    else:
        g_scale = 1.0
    # the margin in float64, also under the interpreter (which passes the Python float)
    margin64 = tl.full([], margin, tl.float64)

    # -- 0. T and the target check (DESIGN.md §4: an invalid row is NaN, nothing else of it
    # is read)
    n_pos, bad_row = _check_targets(t_row, stride_tk, K, C, BLOCK_T)
    # a half gradient of a row with several tiles is summed over the tiles in float32 (acc_ptr)
    # and rounded once at the end; rows with one tile write the gradient directly
    use_acc = n_pos > BLOCK_T

    # -- 1. bitmap of the positive classes ----------------------------------------------------
    for w0 in range(0, words, BLOCK_C):
        tl.store(b_row + w0 + lane, tl.zeros([BLOCK_C], tl.int32), mask=w0 + lane < words)
    tl.debug_barrier()
    for s0 in range(0, n_pos, BLOCK_T):
        idx = s0 + slot
        ok = idx < n_pos
        c = tl.load(t_row + idx.to(tl.int64) * stride_tk, mask=ok, other=0).to(tl.int32)
        ok = ok & (c >= 0) & (c < C)
        tl.atomic_or(b_row + c // 32, 1 << (c % 32), mask=ok)
    tl.debug_barrier()

    loss = tl.zeros([1], F)
    # bit 0: a NaN score seen, bit 1: a negative seen; one OR-reduction per chunk (two
    # per-lane vectors carried across the loop instead took 8 registers per thread at
    # BLOCK_C = 1024, and this kernel is at its 128: sm_80 spilled)
    flags = tl.full([], 0, tl.int32)
    for s0 in range(0, n_pos, BLOCK_T):
        # -- 2. this tile's thresholds, sorted by (threshold, class) ---------------------------
        c_s, ok_s, n_t, piv, thr, w_s = _tile_table(
            x_row, stride_xc, t_row, stride_tk, w_row, ts_row, cls_row, pre_row,
            s0, n_pos, C, margin64, P, HAS_WEIGHT, F, BLOCK_T,
        )  # fmt: skip

        # -- 3. every class against this tile -------------------------------------------------
        top = 1
        while top * 2 <= n_t:
            top *= 2
        hist = tl.zeros([BLOCK_T], tl.int32)  # hist[u]: negatives with u + 1 thresholds below
        hist_x = tl.zeros([BLOCK_T], F)  # ... and the sum of their x' (V·x': neg_weight)
        hist_v = tl.zeros([BLOCK_T], F)  # ... and of their V (neg_weight)
        part = tl.zeros([BLOCK_C], F)
        if PREFETCH:  # two chunks in flight, as in the split kernel
            x_next, w_next = _load_chunk(x_row, stride_xc, b_row, lane, C)
            if HAS_NEG_WEIGHT:
                v_next = _load_neg_weights(v_row, lane, C)
        for j0 in range(0, C, BLOCK_C):
            cols = j0 + lane
            if PREFETCH:
                xr, word = x_next, w_next
                x_next, w_next = _load_chunk(x_row, stride_xc, b_row, cols + BLOCK_C, C)
                if HAS_NEG_WEIGHT:
                    vr = v_next
                    v_next = _load_neg_weights(v_row, cols + BLOCK_C, C)
            else:
                xr, word = _load_chunk(x_row, stride_xc, b_row, cols, C)
                if HAS_NEG_WEIGHT:
                    vr = _load_neg_weights(v_row, cols, C)
            xv, in_row, neg, cnt, hit, xs, a0, lin, term = _judge_chunk(
                xr, word, ts_row, pre_row, cols, C, n_t, top, piv, P, F, BLOCK_T
            )
            v = 1.0
            if HAS_NEG_WEIGHT:  # after the NaN rule's neg, which V does not change
                v, hit, term = _weigh_negatives(vr, hit, term, F)
            seen = ((xv != xv) & in_row).to(tl.int32) | (neg.to(tl.int32) << 1)
            flags |= tl.reduce(seen, 0, _or_combine)
            part += term
            if WANT_GRAD:
                # d/dx_j of V_j·Σ_k W_k·(x'_j − thr'_k)^p over the cnt thresholds below x_j:
                # V_j·A0[cnt] for p = 1, V_j·2·(A0·x'_j − A1) = V_j·2·lin for p = 2; the scale
                # is applied in F, before any rounding to the gradient's dtype
                if HAS_NEG_WEIGHT:
                    g = tl.where(hit, (a0 if P == 1 else 2.0 * lin) * v, 0.0) * g_scale
                else:
                    g = tl.where(hit, a0 if P == 1 else 2.0 * lin, 0.0) * g_scale
                if ACC_GRAD and use_acc:
                    a_ptrs = a_row + cols
                    if s0 > 0:  # later tiles add to what earlier tiles wrote (in F)
                        g += tl.load(a_ptrs, mask=in_row, other=0.0)
                    tl.store(a_ptrs, g, mask=in_row)
                else:
                    g_ptrs = g_row + cols.to(tl.int64) * stride_gc
                    if s0 > 0:  # later tiles add to what earlier tiles wrote
                        g += tl.load(g_ptrs, mask=in_row, other=0.0).to(F)
                    tl.store(g_ptrs, g.to(grad_ptr.dtype.element_ty), mask=in_row)
                hist, hist_v, hist_x = _bin_chunk(
                    cnt, hit, xs, v, hist, hist_v, hist_x, P, HAS_NEG_WEIGHT, BLOCK_C, BLOCK_T
                )
        loss += tl.sum(part, 0)

        # -- 4. the tile's positives ---------------------------------------------------------
        if WANT_GRAD:
            tl.debug_barrier()  # the chunk loop's stores land before the read-modify-writes
            first, gm = _positive_grads(
                c_s, ok_s, n_t, w_s, thr, hist, hist_v, hist_x, P, HAS_NEG_WEIGHT, F, BLOCK_T
            )
            if ACC_GRAD and use_acc:
                pa_ptrs = a_row + c_s
                old = tl.load(pa_ptrs, mask=first, other=0.0)
                tl.store(pa_ptrs, old + gm * g_scale, mask=first)
            else:
                p_ptrs = g_row + c_s.to(tl.int64) * stride_gc
                old = tl.load(p_ptrs, mask=first, other=0.0).to(F)
                new = old + gm * g_scale
                tl.store(p_ptrs, new.to(grad_ptr.dtype.element_ty), mask=first)
        # the tiles reuse the row's scratch (ts, cls, pre, and acc): every read of this tile,
        # in every path (also loss-only), lands before the next tile's writes
        tl.debug_barrier()

    # -- rows without tiles, and the NaN rule (DESIGN.md §3) -----------------------------------
    nan_row = (((flags & 3) == 3) & (n_pos > 0)) | bad_row
    total = tl.sum(loss, 0)
    total = tl.where(nan_row, float("nan"), total)
    tl.store(loss_ptr + row, total)
    if WANT_GRAD:
        if (n_pos == 0) | nan_row:
            fill = tl.where(nan_row, float("nan"), 0.0)
            for j0 in range(0, C, BLOCK_C):
                cols = j0 + lane
                tl.store(
                    g_row + cols.to(tl.int64) * stride_gc,
                    (tl.zeros([BLOCK_C], F) + fill).to(grad_ptr.dtype.element_ty),
                    mask=cols < C,
                )
        elif ACC_GRAD and use_acc:  # the tiles' float32 sums, rounded once to the half dtype
            for j0 in range(0, C, BLOCK_C):
                cols = j0 + lane
                acc = tl.load(a_row + cols, mask=cols < C, other=0.0)
                tl.store(
                    g_row + cols.to(tl.int64) * stride_gc,
                    acc.to(grad_ptr.dtype.element_ty),
                    mask=cols < C,
                )


# -------------------------------------------------------------------------------------------
# split rows: grid (N, S), then a finishing grid (N, S) (see "Split rows" in the module doc)
# -------------------------------------------------------------------------------------------
@triton.jit
def multilabel_hinge_split_kernel(
    x_ptr,  # (N, C) scores: float16, bfloat16, float32 or float64, any strides
    stride_xn,  # row stride of x, in elements
    stride_xc,  # column stride of x
    t_ptr,  # (N, K) targets, int32 or int64, any values; K <= BLOCK_T (one tile)
    stride_tn,  # row stride of t
    stride_tk,  # column stride of t
    w_ptr,  # (C,) or (N, C) per-class weights of positives in F (read only when HAS_WEIGHT)
    stride_wn,  # row stride of w: 0 for (C,), C for (N, C) (columns contiguous)
    v_ptr,  # (C,) or (N, C) weights of negatives in F (read only when HAS_NEG_WEIGHT)
    stride_vn,  # row stride of v: 0 for (C,), C for (N, C) (columns contiguous)
    grad_ptr,  # (N, C) out, x's dtype: the negatives' gradient, 0 at positives (WANT_GRAD)
    stride_gn,  # row stride of grad
    stride_gc,  # column stride of grad
    bits_ptr,  # (N, words) int32 scratch: bitmap of the row's positives (words of the slice)
    words,  # ceil(C / 32)
    ts_ptr,  # (N·S, BLOCK_T) F scratch per program: the sorted thresholds, for compares
    cls_ptr,  # (N·S, BLOCK_T) int32 scratch per program: out, the classes in sorted order
    pre_ptr,  # (N·S, 5, BLOCK_T + 1) F scratch per program: prefix sums; out, W and thr'
    # (N·S, BLOCK_T + 1) F out: the slice's loss, then Σ x' per bin (p = 2); with
    # HAS_NEG_WEIGHT (N·S, 2·BLOCK_T + 1): the loss, Σ V·x' per bin (p = 2), Σ V per bin
    part_ptr,
    cnt_ptr,  # (N·S, BLOCK_T + 2) int32 out: flags, T, then negatives per bin (WANT_GRAD)
    scale_ptr,  # (N,) F: factor of each gradient row (read only when HAS_SCALE)
    C,  # number of classes
    K,  # number of target columns (<= BLOCK_T)
    n_slices,  # S, programs per row (the grid's second axis)
    SLICE,  # classes per slice: a multiple of BLOCK_C and of 32 (whole bitmap words)
    # the hinge margin, a float64 parameter (see multilabel_hinge_kernel)
    margin: tl.float64,
    P: tl.constexpr,  # 1: hinge, 2: squared hinge
    HAS_WEIGHT: tl.constexpr,  # per-class weights of positives
    HAS_NEG_WEIGHT: tl.constexpr,  # per-class weights of negatives (neg_weight)
    WANT_GRAD: tl.constexpr,  # also write the negatives' gradient and the per-bin partials
    HAS_SCALE: tl.constexpr,  # multiply gradient row n by scale[n]
    F: tl.constexpr,  # compare/accumulate dtype: tl.float64 for float64 scores, else tl.float32
    BLOCK_C: tl.constexpr,  # classes per chunk
    BLOCK_T: tl.constexpr,  # positive slots (a power of two >= K)
):
    """Program (n, s): phases 0-2 for row n (its one tile; every program of the row builds
    the same table), then phase 3 over classes [s·SLICE, (s + 1)·SLICE) ∩ [0, C), and the
    slice's partials. The positives' gradient and the loss are the finishing kernel's."""
    PART: tl.constexpr = 2 * BLOCK_T + 1 if HAS_NEG_WEIGHT else BLOCK_T + 1
    row = tl.program_id(0).to(tl.int64)
    sl = tl.program_id(1)
    prog = row * n_slices + sl
    x_row = x_ptr + row * stride_xn
    t_row = t_ptr + row * stride_tn
    g_row = grad_ptr + row * stride_gn
    b_row = bits_ptr + row * words
    ts_row = ts_ptr + prog * BLOCK_T
    cls_row = cls_ptr + prog * BLOCK_T
    pre_row = pre_ptr + prog * (5 * (BLOCK_T + 1))
    w_row = w_ptr + row * stride_wn
    v_row = v_ptr + row * stride_vn
    slot = tl.arange(0, BLOCK_T)
    lane = tl.arange(0, BLOCK_C)
    if HAS_SCALE:
        g_scale = tl.load(scale_ptr + row).to(F)
    else:
        g_scale = 1.0
    margin64 = tl.full([], margin, tl.float64)
    lo = sl * SLICE
    hi = tl.minimum(lo + SLICE, C)  # <= lo for the empty slices past C

    # -- 0. T and the target check (all K <= BLOCK_T entries in one load) ---------------------
    n_pos, bad_row = _check_targets(t_row, stride_tk, K, C, BLOCK_T)

    # -- 1. the slice's words of the bitmap: they hold its classes only (SLICE % 32 == 0) -----
    w_hi = (hi + 31) // 32
    for w0 in range(lo // 32, w_hi, BLOCK_C):
        tl.store(b_row + w0 + lane, tl.zeros([BLOCK_C], tl.int32), mask=w0 + lane < w_hi)
    tl.debug_barrier()
    ok = slot < n_pos
    c = tl.load(t_row + slot.to(tl.int64) * stride_tk, mask=ok, other=0).to(tl.int32)
    mine = ok & (c >= lo) & (c < hi)
    tl.atomic_or(b_row + c // 32, 1 << (c % 32), mask=mine)
    tl.debug_barrier()

    # -- 2. the row's one tile (same table in every program of the row) ----------------------
    c_s, _ok_s, n_t, piv, thr, w_s = _tile_table(
        x_row, stride_xc, t_row, stride_tk, w_row, ts_row, cls_row, pre_row,
        0, n_pos, C, margin64, P, HAS_WEIGHT, F, BLOCK_T,
    )  # fmt: skip
    # what the finishing kernel needs of the positives (it reads program (n, 0)'s)
    tl.store(cls_row + slot, c_s)
    tl.store(pre_row + 3 * (BLOCK_T + 1) + slot, w_s)
    tl.store(pre_row + 4 * (BLOCK_T + 1) + slot, thr)

    # -- 3. the slice's classes against the tile ----------------------------------------------
    top = 1
    while top * 2 <= n_t:
        top *= 2
    hist = tl.zeros([BLOCK_T], tl.int32)
    hist_x = tl.zeros([BLOCK_T], F)
    hist_v = tl.zeros([BLOCK_T], F)
    part = tl.zeros([BLOCK_C], F)
    nan_v = tl.zeros([BLOCK_C], tl.int32)
    neg_v = tl.zeros([BLOCK_C], tl.int32)
    # software pipelining by hand: the next chunk's loads are issued before this chunk's
    # searches and barriers, so that two chunks' DRAM round trips overlap in every program
    # (one chunk in flight per program left the split grid latency-bound)
    x_next, w_next = _load_chunk(x_row, stride_xc, b_row, lo + lane, hi)
    if HAS_NEG_WEIGHT:
        v_next = _load_neg_weights(v_row, lo + lane, hi)
    for j0 in range(lo, hi, BLOCK_C):
        cols = j0 + lane
        xr, word = x_next, w_next
        x_next, w_next = _load_chunk(x_row, stride_xc, b_row, cols + BLOCK_C, hi)
        if HAS_NEG_WEIGHT:
            vr = v_next
            v_next = _load_neg_weights(v_row, cols + BLOCK_C, hi)
        xv, in_row, neg, cnt, hit, xs, a0, lin, term = _judge_chunk(
            xr, word, ts_row, pre_row, cols, hi, n_t, top, piv, P, F, BLOCK_T
        )
        v = 1.0
        if HAS_NEG_WEIGHT:  # after the NaN rule's neg, which V does not change
            v, hit, term = _weigh_negatives(vr, hit, term, F)
        nan_v |= ((xv != xv) & in_row).to(tl.int32)
        neg_v |= neg.to(tl.int32)
        part += term
        if WANT_GRAD:
            # one tile: each class is written once, in its final value (positives get 0 here
            # and their gradient from the finishing kernel)
            if HAS_NEG_WEIGHT:
                g = tl.where(hit, (a0 if P == 1 else 2.0 * lin) * v, 0.0) * g_scale
            else:
                g = tl.where(hit, a0 if P == 1 else 2.0 * lin, 0.0) * g_scale
            g_ptrs = g_row + cols.to(tl.int64) * stride_gc
            tl.store(g_ptrs, g.to(grad_ptr.dtype.element_ty), mask=in_row)
            hist, hist_v, hist_x = _bin_chunk(
                cnt, hit, xs, v, hist, hist_v, hist_x, P, HAS_NEG_WEIGHT, BLOCK_C, BLOCK_T
            )

    # -- the slice's partials -----------------------------------------------------------------
    flags = (
        (tl.max(nan_v, 0) > 0).to(tl.int32)
        | ((tl.max(neg_v, 0) > 0).to(tl.int32) << 1)
        | (bad_row.to(tl.int32) << 2)
    )
    part_row = part_ptr + prog * PART
    cnt_row = cnt_ptr + prog * (BLOCK_T + 2)
    tl.store(part_row, tl.sum(part, 0))
    tl.store(cnt_row, flags)
    tl.store(cnt_row + 1, n_pos.to(tl.int32))
    if WANT_GRAD:
        tl.store(cnt_row + 2 + slot, hist)
        if P == 2:
            tl.store(part_row + 1 + slot, hist_x)
        if HAS_NEG_WEIGHT:
            tl.store(part_row + 1 + BLOCK_T + slot, hist_v)


@triton.jit
def multilabel_hinge_finish_kernel(
    loss_ptr,  # (N,) out, F: the raw loss of each row
    grad_ptr,  # (N, C) in/out, x's dtype: gets the positives' gradient, or NaN rows
    stride_gn,  # row stride of grad
    stride_gc,  # column stride of grad
    cls_ptr,  # (N·S, BLOCK_T) int32: the split kernel's sorted classes (program (n, 0)'s)
    pre_ptr,  # (N·S, 5, BLOCK_T + 1) F: rows 3 and 4 hold W and thr' per sorted slot
    part_ptr,  # (N·S, PART) F: the slices' losses, per-bin sums of x' (of V·x') and of V
    cnt_ptr,  # (N·S, BLOCK_T + 2) int32: the slices' flags, T and per-bin counts
    scale_ptr,  # (N,) F: factor of each gradient row (read only when HAS_SCALE)
    C,  # number of classes
    n_slices,  # S, the split kernel's programs per row
    SLICE,  # classes per slice
    P: tl.constexpr,  # 1: hinge, 2: squared hinge
    HAS_NEG_WEIGHT: tl.constexpr,  # the split kernel's partials hold Σ V per bin
    WANT_GRAD: tl.constexpr,  # the positives' gradient (grid (N, S)), else the loss only
    HAS_SCALE: tl.constexpr,  # multiply gradient row n by scale[n]
    F: tl.constexpr,  # accumulate dtype
    BLOCK_C: tl.constexpr,  # classes per chunk of a NaN fill
    BLOCK_T: tl.constexpr,  # positive slots
):
    """Program (n, s): the NaN rule for row n from all S flags; program (n, 0) sums the S
    partials in the fixed order s = 0, 1, ..., S − 1 (so the result does not depend on which
    program finished first) and writes the loss and the positives' gradient; in a NaN row
    every program fills its slice of the gradient with NaN."""
    PART: tl.constexpr = 2 * BLOCK_T + 1 if HAS_NEG_WEIGHT else BLOCK_T + 1
    row = tl.program_id(0).to(tl.int64)
    sl = tl.program_id(1)
    first_prog = row * n_slices
    slot = tl.arange(0, BLOCK_T)
    lane = tl.arange(0, BLOCK_C)
    g_row = grad_ptr + row * stride_gn
    flags = tl.full([], 0, tl.int32)
    for s in range(0, n_slices):
        flags |= tl.load(cnt_ptr + (first_prog + s) * (BLOCK_T + 2))
    n_pos = tl.load(cnt_ptr + first_prog * (BLOCK_T + 2) + 1)
    # NaN scores with a negative, in a row with positives; or an invalid target
    nan_row = (((flags & 3) == 3) & (n_pos > 0)) | ((flags & 4) != 0)
    if sl == 0:
        total = tl.full([], 0.0, F)
        for s in range(0, n_slices):
            total += tl.load(part_ptr + (first_prog + s) * PART)
        tl.store(loss_ptr + row, tl.where(nan_row, float("nan"), total))
        if WANT_GRAD:
            if (n_pos > 0) & (nan_row == 0):
                hist = tl.zeros([BLOCK_T], tl.int32)
                hist_x = tl.zeros([BLOCK_T], F)
                hist_v = tl.zeros([BLOCK_T], F)
                for s in range(0, n_slices):
                    hist += tl.load(cnt_ptr + (first_prog + s) * (BLOCK_T + 2) + 2 + slot)
                    if P == 2:
                        hist_x += tl.load(part_ptr + (first_prog + s) * PART + 1 + slot)
                    if HAS_NEG_WEIGHT:
                        hist_v += tl.load(part_ptr + (first_prog + s) * PART + 1 + BLOCK_T + slot)
                c_s = tl.load(cls_ptr + first_prog * BLOCK_T + slot)
                tab = pre_ptr + first_prog * (5 * (BLOCK_T + 1))
                w_s = tl.load(tab + 3 * (BLOCK_T + 1) + slot)
                thr = tl.load(tab + 4 * (BLOCK_T + 1) + slot)
                ok_s = slot < n_pos
                first, gm = _positive_grads(
                    c_s, ok_s, n_pos, w_s, thr, hist, hist_v, hist_x, P, HAS_NEG_WEIGHT, F, BLOCK_T
                )
                if HAS_SCALE:
                    gm = gm * tl.load(scale_ptr + row).to(F)
                # the split kernel wrote 0 at every positive: the value is final, one rounding
                tl.store(
                    g_row + c_s.to(tl.int64) * stride_gc,
                    gm.to(grad_ptr.dtype.element_ty),
                    mask=first,
                )
    if WANT_GRAD:
        if nan_row:
            lo = sl * SLICE
            hi = tl.minimum(lo + SLICE, C)
            nan = tl.full([BLOCK_C], float("nan"), F).to(grad_ptr.dtype.element_ty)
            for j0 in range(lo, hi, BLOCK_C):
                cols = j0 + lane
                tl.store(g_row + cols.to(tl.int64) * stride_gc, nan, mask=cols < hi)
