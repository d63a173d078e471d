// The pairwise multilabel hinge in CUDA C++ (device code only; the launch lives in
// xmargin/backends/cupy.py). Compiles with NVRTC (CuPy RawModule) and with nvcc; needs no
// header, so it builds wherever NVRTC runs.
//
// Two launch designs compute the same thing: one block of XM_THREADS threads per sample (row),
// described first, and the split path at the end of the file (rows cut into slices over an
// (N, S) grid, for few rows against many SMs). With x the row's scores, t its targets and
// T the number of entries before the first negative target (the positive slots, duplicates
// included), the block computes
//
//     loss = sum_{k<T} W[t_k] * sum_{j negative} max(0, x_j - thr_k)^p,   thr_k = x[t_k] - margin
//
// and, when asked, d loss / d x (times an optional per-row factor), in O(C log T + T log T)
// work (DESIGN.md section 5):
//
// 0. One pass over the K targets: T, and whether the row holds any value outside [-1, C)
//    (also after the terminator; compared in the targets' own width, so an int64 2^32 + 1 is
//    out of range, not class 1). Such a row gets loss NaN and an all-NaN gradient row (not
//    scaled), and nothing else of it is read: the targets may hold anything, the caller need
//    not validate them.
// 1. A bitmap of the row's positive classes (global scratch, integer atomicOr).
// 2. The thresholds, in tiles of XM_TILE slots, bitonic-sorted in shared memory by
//    (threshold, class) with their weights; prefix sums A0 = sum W, A1 = sum W*thr',
//    A2 = sum W*thr'^2 of the tile, with thr' = thr - piv and x' = x - piv relative to a pivot
//    per tile (the score of its median threshold, 0 if that is not finite): the sums below are
//    shift-invariant, and relative to the pivot they do not cancel when the scores are large
//    and close together.
// 3. Every class j (threads stride over the row): cnt_j = #{tile thresholds < x_j} by binary
//    search in shared memory, on the unshifted thresholds. A negative class adds
//    A0[cnt]*x'_j - A1[cnt] to the loss (p = 1; A0*x'^2 - 2*x'*A1 + A2 for p = 2) and gets
//    gradient A0[cnt] (p = 1) or 2*(A0*x' - A1) (p = 2); a histogram of cnt (counts, and for
//    p = 2 sums of x') is kept in shared memory.
// 4. The k-th sorted threshold has above_k = #{negatives x_j > thr_k} = sum_{v >= k} hist[v]
//    (x_j > thr_k <=> cnt_j > k), so its class gets -m*W*above_k (p = 1) or
//    -2*m*W*sum_{x_j > thr_k}(x'_j - thr'_k) (p = 2), m counting the class's duplicates in the
//    tile (adjacent after the sort); the first of each run writes.
//
// Infinite scores follow the definition in IEEE arithmetic (each pair W*max(0, x_j - thr_k)^p,
// counted iff x_j > thr_k): a -inf threshold (a positive at -inf) is below every x > -inf and
// enters A1 as W*(-inf), so those classes get +inf; x_j = +inf gives A0*inf - A1 = +inf; a +inf
// threshold is below nothing and a class at -inf above nothing, so they add nothing (no 0*inf
// or inf - inf reaches a result; the one form that could, A0*x'^2 - 2*x'*A1 + A2 for p = 2, is
// replaced by the infinite A0*x' - A1 where that is infinite).
//
// The margin arrives as a double and thresholds x[t_k] - margin are formed in double, as the
// float64 definition does: float16 / bfloat16 / float32 scores are compared in float32 against
// those thresholds rounded towards -inf (exact: no float32 lies strictly between a threshold and
// its rounded value) and summed in float32 (thr' rounded once from double); float64 scores use
// float64.
//
// Gradients: the per-row scale multiplies each contribution in A (float32 for half scores)
// before any rounding to the scores' dtype. A row with several tiles adds each tile's
// contribution to what the tiles before it wrote: for half scores the launcher passes a float32
// scratch (gacc, N x C) and the row's partial sums live there, rounded to the half dtype once at
// the end, so a half gradient is one rounding off the exact value. A raw half gradient (no
// scale) is what the dtype can hold: a positive with more than 65504 negatives above it
// overflows float16 to -inf; the loss layer passes its 1/C or 1/(N*C) as the scale.
//
// Barriers: the tiles reuse the shared arrays; the __syncthreads after the class loop (every
// path) orders one tile's reads before the next tile's writes, the one after step 4 (gradient
// path) its read-modify-writes of the gradient before the next tile's.
//
// Deterministic: counts use integer atomics, the sums of x' per bin are formed per warp
// (xm_warp_bin_add: a fixed tree per group of lanes in one bin) and combined in warp order,
// and every other reduction has a fixed tree. Every access is bounds-checked against the row,
// whatever the targets hold.

#define XM_THREADS 256
#define XM_WARPS (XM_THREADS / 32)
#define XM_TILE 256  // positive slots per tile: one per thread
// Every entry point is compiled for 4 resident blocks per SM (<= 64 registers a thread): the
// launcher's split heuristic counts on it, and without the bound the setup and the one-block
// kernel took 74-80 registers for unrolled sorts and scans that gain nothing from them.
#define XM_MIN_BLOCKS 4

// 16-bit storage with the layouts of __half and __nv_bfloat16 (conversions in PTX, no header)
struct xm_half {
  unsigned short bits;
};
struct xm_bfloat16 {
  unsigned short bits;
};

__device__ __forceinline__ float xm_to_float(float v) { return v; }
__device__ __forceinline__ double xm_to_float(double v) { return v; }
__device__ __forceinline__ float xm_to_float(xm_half v) {
#ifdef XM_HOST_EMULATION  // tests/tools/cuda_emulator.cpp runs this file on the CPU
  return xm_host_half_to_float(v.bits);
#else
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
#endif
}
__device__ __forceinline__ float xm_to_float(xm_bfloat16 v) {
  return __uint_as_float(((unsigned int)v.bits) << 16);
}

