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
#include <string.h>

#include <type_traits>

#include "../dropout_math.h"
#include "../kernel_args.h"

// Loops over a thread's chunk have constant trip counts and are fully unrolled, so the per-element arrays stay
// in registers (a runtime bound would index them dynamically and spill them to local memory).
#if defined(__CUDACC__)
#define FD_UNROLL _Pragma("unroll")
#else
#define FD_UNROLL
#endif
// A loop kept rolled: one copy of a costly body (a Philox call) whose results go to a bit mask, not to an array.
#if defined(__CUDACC__)
#define FD_NO_UNROLL _Pragma("unroll 1")
#else
#define FD_NO_UNROLL
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

// Rounds a chunk of compute-type values to the element type, as from_compute does element by element. The
// 16-bit types convert in pairs (one F2FP per two elements); whether any value is a NaN is one unordered compare
// per pair, and only a chunk holding a NaN pays for the canonical-NaN fix.
FD_HOST_DEVICE void round_pair(float a, float b, __half* out) {
  const __half2 pair = __floats2half2_rn(a, b);
  memcpy(out, &pair, sizeof(pair));
}
FD_HOST_DEVICE void round_pair(float a, float b, __nv_bfloat16* out) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(a, b);
  memcpy(out, &pair, sizeof(pair));
}

template <typename scalar_t, int N>
FD_HOST_DEVICE void round_chunk(const typename ComputeType<scalar_t>::type (&v)[N], scalar_t (&out)[N]) {
  if constexpr (sizeof(scalar_t) == 2) {
    static_assert(N % 2 == 0, "16-bit chunks convert in pairs");
    bool any_nan = false;
    FD_UNROLL
    for (int e = 0; e < N; e += 2) {
      round_pair(v[e], v[e + 1], &out[e]);
      any_nan |= !(v[e] == v[e] && v[e + 1] == v[e + 1]);
    }
    if (any_nan) {
      FD_UNROLL
      for (int e = 0; e < N; ++e) out[e] = with_canonical_nan(out[e], v[e]);
    }
  } else {
    FD_UNROLL
    for (int e = 0; e < N; ++e) out[e] = from_compute<scalar_t>(v[e]);
  }
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
  // The bias is read a vector at a time too, when its rows hold whole chunks.
  return aligned16(a.x) && aligned16(a.residual) && aligned16(a.out) && aligned16(a.bias);
}

