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
//
// Weights (DESIGN.md section 9): W = weight and V = neg_weight, each null, (C,) or (N, C), read
// through a row stride (0 for (C,), C for (N, C); int64 offsets); pair (t_k, j) of row n counts
// W[n, t_k] * V[n, j] * max(0, x_j - thr_k)^p. The entry points come in two sets, chosen by the
// macro XM_ENTRIES when the file is compiled:
//   bit 1 (the default), the plain set: W (C,) or null, no V; the code of before, instruction for
//         instruction (the weighted code sits behind the template flag NW, folded away when it is
//         false, and the (C,) W is the row stride 0 folded in);
//   bit 2, the weighted set (names ending in _w): W and V with their row strides; V null reads as
//         V = 1 (an (N, C) W alone).
// The launcher compiles the weighted set as a second module (-DXM_ENTRIES=2) on the first call
// that gives V or an (N, C) W, so that the other calls pay nothing for it.
//
// Weighted, the negatives: negative j's loss term and gradient are the plain ones times V_j,
//     V_j * sum_{thr_k < x_j} W_k * (x_j - thr_k)^p,   d / d x_j = V_j * A0 (p = 1),
//     V_j * 2 * (A0 * x'_j - A1) (p = 2).
// A negative with V_j == 0 forms no pair: it is selected out (hit = false) before any product, so
// it adds nothing even beside an infinite hinge (no 0 * inf), nor enters a bin; it stays a
// negative for the NaN rule.
// The positives, with x_j - thr_k = x'_j - thr'_k and the sums over negatives with V_j != 0:
//     d loss / d x[t_k] = -W_k * sum_{x_j > thr_k} V_j * p * (x'_j - thr'_k)^(p - 1)
//                       = -W_k * SV_k                        (p = 1)
//                       = -2 * W_k * (SX_k - thr'_k * SV_k)  (p = 2),
//     SV_k = sum_{x_j > thr_k} V_j,   SX_k = sum_{x_j > thr_k} V_j * x'_j;
// x_j > thr_k <=> cnt_j > k, so SV_k and SX_k are suffix sums over the bins u >= k of the per-bin
// sums of V_j and V_j * x'_j: step 4 with V_j in place of the count 1 (V = 1 gives the plain
// above_k and sum of x'_j). A -inf thr'_k with SV_k > 0 gives -inf, as in the plain kernel.
// Deterministic: the per-bin sums of V_j * x'_j (p = 2) are the plain kernel's per-warp segmented
// sums (xm_warp_bin_add) with V_j * x'_j in place of x'_j; those of V_j are fixed-point integers
// added with 64-bit integer atomics, exact and so the same in any order (xm_fixed_unit: V_j enters
// as q_j = max(1, rint(V_j * 2^k)), a suffix sum Q is read back as (A)Q * 2^-k, one rounding; its
// precision is described there). No float atomics. The 64-bit bins take 1 KiB of shared memory
// more than the counts; the split path's integer partials (flags, bins) are 64-bit as well.

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

// the bins' integer type: counts (plain) or fixed-point sums of V (weighted); no <type_traits> in
// NVRTC without headers
template <bool B, typename T, typename F>
struct xm_if {
  typedef T type;
};
template <typename T, typename F>
struct xm_if<false, T, F> {
  typedef F type;
};