template <typename S> __device__ __forceinline__ S xm_from(float v);
template <typename S> __device__ __forceinline__ S xm_from(double v);
template <> __device__ __forceinline__ float xm_from<float>(float v) { return v; }
template <> __device__ __forceinline__ double xm_from<double>(double v) { return v; }
template <> __device__ __forceinline__ float xm_from<float>(double v) { return (float)v; }
template <> __device__ __forceinline__ double xm_from<double>(float v) { return v; }
template <> __device__ __forceinline__ xm_half xm_from<xm_half>(float v) {
  xm_half h;
#ifdef XM_HOST_EMULATION
  h.bits = xm_host_float_to_half(v);
#else
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(v));
#endif
  return h;
}
template <> __device__ __forceinline__ xm_bfloat16 xm_from<xm_bfloat16>(float v) {
  xm_bfloat16 b;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(XM_HOST_EMULATION)
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b.bits) : "f"(v));
#else
  unsigned int u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.bits = (unsigned short)((u >> 16) | 0x40u);  // quiet NaN
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    b.bits = (unsigned short)(u >> 16);
  }
#endif
  return b;
}

__device__ __forceinline__ float xm_inf(float) { return __int_as_float(0x7f800000); }
__device__ __forceinline__ double xm_inf(double) { return __longlong_as_double(0x7ff0000000000000LL); }
__device__ __forceinline__ float xm_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double xm_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }

// the threshold used in comparisons: float64 kept, else rounded towards -inf to float32
__device__ __forceinline__ float xm_compare_threshold(double v, float) { return __double2float_rd(v); }
__device__ __forceinline__ double xm_compare_threshold(double v, double) { return v; }

template <typename A>
__device__ __forceinline__ A xm_block_sum(A v, A* red) {
  // fixed-order tree over the block: deterministic
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = XM_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  A out = red[0];
  __syncthreads();
  return out;
}

// Inclusive prefix sum over XM_TILE values in shared memory (one per thread), fixed pattern.
template <typename A>
__device__ __forceinline__ void xm_block_scan(A* a, A* tmp) {
  for (int d = 1; d < XM_TILE; d <<= 1) {
    A v = a[threadIdx.x];
    if ((int)threadIdx.x >= d) v += a[threadIdx.x - d];
    tmp[threadIdx.x] = v;
    __syncthreads();
    a[threadIdx.x] = tmp[threadIdx.x];
    __syncthreads();
  }
}

// The p = 2 per-bin sums of x', per warp, deterministic and without 32 shuffles per element.
// The warp's hit lanes are grouped by bin (__match_any_sync) and compacted into a per-warp
// buffer, each group contiguous and in lane order (a group's offset is an exclusive scan of
// the group sizes over the leaders, its members follow by rank). A segmented inclusive scan
// (5 shuffle steps; lane i adds lane i - d only within its own segment) then leaves each
// segment's sum in its last lane, which adds it to the warp's private bin: distinct bins, no
// conflict. The tree of additions depends only on the segment's length, and each warp's bins
// are updated in its own fixed order, so the result is the same on every run. About 60 warp
// instructions per 32 classes (16 of them shuffles) where a loop over the 32 source lanes
// issues ~130 (32 shuffles, each with a test and an add), and 1 when no lane hit.
// The groups also give the counts: each group's leader adds its size to the block's count
// bins (an integer atomic, order-free), one atomic per bin and warp instead of one per hit.
template <typename A>
__device__ __forceinline__ void xm_warp_bin_add(A* bins, int* hist, A* buf_v, int* buf_k,
                                                bool hit, int cnt, A xs) {
  const unsigned int full = 0xffffffffu;
  const int lane = threadIdx.x & 31;
  const unsigned int hits = __ballot_sync(full, hit);
  if (hits == 0) return;  // warp-uniform
  const unsigned int same = __match_any_sync(full, hit ? cnt : -1 - lane);
  const int leader = __ffs(same) - 1;
  const int rank = __popc(same & ((1u << lane) - 1u));
  int off = (hit && lane == leader) ? __popc(same) : 0;
  for (int d = 1; d < 32; d <<= 1) {  // inclusive scan of the group sizes over the lanes
    const int o = __shfl_up_sync(full, off, d);
    if (lane >= d) off += o;
  }
  off -= (hit && lane == leader) ? __popc(same) : 0;  // exclusive
  off = __shfl_sync(full, off, leader);
  if (hit && lane == leader) atomicAdd(&hist[cnt - 1], __popc(same));
  if (hit) {
    buf_v[off + rank] = xs;
    buf_k[off + rank] = cnt;
  }
  __syncwarp();
  const int n_hit = __popc(hits);
  A v = lane < n_hit ? buf_v[lane] : A(0);
  const int k = lane < n_hit ? buf_k[lane] : -1 - lane;  // past the hits: keys of their own
  __syncwarp();  // the buffer is read before the next call writes it
  for (int d = 1; d < 32; d <<= 1) {  // segmented inclusive scan
    const A o = __shfl_up_sync(full, v, d);
    const int ko = __shfl_up_sync(full, k, d);
    if (lane >= d && ko == k) v += o;
  }
  const int next = __shfl_down_sync(full, k, 1);
  if (lane < n_hit && (lane == 31 || next != k)) bins[k - 1] += v;
  __syncwarp();  // this call's bin updates before the next call's
}

