// Body of the CPU kernels. cpu_kernels.cpp includes this file once per variant (baseline ISA, AVX2, AVX-512), each
// inside its own namespace and compiled for its ISA, and picks one at run time. The element loops are plain C++
// the compiler vectorises at the variant's width; the Philox words come from the variant's vector Philox
// (philox_avx2.h, philox_avx512.h) or from philox.h, and the 16-bit types go through float32 buffers converted a
// whole array at a time (cpu_half_io.h).
//
// Expects FD_CPU_ISA_NAMESPACE to be defined (and FD_CPU_PHILOX_AVX2 or FD_CPU_PHILOX_AVX512 for a vector
// Philox, FD_CPU_HALF_F16C_AVX2 or FD_CPU_HALF_F16C_AVX512 for F16C conversions, FD_CPU_FORWARD_ELEMENTS_AVX2 or
// FD_CPU_FORWARD_ELEMENTS_AVX512 for the hand-written forward element loops of forward_elements_avx2.h and
// forward_elements_avx512.h), to be included inside namespace
// fused_dropout::cpu, and cpu_kernels.h, <ATen/Parallel.h>, <algorithm>, <cstring>, <type_traits> and <vector>
// to be included before.

namespace FD_CPU_ISA_NAMESPACE {

constexpr int64_t kTile = 1024;          // elements whose mask words are made in one go
// Philox groups computed side by side (vectorised across them).
#if defined(FD_CPU_PHILOX_AVX512)
constexpr int64_t kGroupsPerStep = kAvx512PhiloxGroups;
#elif defined(FD_CPU_PHILOX_AVX2)
constexpr int64_t kGroupsPerStep = kAvx2PhiloxGroups;
#else
constexpr int64_t kGroupsPerStep = 16;
#endif
constexpr int64_t kWordsCapacity = 4 * (((kTile + 6) / 4 + kGroupsPerStep - 1) / kGroupsPerStep * kGroupsPerStep);
constexpr int64_t kGrain = 32768;        // elements per parallel task; never affects the results

// Every value a CPU kernel writes (output, grad_in, grad_bias) is made here: v rounded once to the element type,
// a NaN written as the spec's canonical NaN (dropout_math.h).
template <typename scalar_t, typename acc_t>
inline scalar_t to_element(acc_t v) {
  return with_canonical_nan(static_cast<scalar_t>(v), v);
}

#include "cpu_half_io.h"

// The 16-bit types are staged: their elements are widened to float32 buffers of kStage elements, the element loop
// runs on those, and its results are narrowed back (cpu_half_io.h). float32 and float64 are read and written in
// place.
template <typename scalar_t>
constexpr bool kStaged = sizeof(scalar_t) == 2;
constexpr int64_t kStage = 256;

// Whether the groups group0 .. group0 + count - 1 share the high word of their counter, as the vector Philox
// steps require (their first rounds use it as a constant); false once in 2^32 groups.
inline bool philox_step_shares_high_word(uint64_t group0, int64_t count) {
  return ((group0 + static_cast<uint64_t>(count - 1)) >> 32) == (group0 >> 32);
}

// The words of groups group0 .. group0 + count - 1 to out[0..4 count), with the scalar Philox of philox.h.
inline void philox_groups_scalar(uint64_t seed, uint64_t group0, int64_t count, uint32_t* out) {
  for (int64_t j = 0; j < count; ++j) {
    const Philox4 r = philox_group(seed, group0 + static_cast<uint64_t>(j));
    for (int w = 0; w < 4; ++w) out[4 * j + w] = r.r[w];
  }
}

// Writes the Philox words covering elements [first, first + n) and returns `shift` such that element first + k
// uses words[shift + k]. Calls after_step(e) after the words of the first e elements (e grows by
// kElementsPerStep), so the caller can interleave memory requests with the Philox arithmetic.
constexpr int64_t kElementsPerStep = 4 * kGroupsPerStep;
template <typename AfterStep>
inline int64_t fill_mask_words(uint64_t seed, uint64_t offset, int64_t first, int64_t n, uint32_t* words,
                               AfterStep&& after_step) {
  const MaskPosition start = mask_position(offset, static_cast<uint64_t>(first));
  const uint64_t group0 = start.group;
  const int64_t shift = start.word;
  const int64_t groups = groups_covering(shift, n);
#if defined(FD_CPU_PHILOX_AVX512) || defined(FD_CPU_PHILOX_AVX2)
  const PhiloxKeySchedule keys(seed);
#endif
  for (int64_t step = 0; step < groups; step += kGroupsPerStep) {
    uint32_t* out = words + 4 * step;
    const uint64_t step_group = group0 + static_cast<uint64_t>(step);
#if defined(FD_CPU_PHILOX_AVX512) || defined(FD_CPU_PHILOX_AVX2)
    if (philox_step_shares_high_word(step_group, kGroupsPerStep)) {
#if defined(FD_CPU_PHILOX_AVX512)
      philox32_avx512(keys, step_group, out);
#else
      philox20_avx2(keys, step_group, out);
#endif
    } else {
      philox_groups_scalar(seed, step_group, kGroupsPerStep, out);
    }
#else
    philox_groups_scalar(seed, step_group, kGroupsPerStep, out);
#endif
    after_step(4 * step);
  }
  return shift;
}

// The word of mask index g (the spec's rule: word g & 3 of Philox group g >> 2), one scalar Philox.
inline uint32_t mask_word(uint64_t seed, uint64_t g) {
  const MaskPosition at = mask_position(g, 0);
  return philox_group(seed, at.group).r[at.word];
}

// A mask geometry as the tile loop reads it: the runs, and optionally the words of every mask index it spans,
// made once before the element pass (shared_words). keep_all: the keep rule keeps every word (p = 0, eval mode),
// so no Philox word is made at all (see keeps_every_word).
struct GeometryWords {
  MaskRuns runs;
  const uint32_t* shared = nullptr;  // shared[m] = the word of mask index m, for m in [0, span); or nullptr
  bool keep_all = false;
};

// A call whose keep rule keeps every word (p = 0, eval mode: threshold 0) needs no Philox: any word gives the same
// decision, so the element loops read these zeros instead (no template of their own, no cost at compile time).
inline bool keeps_every_word(const KeepRule& keep_rule) { return keep_rule.keep_any && keep_rule.threshold == 0; }

// Elements that share a decision are at least this many times the mask indices the geometry spans when the words
// are worth making once for the whole span: then one Philox decision serves every element that shares it (locked
// dropout's time steps, any broadcast outside a contiguous run), at the cost of span * 4 bytes (<= numel bytes).
constexpr int64_t kShareFactor = 4;

// The geometry's words for the tile loop, the one place that decides how a call's mask words are made: none when
// the keep rule keeps every word; with runs whose mask indices span numel / kShareFactor or fewer, the words of the
// whole span [0, span), made here by the vector Philox in parallel into `storage`; otherwise tile by tile.
inline GeometryWords geometry_words(uint64_t seed, uint64_t offset, const KeepRule& keep_rule, const MaskRuns& runs,
                                    int64_t numel, std::vector<uint32_t>& storage) {
  GeometryWords geometry{runs, nullptr};
  if (keeps_every_word(keep_rule)) {
    geometry.keep_all = true;
    return geometry;
  }
  if (runs.flat()) return geometry;
  int64_t span = 1;  // the largest mask index, plus one (m(0) = 0 is the smallest)
  for (int r = 0; r < runs.count; ++r) span += (runs.extent[r] - 1) * runs.stride[r];
  if (span > numel / kShareFactor) return geometry;
  storage.resize(static_cast<size_t>(span));
  at::parallel_for(0, (span + kTile - 1) / kTile, 1, [&](int64_t tile_begin, int64_t tile_end) {
    alignas(64) uint32_t words[kWordsCapacity];
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t first = tile * kTile;
      const int64_t n = std::min(kTile, span - first);
      const int64_t shift = fill_mask_words(seed, offset, first, n, words, [](int64_t) {});
      std::memcpy(storage.data() + first, words + shift, static_cast<size_t>(n) * sizeof(uint32_t));
    }
  });
  geometry.shared = storage.data();
  return geometry;
}

