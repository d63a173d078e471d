// Runs kernels/cuda/multilabel_hinge.cu on the CPU, for tests on machines without a GPU.
//
// Each CUDA thread of a block is a std::thread; blocks run one after another, so __shared__
// variables become function statics. __syncthreads and the (full-warp) warp operations are
// barriers with exchange slots; atomics are std::atomic_ref. This checks the kernel's logic
// (sorting, searches, histograms, barriers, warp reductions, strides, dtypes) against the
// reference backend; it says nothing about speed.
//
// Build: g++ -std=c++20 -O1 -pthread -I kernels/cuda tests/tools/cuda_emulator.cpp
// Usage: emulator IN OUT   (binary formats: see tests/test_cuda.py)

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
  unsigned int x = 0;
};
thread_local xm_dim3 threadIdx;
xm_dim3 blockIdx;  // blocks run one at a time

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(n)
#define __shared__ static
#define XM_HOST_EMULATION 1

constexpr int kThreads = 256;
static std::barrier<>* g_block_barrier = nullptr;
static std::barrier<>* g_warp_barrier[kThreads / 32];

inline void __syncthreads() { g_block_barrier->arrive_and_wait(); }
inline void __syncwarp() { g_warp_barrier[threadIdx.x / 32]->arrive_and_wait(); }

inline int __syncthreads_or(int pred) {
  static std::atomic<int> acc;
  __syncthreads();
  if (threadIdx.x == 0) acc.store(0);
  __syncthreads();
  if (pred) acc.store(1);
  __syncthreads();
  int r = acc.load();
  __syncthreads();
  return r;
}

static long long g_warp_int[kThreads / 32][32];
static double g_warp_val[kThreads / 32][32];

inline unsigned int __match_any_sync(unsigned int, int v) {
  int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncwarp();
  g_warp_int[w][l] = v;
  __syncwarp();
  unsigned int m = 0;
  for (int i = 0; i < 32; ++i)
    if (g_warp_int[w][i] == v) m |= 1u << i;
  __syncwarp();
  return m;
}

template <typename T>
inline T __shfl_sync(unsigned int, T v, int src) {
  int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncwarp();
  g_warp_val[w][l] = (double)v;
  __syncwarp();
  T r = (T)g_warp_val[w][src];
  __syncwarp();
  return r;
}

inline int __ffs(unsigned int x) { return __builtin_ffs((int)x); }

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

template <typename To, typename From>
inline To xm_bits(From v) {
  To out;
  std::memcpy(&out, &v, sizeof(To));
  return out;
}
inline float __int_as_float(int v) { return xm_bits<float>(v); }
inline float __uint_as_float(unsigned int v) { return xm_bits<float>(v); }
inline unsigned int __float_as_uint(float v) { return xm_bits<unsigned int>(v); }
inline double __longlong_as_double(long long v) { return xm_bits<double>(v); }
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

#include "multilabel_hinge.cu"

// ------------------------------------------------------------------------------------------
struct Header {
  int64_t score_dtype;  // 0 float16, 1 bfloat16, 2 float32, 3 float64
  int64_t target_dtype;  // 0 int32, 1 int64
  int64_t n, c, k;
  int64_t sxn, sxc, stn, stk, sgn, sgc;  // strides in elements
  int64_t x_elems, t_elems, g_elems;    // buffer sizes in elements
  int64_t p, want_grad, has_weight, has_scale, has_acc;
  double margin;
};

template <typename S, typename I, typename A>
using Entry = void (*)(const S*, long long, long long, const I*, long long, long long, const A*,
                       A*, S*, long long, long long, int*, long long, const A*, A*, long long,
                       long long, double, int, int);

template <typename S, typename I, typename A>
static void run(const Header& h, FILE* in, FILE* out, Entry<S, I, A> kernel) {
  std::vector<S> x(h.x_elems);
  std::vector<I> t(h.t_elems);
  std::vector<A> w(h.c), scale(h.n), loss(h.n);
  std::vector<S> grad(std::max<int64_t>(h.g_elems, 1));
  std::fread(x.data(), sizeof(S), x.size(), in);
  std::fread(t.data(), sizeof(I), t.size(), in);
  if (h.has_weight) std::fread(w.data(), sizeof(A), w.size(), in);
  if (h.has_scale) std::fread(scale.data(), sizeof(A), scale.size(), in);
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
  for (int64_t row = 0; row < h.n; ++row) {
    blockIdx.x = (unsigned int)row;
    std::vector<std::thread> threads;
    for (int tid = 0; tid < kThreads; ++tid) {
      threads.emplace_back([&, tid] {
        threadIdx.x = tid;
        kernel(x.data(), h.sxn, h.sxc, t.data(), h.stn, h.stk, h.has_weight ? w.data() : nullptr,
               loss.data(), h.want_grad ? grad.data() : nullptr, h.sgn, h.sgc, bits.data(), words,
               h.has_scale ? scale.data() : nullptr, h.has_acc ? gacc.data() : nullptr, h.c, h.k,
               h.margin, (int)h.p, (int)h.want_grad);
      });
    }
    for (auto& th : threads) th.join();
  }
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
  const bool i64 = h.target_dtype == 1;
  switch (h.score_dtype) {
    case 0:
      i64 ? run<xm_half, long long, float>(h, in, out, xm_multilabel_hinge_f16_i64)
          : run<xm_half, int, float>(h, in, out, xm_multilabel_hinge_f16_i32);
      break;
    case 1:
      i64 ? run<xm_bfloat16, long long, float>(h, in, out, xm_multilabel_hinge_bf16_i64)
          : run<xm_bfloat16, int, float>(h, in, out, xm_multilabel_hinge_bf16_i32);
      break;
    case 2:
      i64 ? run<float, long long, float>(h, in, out, xm_multilabel_hinge_f32_i64)
          : run<float, int, float>(h, in, out, xm_multilabel_hinge_f32_i32);
      break;
    case 3:
      i64 ? run<double, long long, double>(h, in, out, xm_multilabel_hinge_f64_i64)
          : run<double, int, double>(h, in, out, xm_multilabel_hinge_f64_i32);
      break;
    default:
      return 2;
  }
  std::fclose(in);
  std::fclose(out);
  return 0;
}
