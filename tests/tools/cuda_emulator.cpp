// Runs kernels/cuda/multilabel_hinge.cu on the CPU, for tests on machines without a GPU.
//
// Each CUDA thread of a block is a std::thread; blocks run one after another, so __shared__
// variables become function statics. __syncthreads and the (full-warp) warp operations are
// barriers with exchange slots; atomics are std::atomic_ref. This checks the kernel's logic
// (sorting, searches, histograms, barriers, warp reductions, strides, dtypes) against the
// reference backend; it says nothing about speed. XM_ENTRIES picks the entry-point sets built
// (the kernel's macro): 1 the plain one (the default), 3 also the weighted one (neg_weight,
// (N, C) weights), which a run asks for in its header.
//
// Build: g++ -std=c++20 -O1 -pthread -I kernels/cuda tests/tools/cuda_emulator.cpp
// Usage: emulator IN OUT   (binary formats: see tests/cuda_emu.py)

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

struct xm_dim3 {
  unsigned int x = 0, y = 0;
};
thread_local xm_dim3 threadIdx;
thread_local xm_dim3 blockIdx;  // every thread runs the grid's blocks in the same order

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static
#define XM_HOST_EMULATION 1

constexpr int kThreads = 256;
static std::barrier<>* g_block_barrier = nullptr;
static std::barrier<>* g_warp_barrier[kThreads / 32];

inline void __syncthreads() { g_block_barrier->arrive_and_wait(); }
inline void __syncwarp() { g_warp_barrier[threadIdx.x / 32]->arrive_and_wait(); }

// One barrier per call: three flags used in turn (a per-thread count: every thread makes the
// same calls). After barrier k, thread 0 clears the flag of call k + 2 (call k - 1's): every
// read of it happened before barrier k, every set for call k + 2 comes after barrier k + 1.
static std::atomic<int> g_or_flags[3];  // zeroed before each launch
thread_local unsigned int g_or_turn = 0;

inline int __syncthreads_or(int pred) {
  const unsigned int i = g_or_turn++ % 3;
  if (pred) g_or_flags[i].store(1);
  __syncthreads();
  const int r = g_or_flags[i].load();
  if (threadIdx.x == 0) g_or_flags[(i + 2) % 3].store(0);
  return r;
}

// Warp exchanges: each lane writes its slot, one barrier, every lane reads the warp's slots.
// Two buffers are used in turn (a per-thread count: every lane runs the same sequence of warp
// operations), so a buffer is rewritten only after the barrier of the next exchange, by which
// time every lane has read it: one barrier per warp operation. Integers pass through double
// exactly (|v| < 2^53).
static double g_warp_xchg[2][kThreads / 32][32];
thread_local unsigned int g_warp_turn = 0;

inline const double* xm_warp_exchange(double v) {
  double* buf = g_warp_xchg[g_warp_turn++ & 1u][threadIdx.x / 32];
  buf[threadIdx.x % 32] = v;
  __syncwarp();
  return buf;
}

inline unsigned int __match_any_sync(unsigned int, int v) {
  const double* buf = xm_warp_exchange((double)v);
  unsigned int m = 0;
  for (int i = 0; i < 32; ++i)
    if (buf[i] == (double)v) m |= 1u << i;
  return m;
}

template <typename T>
inline T __shfl_sync(unsigned int, T v, int src) {
  return (T)xm_warp_exchange((double)v)[src];
}

template <typename T>
inline T __shfl_up_sync(unsigned int m, T v, unsigned int d) {
  int l = threadIdx.x % 32;
  return __shfl_sync(m, v, l >= (int)d ? l - (int)d : l);  // lanes below d keep their own
}

template <typename T>
inline T __shfl_down_sync(unsigned int m, T v, unsigned int d) {
  int l = threadIdx.x % 32;
  return __shfl_sync(m, v, l + (int)d < 32 ? l + (int)d : l);
}

inline unsigned int __ballot_sync(unsigned int, int pred) {
  const double* buf = xm_warp_exchange(pred ? 1.0 : 0.0);
  unsigned int m = 0;
  for (int i = 0; i < 32; ++i)
    if (buf[i] != 0.0) m |= 1u << i;
  return m;
}

inline int __ffs(unsigned int x) { return __builtin_ffs((int)x); }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }

inline long long atomicMin(long long* p, long long v) {
  std::atomic_ref<long long> a(*p);
  long long old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
inline unsigned int atomicOr(unsigned int* p, unsigned int v) {
  return std::atomic_ref<unsigned int>(*p).fetch_or(v);
}
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}

