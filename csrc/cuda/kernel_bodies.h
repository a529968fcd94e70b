// Per-thread logic of the CUDA kernels, as __host__ __device__ functions of (block, thread) coordinates. The
// __global__ kernels in dropout_kernels.cu are one-line wrappers around them, and tests/cuda_emulator drives
// the same functions over every block and thread of real launch geometries on the CPU. That works because no
// body uses shared memory, synchronisation or atomics: each thread's work depends only on its coordinates.
//
// Includes only CUDA headers and our own; compiles with nvcc (device) and with a host C++ compiler.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "../dropout_math.h"
#include "../kernel_args.h"

// Loops over a thread's chunk have constant trip counts and are fully unrolled, so the per-element arrays stay
// in registers (a runtime bound would index them dynamically and spill them to local memory).
#if defined(__CUDACC__)
#define FD_UNROLL _Pragma("unroll")
#else
#define FD_UNROLL
#endif

namespace fused_dropout {
namespace cuda {

// ---- element types -----------------------------------------------------------------------------------------

FD_HOST_DEVICE float to_compute(__half v) { return __half2float(v); }
FD_HOST_DEVICE float to_compute(__nv_bfloat16 v) { return __bfloat162float(v); }
FD_HOST_DEVICE float to_compute(float v) { return v; }
FD_HOST_DEVICE double to_compute(double v) { return v; }

// Rounding to nearest even. A NaN comes out as whatever the conversion makes of it (0x7FFF for half and bfloat16).
template <typename scalar_t>
FD_HOST_DEVICE scalar_t rounded_from_compute(typename ComputeType<scalar_t>::type v);
template <>
FD_HOST_DEVICE __half rounded_from_compute<__half>(float v) { return __float2half_rn(v); }
template <>
FD_HOST_DEVICE __nv_bfloat16 rounded_from_compute<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
FD_HOST_DEVICE float rounded_from_compute<float>(float v) { return v; }
template <>
FD_HOST_DEVICE double rounded_from_compute<double>(double v) { return v; }

}  // namespace cuda

// CUDA's 16-bit element types, in the canonical-NaN rule of dropout_math.h.
template <>
struct StorageFormat<__half> : Float16Storage {};
template <>
struct StorageFormat<__nv_bfloat16> : BFloat16Storage {};

namespace cuda {

// Every value a kernel writes (output, grad_in, grad_bias) is made here: rounded once to the element type, a NaN
// written as the spec's canonical NaN.
template <typename scalar_t>
FD_HOST_DEVICE scalar_t from_compute(typename ComputeType<scalar_t>::type v) {
  return with_canonical_nan(rounded_from_compute<scalar_t>(v), v);
}

// 128-bit accesses: 8 half/bfloat16, 4 float or 2 double per load or store.
template <typename scalar_t>
constexpr int kVecWidth = static_cast<int>(16 / sizeof(scalar_t));

// Elements a thread handles per step: a multiple of 4 (whole Philox groups when the offset is a multiple of 4)
// and of the vector width.
template <typename scalar_t>
constexpr int kChunk = sizeof(scalar_t) == 8 ? 4 : 8;

template <typename scalar_t, int N>
struct alignas(sizeof(scalar_t) * N) Vec {
  scalar_t v[N];
};

// The vector path needs every streamed pointer 16-byte aligned (storage offsets can break that) and, for the
// row-tiled backward, rows that start on a vector boundary. Decided once per launch, on the host.
inline bool aligned16(const void* p) { return p == nullptr || (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// The vector-path decision, taken by launch_plan.h for the launcher and the CPU emulator of the tests alike.
template <typename scalar_t>
inline bool use_vector_path(const ForwardArgs<scalar_t>& a) {
  return aligned16(a.x) && aligned16(a.residual) && aligned16(a.out);
}

template <typename scalar_t>
inline bool use_vector_path(const BackwardArgs<scalar_t>& a) {
  const bool aligned = aligned16(a.grad) && aligned16(a.y) && aligned16(a.grad_in);
  // The row-tiled bias-gradient kernel starts every row at column 0: rows must start on a vector boundary.
  return a.grad_bias == nullptr ? aligned : aligned && a.row_len % kVecWidth<scalar_t> == 0;
}

// ---- the mask of one chunk ------------------------------------------------------------------------------

// Keep bits of elements first .. first + count - 1 (count <= kMax): bit e is element first + e. The chunk's
// elements (placed by mask_position) are covered by kMax / 4 groups when their first element uses word 0, one
// more otherwise. One Philox call per covering group.
template <int kMax>
FD_HOST_DEVICE uint32_t chunk_keep_bits(uint64_t seed, uint64_t offset, uint64_t first, int count, KeepRule rule) {
  const MaskPosition start = mask_position(offset, first);
  const uint64_t group0 = start.group;
  const int shift = start.word;
  const int groups = groups_covering(shift, count);
  uint32_t bits = 0;
  FD_UNROLL
  for (int g = 0; g < kMax / 4 + 1; ++g) {
    if (g < groups) {
      const Philox4 words = philox_group(seed, group0 + static_cast<uint64_t>(g));
      FD_UNROLL
      for (int w = 0; w < 4; ++w) {
        const int e = 4 * g + w - shift;
        if (e >= 0 && e < count && rule(words.r[w])) bits |= 1u << e;
      }
    }
  }
  return bits;
}

// ---- loads and stores of one chunk ------------------------------------------------------------------------

template <int N, bool kVec, typename scalar_t>
FD_HOST_DEVICE void load_chunk(const scalar_t* __restrict__ src, int count,
                               typename ComputeType<scalar_t>::type (&out)[N]) {
  constexpr int W = kVecWidth<scalar_t>;
  if (kVec && count == N) {
    FD_UNROLL
    for (int v = 0; v < N / W; ++v) {
      const Vec<scalar_t, W> packed = reinterpret_cast<const Vec<scalar_t, W>*>(src)[v];
      FD_UNROLL
      for (int e = 0; e < W; ++e) out[v * W + e] = to_compute(packed.v[e]);
    }
    return;
  }
  FD_UNROLL
  for (int e = 0; e < N; ++e) out[e] = e < count ? to_compute(src[e]) : 0;
}

template <int N, bool kVec, typename scalar_t>
FD_HOST_DEVICE void store_chunk(scalar_t* __restrict__ dst, int count, const scalar_t (&values)[N]) {
  constexpr int W = kVecWidth<scalar_t>;
  if (kVec && count == N) {
    FD_UNROLL
    for (int v = 0; v < N / W; ++v) {
      Vec<scalar_t, W> packed;
      FD_UNROLL
      for (int e = 0; e < W; ++e) packed.v[e] = values[v * W + e];
      reinterpret_cast<Vec<scalar_t, W>*>(dst)[v] = packed;
    }
    return;
  }
  FD_UNROLL
  for (int e = 0; e < N; ++e) {
    if (e < count) dst[e] = values[e];
  }
}

// ---- launch coordinates --------------------------------------------------------------------------------------

struct ThreadCoord {
  int64_t block;      // blockIdx.x
  int64_t block_y;    // blockIdx.y (row block of the tiled backward)
  int64_t thread;     // threadIdx.x
  int64_t block_dim;  // blockDim.x
  int64_t grid_dim;   // gridDim.x
};

// ---- forward, and the backward without bias gradient: a grid-stride loop over chunks ---------------------

// What every body reads once: the seed (from device memory; absent when the keep decision comes from y or p = 0),
// the keep rule and the scale in the compute type.
template <typename acc_t>
struct DropoutParams {
  uint64_t seed;
  uint64_t offset;
  KeepRule rule;
  acc_t scale;
  FD_HOST_DEVICE DropoutParams(const int64_t* seed_bits, uint64_t offset_value, uint64_t threshold, double scale_value)
      : seed(seed_bits != nullptr ? static_cast<uint64_t>(*seed_bits) : 0),
        offset(offset_value),
        rule(threshold),
        scale(static_cast<acc_t>(scale_value)) {}
};

// Calls fn(first, count) for this thread's chunks of N elements: chunk c covers [c * N, min((c + 1) * N, numel)).
template <int N, typename Fn>
FD_HOST_DEVICE void grid_stride_chunks(int64_t numel, const ThreadCoord& t, Fn&& fn) {
  const int64_t chunks = (numel + N - 1) / N;
  for (int64_t chunk = t.block * t.block_dim + t.thread; chunk < chunks; chunk += t.grid_dim * t.block_dim) {
    const int64_t first = chunk * N;
    fn(first, static_cast<int>(numel - first < N ? numel - first : N));
  }
}

template <typename scalar_t, typename Element, bool kVec>
FD_HOST_DEVICE void forward_thread(const ForwardArgs<scalar_t>& a, const ThreadCoord& t) {
  using acc_t = typename ComputeType<scalar_t>::type;
  constexpr int N = kChunk<scalar_t>;
  const DropoutParams<acc_t> params(a.seed, a.offset, a.threshold, a.scale);
  // The bias column of each chunk's first element, tracked across the grid-stride loop: one 64-bit modulo per
  // thread instead of one per chunk (a 64-bit modulo costs about as much as a Philox round on a GPU).
  int64_t chunk_col = 0, col_step = 0;
  if (Element::kHasBias) {
    chunk_col = (t.block * t.block_dim + t.thread) * N % a.row_len;
    col_step = t.grid_dim * t.block_dim * N % a.row_len;
  }
  grid_stride_chunks<N>(a.numel, t, [&](int64_t first, int count) {
    const uint32_t keep =
        chunk_keep_bits<N>(params.seed, params.offset, static_cast<uint64_t>(first), count, params.rule);
    acc_t x[N], residual[N];
    load_chunk<N, kVec>(a.x + first, count, x);
    if (Element::kHasResidual) load_chunk<N, kVec>(a.residual + first, count, residual);
    int64_t col = chunk_col;
    if (Element::kHasBias) {
      chunk_col += col_step;  // both below row_len, so one subtraction wraps it
      if (chunk_col >= a.row_len) chunk_col -= a.row_len;
    }
    scalar_t out[N];
    FD_UNROLL
    for (int e = 0; e < N; ++e) {
      acc_t bias = acc_t(0);
      if (Element::kHasBias) {
        bias = to_compute(a.bias[col]);
        col = col + 1 == a.row_len ? 0 : col + 1;
      }
      const acc_t r = Element::kHasResidual ? residual[e] : acc_t(0);
      out[e] = from_compute<scalar_t>(Element::apply(x[e], bias, r, ((keep >> e) & 1u) != 0, params.scale));
    }
    store_chunk<N, kVec>(a.out + first, count, out);
  });
}

// grad_in for one chunk, stored and also returned (the bias-gradient sums use the rounded values).
template <typename scalar_t, BackwardOp kOp, bool kVec>
FD_HOST_DEVICE void backward_chunk(const BackwardArgs<scalar_t>& a,
                                   const DropoutParams<typename ComputeType<scalar_t>::type>& params,
                                   int64_t first, int count, scalar_t (&grad_in)[kChunk<scalar_t>]) {
  using acc_t = typename ComputeType<scalar_t>::type;
  constexpr int N = kChunk<scalar_t>;
  uint32_t keep = 0;
  if (kKeepFromRngState<kOp>) {
    keep = chunk_keep_bits<N>(params.seed, params.offset, static_cast<uint64_t>(first), count, params.rule);
  } else {
    acc_t y[N];
    load_chunk<N, kVec>(a.y + first, count, y);
    FD_UNROLL
    for (int e = 0; e < N; ++e) keep |= (y[e] > acc_t(0) ? 1u : 0u) << e;
  }
  acc_t grad[N];
  load_chunk<N, kVec>(a.grad + first, count, grad);
  FD_UNROLL
  for (int e = 0; e < N; ++e) {
    grad_in[e] = from_compute<scalar_t>(backward_element(grad[e], ((keep >> e) & 1u) != 0, params.scale));
  }
  store_chunk<N, kVec>(a.grad_in + first, count, grad_in);
}

template <typename scalar_t, BackwardOp kOp, bool kVec>
FD_HOST_DEVICE void backward_thread(const BackwardArgs<scalar_t>& a, const ThreadCoord& t) {
  using acc_t = typename ComputeType<scalar_t>::type;
  const DropoutParams<acc_t> params(kKeepFromRngState<kOp> ? a.seed : nullptr, a.offset, a.threshold, a.scale);
  grid_stride_chunks<kChunk<scalar_t>>(a.numel, t, [&](int64_t first, int count) {
    scalar_t grad_in[kChunk<scalar_t>];
    backward_chunk<scalar_t, kOp, kVec>(a, params, first, count, grad_in);
  });
}

// ---- backward with the bias gradient: [rows, row_len] in tiles of (row block) x (block_dim * chunk columns) --

// Row blocks depend on the shape only, so the sums are the same bits on every GPU and launch. At least 32 rows
// per block keeps the partial sums a few percent of the gradient's bytes; at most 1024 row blocks.
struct BiasGradPlan {
  int64_t rows;
  int64_t rows_per_block;
  int64_t row_blocks;
};

inline BiasGradPlan plan_bias_grad(int64_t numel, int64_t row_len) {
  const int64_t rows = numel / row_len;
  int64_t rows_per_block = (rows + 1023) / 1024;
  if (rows_per_block < 32) rows_per_block = 32;
  return {rows, rows_per_block, (rows + rows_per_block - 1) / rows_per_block};
}

// Blocks of the tiled kernel along the columns (x) for `threads` threads per block; y is plan.row_blocks.
template <typename scalar_t>
inline int64_t bias_tile_column_blocks(int64_t row_len, int threads) {
  const int64_t column_threads = (row_len + kChunk<scalar_t> - 1) / kChunk<scalar_t>;
  return (column_threads + threads - 1) / threads;
}

// Each thread owns kChunk consecutive columns of one row block: it walks the block's rows, writes grad_in and
// keeps the column sums (of the rounded grad_in) in registers, then writes them to partial[row_block, col].
template <typename scalar_t, BackwardOp kOp, bool kVec>
FD_HOST_DEVICE void backward_bias_tile_thread(const BackwardArgs<scalar_t>& a, const BiasGradPlan& plan,
                                              typename ComputeType<scalar_t>::type* __restrict__ partial,
                                              const ThreadCoord& t) {
  using acc_t = typename ComputeType<scalar_t>::type;
  constexpr int N = kChunk<scalar_t>;
  const int64_t col0 = (t.block * t.block_dim + t.thread) * N;
  if (col0 >= a.row_len) return;
  const int count = static_cast<int>(a.row_len - col0 < N ? a.row_len - col0 : N);
  const DropoutParams<acc_t> params(kKeepFromRngState<kOp> ? a.seed : nullptr, a.offset, a.threshold, a.scale);
  const int64_t r0 = t.block_y * plan.rows_per_block;
  const int64_t r1 = r0 + plan.rows_per_block < plan.rows ? r0 + plan.rows_per_block : plan.rows;
  acc_t sums[N];
  FD_UNROLL
  for (int e = 0; e < N; ++e) sums[e] = acc_t(0);
  for (int64_t r = r0; r < r1; ++r) {
    scalar_t grad_in[N];
    backward_chunk<scalar_t, kOp, kVec>(a, params, r * a.row_len + col0, count, grad_in);
    FD_UNROLL
    for (int e = 0; e < N; ++e) sums[e] += e < count ? to_compute(grad_in[e]) : acc_t(0);
  }
  FD_UNROLL
  for (int e = 0; e < N; ++e) {
    if (e < count) partial[t.block_y * a.row_len + col0 + e] = sums[e];
  }
}

// grad_bias[c] = sum of partial[b, c] for b = 0, 1, ... in that order (deterministic, no atomics).
template <typename scalar_t>
FD_HOST_DEVICE void column_sum_thread(const typename ComputeType<scalar_t>::type* __restrict__ partial,
                                      int64_t row_blocks, int64_t row_len, scalar_t* __restrict__ grad_bias,
                                      const ThreadCoord& t) {
  using acc_t = typename ComputeType<scalar_t>::type;
  for (int64_t c = t.block * t.block_dim + t.thread; c < row_len; c += t.grid_dim * t.block_dim) {
    acc_t total = acc_t(0);
    for (int64_t b = 0; b < row_blocks; ++b) total += partial[b * row_len + c];
    grad_bias[c] = from_compute<scalar_t>(total);
  }
}

}  // namespace cuda
}  // namespace fused_dropout