// Fixed point for the weighted bins' sums of V (header): V_j enters as the integer
// q_j = max(1, rint(V_j * f)), f = 2^k, summed with 64-bit integer atomics (exact: the same in
// any order) and read back as (A)Q * g, g = 2^-k, one rounding. k = S - e, with vmax < 2^e (vmax
// the largest V of the call, which the launcher computes on the device and the kernels read from
// memory: no host sync) and S = 63 - floor(log2 C): every V_j * f < 2^S, so q_j <= 2^S, and the
// at most C of a row (all bins, all slices) sum to at most C * 2^S < 2^64: no overflow.
// Precision: rint puts q_j * g within g / 2 <= vmax * 2^-S <= vmax * C * 2^-63 of V_j; a weight
// under half a unit counts as one unit (an error below g), so that SV_k > 0 wherever a pair
// exists (a -inf threshold then gets -inf, not 0). Relative to a suffix sum of weights >= vmin
// that is at most (vmax / vmin) * C * 1.1e-19: 1e-10 for weights in [1e-3, 1e3] and C = 1000,
// 1e-9 at C = 9000, 1e-7 at C = 10^6, in the worst case (every weight of the sum vmin); the sums
// themselves are exact. float32 caps k at 126 (f and g normal), which coarsens the units only for
// vmax below about 2^-64; the floor k >= -126 only C >= 2^62 could reach.
template <typename A>
struct xm_fixed {
  A f, g;  // 2^k, 2^-k
};
__device__ __forceinline__ int xm_exponent_above(float v) {  // e with 0 <= v < 2^e
  const int b = (__float_as_int(v) >> 23) & 0xff;
  return (b > 0 ? b : 1) - 126;
}
__device__ __forceinline__ int xm_exponent_above(double v) {
  const int b = (int)((__double_as_longlong(v) >> 52) & 0x7ff);
  return (b > 0 ? b : 1) - 1022;
}
__device__ __forceinline__ float xm_pow2(int k, float) { return __int_as_float((k + 127) << 23); }
__device__ __forceinline__ double xm_pow2(int k, double) {
  return __longlong_as_double((long long)(k + 1023) << 52);
}
__device__ __forceinline__ int xm_pow2_max(float) { return 126; }  // 2^k and 2^-k both normal
__device__ __forceinline__ int xm_pow2_max(double) { return 1022; }
__device__ __forceinline__ unsigned long long xm_rint_u64(float v) { return __float2ull_rn(v); }
__device__ __forceinline__ unsigned long long xm_rint_u64(double v) { return __double2ull_rn(v); }

template <typename A>
__device__ __forceinline__ xm_fixed<A> xm_fixed_unit(const A* __restrict__ vmax, long long C) {
  const int s = 63 - (C > 1 ? 63 - __clzll(C) : 0);  // S = 63 - floor(log2 C)
  int k = s - xm_exponent_above(vmax ? *vmax : A(1));
  const int top = xm_pow2_max(A(0));
  k = k > top ? top : (k < -top ? -top : k);
  xm_fixed<A> fx;
  fx.f = xm_pow2(k, A(0));
  fx.g = xm_pow2(-k, A(0));
  return fx;
}