template <typename To, typename From>
inline To xm_bits(From v) {
  To out;
  std::memcpy(&out, &v, sizeof(To));
  return out;
}
inline float __int_as_float(int v) { return xm_bits<float>(v); }
inline float __uint_as_float(unsigned int v) { return xm_bits<float>(v); }
inline unsigned int __float_as_uint(float v) { return xm_bits<unsigned int>(v); }
inline int __float_as_int(float v) { return xm_bits<int>(v); }
inline double __longlong_as_double(long long v) { return xm_bits<double>(v); }
inline long long __double_as_longlong(double v) { return xm_bits<long long>(v); }
inline int __clzll(long long v) { return v == 0 ? 64 : __builtin_clzll((unsigned long long)v); }
// round to nearest even (the default rounding mode), as cvt.rni does
inline unsigned long long __float2ull_rn(float v) { return (unsigned long long)std::nearbyint(v); }
inline unsigned long long __double2ull_rn(double v) {
  return (unsigned long long)std::nearbyint(v);
}
inline float __double2float_rd(double v) {
  float r = (float)v;
  if ((double)r > v) r = std::nextafter(r, -INFINITY);
  return r;
}
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline float xm_host_half_to_float(unsigned short bits) { return (float)xm_bits<_Float16>(bits); }
inline unsigned short xm_host_float_to_half(float v) {
  return xm_bits<unsigned short>((_Float16)v);
}

#ifndef XM_ENTRIES
#define XM_ENTRIES 1  // -DXM_ENTRIES=3: the weighted set as well (twice the build time)
#endif
#include "multilabel_hinge.cu"
#if XM_ENTRIES & 2
#define XM_IF_WEIGHTED(...) __VA_ARGS__
#else
#define XM_IF_WEIGHTED(...) nullptr
#endif

// ------------------------------------------------------------------------------------------
struct Header {
  int64_t score_dtype;  // 0 float16, 1 bfloat16, 2 float32, 3 float64
  int64_t target_dtype;  // 0 int32, 1 int64
  int64_t n, c, k;
  int64_t sxn, sxc, stn, stk, sgn, sgc;  // strides in elements
  int64_t x_elems, t_elems, g_elems;    // buffer sizes in elements
  int64_t p, want_grad, has_weight, has_scale, has_acc;
  int64_t slices;  // 0: the one-block kernel; S >= 1: setup, judge on (N, S), finish
  double margin;
  // the weighted set: W's and V's row strides (0: (C,), C: (N, C)), V given or not (vmax: its
  // max, computed here as the launcher does on the device)
  int64_t weighted, swn, has_neg_weight, svn;
};

template <typename S, typename I, typename A>
using Entry = void (*)(const S*, long long, long long, const I*, long long, long long, const A*,
                       A*, S*, long long, long long, int*, long long, const A*, A*, long long,
                       long long, double, int, int);

template <typename S, typename I, typename A>
struct Split {
  void (*setup)(const S*, long long, long long, const I*, long long, long long, const A*, A*,
                int*, long long, long long, double);
  void (*judge)(const S*, long long, long long, S*, long long, long long, const A*, const A*,
                const int*, A*, int*, long long, int, int, int);
  void (*finish)(A*, S*, long long, long long, const A*, const A*, const int*, const A*,
                 const int*, long long, int, int, int);
};

// the weighted set (names with _w)
template <typename S, typename I, typename A>
using EntryW = void (*)(const S*, long long, long long, const I*, long long, long long, const A*,
                        long long, const A*, long long, const A*, A*, S*, long long, long long,
                        int*, long long, const A*, A*, long long, long long, double, int, int);

template <typename S, typename I, typename A>
struct SplitW {
  void (*setup)(const S*, long long, long long, const I*, long long, long long, const A*,
                long long, A*, int*, long long, long long, double);
  void (*judge)(const S*, long long, long long, S*, long long, long long, const A*, const A*,
                long long, const A*, const A*, const int*, A*, unsigned long long*, long long, int,
                int, int);
  void (*finish)(A*, S*, long long, long long, const A*, const A*, const A*, const int*,
                 const A*, const unsigned long long*, long long, int, int, int);
};