// Writes the mask words of elements [first, first + n) (n <= kTile) under a mask geometry (mask_runs.h) to
// words[0..n). Along the innermost run consecutive elements step their mask index by its stride: a stride of 1 is
// a contiguous range of words (the vector Philox of fill_mask_words), a stride of 0 is one decision shared by the
// whole run (one scalar Philox for all its elements: DropPath's samples, channel dropout's channels), any other
// stride (a shard narrower than a row of the noise shape) one Philox per element. With the span's words made
// already (geometry.shared), they are copied from there instead.
inline void fill_run_words(uint64_t seed, uint64_t offset, const GeometryWords& geometry, int64_t first, int64_t n,
                           uint32_t* words) {
  const MaskRuns& runs = geometry.runs;
  const uint32_t* shared = geometry.shared;
  const int64_t inner = runs.inner_extent();
  const int64_t stride = runs.inner_stride();
  auto word_at = [&](uint64_t m) { return shared != nullptr ? shared[m] : mask_word(seed, offset + m); };
  alignas(64) uint32_t contiguous[kWordsCapacity];
  for (int64_t k = 0; k < n;) {
    const int64_t e = first + k;
    const int64_t segment = std::min(n - k, inner - e % inner);
    const uint64_t m = mask_index(runs, e);
    if (stride == 1 && shared != nullptr) {
      std::memcpy(words + k, shared + m, static_cast<size_t>(segment) * sizeof(uint32_t));
    } else if (stride == 1) {
      const int64_t shift = fill_mask_words(seed, offset + m, 0, segment, contiguous, [](int64_t) {});
      std::memcpy(words + k, contiguous + shift, static_cast<size_t>(segment) * sizeof(uint32_t));
    } else if (stride == 0) {
      std::fill(words + k, words + k + segment, word_at(m));
    } else {
      for (int64_t j = 0; j < segment; ++j) words[k + j] = word_at(m + static_cast<uint64_t>(j * stride));
    }
    k += segment;
  }
}