// The thresholds of slots [s0, s0 + n_t) of the row's targets (valid classes, n_t <= XM_TILE),
// sorted by (threshold, class) into s_cmp (comparison thresholds), s_thr (thr'), s_w, s_cls,
// with the prefix sums s_pre[m][i] (m = 0, 1, 2: sum W, W*thr', W*thr'^2 over the first i) and
// the pivot *s_piv; padding slots sort last (threshold +inf, class 0x7fffffff, W = 0). Every
// thread of the block calls it; it ends with a barrier.
template <typename S, typename I, typename A>
__device__ __forceinline__ void xm_tile_setup(
    const S* __restrict__ x_row, long long sxc, const I* __restrict__ t_row, long long stk,
    const A* __restrict__ weight, long long C, double margin, long long s0, int n_t, A* s_cmp,
    A* s_thr, A* s_w, int* s_cls, A (*s_pre)[XM_TILE + 1], A* s_tmp, A* s_piv) {
  const int tid = threadIdx.x;
  const A inf = xm_inf(A(0));
  A cmp = inf, xk = A(0), w = A(0);
  int cls = 0x7fffffff;
  if (tid < n_t) {
    long long c = (long long)t_row[(s0 + tid) * stk];
    if (c >= 0 && c < C) {  // checked above; kept so that no read depends on that check
      double xc = (double)xm_to_float(x_row[c * sxc]);
      cmp = xm_compare_threshold(xc - margin, A(0));
      xk = (A)xm_to_float(x_row[c * sxc]);
      w = weight ? weight[c] : A(1);
      cls = (int)c;
    }
  }
  s_cmp[tid] = cmp;
  s_thr[tid] = xk;
  s_w[tid] = w;
  s_cls[tid] = cls;
  __syncthreads();
  for (int size = 2; size <= XM_TILE; size <<= 1) {  // bitonic sort, one slot per thread
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      int partner = tid ^ stride;
      if (partner > tid) {
        bool up = (tid & size) == 0;
        A c0 = s_cmp[tid], c1 = s_cmp[partner];
        int k0 = s_cls[tid], k1 = s_cls[partner];
        // NaN compares false both ways: it stays put (NaN rows are overwritten below)
        bool greater = (c0 > c1) || (c0 == c1 && k0 > k1);
        if (greater == up) {
          s_cmp[tid] = c1; s_cmp[partner] = c0;
          s_cls[tid] = k1; s_cls[partner] = k0;
          A a = s_thr[tid]; s_thr[tid] = s_thr[partner]; s_thr[partner] = a;
          a = s_w[tid]; s_w[tid] = s_w[partner]; s_w[partner] = a;
        }
      }
      __syncthreads();
    }
  }
  // Sums relative to a pivot: with x' = x - piv and thr' = (x_k - piv) - margin,
  //     sum W*(x - thr)^p = sum W*(x' - thr')^p,
  // but A0*x^2 - 2*x*A1 + A2 cancels catastrophically when the scores are large and close
  // together (float32 scores ~1e3 lost 1e-2 of the loss), A0*x'^2 - 2*x'*A1' + A2' does not:
  // piv is the score of the tile's median threshold (0 if that is not finite), so x - piv is
  // exact for scores within a factor 2 of it (Sterbenz) and x', thr' are of the size of the
  // hinges. Only the sums move: every comparison uses the unshifted s_cmp.
  A piv = s_thr[(n_t - 1) >> 1];
  piv = (piv - piv == A(0)) ? piv : A(0);
  if (tid == 0) *s_piv = piv;
  const A w_s = s_w[tid];
  // thr', formed in double with the double margin and rounded once (padding slots: finite,
  // W = 0); the comparisons above use the double margin as well, as the oracle does
  const A thr_s = (A)(((double)s_thr[tid] - (double)piv) - margin);
  __syncthreads();  // every thread has read the pivot before its slot is overwritten
  s_thr[tid] = thr_s;
  s_pre[0][tid + 1] = w_s;
  s_pre[1][tid + 1] = w_s * thr_s;  // a -inf thr' gives -inf (see the header)
  s_pre[2][tid + 1] = w_s * thr_s * thr_s;
  if (tid == 0) s_pre[0][0] = s_pre[1][0] = s_pre[2][0] = A(0);
  __syncthreads();
  for (int m = 0; m < 3; ++m) {
    xm_block_scan(&s_pre[m][1], s_tmp);
  }
}

// T (the index of the first negative target, K when there is none), or -1 when the row holds
// a value outside [-1, C), also after the terminator: such a row is invalid (NaN loss and
// gradient row, DESIGN.md section 4) and nothing else of it is read. One pass over the K
// entries; v keeps the targets' width (an int64 2^32 + 1 is out of range, not class 1). Every
// thread of the block calls it; it ends with a barrier.
template <typename I>
__device__ __forceinline__ long long xm_scan_targets(const I* __restrict__ t_row, long long stk,
                                                     long long C, long long K,
                                                     long long* s_first_neg) {
  if (threadIdx.x == 0) *s_first_neg = K;
  __syncthreads();
  long long first = K;
  int bad = 0;
  // not unrolled: unrolled, this scan raised the register count of the whole kernel
#pragma unroll 1
  for (long long k = threadIdx.x; k < K; k += XM_THREADS) {
    const I v = t_row[k * stk];
    if (v < 0 && first == K) first = k;  // k grows: the thread's first is its smallest
    bad |= (v < -1) | ((long long)v >= C);
  }
  if (first < K) atomicMin(s_first_neg, first);
  if (__syncthreads_or(bad)) return -1;  // (also the barrier after the atomicMin)
  return *s_first_neg;
}

