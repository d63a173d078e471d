"""Triton kernels of the pairwise multilabel hinge (device code only; the launch lives in
``xmargin/backends/triton.py``).

One program per sample (row). With x the row's scores, t its targets and T the number of
entries before the first negative target (the positive slots, duplicates included), the
program computes

    loss = Σ_{k < T} W[t_k] · Σ_{j negative} max(0, x_j − thr_k)^p,   thr_k = x[t_k] − margin

and, when asked, d loss / d x, in O(C log T + T log T) work (DESIGN.md §5):

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
   and a histogram of cnt (and, for p = 2, of Σ x' per cnt) is kept in registers.
4. The sorted threshold s has above_s = #{negatives j : x_j > thr_s} = Σ_{v ≥ s} hist[v]
   (x_j > thr_s ⇔ cnt_j > s), so its class gets
       d/dx[c_s] = −m_s · W_s · above_s                       (p = 1)
       d/dx[c_s] = −2 · m_s · W_s · Σ_{x_j > thr_s} (x'_j − thr'_s)   (p = 2)
   where m_s counts the duplicates of c_s in the tile (they sort next to each other); the first
   of a run writes the sum, so no two lanes write one address.

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
atomics are integer ORs, so equal inputs give bitwise equal outputs. Every memory access is
masked to the row, whatever the targets hold.
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
def _segmented_add(va, fa, vb, fb):
    # combine of an inclusive scan that restarts where a flag is set
    return tl.where(fb, vb, va + vb), fa | fb


@triton.jit
def _sum_per_bin(values, bins, hit, count, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
    """Σ values per bin (bins in [0, BLOCK_T), lanes with hit) in a fixed order: the lanes are
    sorted by bin, then a segmented scan sums each bin's run; ``count`` is the per-bin
    histogram of the same lanes."""
    lane = tl.arange(0, BLOCK_C)
    key = (tl.where(hit, bins, BLOCK_T).to(tl.int64) << 32) | lane.to(tl.int64)
    key = tl.sort(key)
    lane_s = (key & 0xFFFFFFFF).to(tl.int32)
    bin_s = (key >> 32).to(tl.int32)
    v_s = tl.gather(values, lane_s, 0)
    starts = tl.cumsum(count, 0) - count  # first sorted lane of each bin
    first = tl.gather(starts, tl.minimum(bin_s, BLOCK_T - 1), 0)
    is_start = (lane == first) & (bin_s < BLOCK_T)
    scan, _ = tl.associative_scan((v_s, is_start), 0, _segmented_add)
    last = tl.maximum(starts + count - 1, 0)
    return tl.where(count > 0, tl.gather(scan, last, 0), 0.0)


@triton.jit
def multilabel_hinge_kernel(
    x_ptr,  # (N, C) scores: float16, bfloat16, float32 or float64, any strides
    stride_xn,  # row stride of x, in elements
    stride_xc,  # column stride of x
    t_ptr,  # (N, K) targets, int32 or int64, any values (a row outside [-1, C) gets NaN)
    stride_tn,  # row stride of t
    stride_tk,  # column stride of t
    w_ptr,  # (C,) per-class weights in F (read only when HAS_WEIGHT)
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
    WANT_GRAD: tl.constexpr,  # also write d loss / d x
    HAS_SCALE: tl.constexpr,  # multiply gradient row n by scale[n] (autograd's grad_output)
    ACC_GRAD: tl.constexpr,  # half gradients: rows with several tiles accumulate in acc_ptr
    F: tl.constexpr,  # compare/accumulate dtype: tl.float64 for float64 scores, else tl.float32
    BLOCK_C: tl.constexpr,  # classes per chunk
    BLOCK_T: tl.constexpr,  # positive slots per tile (a power of two)
):
    IS_F64: tl.constexpr = tl.float64 == F
    RANK_CHUNK: tl.constexpr = 16 if BLOCK_T > 16 else BLOCK_T
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_xn
    t_row = t_ptr + row * stride_tn
    g_row = grad_ptr + row * stride_gn
    b_row = bits_ptr + row * words
    ts_row = ts_ptr + row * BLOCK_T
    cls_row = cls_ptr + row * BLOCK_T
    pre_row = pre_ptr + row * (3 * (BLOCK_T + 1))
    a_row = acc_ptr + row * C
    slot = tl.arange(0, BLOCK_T)
    lane = tl.arange(0, BLOCK_C)
    if HAS_SCALE:
        g_scale = tl.load(scale_ptr + row).to(F)
    else:
        g_scale = 1.0
    # the margin in float64, also under the interpreter (which passes the Python float)
    margin64 = tl.full([], margin, tl.float64)

    # -- T (the index of the first negative target, K when there is none) and the target check
    # A row holding any value outside [-1, C), also after the terminator, is invalid: NaN loss
    # and gradient row (DESIGN.md §4), and nothing else of it is read. One pass over the K
    # entries: the search for the terminator checks the entries it reads, the second loop the
    # rest. v keeps the targets' width, so int64 values are compared as 64-bit numbers
    # (2**32 + 1 is out of range, not class 1).
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
    n_pos = tl.where(bad_row, 0, n_pos)  # no tiles for an invalid row: it is filled below
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
    has_nan = tl.zeros([1], tl.int32)
    any_neg = tl.zeros([1], tl.int32)
    for s0 in range(0, n_pos, BLOCK_T):
        # -- 2. this tile's thresholds, sorted by (threshold, class) ---------------------------
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
            w_s = tl.load(w_ptr + c_s, mask=ok_s, other=0.0).to(F)
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

        # -- 3. every class against this tile -------------------------------------------------
        top = 1
        while top * 2 <= n_t:
            top *= 2
        hist = tl.zeros([BLOCK_T], tl.int32)  # hist[u]: negatives with u + 1 thresholds below
        hist_x = tl.zeros([BLOCK_T], F)  # ... and the sum of their x' (p = 2)
        part = tl.zeros([BLOCK_C], F)
        for j0 in range(0, C, BLOCK_C):
            cols = j0 + lane
            in_row = cols < C
            xv = tl.load(x_row + cols.to(tl.int64) * stride_xc, mask=in_row, other=0.0).to(F)
            word = tl.load(b_row + cols // 32, mask=in_row, other=0)
            neg = in_row & (((word >> (cols % 32)) & 1) == 0)
            has_nan = tl.maximum(has_nan, tl.max(((xv != xv) & in_row).to(tl.int32), 0))
            any_neg = tl.maximum(any_neg, tl.max(neg.to(tl.int32), 0))
            cnt = tl.zeros([BLOCK_C], tl.int32)
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
                part += tl.where(hit, lin, 0.0)
            else:
                # where lin is infinite so is the squared sum, but A0·x'² − 2·x'·A1 + A2 may
                # read inf − inf
                a2 = tl.load(pre_row + 2 * (BLOCK_T + 1) + cnt)
                sq = a0 * xs * xs - 2.0 * xs * a1 + a2
                part += tl.where(hit, tl.where(lin - lin == 0.0, sq, lin), 0.0)
            if WANT_GRAD:
                # the scale is applied in F, before any rounding to the gradient's dtype
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
                bins = cnt - 1
                chunk_hist = tl.histogram(bins, BLOCK_T, mask=hit)
                hist += chunk_hist
                if P == 2:
                    xs_hit = tl.where(hit, xs, 0.0)
                    hist_x += _sum_per_bin(xs_hit, bins, hit, chunk_hist, BLOCK_C, BLOCK_T)
        loss += tl.sum(part, 0)

        # -- 4. the tile's positives ---------------------------------------------------------
        if WANT_GRAD:
            tl.debug_barrier()  # the chunk loop's stores land before the read-modify-writes
            above = tl.sum(hist, 0) - (tl.cumsum(hist, 0) - hist)  # Σ_{v > s} hist over cnt
            if P == 1:
                g_pos = -w_s * above.to(F)
            else:
                # Σ_{x_j > thr_s} (x_j − thr_s) = Σ (x'_j − thr'_s), from a suffix sum over the
                # bins (a total minus a prefix would read inf − inf). Infinite where it must be:
                # a −inf thr' gives −(−inf)·above; the +inf negatives all sit in one bin, above
                # every threshold below +inf, so above_x = +inf for each s at or below it
                above_x = tl.cumsum(hist_x, 0, reverse=True)
                spread = above_x - tl.where(above > 0, thr, 0.0) * above.to(F)
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
            if ACC_GRAD and use_acc:
                pa_ptrs = a_row + c_s
                old = tl.load(pa_ptrs, mask=first, other=0.0)
                tl.store(pa_ptrs, old + m * g_pos * g_scale, mask=first)
            else:
                p_ptrs = g_row + c_s.to(tl.int64) * stride_gc
                old = tl.load(p_ptrs, mask=first, other=0.0).to(F)
                new = old + m * g_pos * g_scale
                tl.store(p_ptrs, new.to(grad_ptr.dtype.element_ty), mask=first)
        # the tiles reuse the row's scratch (ts, cls, pre, and acc): every read of this tile,
        # in every path (also loss-only), lands before the next tile's writes
        tl.debug_barrier()

    # -- rows without tiles, and the NaN rule (DESIGN.md §3) -----------------------------------
    nan_row = ((tl.max(has_nan * any_neg, 0) > 0) & (n_pos > 0)) | bad_row
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