// Prefetches the cache lines of p[0..n) into L1, a hint that never faults. On x86 an asm statement: GCC deletes
// a loop of __builtin_prefetch here as a loop without effects.
template <typename T>
inline void prefetch_lines(const T* p, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t offset = 0; offset < n * static_cast<int64_t>(sizeof(T)); offset += 64) {
#if defined(__x86_64__) && defined(__GNUC__)
    asm volatile("prefetcht0 %0" : : "m"(bytes[offset]));
#else
    __builtin_prefetch(bytes + offset, 0, 3);
#endif
  }
}

// The words the element loops read when the geometry keeps every word.
alignas(64) inline constexpr uint32_t kZeroWords[kWordsCapacity] = {};

// Walks the flat range [begin, end) in tiles; each tile is cut into pieces that stay inside one row of length
// row_len, so a bias (indexed by column) is read as bias[col + k]. Ops without columns pass row_len = numel.
// Calls fn(first, col, n, words) with words[k] the mask word of element first + k (nullptr when kNeedWords is
// false; kZeroWords when geometry.keep_all), under the mask geometry (the flat mask without runs). While a tile's
// Philox words are computed, prefetch(first, n) is asked for the next tile's elements a slice per Philox step: one
// core cannot keep enough cache misses in flight to reach the memory bandwidth while it runs the element loop
// alone, so the loads are overlapped with the arithmetic instead.
template <bool kNeedWords, typename Fn, typename Prefetch>
inline void for_each_piece(int64_t begin, int64_t end, int64_t row_len, uint64_t seed, uint64_t offset,
                           const GeometryWords& geometry, Fn&& fn, Prefetch&& prefetch) {
  alignas(64) uint32_t words[kNeedWords ? kWordsCapacity : 1];
  int64_t col = begin % row_len;
  for (int64_t tile = begin; tile < end; tile += kTile) {
    const int64_t n = std::min(kTile, end - tile);
    const int64_t next = tile + kTile;
    auto prefetch_next = [&](int64_t done) {
      const int64_t first = next + done;
      if (first < end) prefetch(first, std::min(kElementsPerStep, end - first));
    };
    const uint32_t* tile_words = nullptr;
    if (kNeedWords && geometry.keep_all) {
      tile_words = kZeroWords;
    } else if (kNeedWords && geometry.runs.flat()) {
      tile_words = words + fill_mask_words(seed, offset, tile, n, words, prefetch_next);
    } else if (kNeedWords) {
      fill_run_words(seed, offset, geometry, tile, n, words);
      for (int64_t done = 0; done < kTile; done += kElementsPerStep) prefetch_next(done);  // the whole next tile
      tile_words = words;
    }
    for (int64_t k = 0; k < n;) {
      const int64_t piece = std::min(n - k, row_len - col);
      fn(tile + k, col, piece, kNeedWords ? tile_words + k : nullptr);
      k += piece;
      col += piece;
      if (col == row_len) col = 0;
    }
  }
}