template <typename S, typename I, typename A>
__device__ void multilabel_hinge_impl(
    const S* __restrict__ x, long long sxn, long long sxc,  // scores (N, C), any strides
    const I* __restrict__ t, long long stn, long long stk,  // targets (N, K), any values
    const A* __restrict__ weight,                           // (C,) or null
    A* __restrict__ loss_out,                               // (N,)
    S* __restrict__ grad, long long sgn, long long sgc,     // (N, C) or null
    int* __restrict__ bits, long long words,                // (N, words) scratch bitmap
    const A* __restrict__ scale,                            // (N,) or null: gradient factors
    A* __restrict__ gacc,  // (N, C) contiguous float32 scratch or null (half gradients, K > tile)
    long long C, long long K, double margin, int p, int want_grad) {
  __shared__ A s_cmp[XM_TILE];      // sorted thresholds for comparisons
  __shared__ A s_thr[XM_TILE];      // their classes' scores, then thr' (for sums)
  __shared__ A s_w[XM_TILE];        // their weights
  __shared__ int s_cls[XM_TILE];    // their classes
  __shared__ A s_pre[3][XM_TILE + 1];
  __shared__ A s_tmp[XM_TILE];
  __shared__ int s_hist[XM_TILE];   // s_hist[u]: negatives with u + 1 thresholds below
  __shared__ A s_histx[XM_WARPS][XM_TILE];  // per-warp sums of their scores (p = 2)
  __shared__ A s_buf_v[XM_WARPS][32];       // per-warp compaction buffers (p = 2)
  __shared__ int s_buf_k[XM_WARPS][32];
  __shared__ A s_red[XM_THREADS];
  __shared__ long long s_first_neg;
  __shared__ A s_piv;  // the tile's pivot (below)

  const long long row = blockIdx.x;
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const S* x_row = x + row * sxn;
  const I* t_row = t + row * stn;
  int* b_row = bits + row * words;
  const A inf = xm_inf(A(0));
  const A g_scale = scale ? scale[row] : A(1);

  // -- T and the target check (xm_scan_targets) ---------------------------------------------
  const long long n_pos = xm_scan_targets(t_row, stk, C, K, &s_first_neg);
  if (n_pos < 0) {  // the whole block leaves
    const S nan = xm_from<S>(xm_nan(A(0)));  // not scaled: NaN whatever grad_scale is
    if (tid == 0) loss_out[row] = xm_nan(A(0));
    if (want_grad) {
      for (long long j = tid; j < C; j += XM_THREADS) grad[row * sgn + j * sgc] = nan;
    }
    return;
  }
  // A half gradient of a row with several tiles is summed over the tiles in float32 (gacc) and
  // rounded once at the end; otherwise the tiles add to the gradient in place (exact in float32
  // and float64, and a row with one tile writes each element once).
  A* const acc_row = (gacc && n_pos > XM_TILE) ? gacc + row * C : nullptr;

  // -- 1. bitmap of the positive classes ----------------------------------------------------
  for (long long w0 = tid; w0 < words; w0 += XM_THREADS) b_row[w0] = 0;
  __syncthreads();
  for (long long k = tid; k < n_pos; k += XM_THREADS) {
    long long c = (long long)t_row[k * stk];
    if (c >= 0 && c < C) atomicOr((unsigned int*)&b_row[c >> 5], 1u << (c & 31));
  }
  __syncthreads();

  A loss_part = A(0);
  int has_nan = 0, any_neg = 0;
  for (long long s0 = 0; s0 < n_pos; s0 += XM_TILE) {
    const int n_t = (int)min((long long)XM_TILE, n_pos - s0);
    // -- 2. the tile's thresholds, sorted by (threshold, class) ---------------------------------
    s_hist[tid] = 0;  // the previous tile is done with them (the barrier ending its loop)
    for (int wp = 0; wp < XM_WARPS; ++wp) s_histx[wp][tid] = A(0);
    xm_tile_setup<S, I, A>(x_row, sxc, t_row, stk, weight, C, margin, s0, n_t, s_cmp, s_thr,
                           s_w, s_cls, s_pre, s_tmp, &s_piv);

    // -- 3. every class against this tile -----------------------------------------------------
    int top = 1;
    while (top * 2 <= n_t) top <<= 1;
    for (long long j0 = 0; j0 < C; j0 += XM_THREADS) {
      const long long j = j0 + tid;
      const bool in_row = j < C;
      A xv = A(0);  // the score; x' = xv - piv in the sums
      bool neg = false;
      int cnt = 0;
      if (in_row) {
        xv = (A)xm_to_float(x_row[j * sxc]);
        neg = ((b_row[j >> 5] >> (j & 31)) & 1) == 0;
        has_nan |= (xv != xv);
        any_neg |= neg;
        for (int step = top; step > 0; step >>= 1) {  // cnt = #{s_cmp[0..n_t) < xv}
          int probe = cnt + step;
          if (probe <= n_t && s_cmp[probe - 1] < xv) cnt = probe;
        }
      }
      const bool hit = neg && cnt > 0;
      const A xs = xv - s_piv;  // x'
      A a0 = s_pre[0][cnt], a1 = s_pre[1][cnt];
      // sum W*(x' - thr') over the cnt thresholds below x. Infinite scores need no case of their
      // own: -inf thresholds sort first and are below every x > -inf, so they enter A1 as
      // W*(-inf) and lin = +inf, as each of their pairs is; x = +inf gives A0*inf - A1 = +inf;
      // +inf thresholds are below no x, so no prefix read here holds one; x = -inf has cnt = 0.
      A lin = a0 * xs - a1;
      if (hit) {
        if (p == 1) {
          loss_part += lin;
        } else {  // where lin is infinite so is the squared sum, which may read inf - inf
          const A sq = a0 * xs * xs - A(2) * xs * a1 + s_pre[2][cnt];
          loss_part += (lin - lin == A(0)) ? sq : lin;
        }
      }
      if (want_grad) {
        if (in_row) {
          // the scale is applied in A (float32 for half scores), before any rounding to S
          A g = hit ? ((p == 1) ? a0 : A(2) * lin) * g_scale : A(0);
          if (acc_row) {
            if (s0 > 0) g += acc_row[j];  // later tiles add to earlier ones, in A
            acc_row[j] = g;
          } else {
            S* gp = grad + row * sgn + j * sgc;
            if (s0 > 0) g += (A)xm_to_float(*gp);  // later tiles add to earlier ones
            *gp = xm_from<S>(g);
          }
        }
        if (p == 1) {
          if (hit) atomicAdd(&s_hist[cnt - 1], 1);  // integer atomics: order-free
        } else {  // counts, and per-warp sums of x' per bin (deterministic; every lane calls)
          xm_warp_bin_add(s_histx[warp], s_hist, s_buf_v[warp], s_buf_k[warp], hit, cnt, xs);
        }
      }
    }
    __syncthreads();

    // -- 4. the tile's positives -------------------------------------------------------------
    if (want_grad) {
      // suffix sums over bins: above[k] = sum_{u >= k} hist[u] (= #{cnt > k})
      A hx = A(0);
      for (int wp = 0; wp < XM_WARPS; ++wp) hx += s_histx[wp][tid];  // warp order
      s_tmp[tid] = hx;
      __syncthreads();
      // reverse inclusive scans of hist and hist_x, fixed pattern
      for (int d = 1; d < XM_TILE; d <<= 1) {
        int h = s_hist[tid];
        A v = s_tmp[tid];
        if (tid + d < XM_TILE) {
          h += s_hist[tid + d];
          v += s_tmp[tid + d];
        }
        __syncthreads();
        s_hist[tid] = h;
        s_tmp[tid] = v;
        __syncthreads();
      }
      if (tid < n_t) {
        const A above = (A)s_hist[tid];
        const A w_s = s_w[tid];
        A g_pos;
        if (p == 1) {
          g_pos = -w_s * above;
        } else {
          // sum_{x_j > thr_k} (x'_j - thr'_k), infinite where it must be: a -inf thr' gives
          // -(-inf)*above, a +inf negative makes s_tmp (a suffix sum, never a difference) +inf
          g_pos = above > A(0) ? A(-2) * w_s * (s_tmp[tid] - s_thr[tid] * above) : A(0);
        }
        const int c = s_cls[tid];
        const bool first = (tid == 0) || (s_cls[tid - 1] != c);
        if (first && c < C) {
          int m = 1;
          while (tid + m < n_t && s_cls[tid + m] == c) ++m;
          if (acc_row) {
            acc_row[c] += (A)m * g_pos * g_scale;
          } else {
            S* gp = grad + row * sgn + (long long)c * sgc;
            *gp = xm_from<S>((A)xm_to_float(*gp) + (A)m * g_pos * g_scale);
          }
        }
      }
      __syncthreads();
    }
  }

  // -- the loss, rows without tiles, and the NaN rule (DESIGN.md section 3) --------------------
  const A total = xm_block_sum(loss_part, s_red);
  const int nan_any = __syncthreads_or(has_nan);
  const int neg_any = __syncthreads_or(any_neg);
  const bool nan_row = nan_any && neg_any && n_pos > 0;
  if (tid == 0) loss_out[row] = nan_row ? xm_nan(A(0)) : total;
  if (want_grad && (n_pos == 0 || nan_row)) {
    const A fill = nan_row ? xm_nan(A(0)) : A(0);
    for (long long j = tid; j < C; j += XM_THREADS) grad[row * sgn + j * sgc] = xm_from<S>(fill);
  } else if (want_grad && acc_row) {  // the tiles' float32 sums, rounded once to S
    for (long long j = tid; j < C; j += XM_THREADS) {
      grad[row * sgn + j * sgc] = xm_from<S>(acc_row[j]);
    }
  }
}