template <typename S, typename I, typename A>
static void run(const Header& h, FILE* in, FILE* out, Entry<S, I, A> kernel, Split<S, I, A> split,
                EntryW<S, I, A> kernel_w, SplitW<S, I, A> split_w) {
  std::vector<S> x(h.x_elems);
  std::vector<I> t(h.t_elems);
  // (N, C) weights when their row stride is C
  std::vector<A> w(h.swn ? h.n * h.c : h.c), v(h.svn ? h.n * h.c : h.c), scale(h.n), loss(h.n);
  std::vector<S> grad(std::max<int64_t>(h.g_elems, 1));
  std::fread(x.data(), sizeof(S), x.size(), in);
  std::fread(t.data(), sizeof(I), t.size(), in);
  if (h.has_weight) std::fread(w.data(), sizeof(A), w.size(), in);
  if (h.has_neg_weight) std::fread(v.data(), sizeof(A), v.size(), in);
  if (h.has_scale) std::fread(scale.data(), sizeof(A), scale.size(), in);
  A vmax_value = A(0);  // the launcher's V.max() (on the device there; read by the kernels)
  for (A e : v) vmax_value = std::max(vmax_value, e);
  const A* vp = h.has_neg_weight ? v.data() : nullptr;
  const A* vmax = h.has_neg_weight && !v.empty() ? &vmax_value : nullptr;
  std::fread(grad.data(), sizeof(S), h.g_elems, in);  // the caller's garbage, to be overwritten
  long long words = (h.c + 31) / 32;
  std::vector<int> bits(std::max<long long>(h.n * words, 1), 0x5a5a5a5a);  // not zeroed
  // the float32 gradient scratch of half scores (not zeroed either: NaN bits)
  std::vector<A> gacc(h.has_acc ? h.n * h.c : 1);
  std::memset(gacc.data(), 0xff, gacc.size() * sizeof(A));
  std::barrier<> block_barrier(kThreads);
  std::vector<std::barrier<>*> warps;
  for (int i = 0; i < kThreads / 32; ++i) g_warp_barrier[i] = new std::barrier<>(32);
  g_block_barrier = &block_barrier;
  // A launch: kThreads threads run every block of the grid in the same order, with a barrier
  // between blocks (the next block reuses the __shared__ statics), as a GPU running one block
  // at a time would; a kernel's blocks never wait for each other.
  auto launch = [&](unsigned int gx, unsigned int gy, auto&& body) {
    for (auto& f : g_or_flags) f.store(0);
    std::vector<std::thread> threads;
    for (int tid = 0; tid < kThreads; ++tid) {
      threads.emplace_back([&, tid] {
        threadIdx.x = tid;
        for (unsigned int by = 0; by < gy; ++by) {
          for (unsigned int bx = 0; bx < gx; ++bx) {
            blockIdx.x = bx;
            blockIdx.y = by;
            body();
            __syncthreads();
          }
        }
      });
    }
    for (auto& th : threads) th.join();
  };
  if (h.slices > 0 && h.weighted) {
    const int s = (int)h.slices;
    std::vector<A> tab(h.n * XM_TAB_A), part(h.n * s * XM_PART);
    std::vector<int> itab(h.n * XM_TAB_I);
    std::vector<unsigned long long> ipart(h.n * s * XM_PART);  // 64-bit: fixed-point bins
    std::memset(tab.data(), 0xff, tab.size() * sizeof(A));
    std::memset(part.data(), 0xff, part.size() * sizeof(A));
    std::memset(itab.data(), 0x5a, itab.size() * sizeof(int));
    std::memset(ipart.data(), 0x5a, ipart.size() * sizeof(unsigned long long));
    const A* wp = h.has_weight ? w.data() : nullptr;
    const A* sp = h.has_scale ? scale.data() : nullptr;
    S* gp = h.want_grad ? grad.data() : nullptr;
    launch((unsigned int)h.n, 1, [&] {
      split_w.setup(x.data(), h.sxn, h.sxc, t.data(), h.stn, h.stk, wp, h.swn, tab.data(),
                    itab.data(), h.c, h.k, h.margin);
    });
    launch((unsigned int)h.n, (unsigned int)s, [&] {
      split_w.judge(x.data(), h.sxn, h.sxc, gp, h.sgn, h.sgc, sp, vp, h.svn, vmax, tab.data(),
                    itab.data(), part.data(), ipart.data(), h.c, s, (int)h.p, (int)h.want_grad);
    });
    launch((unsigned int)h.n, 1, [&] {
      split_w.finish(loss.data(), gp, h.sgn, h.sgc, sp, vmax, tab.data(), itab.data(),
                     part.data(), ipart.data(), h.c, s, (int)h.p, (int)h.want_grad);
    });
    std::fwrite(loss.data(), sizeof(A), loss.size(), out);
    std::fwrite(grad.data(), sizeof(S), h.g_elems, out);
    return;
  }
  if (h.slices > 0) {
    const int s = (int)h.slices;
    // the scratch as the launcher allocates it: not initialised (bytes the kernels must not read)
    std::vector<A> tab(h.n * XM_TAB_A), part(h.n * s * XM_PART);
    std::vector<int> itab(h.n * XM_TAB_I), ipart(h.n * s * XM_PART);
    std::memset(tab.data(), 0xff, tab.size() * sizeof(A));
    std::memset(part.data(), 0xff, part.size() * sizeof(A));
    std::memset(itab.data(), 0x5a, itab.size() * sizeof(int));
    std::memset(ipart.data(), 0x5a, ipart.size() * sizeof(int));
    const A* wp = h.has_weight ? w.data() : nullptr;
    const A* sp = h.has_scale ? scale.data() : nullptr;
    S* gp = h.want_grad ? grad.data() : nullptr;
    launch((unsigned int)h.n, 1, [&] {
      split.setup(x.data(), h.sxn, h.sxc, t.data(), h.stn, h.stk, wp, tab.data(), itab.data(),
                  h.c, h.k, h.margin);
    });
    launch((unsigned int)h.n, (unsigned int)s, [&] {
      split.judge(x.data(), h.sxn, h.sxc, gp, h.sgn, h.sgc, sp, tab.data(), itab.data(),
                  part.data(), ipart.data(), h.c, s, (int)h.p, (int)h.want_grad);
    });
    launch((unsigned int)h.n, 1, [&] {
      split.finish(loss.data(), gp, h.sgn, h.sgc, sp, tab.data(), itab.data(), part.data(),
                   ipart.data(), h.c, s, (int)h.p, (int)h.want_grad);
    });
    std::fwrite(loss.data(), sizeof(A), loss.size(), out);
    std::fwrite(grad.data(), sizeof(S), h.g_elems, out);
    return;
  }
  launch((unsigned int)h.n, 1, [&] {
    if (h.weighted) {
      kernel_w(x.data(), h.sxn, h.sxc, t.data(), h.stn, h.stk, h.has_weight ? w.data() : nullptr,
               h.swn, vp, h.svn, vmax, loss.data(), h.want_grad ? grad.data() : nullptr, h.sgn,
               h.sgc, bits.data(), words, h.has_scale ? scale.data() : nullptr,
               h.has_acc ? gacc.data() : nullptr, h.c, h.k, h.margin, (int)h.p,
               (int)h.want_grad);
    } else {
      kernel(x.data(), h.sxn, h.sxc, t.data(), h.stn, h.stk, h.has_weight ? w.data() : nullptr,
             loss.data(), h.want_grad ? grad.data() : nullptr, h.sgn, h.sgc, bits.data(), words,
             h.has_scale ? scale.data() : nullptr, h.has_acc ? gacc.data() : nullptr, h.c, h.k,
             h.margin, (int)h.p, (int)h.want_grad);
    }
  });
  std::fwrite(loss.data(), sizeof(A), loss.size(), out);
  std::fwrite(grad.data(), sizeof(S), h.g_elems, out);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
    return 2;
  }
  FILE* in = std::fopen(argv[1], "rb");
  FILE* out = std::fopen(argv[2], "wb");
  if (!in || !out) return 2;
  Header h;
  if (std::fread(&h, sizeof(h), 1, in) != 1) return 2;
  if (h.weighted && !(XM_ENTRIES & 2)) {
    std::fprintf(stderr, "the weighted entry points are not built here (-DXM_ENTRIES=3)\n");
    return 3;
  }
  const bool i64 = h.target_dtype == 1;