// The forward element loop over n elements, on the tensors (float32, float64) or on float32 buffers (16-bit types).
template <typename Element, typename T, typename acc_t>
inline void forward_elements(const T* __restrict__ x, const T* __restrict__ bias, const T* __restrict__ residual,
                             T* __restrict__ out, const uint32_t* __restrict__ words, int64_t n, KeepRule keep_rule,
                             acc_t scale) {
  int64_t k = 0;  // the elements written by a hand-written loop; the plain loop does the rest
#if defined(FD_CPU_FORWARD_ELEMENTS_AVX512)
  if constexpr (kHasVectorForwardElements<Element, T>) {
    if (vector_forward_elements_apply(keep_rule, scale)) {
      forward_elements_avx512<Element>(x, bias, residual, out, words, n, keep_rule, scale);
      return;
    }
  }
#elif defined(FD_CPU_FORWARD_ELEMENTS_AVX2)
  if constexpr (kHasVectorForwardElements<Element, T>) {
    if (vector_forward_elements_apply(keep_rule, scale)) {
      k = forward_elements_avx2<Element>(x, bias, residual, out, words, n, keep_rule, scale);
    }
  }
#endif
  for (; k < n; ++k) {
    const acc_t b = Element::kHasBias ? static_cast<acc_t>(bias[k]) : acc_t(0);
    const acc_t r = Element::kHasResidual ? static_cast<acc_t>(residual[k]) : acc_t(0);
    const bool keep = keep_rule(words[k]);
    if constexpr (Element::kHasResidual) {
      out[k] = to_element<T>(Element::apply(static_cast<acc_t>(x[k]), b, r, keep, scale));
    } else {
      // The same bits as above, selected after the NaN rule instead of before: without a residual the dropped
      // value is the constant 0, so this is one NaN test and one zeroing select, where GCC merges keep into the
      // NaN test of the form above (two tests, three selects; 11 instead of 8 AVX-512 operations per 16 elements
      // of bias_relu_dropout).
      const T kept = to_element<T>(Element::apply(static_cast<acc_t>(x[k]), b, r, true, scale));
      const T dropped = to_element<T>(Element::apply(static_cast<acc_t>(x[k]), b, r, false, scale));
      out[k] = keep ? kept : dropped;
    }
  }
}

template <typename scalar_t, typename Element>
void forward(const ForwardArgs<scalar_t>& a) {
  using acc_t = typename ComputeType<scalar_t>::type;
  const uint64_t seed = a.seed != nullptr ? static_cast<uint64_t>(*a.seed) : 0;  // none when p = 0
  const uint64_t offset = a.offset;
  const KeepRule keep_rule(a.threshold);
  const acc_t scale = static_cast<acc_t>(a.scale);
  std::vector<uint32_t> shared_words;
  const GeometryWords geometry = geometry_words(seed, offset, keep_rule, a.runs, a.numel, shared_words);
  at::parallel_for(0, a.numel, kGrain, [&](int64_t begin, int64_t end) {
    for_each_piece<true>(begin, end, Element::kHasBias ? a.row_len : a.numel, seed, offset, geometry,
                         [&](int64_t first, int64_t col, int64_t n, const uint32_t* __restrict__ words) {
      const scalar_t* x = a.x + first;
      const scalar_t* bias = Element::kHasBias ? a.bias + col : nullptr;
      const scalar_t* residual = Element::kHasResidual ? a.residual + first : nullptr;
      scalar_t* out = a.out + first;
      if constexpr (!kStaged<scalar_t>) {
        forward_elements<Element>(x, bias, residual, out, words, n, keep_rule, scale);
      } else {
        alignas(64) float xs[kStage], bs[Element::kHasBias ? kStage : 1], rs[Element::kHasResidual ? kStage : 1],
            outs[kStage];
        for (int64_t s = 0; s < n; s += kStage) {
          const int64_t m = std::min(kStage, n - s);
          widen(x + s, xs, m);
          if constexpr (Element::kHasBias) widen(bias + s, bs, m);
          if constexpr (Element::kHasResidual) widen(residual + s, rs, m);
          forward_elements<Element>(xs, Element::kHasBias ? bs : nullptr, Element::kHasResidual ? rs : nullptr,
                                    outs, words + s, m, keep_rule, scale);
          narrow(outs, out + s, m);
        }
      }
    }, [&](int64_t first, int64_t n) {
      prefetch_lines(a.x + first, n);
      if constexpr (Element::kHasResidual) prefetch_lines(a.residual + first, n);
      prefetch_lines(a.out + first, n);
    });
  });
}