// =============================================================================================
// The split path: a row's classes spread over S blocks (rows with at most XM_TILE positive
// slots; the launcher takes it only when K <= XM_TILE, so every row qualifies).
//
// One block per row streams the whole row in the kernel above, so N rows launch N blocks: with
// N small against the SM count (64 rows of 10^6 classes on 132 SMs) most of the GPU idles and
// each block runs ~1000 chunks in series. Here a row's work is three kernels:
//
//   setup  (grid N):     the target check, the sorted thresholds with their prefix sums and
//                        pivot, and the positives sorted by class, into a per-row table
//                        (global scratch tab/itab, layout XM_TAB_*);
//   judge  (grid N x S): block (n, s) streams slice s of row n (a contiguous range of
//                        classes): each negative's loss term and gradient, and the slice's
//                        partial loss, NaN/negative flags, per-threshold counts and (p = 2)
//                        per-threshold sums of x' into partials (N, S, XM_PART);
//   finish (grid N):     sums the S partials in slice order, writes the loss, the positives'
//                        gradient (suffix sums over the thresholds, as step 4 above) and the
//                        NaN rule.
//
// Bitwise repeatable: no float atomics; every sum has a fixed order (the slices in order, a
// fixed tree in a block, warps in order, the per-warp bin sums below). It differs from the
// one-block path only by the rounding of those sums. The positives are found without a
// bitmap: the judge walks the class-sorted positives beside its (increasing) classes, which
// costs one comparison per class and at most XM_TILE steps per thread in all.
// =============================================================================================
#define XM_PART (XM_TILE + 1)  // per (row, slice): [0] loss / flags, [1 + u] bin u
// tab (accumulation type), per row
#define XM_TAB_CMP 0                                // sorted comparison thresholds [XM_TILE]
#define XM_TAB_PRE (XM_TAB_CMP + XM_TILE)           // prefix sums [3][XM_TILE + 1]
#define XM_TAB_THR (XM_TAB_PRE + 3 * (XM_TILE + 1))  // thr' [XM_TILE]
#define XM_TAB_W (XM_TAB_THR + XM_TILE)             // weights [XM_TILE]
#define XM_TAB_PIV (XM_TAB_W + XM_TILE)             // pivot [1]
#define XM_TAB_A (XM_TAB_PIV + 1)                   // = 6 * XM_TILE + 4
// itab (int), per row
#define XM_ITAB_T 0                       // T, or -1 for an invalid row
#define XM_ITAB_CLS 1                     // classes in threshold order [XM_TILE]
#define XM_ITAB_POS (XM_ITAB_CLS + XM_TILE)  // classes in class order [XM_TILE]
#define XM_TAB_I (XM_ITAB_POS + XM_TILE)     // = 2 * XM_TILE + 1
#define XM_SLICE_ALIGN 8  // slices start at multiples of 8 classes: 16 bytes of half scores

// 16 bytes of scores (8 half, 4 float, 2 double): one vector load
template <typename S>
struct alignas(16) xm_vec {
  S v[16 / sizeof(S)];
};

template <typename S, typename I, typename A>
__device__ void xm_split_setup_impl(const S* __restrict__ x, long long sxn, long long sxc,
                                    const I* __restrict__ t, long long stn, long long stk,
                                    const A* __restrict__ weight, A* __restrict__ tab,
                                    int* __restrict__ itab, long long C, long long K,
                                    double margin) {
  __shared__ A s_cmp[XM_TILE];
  __shared__ A s_thr[XM_TILE];
  __shared__ A s_w[XM_TILE];
  __shared__ int s_cls[XM_TILE];
  __shared__ A s_pre[3][XM_TILE + 1];
  __shared__ A s_tmp[XM_TILE];
  __shared__ int s_pos[XM_TILE];
  __shared__ long long s_first_neg;
  __shared__ A s_piv;
  const long long row = blockIdx.x;
  const int tid = threadIdx.x;
  const S* x_row = x + row * sxn;
  const I* t_row = t + row * stn;
  A* tab_row = tab + row * XM_TAB_A;
  int* itab_row = itab + row * XM_TAB_I;

  const long long n_pos = xm_scan_targets(t_row, stk, C, K, &s_first_neg);
  if (n_pos < 0) {  // invalid: the judges write NaN gradients, the finish a NaN loss
    if (tid == 0) itab_row[XM_ITAB_T] = -1;
    return;
  }
  // n_pos <= K <= XM_TILE (the launcher's condition); min() keeps every access in bounds anyway
  const int n_t = (int)min((long long)XM_TILE, n_pos);
  if (n_t == 0) {  // no positives: no thresholds, every class scores 0 against them
    if (tid == 0) {
      for (int m = 0; m < 3; ++m) tab_row[XM_TAB_PRE + m * (XM_TILE + 1)] = A(0);
      tab_row[XM_TAB_PIV] = A(0);
      itab_row[XM_ITAB_T] = 0;
    }
    return;
  }
  // the positives in class order (duplicates kept; the judge's walk steps over them): slot i
  // goes to its rank #{j : (c_j, j) < (c_i, i)}, n_t shared reads (a broadcast) per thread and
  // no barrier, where a bitonic sort took 36
  int key = 0x7fffffff;
  if (tid < n_t) {
    const long long c = (long long)t_row[tid * stk];
    if (c >= 0 && c < C) key = (int)c;
  }
  s_pos[tid] = key;
  xm_tile_setup<S, I, A>(x_row, sxc, t_row, stk, weight, C, margin, 0, n_t, s_cmp, s_thr, s_w,
                         s_cls, s_pre, s_tmp, &s_piv);  // (its first barrier orders s_pos)
  if (tid < n_t) {
    int rank = 0;
    for (int j = 0; j < n_t; ++j) {
      const int other = s_pos[j];
      rank += (other < key) || (other == key && j < tid);
    }
    itab_row[XM_ITAB_POS + rank] = key;
  }
  if (tid < n_t) {
    tab_row[XM_TAB_CMP + tid] = s_cmp[tid];
    tab_row[XM_TAB_THR + tid] = s_thr[tid];
    tab_row[XM_TAB_W + tid] = s_w[tid];
    itab_row[XM_ITAB_CLS + tid] = s_cls[tid];
  }
  for (int i = tid; i <= n_t; i += XM_THREADS) {  // n_t + 1 prefix sums
    for (int m = 0; m < 3; ++m) tab_row[XM_TAB_PRE + m * (XM_TILE + 1) + i] = s_pre[m][i];
  }
  if (tid == 0) {
    tab_row[XM_TAB_PIV] = s_piv;
    itab_row[XM_ITAB_T] = n_t;
  }
}