#define XM_RUN(S, I, A, SC, TC)                                                           \
  run<S, I, A>(h, in, out, xm_multilabel_hinge_##SC##_##TC,                                \
               {xm_multilabel_hinge_##SC##_##TC##_setup, xm_multilabel_hinge_##SC##_judge,     \
                xm_multilabel_hinge_##SC##_finish},                                        \
               XM_IF_WEIGHTED(xm_multilabel_hinge_##SC##_##TC##_w),                         \
               {XM_IF_WEIGHTED(xm_multilabel_hinge_##SC##_##TC##_w_setup),                  \
                XM_IF_WEIGHTED(xm_multilabel_hinge_##SC##_w_judge),                         \
                XM_IF_WEIGHTED(xm_multilabel_hinge_##SC##_w_finish)})
  switch (h.score_dtype) {
    case 0:
      i64 ? XM_RUN(xm_half, long long, float, f16, i64) : XM_RUN(xm_half, int, float, f16, i32);
      break;
    case 1:
      i64 ? XM_RUN(xm_bfloat16, long long, float, bf16, i64)
          : XM_RUN(xm_bfloat16, int, float, bf16, i32);
      break;
    case 2:
      i64 ? XM_RUN(float, long long, float, f32, i64) : XM_RUN(float, int, float, f32, i32);
      break;
    case 3:
      i64 ? XM_RUN(double, long long, double, f64, i64) : XM_RUN(double, int, double, f64, i32);
      break;
    default:
      return 2;
  }
  std::fclose(in);
  std::fclose(out);
  return 0;
}