// The backward element loop over n elements, on the tensors or on float32 buffers; keep comes from the mask words
// (kFromMask) or from y > 0. The ops that save their input (kOp's kSavesInput) multiply by the activation's
// derivative at x [+ bias] (kBias).
template <BackwardOp kOp, bool kBias, typename T, typename acc_t>
inline void backward_elements(const T* __restrict__ grad, const T* __restrict__ y, const T* __restrict__ x,
                              const T* __restrict__ bias, T* __restrict__ grad_in, const uint32_t* __restrict__ words,
                              int64_t n, KeepRule keep_rule, acc_t scale) {
  using Activation = typename BackwardOpTraits<kOp>::Activation;
  for (int64_t k = 0; k < n; ++k) {
    const bool keep = kKeepFromRngState<kOp> ? keep_rule(words[k]) : static_cast<acc_t>(y[k]) > acc_t(0);
    if constexpr (kSavesInput<kOp>) {
      const acc_t v = kBias ? fd_add(static_cast<acc_t>(x[k]), static_cast<acc_t>(bias[k])) : static_cast<acc_t>(x[k]);
      grad_in[k] = to_element<T>(backward_element_through<Activation>(static_cast<acc_t>(grad[k]), keep, scale, v));
    } else {
      grad_in[k] = to_element<T>(backward_element(static_cast<acc_t>(grad[k]), keep, scale));
    }
  }
}

// sums[k] += values[k]: the column sums of the bias gradient, one row piece at a time.
template <typename T, typename acc_t>
inline void add_columns(acc_t* __restrict__ sums, const T* __restrict__ values, int64_t n) {
  for (int64_t k = 0; k < n; ++k) sums[k] += static_cast<acc_t>(values[k]);
}