// What a judge thread carries from class to class.
template <typename A>
struct xm_judge_state {
  A loss;          // its partial loss
  int flags;       // 1: a NaN score, 2: a negative class
  int pi;          // index of the next positive (class order) not below the current class
  long long next;  // that positive's class (LLONG_MAX past the last)
};

// One class j (valid = false: none, but the warp operations still run): the loss term and
// gradient of a negative (returned, 0 for a positive or no class), the counts and sums per bin.
template <typename A>
__device__ __forceinline__ A xm_judge_one(xm_judge_state<A>& st, bool valid, long long j, A xv,
                                          const A* s_cmp, const A (*s_pre)[XM_TILE + 1],
                                          const int* s_pos, int* s_hist, A* bins, A* buf_v,
                                          int* buf_k, A piv, A g_scale, int n_t, int top, int p,
                                          int want_grad) {
  bool neg = false;
  int cnt = 0;
  if (valid) {
    while (st.next < j) {  // the classes of a thread increase: the walk never goes back
      ++st.pi;
      st.next = st.pi < n_t ? (long long)s_pos[st.pi] : 0x7fffffffffffffffLL;
    }
    neg = st.next != j;
    st.flags |= (xv != xv) ? 1 : 0;
    st.flags |= neg ? 2 : 0;
    for (int step = top; step > 0; step >>= 1) {  // cnt = #{s_cmp[0..n_t) < xv}
      const int probe = cnt + step;
      if (probe <= n_t && s_cmp[probe - 1] < xv) cnt = probe;
    }
  }
  const bool hit = neg && cnt > 0;
  const A xs = xv - piv;
  const A a0 = s_pre[0][cnt], a1 = s_pre[1][cnt];
  const A lin = a0 * xs - a1;  // infinite scores: see the header (the same sums as above)
  if (hit) {
    if (p == 1) {
      st.loss += lin;
    } else {
      const A sq = a0 * xs * xs - A(2) * xs * a1 + s_pre[2][cnt];
      st.loss += (lin - lin == A(0)) ? sq : lin;
    }
  }
  if (!want_grad) return A(0);
  if (p == 1) {
    if (hit) atomicAdd(&s_hist[cnt - 1], 1);  // integer atomics: order-free
  } else {
    xm_warp_bin_add(bins, s_hist, buf_v, buf_k, hit, cnt, xs);  // counts too
  }
  return hit ? ((p == 1) ? a0 : A(2) * lin) * g_scale : A(0);
}