// V_j (> 0) in units of g: V_j * f is exact (a power of two) and < 2^S
template <typename A>
__device__ __forceinline__ unsigned long long xm_units(A v, const xm_fixed<A>& fx) {
  const unsigned long long q = xm_rint_u64(v * fx.f);
  return q ? q : 1ull;
}

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
// COUNT false (the weighted kernels, whose bins of V the caller fills): no counts.
template <bool COUNT = true, typename A, typename H>
__device__ __forceinline__ void xm_warp_bin_add(A* bins, H* hist, A* buf_v, int* buf_k,
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
  if (COUNT && hit && lane == leader) atomicAdd(&hist[cnt - 1], (H)__popc(same));
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

template <typename S, typename I, typename A, bool NW>
__device__ void multilabel_hinge_impl(
    const S* __restrict__ x, long long sxn, long long sxc,  // scores (N, C), any strides
    const I* __restrict__ t, long long stn, long long stk,  // targets (N, K), any values
    const A* __restrict__ weight, long long swn,            // W: (C,) (swn 0), (N, C) or null
    const A* __restrict__ neg_weight, long long svn,        // NW: V, (C,), (N, C) or null (1)
    const A* __restrict__ vmax,                             // NW: max V (null: 1), on the device
    A* __restrict__ loss_out,                               // (N,)
    S* __restrict__ grad, long long sgn, long long sgc,     // (N, C) or null
    int* __restrict__ bits, long long words,                // (N, words) scratch bitmap
    const A* __restrict__ scale,                            // (N,) or null: gradient factors
    A* __restrict__ gacc,  // (N, C) contiguous float32 scratch or null (half gradients, K > tile)
    long long C, long long K, double margin, int p, int want_grad) {
  typedef typename xm_if<NW, unsigned long long, int>::type H;
  __shared__ A s_cmp[XM_TILE];      // sorted thresholds for comparisons
  __shared__ A s_thr[XM_TILE];      // their classes' scores, then thr' (for sums)
  __shared__ A s_w[XM_TILE];        // their weights
  __shared__ int s_cls[XM_TILE];    // their classes
  __shared__ A s_pre[3][XM_TILE + 1];
  __shared__ A s_tmp[XM_TILE];
  // s_hist[u]: negatives with u + 1 thresholds below (NW: the sum of their V, fixed point)
  __shared__ H s_hist[XM_TILE];
  __shared__ A s_histx[XM_WARPS][XM_TILE];  // per-warp sums of their x' (NW: V * x') (p = 2)
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
  // the row's weights (a (C,) array has stride 0; the plain entries pass swn = 0, folded away)
  const A* w_row = weight ? weight + row * swn : weight;
  const A* v_row = (NW && neg_weight) ? neg_weight + row * svn : nullptr;
  xm_fixed<A> fx = {A(1), A(1)};
  if (NW) fx = xm_fixed_unit(vmax, C);

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
    xm_tile_setup<S, I, A>(x_row, sxc, t_row, stk, w_row, C, margin, s0, n_t, s_cmp, s_thr,
                           s_w, s_cls, s_pre, s_tmp, &s_piv);

    // -- 3. every class against this tile -----------------------------------------------------
    int top = 1;
    while (top * 2 <= n_t) top <<= 1;
    for (long long j0 = 0; j0 < C; j0 += XM_THREADS) {
      const long long j = j0 + tid;
      const bool in_row = j < C;
      A xv = A(0);  // the score; x' = xv - piv in the sums
      A vj = A(1);  // NW: its V
      bool neg = false;
      int cnt = 0;
      if (in_row) {
        xv = (A)xm_to_float(x_row[j * sxc]);
        neg = ((b_row[j >> 5] >> (j & 31)) & 1) == 0;
        if (NW && neg && v_row) vj = v_row[j];
        has_nan |= (xv != xv);
        any_neg |= neg;  // V = 0 included: still a negative for the NaN rule
        for (int step = top; step > 0; step >>= 1) {  // cnt = #{s_cmp[0..n_t) < xv}
          int probe = cnt + step;
          if (probe <= n_t && s_cmp[probe - 1] < xv) cnt = probe;
        }
      }
      // V = 0: no pair, selected out before any product (an infinite hinge gives no 0 * inf)
      const bool hit = neg && cnt > 0 && (!NW || vj != A(0));
      const A xs = xv - s_piv;  // x'
      A a0 = s_pre[0][cnt], a1 = s_pre[1][cnt];
      // sum W*(x' - thr') over the cnt thresholds below x. Infinite scores need no case of their
      // own: -inf thresholds sort first and are below every x > -inf, so they enter A1 as
      // W*(-inf) and lin = +inf, as each of their pairs is; x = +inf gives A0*inf - A1 = +inf;
      // +inf thresholds are below no x, so no prefix read here holds one; x = -inf has cnt = 0.
      A lin = a0 * xs - a1;
      if (hit) {
        if (p == 1) {
          loss_part += NW ? vj * lin : lin;
        } else {  // where lin is infinite so is the squared sum, which may read inf - inf
          const A sq = a0 * xs * xs - A(2) * xs * a1 + s_pre[2][cnt];
          const A term = (lin - lin == A(0)) ? sq : lin;
          loss_part += NW ? vj * term : term;
        }
      }
      if (want_grad) {
        if (in_row) {
          // the scale is applied in A (float32 for half scores), before any rounding to S
          const A d = (p == 1) ? a0 : A(2) * lin;
          A g = hit ? (NW ? vj * d : d) * g_scale : A(0);
          if (acc_row) {
            if (s0 > 0) g += acc_row[j];  // later tiles add to earlier ones, in A
            acc_row[j] = g;
          } else {
            S* gp = grad + row * sgn + j * sgc;
            if (s0 > 0) g += (A)xm_to_float(*gp);  // later tiles add to earlier ones
            *gp = xm_from<S>(g);
          }
        }
        if (NW) {  // V in fixed point (integer atomics: order-free), V * x' per warp (p = 2)
          if (hit) atomicAdd(&s_hist[cnt - 1], (H)xm_units(vj, fx));
          if (p == 2) {
            xm_warp_bin_add<false>(s_histx[warp], s_hist, s_buf_v[warp], s_buf_k[warp], hit,
                                   cnt, vj * xs);
          }
        } else if (p == 1) {
          if (hit) atomicAdd(&s_hist[cnt - 1], (H)1);  // integer atomics: order-free
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
        H h = s_hist[tid];
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
        // above_k (NW: SV_k, read back from fixed point; > 0 iff a pair exists)
        const A above = NW ? (A)s_hist[tid] * fx.g : (A)s_hist[tid];
        const A w_s = s_w[tid];
        A g_pos;
        if (p == 1) {
          g_pos = -w_s * above;
        } else {
          // sum_{x_j > thr_k} (x'_j - thr'_k) (NW: times V_j), infinite where it must be: a -inf
          // thr' gives -(-inf)*above, a +inf negative makes s_tmp (a suffix sum, never a
          // difference) +inf
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
                                    const A* __restrict__ weight, long long swn,
                                    A* __restrict__ tab, int* __restrict__ itab, long long C,
                                    long long K, double margin) {
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
  const A* w_row = weight ? weight + row * swn : weight;  // (C,): swn 0 (the plain entries)
  xm_tile_setup<S, I, A>(x_row, sxc, t_row, stk, w_row, C, margin, 0, n_t, s_cmp, s_thr, s_w,
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
// NW: vj is its V (1 without V); the bins hold V in fixed point and V * x' (the header).
template <bool NW, typename A, typename H>
__device__ __forceinline__ A xm_judge_one(xm_judge_state<A>& st, bool valid, long long j, A xv,
                                          A vj, const xm_fixed<A>& fx, const A* s_cmp,
                                          const A (*s_pre)[XM_TILE + 1], const int* s_pos,
                                          H* s_hist, A* bins, A* buf_v, int* buf_k, A piv,
                                          A g_scale, int n_t, int top, int p, int want_grad) {
  bool neg = false;
  int cnt = 0;
  if (valid) {
    while (st.next < j) {  // the classes of a thread increase: the walk never goes back
      ++st.pi;
      st.next = st.pi < n_t ? (long long)s_pos[st.pi] : 0x7fffffffffffffffLL;
    }
    neg = st.next != j;
    st.flags |= (xv != xv) ? 1 : 0;
    st.flags |= neg ? 2 : 0;  // V = 0 included: still a negative for the NaN rule
    for (int step = top; step > 0; step >>= 1) {  // cnt = #{s_cmp[0..n_t) < xv}
      const int probe = cnt + step;
      if (probe <= n_t && s_cmp[probe - 1] < xv) cnt = probe;
    }
  }
  // V = 0: no pair, selected out before any product (an infinite hinge gives no 0 * inf)
  const bool hit = neg && cnt > 0 && (!NW || vj != A(0));
  const A xs = xv - piv;
  const A a0 = s_pre[0][cnt], a1 = s_pre[1][cnt];
  const A lin = a0 * xs - a1;  // infinite scores: see the header (the same sums as above)
  if (hit) {
    if (p == 1) {
      st.loss += NW ? vj * lin : lin;
    } else {
      const A sq = a0 * xs * xs - A(2) * xs * a1 + s_pre[2][cnt];
      const A term = (lin - lin == A(0)) ? sq : lin;
      st.loss += NW ? vj * term : term;
    }
  }
  if (!want_grad) return A(0);
  if (NW) {  // V in fixed point (integer atomics: order-free), V * x' per warp (p = 2)
    if (hit) atomicAdd(&s_hist[cnt - 1], (H)xm_units(vj, fx));
    if (p == 2) xm_warp_bin_add<false>(bins, s_hist, buf_v, buf_k, hit, cnt, vj * xs);
  } else if (p == 1) {
    if (hit) atomicAdd(&s_hist[cnt - 1], (H)1);  // integer atomics: order-free
  } else {
    xm_warp_bin_add(bins, s_hist, buf_v, buf_k, hit, cnt, xs);  // counts too
  }
  if (NW) return hit ? vj * ((p == 1) ? a0 : A(2) * lin) * g_scale : A(0);
  return hit ? ((p == 1) ? a0 : A(2) * lin) * g_scale : A(0);
}

// NW: V (neg_weight, row stride svn; null: 1) and its max vmax; ipart holds the flags and the
// bins' fixed-point sums of V as 64-bit integers.
template <typename S, typename A, bool NW>
__device__ void xm_split_judge_impl(
    const S* __restrict__ x, long long sxn, long long sxc, S* __restrict__ grad, long long sgn,
    long long sgc, const A* __restrict__ scale, const A* __restrict__ neg_weight, long long svn,
    const A* __restrict__ vmax, const A* __restrict__ tab, const int* __restrict__ itab,
    A* __restrict__ part, typename xm_if<NW, unsigned long long, int>::type* __restrict__ ipart,
    long long C, int n_slices, int p, int want_grad) {
  typedef typename xm_if<NW, unsigned long long, int>::type H;
  __shared__ A s_cmp[XM_TILE];
  __shared__ A s_pre[3][XM_TILE + 1];
  __shared__ int s_pos[XM_TILE];
  __shared__ H s_hist[XM_TILE];             // counts (NW: sums of V, fixed point)
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
  const A* v_row = (NW && neg_weight) ? neg_weight + row * svn : nullptr;
  xm_fixed<A> fx = {A(1), A(1)};
  if (NW) fx = xm_fixed_unit(vmax, C);
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
    const A vj = (NW && valid && v_row) ? v_row[j] : A(1);
    const A g = xm_judge_one<NW>(st, valid, j, xv, vj, fx, s_cmp, s_pre, s_pos, s_hist, bins,
                                 buf_v, buf_k, piv, g_scale, n_t, top, p, want_grad);
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
      // V: scalar loads (V is in A, wider than the scores for half dtypes)
      const A vj = (NW && valid && v_row) ? v_row[j0 + v] : A(1);
      const A g = xm_judge_one<NW>(st, valid, j0 + v, xv, vj, fx, s_cmp, s_pre, s_pos, s_hist,
                                   bins, buf_v, buf_k, piv, g_scale, n_t, top, p, want_grad);
      out.v[v] = xm_from<S>(g);  // a positive gets 0 here; the finish writes its gradient
    }
    if (want_grad && valid) *reinterpret_cast<xm_vec<S>*>(g_row + j0) = out;
  }
  // tail (and the whole slice when not vectorised): one class per thread and step
  for (long long c0 = body_end; c0 < j_end; c0 += XM_THREADS) {
    const long long j = c0 + tid;
    const bool valid = j < j_end;
    const A xv = valid ? (A)xm_to_float(x_row[j * sxc]) : A(0);
    const A vj = (NW && valid && v_row) ? v_row[j] : A(1);
    const A g = xm_judge_one<NW>(st, valid, j, xv, vj, fx, s_cmp, s_pre, s_pos, s_hist, bins,
                                 buf_v, buf_k, piv, g_scale, n_t, top, p, want_grad);
    if (want_grad && valid) g_row[j * sgc] = xm_from<S>(g);
  }

  // the slice's partials: one fixed tree, the warps' bins in warp order
  const A total = xm_block_sum(st.loss, s_red);  // (its barriers also order s_hist, s_histx)
  const int nan_any = __syncthreads_or(st.flags & 1);
  const int neg_any = __syncthreads_or(st.flags & 2);
  A* part_row = part + (row * n_slices + slice) * XM_PART;
  H* ipart_row = ipart + (row * n_slices + slice) * XM_PART;
  if (tid == 0) {
    part_row[0] = total;
    ipart_row[0] = (H)((nan_any ? 1 : 0) | (neg_any ? 2 : 0));
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

// NW: the bins hold fixed-point sums of V (64-bit), read back with vmax's unit
template <typename S, typename A, bool NW>
__device__ void xm_split_finish_impl(
    A* __restrict__ loss_out, S* __restrict__ grad, long long sgn, long long sgc,
    const A* __restrict__ scale, const A* __restrict__ vmax, const A* __restrict__ tab,
    const int* __restrict__ itab, const A* __restrict__ part,
    const typename xm_if<NW, unsigned long long, int>::type* __restrict__ ipart, long long C,
    int n_slices, int p, int want_grad) {
  typedef typename xm_if<NW, unsigned long long, int>::type H;
  __shared__ H s_hist[XM_TILE];
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
  const H* ipart_row = ipart + row * n_slices * XM_PART;
  int flags = 0;
  for (int s = tid; s < n_slices; s += XM_THREADS) flags |= (int)ipart_row[s * XM_PART];
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
  // the bins summed over the slices in slice order (NW: integers, exact in any order)
  H h = 0;
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
    H hh = s_hist[tid];
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
    // above_k (NW: SV_k from fixed point, > 0 iff a pair exists; the judges' unit)
    const A above = NW ? (A)s_hist[tid] * xm_fixed_unit(vmax, C).g : (A)s_hist[tid];
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
// XM_ENTRIES (header, "Weights"): bit 1 the plain set (the default), bit 2 the weighted set.
#ifndef XM_ENTRIES
#define XM_ENTRIES 1
#endif

// the plain set: W (C,) or null (row stride 0), no V
#define XM_ENTRY(NAME, S, I, A)                                                               \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME(                \
      const S* x, long long sxn, long long sxc, const I* t, long long stn, long long stk,      \
      const A* weight, A* loss, S* grad, long long sgn, long long sgc, int* bits,              \
      long long words, const A* scale, A* gacc, long long C, long long K, double margin,       \
      int p, int want_grad) {                                                                 \
    multilabel_hinge_impl<S, I, A, false>(x, sxn, sxc, t, stn, stk, weight, 0, nullptr, 0,     \
                                          nullptr, loss, grad, sgn, sgc, bits, words, scale,   \
                                          gacc, C, K, margin, p, want_grad);                   \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_setup(        \
      const S* x, long long sxn, long long sxc, const I* t, long long stn, long long stk,      \
      const A* weight, A* tab, int* itab, long long C, long long K, double margin) {           \
    xm_split_setup_impl<S, I, A>(x, sxn, sxc, t, stn, stk, weight, 0, tab, itab, C, K,         \
                                 margin);                                                     \
  }

// the judge and the finish read no targets: one per score dtype
#define XM_SPLIT_ENTRY(NAME, S, A)                                                            \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_judge(        \
      const S* x, long long sxn, long long sxc, S* grad, long long sgn, long long sgc,         \
      const A* scale, const A* tab, const int* itab, A* part, int* ipart, long long C,         \
      int n_slices, int p, int want_grad) {                                                   \
    xm_split_judge_impl<S, A, false>(x, sxn, sxc, grad, sgn, sgc, scale, nullptr, 0, nullptr,  \
                                     tab, itab, part, ipart, C, n_slices, p, want_grad);       \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_finish(       \
      A* loss, S* grad, long long sgn, long long sgc, const A* scale, const A* tab,            \
      const int* itab, const A* part, const int* ipart, long long C, int n_slices, int p,      \
      int want_grad) {                                                                        \
    xm_split_finish_impl<S, A, false>(loss, grad, sgn, sgc, scale, nullptr, tab, itab, part,   \
                                      ipart, C, n_slices, p, want_grad);                      \
  }

// the weighted set: W and V each (C,) (stride 0), (N, C) (stride C) or null, vmax = max V (read on
// the device; null without V); the split path's ipart is 64-bit (flags, fixed-point bins)
#define XM_ENTRY_W(NAME, S, I, A)                                                             \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_w(            \
      const S* x, long long sxn, long long sxc, const I* t, long long stn, long long stk,      \
      const A* weight, long long swn, const A* neg_weight, long long svn, const A* vmax,       \
      A* loss, S* grad, long long sgn, long long sgc, int* bits, long long words,              \
      const A* scale, A* gacc, long long C, long long K, double margin, int p,                 \
      int want_grad) {                                                                        \
    multilabel_hinge_impl<S, I, A, true>(x, sxn, sxc, t, stn, stk, weight, swn, neg_weight,    \
                                         svn, vmax, loss, grad, sgn, sgc, bits, words, scale,  \
                                         gacc, C, K, margin, p, want_grad);                    \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_w_setup(      \
      const S* x, long long sxn, long long sxc, const I* t, long long stn, long long stk,      \
      const A* weight, long long swn, A* tab, int* itab, long long C, long long K,             \
      double margin) {                                                                        \
    xm_split_setup_impl<S, I, A>(x, sxn, sxc, t, stn, stk, weight, swn, tab, itab, C, K,       \
                                 margin);                                                     \
  }

#define XM_SPLIT_ENTRY_W(NAME, S, A)                                                          \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_w_judge(      \
      const S* x, long long sxn, long long sxc, S* grad, long long sgn, long long sgc,         \
      const A* scale, const A* neg_weight, long long svn, const A* vmax, const A* tab,         \
      const int* itab, A* part, unsigned long long* ipart, long long C, int n_slices, int p,   \
      int want_grad) {                                                                        \
    xm_split_judge_impl<S, A, true>(x, sxn, sxc, grad, sgn, sgc, scale, neg_weight, svn, vmax, \
                                    tab, itab, part, ipart, C, n_slices, p, want_grad);        \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(XM_THREADS, XM_MIN_BLOCKS) NAME##_w_finish(     \
      A* loss, S* grad, long long sgn, long long sgc, const A* scale, const A* vmax,           \
      const A* tab, const int* itab, const A* part, const unsigned long long* ipart,           \
      long long C, int n_slices, int p, int want_grad) {                                      \
    xm_split_finish_impl<S, A, true>(loss, grad, sgn, sgc, scale, vmax, tab, itab, part,       \
                                     ipart, C, n_slices, p, want_grad);                       \
  }

#define XM_ALL_ENTRIES(ENTRY, SPLIT_ENTRY)                                                    \
  ENTRY(xm_multilabel_hinge_f16_i32, xm_half, int, float)                                     \
  ENTRY(xm_multilabel_hinge_f16_i64, xm_half, long long, float)                               \
  ENTRY(xm_multilabel_hinge_bf16_i32, xm_bfloat16, int, float)                                \
  ENTRY(xm_multilabel_hinge_bf16_i64, xm_bfloat16, long long, float)                          \
  ENTRY(xm_multilabel_hinge_f32_i32, float, int, float)                                       \
  ENTRY(xm_multilabel_hinge_f32_i64, float, long long, float)                                 \
  ENTRY(xm_multilabel_hinge_f64_i32, double, int, double)                                     \
  ENTRY(xm_multilabel_hinge_f64_i64, double, long long, double)                               \
  SPLIT_ENTRY(xm_multilabel_hinge_f16, xm_half, float)                                        \
  SPLIT_ENTRY(xm_multilabel_hinge_bf16, xm_bfloat16, float)                                   \
  SPLIT_ENTRY(xm_multilabel_hinge_f32, float, float)                                          \
  SPLIT_ENTRY(xm_multilabel_hinge_f64, double, double)

#if XM_ENTRIES & 1
XM_ALL_ENTRIES(XM_ENTRY, XM_SPLIT_ENTRY)
#endif
#if XM_ENTRIES & 2
XM_ALL_ENTRIES(XM_ENTRY_W, XM_SPLIT_ENTRY_W)
#endif