template <typename scalar_t>
inline bool use_vector_path(const BackwardArgs<scalar_t>& a) {
  const bool aligned = aligned16(a.grad) && aligned16(a.y) && aligned16(a.grad_in) && aligned16(a.x) &&
                       aligned16(a.bias);
  // The row-tiled bias-gradient kernel starts every row at column 0, and a saved bias is read a vector at a time:
  // rows must start on a vector boundary.
  const bool rows_by_vectors = a.grad_bias == nullptr && a.bias == nullptr;
  return rows_by_vectors ? aligned : aligned && a.row_len % kVecWidth<scalar_t> == 0;
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

// Keep flags of a chunk whose elements are exactly N / 4 whole Philox groups (offset and first both multiples of
// 4): element e is word e % 4 of group group0 + e / 4. The fast path of every body: no per-element bookkeeping.
template <int N>
FD_HOST_DEVICE void whole_group_keep(const PhiloxKeySchedule& keys, uint64_t group0, KeepRule rule, bool (&keep)[N]) {
  static_assert(N % 4 == 0, "a chunk of whole groups");
  FD_UNROLL
  for (int g = 0; g < N / 4; ++g) {
    const Philox4 words = philox_group(keys, group0 + static_cast<uint64_t>(g));
    FD_UNROLL
    for (int w = 0; w < 4; ++w) keep[4 * g + w] = rule(words.r[w]);
  }
}

template <int N>
FD_HOST_DEVICE void keep_flags_of(uint32_t bits, bool (&keep)[N]) {
  FD_UNROLL
  for (int e = 0; e < N; ++e) keep[e] = ((bits >> e) & 1u) != 0;
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

// The mask of the fast path: when the offset is a multiple of 4, a chunk starting at a multiple of 4 is made of
// whole Philox groups. The seed's key schedule is computed once per thread.
struct WholeGroupMask {
  PhiloxKeySchedule keys;
  uint64_t group_base;  // the group of element 0
  KeepRule rule;
  template <typename acc_t>
  FD_HOST_DEVICE explicit WholeGroupMask(const DropoutParams<acc_t>& p)
      : keys(p.seed), group_base(p.offset >> 2), rule(p.rule) {}
  template <typename acc_t>
  FD_HOST_DEVICE static bool applies(const DropoutParams<acc_t>& p) {
    return (p.offset & 3u) == 0;
  }
  // Keep flags of elements first .. first + N - 1, first a multiple of 4.
  template <int N>
  FD_HOST_DEVICE void keep(int64_t first, bool (&flags)[N]) const {
    whole_group_keep<N>(keys, group_base + (static_cast<uint64_t>(first) >> 2), rule, flags);
  }
};

// Keep flags of any chunk (any offset, count <= N): the general path.
template <int N, typename acc_t>
FD_HOST_DEVICE void general_keep(const DropoutParams<acc_t>& p, int64_t first, int count, bool (&flags)[N]) {
  keep_flags_of<N>(chunk_keep_bits<N>(p.seed, p.offset, static_cast<uint64_t>(first), count, p.rule), flags);
}

// ---- the mask of any chunk, by geometry: the flat mask or the runs of mask_runs.h -------------------------------
//
// A body takes the keep flags of every chunk off its fast path (WholeGroupMask) from one of these two policies,
// chosen at compile time: the flat kernels are instantiated with FlatChunkMask alone, so the runs cost them
// nothing, and the runs kernels (a separate instantiation, picked by launch_plan.h when the launch has runs) with
// RunsChunkMask. Both take (first, count <= N) and fill flags[0 .. N).

// The flat mask: element e uses the word of offset + e.
template <typename acc_t>
struct FlatChunkMask {
  const DropoutParams<acc_t>& params;
  FD_HOST_DEVICE FlatChunkMask(const DropoutParams<acc_t>& p, const MaskRuns&) : params(p) {}
  template <int N>
  FD_HOST_DEVICE void keep(int64_t first, int count, bool (&flags)[N]) const {
    general_keep<N>(params, first, count, flags);
  }
};

// The keep decision of mask index g alone: word g & 3 of Philox group g >> 2. The word is selected rather than
// indexed, so the group's four words stay in registers.
FD_HOST_DEVICE bool index_keep(uint64_t seed, uint64_t g, KeepRule rule) {
  const MaskPosition at = mask_position(g, 0);
  const Philox4 words = philox_group(seed, at.group);
  uint32_t word = words.r[0];
  FD_UNROLL
  for (int w = 1; w < 4; ++w) word = at.word == w ? words.r[w] : word;
  return rule(word);
}

// A geometry with runs: element e uses the word of offset + m(e) (mask_index). A chunk is cut where it crosses from
// one innermost run to the next (not at all when the innermost extent is a multiple of the chunk); along one run
// the mask indices step by the run's stride from m(first of the piece), so each piece costs one mask_index and
// - stride 1: the Philox groups of its consecutive words (the flat rule's chunk_keep_bits at offset + m),
// - stride 0: ONE Philox group, whose decision every element of the piece shares (DropPath's samples, channel
//   dropout's channels),
// - any other stride: one Philox group per element.
// The loops stay rolled: unrolled, their Philox calls and 64-bit divisions (function calls on a GPU) would make
// each runs kernel several times the size of its flat kernel.
template <typename acc_t>
struct RunsChunkMask {
  const DropoutParams<acc_t>& params;
  const MaskRuns& runs;
  FD_HOST_DEVICE RunsChunkMask(const DropoutParams<acc_t>& p, const MaskRuns& r) : params(p), runs(r) {}

  template <int N>
  FD_HOST_DEVICE void keep(int64_t first, int count, bool (&flags)[N]) const {
    const int64_t inner_extent = runs.inner_extent();
    uint32_t bits = 0;
    FD_NO_UNROLL
    for (int done = 0; done < count;) {
      const int64_t e = first + done;
      const int64_t left_in_run = inner_extent - e % inner_extent;
      const int n = left_in_run < count - done ? static_cast<int>(left_in_run) : count - done;
      bits |= run_piece_bits<N>(params.offset + mask_index(runs, e), n) << done;
      done += n;
    }
    keep_flags_of<N>(bits, flags);
  }

  // Keep bits of n <= N consecutive elements of one innermost run, the first one's mask word at g.
  template <int N>
  FD_HOST_DEVICE uint32_t run_piece_bits(uint64_t g, int n) const {
    const int64_t stride = runs.inner_stride();
    if (stride == 1) return chunk_keep_bits<N>(params.seed, g, 0, n, params.rule);
    if (stride == 0) return index_keep(params.seed, g, params.rule) ? (1u << n) - 1u : 0u;
    uint32_t bits = 0;
    FD_NO_UNROLL
    for (int k = 0; k < n; ++k) {
      bits |= static_cast<uint32_t>(index_keep(params.seed, g + static_cast<uint64_t>(k * stride), params.rule)) << k;
    }
    return bits;
  }
};

template <bool kRuns, typename acc_t>
using ChunkMask = typename std::conditional<kRuns, RunsChunkMask<acc_t>, FlatChunkMask<acc_t>>::type;

// This thread's chunks of N elements in grid-stride order (chunk c covers [c * N, min((c + 1) * N, numel))).
// With `fast`, its whole chunks go to whole(first); the rest (all of them without `fast`, else at most the last,
// partial one) go to partial(first, count), after one call of partial_start(first) with the first of them.
template <int N, typename Whole, typename PartialStart, typename Partial>
FD_HOST_DEVICE void grid_stride_chunks(int64_t numel, const ThreadCoord& t, bool fast, Whole&& whole,
                                       PartialStart&& partial_start, Partial&& partial) {
  const int64_t stride = t.grid_dim * t.block_dim;
  int64_t chunk = t.block * t.block_dim + t.thread;
  if (fast) {
    for (const int64_t whole_chunks = numel / N; chunk < whole_chunks; chunk += stride) whole(chunk * N);
  }
  const int64_t chunks = (numel + N - 1) / N;
  if (chunk < chunks) partial_start(chunk * N);
  for (; chunk < chunks; chunk += stride) {
    const int64_t first = chunk * N;
    partial(first, static_cast<int>(numel - first < N ? numel - first : N));
  }
}

// One chunk of the forward given its keep flags; bias_at(e) gives element e's bias (called in element order, only
// for ops with a bias). The loads and stores are 128-bit on the vector path when the chunk is whole (count == N,
// a constant on the fast path).
template <typename scalar_t, typename Element, bool kVec, int N, typename acc_t, typename BiasAt>
FD_HOST_DEVICE void forward_chunk(const ForwardArgs<scalar_t>& a, acc_t scale, int64_t first, int count,
                                  const bool (&keep)[N], BiasAt&& bias_at) {
  acc_t x[N], residual[N], value[N];
  load_chunk<N, kVec>(a.x + first, count, x);
  if (Element::kHasResidual) load_chunk<N, kVec>(a.residual + first, count, residual);
  FD_UNROLL
  for (int e = 0; e < N; ++e) {
    const acc_t bias = Element::kHasBias ? bias_at(e) : acc_t(0);
    value[e] = Element::apply(x[e], bias, Element::kHasResidual ? residual[e] : acc_t(0), keep[e], scale);
  }
  scalar_t out[N];
  round_chunk<scalar_t>(value, out);
  store_chunk<N, kVec>(a.out + first, count, out);
}

// Whether bias rows hold whole chunks (so a chunk's bias is one contiguous run, read like x) with columns that fit
// 32 bits.
template <int N>
FD_HOST_DEVICE bool rows_hold_whole_chunks(int64_t row_len) {
  return row_len % N == 0 && row_len <= INT32_MAX;
}

// kRuns: the mask of a geometry with runs (a.runs, RunsChunkMask) for every chunk; else the flat mask, whole
// groups on the fast path.
template <typename scalar_t, typename Element, bool kVec, bool kRuns = false>
FD_HOST_DEVICE void forward_thread(const ForwardArgs<scalar_t>& a, const ThreadCoord& t) {
  using acc_t = typename ComputeType<scalar_t>::type;
  constexpr int N = kChunk<scalar_t>;
  const DropoutParams<acc_t> params(a.seed, a.offset, a.threshold, a.scale);
  // With a bias, the fast path reads it a vector per chunk: the scalar path (misaligned pointers) keeps the general
  // per-element bias walk, which needs fewer registers.
  const bool fast = !kRuns && WholeGroupMask::applies(params) &&
                    (!Element::kHasBias || (kVec && rows_hold_whole_chunks<N>(a.row_len)));
  const int64_t stride_elements = t.grid_dim * t.block_dim * N;
  const int64_t thread_first = (t.block * t.block_dim + t.thread) * N;
  // Bias columns are tracked across the grid-stride loop: one 64-bit modulo per thread and path instead of one
  // per chunk (a 64-bit modulo costs about as much as a Philox round on a GPU). Both stay below row_len, so one
  // subtraction wraps their sum.
  int64_t col_step = 0;
  if (Element::kHasBias) col_step = stride_elements % a.row_len;

  const WholeGroupMask mask(params);
  int32_t fast_col = 0;
  if (Element::kHasBias && fast) fast_col = static_cast<int32_t>(thread_first % a.row_len);
  auto whole = [&](int64_t first) {
    bool keep[N];
    mask.keep<N>(first, keep);
    acc_t bias[N];
    if (Element::kHasBias) {
      load_chunk<N, kVec>(a.bias + fast_col, N, bias);
      fast_col += static_cast<int32_t>(col_step);
      if (fast_col >= static_cast<int32_t>(a.row_len)) fast_col -= static_cast<int32_t>(a.row_len);
    }
    forward_chunk<scalar_t, Element, kVec>(a, params.scale, first, N, keep, [&](int e) { return bias[e]; });
  };

  const ChunkMask<kRuns, acc_t> chunk_mask(params, a.runs);
  int64_t chunk_col = 0;  // the bias column of the partial chunk's first element
  auto partial_start = [&](int64_t first) {
    if (Element::kHasBias) chunk_col = first % a.row_len;
  };
  auto partial = [&](int64_t first, int count) {
    bool keep[N];
    chunk_mask.template keep<N>(first, count, keep);
    int64_t col = 0;
    if (Element::kHasBias) {
      col = chunk_col;
      chunk_col += col_step;
      if (chunk_col >= a.row_len) chunk_col -= a.row_len;
    }
    forward_chunk<scalar_t, Element, kVec>(a, params.scale, first, count, keep, [&](int) {
      const acc_t bias = to_compute(a.bias[col]);
      col = col + 1 == a.row_len ? 0 : col + 1;
      return bias;
    });
  };
  grid_stride_chunks<N>(a.numel, t, fast, whole, partial_start, partial);
}

// grad_in for one chunk given its keep flags (mask_bwd, *_input_bwd; relu_output_bwd reads y instead), stored and
// also returned (the bias-gradient sums use the rounded values). The ops that save their input multiply by the
// activation's derivative at x + bias, bias_at(e) giving element e's bias (called in element order, only when the
// op saved a bias).
template <typename scalar_t, BackwardOp kOp, bool kVec, int N, typename BiasAt>
FD_HOST_DEVICE void backward_chunk(const BackwardArgs<scalar_t>& a, typename ComputeType<scalar_t>::type scale,
                                   int64_t first, int count, const bool (&mask_keep)[N], scalar_t (&grad_in)[N],
                                   BiasAt&& bias_at) {
  using acc_t = typename ComputeType<scalar_t>::type;
  bool keep[N];
  if (kKeepFromRngState<kOp>) {
    FD_UNROLL
    for (int e = 0; e < N; ++e) keep[e] = mask_keep[e];
  } else {
    acc_t y[N];
    load_chunk<N, kVec>(a.y + first, count, y);
    FD_UNROLL
    for (int e = 0; e < N; ++e) keep[e] = y[e] > acc_t(0);
  }
  acc_t grad[N], value[N];
  load_chunk<N, kVec>(a.grad + first, count, grad);
  if constexpr (kSavesInput<kOp>) {
    using Activation = typename BackwardOpTraits<kOp>::Activation;
    acc_t x[N];
    load_chunk<N, kVec>(a.x + first, count, x);
    const bool has_bias = a.bias != nullptr;
    FD_UNROLL
    for (int e = 0; e < N; ++e) {
      const acc_t v = has_bias ? fd_add(x[e], bias_at(e)) : x[e];
      value[e] = backward_element_through<Activation>(grad[e], keep[e], scale, v);
    }
  } else {
    FD_UNROLL
    for (int e = 0; e < N; ++e) value[e] = backward_element(grad[e], keep[e], scale);
  }
  round_chunk<scalar_t>(value, grad_in);
  store_chunk<N, kVec>(a.grad_in + first, count, grad_in);
}

// The keep flags backward_chunk takes from the mask: whole groups on the fast path, the chunk mask (flat or
// runs) otherwise, nothing when the keep decision comes from y.
template <BackwardOp kOp, int N, typename AnyChunkMask>
FD_HOST_DEVICE void backward_mask(const AnyChunkMask& chunk_mask, const WholeGroupMask& mask, bool whole,
                                  int64_t first, int count, bool (&keep)[N]) {
  if (!kKeepFromRngState<kOp>) return;
  if (whole) {
    mask.keep<N>(first, keep);
  } else {
    chunk_mask.template keep<N>(first, count, keep);
  }
}

// kRuns: the mask of a geometry with runs (a.runs, RunsChunkMask) for every chunk; only for the ops that take
// their keep decision from the mask.
template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns = false>
FD_HOST_DEVICE void backward_thread(const BackwardArgs<scalar_t>& a, const ThreadCoord& t) {
  static_assert(!kRuns || kKeepFromRngState<kOp>, "runs are a geometry of the mask");
  using acc_t = typename ComputeType<scalar_t>::type;
  constexpr int N = kChunk<scalar_t>;
  const DropoutParams<acc_t> params(kKeepFromRngState<kOp> ? a.seed : nullptr, a.offset, a.threshold, a.scale);
  const WholeGroupMask mask(params);
  const ChunkMask<kRuns, acc_t> chunk_mask(params, a.runs);
  auto chunk = [&](int64_t first, int count, bool whole) {
    bool keep[N];
    backward_mask<kOp, N>(chunk_mask, mask, whole, first, count, keep);
    scalar_t grad_in[N];
    // A saved bias is read by column: one 64-bit modulo per chunk, then a walk (the activation's derivative costs
    // far more per element).
    int64_t col = kSavesInput<kOp> && a.bias != nullptr ? first % a.row_len : 0;
    backward_chunk<scalar_t, kOp, kVec, N>(a, params.scale, first, count, keep, grad_in, [&](int) {
      const acc_t bias = to_compute(a.bias[col]);
      col = col + 1 == a.row_len ? 0 : col + 1;
      return bias;
    });
  };
  grid_stride_chunks<N>(
      a.numel, t, !kRuns && WholeGroupMask::applies(params), [&](int64_t first) { chunk(first, N, true); },
      [](int64_t) {}, [&](int64_t first, int count) { chunk(first, count, false); });
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
template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns = false>
FD_HOST_DEVICE void backward_bias_tile_thread(const BackwardArgs<scalar_t>& a, const BiasGradPlan& plan,
                                              typename ComputeType<scalar_t>::type* __restrict__ partial,
                                              const ThreadCoord& t) {
  static_assert(!kRuns || kKeepFromRngState<kOp>, "runs are a geometry of the mask");
  using acc_t = typename ComputeType<scalar_t>::type;
  constexpr int N = kChunk<scalar_t>;
  const int64_t col0 = (t.block * t.block_dim + t.thread) * N;
  if (col0 >= a.row_len) return;
  const int count = static_cast<int>(a.row_len - col0 < N ? a.row_len - col0 : N);
  const DropoutParams<acc_t> params(kKeepFromRngState<kOp> ? a.seed : nullptr, a.offset, a.threshold, a.scale);
  const WholeGroupMask mask(params);
  const ChunkMask<kRuns, acc_t> chunk_mask(params, a.runs);
  // Every row's chunk of the flat mask is whole groups when the offset, the row length and the chunk (col0 is a
  // multiple of N) all start on a group boundary.
  const bool whole = !kRuns && count == N && WholeGroupMask::applies(params) && a.row_len % 4 == 0;
  const int64_t r0 = t.block_y * plan.rows_per_block;
  const int64_t r1 = r0 + plan.rows_per_block < plan.rows ? r0 + plan.rows_per_block : plan.rows;
  acc_t sums[N];
  FD_UNROLL
  for (int e = 0; e < N; ++e) sums[e] = acc_t(0);
  // The columns are the thread's for every row: a saved bias is read once.
  acc_t bias[N];
  if (kSavesInput<kOp> && a.bias != nullptr) load_chunk<N, kVec>(a.bias + col0, count, bias);
  auto rows = [&](auto whole_tag) {
    constexpr bool kWhole = decltype(whole_tag)::value;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t first = r * a.row_len + col0;
      bool keep[N];
      backward_mask<kOp, N>(chunk_mask, mask, kWhole, first, count, keep);
      scalar_t grad_in[N];
      backward_chunk<scalar_t, kOp, kVec, N>(a, params.scale, first, kWhole ? N : count, keep, grad_in,
                                             [&](int e) { return bias[e]; });
      FD_UNROLL
      for (int e = 0; e < N; ++e) sums[e] += e < count ? to_compute(grad_in[e]) : acc_t(0);
    }
  };
  if (whole) {
    rows(std::true_type{});
  } else {
    rows(std::false_type{});
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