template <typename S, typename A>
__device__ void xm_split_judge_impl(const S* __restrict__ x, long long sxn, long long sxc,
                                    S* __restrict__ grad, long long sgn, long long sgc,
                                    const A* __restrict__ scale, const A* __restrict__ tab,
                                    const int* __restrict__ itab, A* __restrict__ part,
                                    int* __restrict__ ipart, long long C, int n_slices, int p,
                                    int want_grad) {
  __shared__ A s_cmp[XM_TILE];
  __shared__ A s_pre[3][XM_TILE + 1];
  __shared__ int s_pos[XM_TILE];
  __shared__ int s_hist[XM_TILE];
  __shared__ A s_histx[XM_WARPS][XM_TILE];  // per-warp bins (p = 2)
  __shared__ A s_buf_v[XM_WARPS][32];       // per-warp compaction buffers (p = 2)
  __shared__ int s_buf_k[XM_WARPS][32];
  __shared__ A s_red[XM_THREADS];
  constexpr int V = 16 / sizeof(S);
  const long long row = blockIdx.x;
  const int slice = blockIdx.y;
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const S* x_row = x + row * sxn;
  S* g_row = want_grad ? grad + row * sgn : nullptr;
  const A* tab_row = tab + row * XM_TAB_A;
  // the slice: [j_begin, j_end), slices of ceil(C / S) classes rounded up to XM_SLICE_ALIGN
  // (so that with aligned rows every slice starts on a 16-byte boundary); trailing slices may
  // be empty and then report zeros
  const long long len =
      ((C + n_slices - 1) / n_slices + XM_SLICE_ALIGN - 1) / XM_SLICE_ALIGN * XM_SLICE_ALIGN;
  const long long j_begin = min(C, (long long)slice * len);
  const long long j_end = min(C, j_begin + len);
  const int n_pos = itab[row * XM_TAB_I + XM_ITAB_T];
  if (n_pos < 0) {  // invalid row: NaN gradient (not scaled); the finish writes the NaN loss
    if (want_grad) {
      const S nan = xm_from<S>(xm_nan(A(0)));
      for (long long j = j_begin + tid; j < j_end; j += XM_THREADS) g_row[j * sgc] = nan;
    }
    return;
  }
  const int n_t = min(n_pos, XM_TILE);
  if (tid < n_t) {
    s_cmp[tid] = tab_row[XM_TAB_CMP + tid];
    s_pos[tid] = itab[row * XM_TAB_I + XM_ITAB_POS + tid];
  }
  for (int i = tid; i <= n_t; i += XM_THREADS) {  // n_t + 1 prefix sums
    for (int m = 0; m < 3; ++m) s_pre[m][i] = tab_row[XM_TAB_PRE + m * (XM_TILE + 1) + i];
  }
  s_hist[tid] = 0;
  if (p == 2 && want_grad) {
    for (int wp = 0; wp < XM_WARPS; ++wp) s_histx[wp][tid] = A(0);
  }
  const A piv = tab_row[XM_TAB_PIV];
  const A g_scale = scale ? scale[row] : A(1);
  __syncthreads();
  int top = 1;
  while (top * 2 <= n_t) top <<= 1;
  A* bins = s_histx[warp];
  A* buf_v = s_buf_v[warp];
  int* buf_k = s_buf_k[warp];

  xm_judge_state<A> st;
  st.loss = A(0);
  st.flags = 0;
  {  // the first positive not below j_begin (every thread starts there)
    int lo = 0, hi = n_t;
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if ((long long)s_pos[mid] < j_begin) lo = mid + 1; else hi = mid;
    }
    st.pi = lo;
    st.next = lo < n_t ? (long long)s_pos[lo] : 0x7fffffffffffffffLL;
  }

  // Vector loads (16 bytes per thread and access) where the scores are contiguous and the
  // gradient, if any, is contiguous with the same alignment phase: a scalar head up to the
  // first 16-byte boundary, the body in vectors, a scalar tail. Otherwise scalar throughout.
  // Every thread's classes increase from head to body to tail (the positives' walk).
  const unsigned long long phase = reinterpret_cast<unsigned long long>(x_row) ^
                                   reinterpret_cast<unsigned long long>(g_row);
  const bool vec = sxc == 1 && (!want_grad || (sgc == 1 && (phase & 15) == 0));
  long long head_end = j_begin, body_end = j_begin;
  if (vec) {
    const unsigned long long a = reinterpret_cast<unsigned long long>(x_row + j_begin);
    head_end = min(j_end, j_begin + (long long)(((16 - (a & 15)) & 15) / sizeof(S)));
    body_end = head_end + (j_end - head_end) / V * V;
  }
  // head: fewer than V classes, one per thread
  {
    const long long j = j_begin + tid;
    const bool valid = j < head_end;
    const A xv = valid ? (A)xm_to_float(x_row[j]) : A(0);
    const A g = xm_judge_one(st, valid, j, xv, s_cmp, s_pre, s_pos, s_hist, bins, buf_v, buf_k,
                             piv, g_scale, n_t, top, p, want_grad);
    if (want_grad && valid) g_row[j] = xm_from<S>(g);
  }
  // body: V classes per thread and step
  for (long long c0 = head_end; c0 < body_end; c0 += (long long)V * XM_THREADS) {
    const long long j0 = c0 + (long long)V * tid;
    const bool valid = j0 < body_end;  // then all V classes are in the slice
    xm_vec<S> in = {};
    if (valid) in = *reinterpret_cast<const xm_vec<S>*>(x_row + j0);
    xm_vec<S> out;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const A xv = valid ? (A)xm_to_float(in.v[v]) : A(0);
      const A g = xm_judge_one(st, valid, j0 + v, xv, s_cmp, s_pre, s_pos, s_hist, bins, buf_v,
                               buf_k, piv, g_scale, n_t, top, p, want_grad);
      out.v[v] = xm_from<S>(g);  // a positive gets 0 here; the finish writes its gradient
    }
    if (want_grad && valid) *reinterpret_cast<xm_vec<S>*>(g_row + j0) = out;
  }
  // tail (and the whole slice when not vectorised): one class per thread and step
  for (long long c0 = body_end; c0 < j_end; c0 += XM_THREADS) {
    const long long j = c0 + tid;
    const bool valid = j < j_end;
    const A xv = valid ? (A)xm_to_float(x_row[j * sxc]) : A(0);
    const A g = xm_judge_one(st, valid, j, xv, s_cmp, s_pre, s_pos, s_hist, bins, buf_v, buf_k,
                             piv, g_scale, n_t, top, p, want_grad);
    if (want_grad && valid) g_row[j * sgc] = xm_from<S>(g);
  }

  // the slice's partials: one fixed tree, the warps' bins in warp order
  const A total = xm_block_sum(st.loss, s_red);  // (its barriers also order s_hist, s_histx)
  const int nan_any = __syncthreads_or(st.flags & 1);
  const int neg_any = __syncthreads_or(st.flags & 2);
  A* part_row = part + (row * n_slices + slice) * XM_PART;
  int* ipart_row = ipart + (row * n_slices + slice) * XM_PART;
  if (tid == 0) {
    part_row[0] = total;
    ipart_row[0] = (nan_any ? 1 : 0) | (neg_any ? 2 : 0);
  }
  if (want_grad && tid < n_t) {
    ipart_row[1 + tid] = s_hist[tid];
    if (p == 2) {
      A hx = A(0);
      for (int wp = 0; wp < XM_WARPS; ++wp) hx += s_histx[wp][tid];
      part_row[1 + tid] = hx;
    }
  }
}