// The backward of kOp, with (kBias) or without a saved bias to add to the saved input.
template <typename scalar_t, BackwardOp kOp, bool kBias>
void backward_with(const BackwardArgs<scalar_t>& a) {
  using acc_t = typename ComputeType<scalar_t>::type;
  constexpr bool kFromMask = kKeepFromRngState<kOp>;
  constexpr bool kInput = kSavesInput<kOp>;
  const uint64_t seed = kFromMask && a.seed != nullptr ? static_cast<uint64_t>(*a.seed) : 0;
  const uint64_t offset = kFromMask ? a.offset : 0;
  const KeepRule keep_rule(a.threshold);
  const acc_t scale = static_cast<acc_t>(a.scale);
  std::vector<uint32_t> shared_words;
  const GeometryWords geometry =
      kFromMask ? geometry_words(seed, offset, keep_rule, a.runs, a.numel, shared_words) : GeometryWords{};

  // Element loop over one piece; with kAccumulate it also adds grad_in (as written) into column_sums[col..col+n).
  auto piece = [&](auto accumulate, int64_t first, int64_t col, int64_t n, const uint32_t* __restrict__ words,
                   acc_t* __restrict__ column_sums) {
    constexpr bool kAccumulate = decltype(accumulate)::value;
    const scalar_t* grad = a.grad + first;
    const scalar_t* y = kFromMask ? nullptr : a.y + first;
    const scalar_t* x = kInput ? a.x + first : nullptr;
    const scalar_t* bias = kBias ? a.bias + col : nullptr;
    scalar_t* grad_in = a.grad_in + first;
    acc_t* __restrict__ sums = kAccumulate ? column_sums + col : nullptr;
    if constexpr (!kStaged<scalar_t>) {
      backward_elements<kOp, kBias>(grad, y, x, bias, grad_in, words, n, keep_rule, scale);
      if constexpr (kAccumulate) add_columns(sums, grad_in, n);
    } else {
      alignas(64) float grads[kStage], ys[kFromMask ? 1 : kStage], xs[kInput ? kStage : 1], bs[kBias ? kStage : 1],
          grad_ins[kStage];
      for (int64_t s = 0; s < n; s += kStage) {
        const int64_t m = std::min(kStage, n - s);
        widen(grad + s, grads, m);
        if constexpr (!kFromMask) widen(y + s, ys, m);
        if constexpr (kInput) widen(x + s, xs, m);
        if constexpr (kBias) widen(bias + s, bs, m);
        backward_elements<kOp, kBias>(grads, kFromMask ? nullptr : ys, kInput ? xs : nullptr, kBias ? bs : nullptr,
                                      grad_ins, kFromMask ? words + s : nullptr, m, keep_rule, scale);
        narrow(grad_ins, grad_in + s, m);
        if constexpr (kAccumulate) {
          widen(grad_in + s, grad_ins, m);  // the rounded values, as written
          add_columns(sums + s, grad_ins, m);
        }
      }
    }
  };

  auto prefetch = [&](int64_t first, int64_t n) {
    prefetch_lines(a.grad + first, n);
    if constexpr (!kFromMask) prefetch_lines(a.y + first, n);
    if constexpr (kInput) prefetch_lines(a.x + first, n);
    prefetch_lines(a.grad_in + first, n);
  };

  if (a.grad_bias == nullptr) {
    at::parallel_for(0, a.numel, kGrain, [&](int64_t begin, int64_t end) {
      for_each_piece<kFromMask>(begin, end, kBias ? a.row_len : a.numel, seed, offset, geometry,
                                [&](int64_t first, int64_t col, int64_t n, const uint32_t* words) {
                                  piece(std::false_type{}, first, col, n, words, nullptr);
                                }, prefetch);
    });
    return;
  }

  const int64_t row_len = a.row_len;
  const int64_t rows = a.numel / row_len;
  // Row blocks: at most 64, and at least ~32K elements each so the partial sums stay small. Both bounds depend
  // on the shape only.
  constexpr int64_t kMaxRowBlocks = 64;
  constexpr int64_t kMinBlockElements = 32768;
  constexpr int64_t kColumnChunk = 8192;
  const int64_t rows_per_block =
      std::max<int64_t>({int64_t(1), (rows + kMaxRowBlocks - 1) / kMaxRowBlocks, kMinBlockElements / row_len});
  const int64_t row_blocks = (rows + rows_per_block - 1) / rows_per_block;
  const int64_t column_chunks = (row_len + kColumnChunk - 1) / kColumnChunk;
  std::vector<acc_t> partial(static_cast<size_t>(row_blocks * row_len), acc_t(0));

  at::parallel_for(0, row_blocks * column_chunks, 1, [&](int64_t task_begin, int64_t task_end) {
    for (int64_t task = task_begin; task < task_end; ++task) {
      const int64_t block = task / column_chunks;
      const int64_t c0 = (task % column_chunks) * kColumnChunk;
      const int64_t c1 = std::min(row_len, c0 + kColumnChunk);
      const int64_t r0 = block * rows_per_block;
      const int64_t r1 = std::min(rows, r0 + rows_per_block);
      acc_t* sums = partial.data() + block * row_len;
      auto accumulate = [&](int64_t first, int64_t col, int64_t n, const uint32_t* words) {
        piece(std::true_type{}, first, col, n, words, sums);
      };
      if (c0 == 0 && c1 == row_len) {
        if (r1 > r0) {
          for_each_piece<kFromMask>(r0 * row_len, r1 * row_len, row_len, seed, offset, geometry, accumulate,
                                    prefetch);
        }
      } else {
        for (int64_t r = r0; r < r1; ++r) {
          for_each_piece<kFromMask>(r * row_len + c0, r * row_len + c1, row_len, seed, offset, geometry,
                                    accumulate, prefetch);
        }
      }
    }
  });

  // Blocks are added in block order for every column; walking each block's row of partials keeps the loads
  // contiguous (and vectorised).
  constexpr int64_t kReduceChunk = 1024;
  at::parallel_for(0, (row_len + kReduceChunk - 1) / kReduceChunk, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    acc_t total[kReduceChunk];
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      const int64_t c0 = chunk * kReduceChunk;
      const int64_t n = std::min(kReduceChunk, row_len - c0);
      for (int64_t k = 0; k < n; ++k) total[k] = acc_t(0);
      for (int64_t block = 0; block < row_blocks; ++block) {
        const acc_t* __restrict__ sums = partial.data() + block * row_len + c0;
        for (int64_t k = 0; k < n; ++k) total[k] += sums[k];
      }
      for (int64_t k = 0; k < n; ++k) a.grad_bias[c0 + k] = to_element<scalar_t>(total[k]);
    }
  });
}

// grad_in = keep ? grad * scale : 0 [times the activation's derivative at x + bias], with keep from the mask or from
// y > 0. When a bias gradient is wanted, the rows are cut into a fixed number of row blocks (a function of the
// shape only, never of the thread count); each block sums its rows' grad_in per column, and the blocks' partial
// sums are added in block order. The result is therefore the same bits whatever the number of threads.
template <typename scalar_t, BackwardOp kOp>
void backward(const BackwardArgs<scalar_t>& a) {
  if (kSavesInput<kOp> && a.bias != nullptr) {
    backward_with<scalar_t, kOp, kSavesInput<kOp>>(a);
  } else {
    backward_with<scalar_t, kOp, false>(a);
  }
}

}  // namespace FD_CPU_ISA_NAMESPACE