template <typename S, typename A>
__device__ void xm_split_finish_impl(A* __restrict__ loss_out, S* __restrict__ grad,
                                     long long sgn, long long sgc, const A* __restrict__ scale,
                                     const A* __restrict__ tab, const int* __restrict__ itab,
                                     const A* __restrict__ part, const int* __restrict__ ipart,
                                     long long C, int n_slices, int p, int want_grad) {
  __shared__ int s_hist[XM_TILE];
  __shared__ A s_tmp[XM_TILE];
  __shared__ int s_cls[XM_TILE];
  const long long row = blockIdx.x;
  const int tid = threadIdx.x;
  const int n_pos = itab[row * XM_TAB_I + XM_ITAB_T];
  if (n_pos < 0) {  // invalid row (the judges wrote its NaN gradient)
    if (tid == 0) loss_out[row] = xm_nan(A(0));
    return;
  }
  const int n_t = min(n_pos, XM_TILE);
  const A* tab_row = tab + row * XM_TAB_A;
  const A* part_row = part + row * n_slices * XM_PART;
  const int* ipart_row = ipart + row * n_slices * XM_PART;
  int flags = 0;
  for (int s = tid; s < n_slices; s += XM_THREADS) flags |= ipart_row[s * XM_PART];
  const int nan_any = __syncthreads_or(flags & 1);
  const int neg_any = __syncthreads_or(flags & 2);
  const bool nan_row = nan_any && neg_any && n_t > 0;
  if (tid == 0) {
    A total = A(0);
    for (int s = 0; s < n_slices; ++s) total += part_row[s * XM_PART];  // slice order
    loss_out[row] = nan_row ? xm_nan(A(0)) : total;
  }
  if (!want_grad) return;
  S* g_row = grad + row * sgn;
  if (nan_row) {  // the whole gradient row NaN, not scaled (DESIGN.md section 3)
    const S nan = xm_from<S>(xm_nan(A(0)));
    for (long long j = tid; j < C; j += XM_THREADS) g_row[j * sgc] = nan;
    return;
  }
  // the bins summed over the slices in slice order
  int h = 0;
  A hx = A(0);
  if (tid < n_t) {
    for (int s = 0; s < n_slices; ++s) {
      h += ipart_row[s * XM_PART + 1 + tid];
      if (p == 2) hx += part_row[s * XM_PART + 1 + tid];
    }
  }
  s_hist[tid] = h;
  s_tmp[tid] = hx;
  s_cls[tid] = tid < n_t ? itab[row * XM_TAB_I + XM_ITAB_CLS + tid] : 0x7fffffff;
  __syncthreads();
  // reverse inclusive scans (above[k] = #{negatives x_j > thr_k}), as step 4 of the one-block
  // kernel
  for (int d = 1; d < XM_TILE; d <<= 1) {
    int hh = s_hist[tid];
    A v = s_tmp[tid];
    if (tid + d < XM_TILE) {
      hh += s_hist[tid + d];
      v += s_tmp[tid + d];
    }
    __syncthreads();
    s_hist[tid] = hh;
    s_tmp[tid] = v;
    __syncthreads();
  }
  if (tid < n_t) {
    const A above = (A)s_hist[tid];
    const A w_s = tab_row[XM_TAB_W + tid];
    A g_pos;
    if (p == 1) {
      g_pos = -w_s * above;
    } else {
      g_pos = above > A(0) ? A(-2) * w_s * (s_tmp[tid] - tab_row[XM_TAB_THR + tid] * above)
                           : A(0);
    }
    const int c = s_cls[tid];
    const bool first = (tid == 0) || (s_cls[tid - 1] != c);
    if (first && c < C) {
      int m = 1;
      while (tid + m < n_t && s_cls[tid + m] == c) ++m;
      // A(0) + ...: the one-block kernel adds to the 0 it wrote, which turns -0 into +0
      g_row[(long long)c * sgc] = xm_from<S>(A(0) + (A)m * g_pos * (scale ? scale[row] : A(1)));
    }
  }
}

// -- entry points: score dtype x target dtype ----------------------------------------------------
#define XM_ENTRY(NAME, S, I, A)                                                              \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME(                               \
      const S* x, long long sxn, long long sxc, const I* t, long long stn, long long stk,      \
      const A* weight, A* loss, S* grad, long long sgn, long long sgc, int* bits,              \
      long long words, const A* scale, A* gacc, long long C, long long K, double margin,       \
      int p, int want_grad) {                                                                \
    multilabel_hinge_impl<S, I, A>(x, sxn, sxc, t, stn, stk, weight, loss, grad, sgn, sgc,    \
                                   bits, words, scale, gacc, C, K, margin, p, want_grad);     \
  }                                                                                          \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_setup(                       \
      const S* x, long long sxn, long long sxc, const I* t, long long stn, long long stk,      \
      const A* weight, A* tab, int* itab, long long C, long long K, double margin) {           \
    xm_split_setup_impl<S, I, A>(x, sxn, sxc, t, stn, stk, weight, tab, itab, C, K, margin);   \
  }

// the judge and the finish read no targets: one per score dtype
#define XM_SPLIT_ENTRY(NAME, S, A)                                                           \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_judge(                       \
      const S* x, long long sxn, long long sxc, S* grad, long long sgn, long long sgc,         \
      const A* scale, const A* tab, const int* itab, A* part, int* ipart, long long C,         \
      int n_slices, int p, int want_grad) {                                                  \
    xm_split_judge_impl<S, A>(x, sxn, sxc, grad, sgn, sgc, scale, tab, itab, part, ipart, C,   \
                              n_slices, p, want_grad);                                       \
  }                                                                                          \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_finish(                      \
      A* loss, S* grad, long long sgn, long long sgc, const A* scale, const A* tab,            \
      const int* itab, const A* part, const int* ipart, long long C, int n_slices, int p,      \
      int want_grad) {                                                                       \
    xm_split_finish_impl<S, A>(loss, grad, sgn, sgc, scale, tab, itab, part, ipart, C,         \
                               n_slices, p, want_grad);                                      \
  }

XM_ENTRY(xm_multilabel_hinge_f16_i32, xm_half, int, float)
XM_ENTRY(xm_multilabel_hinge_f16_i64, xm_half, long long, float)
XM_ENTRY(xm_multilabel_hinge_bf16_i32, xm_bfloat16, int, float)
XM_ENTRY(xm_multilabel_hinge_bf16_i64, xm_bfloat16, long long, float)
XM_ENTRY(xm_multilabel_hinge_f32_i32, float, int, float)
XM_ENTRY(xm_multilabel_hinge_f32_i64, float, long long, float)
XM_ENTRY(xm_multilabel_hinge_f64_i32, double, int, double)
XM_ENTRY(xm_multilabel_hinge_f64_i64, double, long long, double)
XM_SPLIT_ENTRY(xm_multilabel_hinge_f16, xm_half, float)
XM_SPLIT_ENTRY(xm_multilabel_hinge_bf16, xm_bfloat16, float)
XM_SPLIT_ENTRY(xm_multilabel_hinge_f32, float, float)
XM_SPLIT_ENTRY(xm_multilabel_hinge_f64, double, double)
