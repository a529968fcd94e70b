// Body of the CPU kernels. cpu_kernels.cpp includes this file twice, inside two namespaces: once compiled for the
// baseline ISA and once with AVX2 enabled, and picks one at run time. Everything here is plain C++; the speed
// comes from loops the compiler vectorises (Philox across 16 counters, then the element loop across a tile).
//
// Expects FD_CPU_ISA_NAMESPACE to be defined (and FD_CPU_PHILOX_AVX2 for the AVX2 Philox), to be included inside namespace fused_dropout::cpu, and
// cpu_kernels.h, <ATen/Parallel.h>, <algorithm>, <type_traits> and <vector> to be included before.

namespace FD_CPU_ISA_NAMESPACE {

constexpr int64_t kTile = 1024;          // elements whose mask words are made in one go
constexpr int64_t kGroupsPerStep = 16;   // Philox groups computed side by side (vectorised across them)
constexpr int64_t kWordsCapacity = 4 * (((kTile + 6) / 4 + kGroupsPerStep - 1) / kGroupsPerStep * kGroupsPerStep);
constexpr int64_t kGrain = 32768;        // elements per parallel task; never affects the results

// Every value a CPU kernel writes (output, grad_in, grad_bias) is made here: v rounded once to the element type,
// a NaN written as the spec's canonical NaN (dropout_math.h).
template <typename scalar_t, typename acc_t>
inline scalar_t to_element(acc_t v) {
  return with_canonical_nan(static_cast<scalar_t>(v), v);
}

// Writes the Philox words covering elements [first, first + n) and returns `shift` such that element first + k
// uses words[shift + k].
inline int64_t fill_mask_words(uint64_t seed, uint64_t offset, int64_t first, int64_t n, uint32_t* words) {
  const MaskPosition start = mask_position(offset, static_cast<uint64_t>(first));
  const uint64_t group0 = start.group;
  const int64_t shift = start.word;
  const int64_t groups = groups_covering(shift, n);
  for (int64_t step = 0; step < groups; step += kGroupsPerStep) {
    uint32_t* out = words + 4 * step;
#if defined(FD_CPU_PHILOX_AVX2)
    static_assert(kGroupsPerStep == kAvx2PhiloxGroups, "one AVX2 Philox call per step");
    philox16_avx2(seed, group0 + static_cast<uint64_t>(step), out);
    continue;
#endif
    for (int64_t j = 0; j < kGroupsPerStep; ++j) {
      const Philox4 r = philox_group(seed, group0 + static_cast<uint64_t>(step + j));
      out[4 * j + 0] = r.r[0];
      out[4 * j + 1] = r.r[1];
      out[4 * j + 2] = r.r[2];
      out[4 * j + 3] = r.r[3];
    }
  }
  return shift;
}

// Walks the flat range [begin, end) in tiles; each tile is cut into pieces that stay inside one row of length
// row_len, so a bias (indexed by column) is read as bias[col + k]. Ops without columns pass row_len = numel.
// Calls fn(first, col, n, words) with words[k] the mask word of element first + k (nullptr when kNeedWords is
// false).
template <bool kNeedWords, typename Fn>
inline void for_each_piece(int64_t begin, int64_t end, int64_t row_len, uint64_t seed, uint64_t offset, Fn&& fn) {
  alignas(64) uint32_t words[kNeedWords ? kWordsCapacity : 1];
  int64_t col = begin % row_len;
  for (int64_t tile = begin; tile < end; tile += kTile) {
    const int64_t n = std::min(kTile, end - tile);
    const uint32_t* tile_words = kNeedWords ? words + fill_mask_words(seed, offset, tile, n, words) : nullptr;
    for (int64_t k = 0; k < n;) {
      const int64_t piece = std::min(n - k, row_len - col);
      fn(tile + k, col, piece, kNeedWords ? tile_words + k : nullptr);
      k += piece;
      col += piece;
      if (col == row_len) col = 0;
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
  at::parallel_for(0, a.numel, kGrain, [&](int64_t begin, int64_t end) {
    for_each_piece<true>(begin, end, Element::kHasBias ? a.row_len : a.numel, seed, offset,
                         [&](int64_t first, int64_t col, int64_t n, const uint32_t* __restrict__ words) {
      const scalar_t* __restrict__ x = a.x + first;
      const scalar_t* __restrict__ bias = Element::kHasBias ? a.bias + col : nullptr;
      const scalar_t* __restrict__ residual = Element::kHasResidual ? a.residual + first : nullptr;
      scalar_t* __restrict__ out = a.out + first;
      for (int64_t k = 0; k < n; ++k) {
        const acc_t b = Element::kHasBias ? static_cast<acc_t>(bias[k]) : acc_t(0);
        const acc_t r = Element::kHasResidual ? static_cast<acc_t>(residual[k]) : acc_t(0);
        const bool keep = keep_rule(words[k]);
        out[k] = to_element<scalar_t>(Element::apply(static_cast<acc_t>(x[k]), b, r, keep, scale));
      }
    });
  });
}

// grad_in = keep ? grad * scale : 0, with keep from the mask or from y > 0. When a bias gradient is wanted, the
// rows are cut into a fixed number of row blocks (a function of the shape only, never of the thread count); each
// block sums its rows' grad_in per column, and the blocks' partial sums are added in block order. The result is
// therefore the same bits whatever the number of threads.
template <typename scalar_t, BackwardOp kOp>
void backward(const BackwardArgs<scalar_t>& a) {
  using acc_t = typename ComputeType<scalar_t>::type;
  constexpr bool kFromMask = kKeepFromRngState<kOp>;
  const uint64_t seed = kFromMask && a.seed != nullptr ? static_cast<uint64_t>(*a.seed) : 0;
  const uint64_t offset = kFromMask ? a.offset : 0;
  const KeepRule keep_rule(a.threshold);
  const acc_t scale = static_cast<acc_t>(a.scale);

  // Element loop over one piece; with kAccumulate it also adds grad_in into column_sums[col..col+n).
  auto piece = [&](auto accumulate, int64_t first, int64_t col, int64_t n, const uint32_t* __restrict__ words,
                   acc_t* __restrict__ column_sums) {
    constexpr bool kAccumulate = decltype(accumulate)::value;
    const scalar_t* __restrict__ grad = a.grad + first;
    const scalar_t* __restrict__ y = kFromMask ? nullptr : a.y + first;
    scalar_t* __restrict__ grad_in = a.grad_in + first;
    acc_t* __restrict__ sums = kAccumulate ? column_sums + col : nullptr;
    for (int64_t k = 0; k < n; ++k) {
      const bool keep = kFromMask ? keep_rule(words[k]) : static_cast<acc_t>(y[k]) > acc_t(0);
      const scalar_t g = to_element<scalar_t>(backward_element(static_cast<acc_t>(grad[k]), keep, scale));
      grad_in[k] = g;
      if constexpr (kAccumulate) sums[k] += static_cast<acc_t>(g);
    }
  };

  if (a.grad_bias == nullptr) {
    at::parallel_for(0, a.numel, kGrain, [&](int64_t begin, int64_t end) {
      for_each_piece<kFromMask>(begin, end, a.numel, seed, offset,
                                [&](int64_t first, int64_t col, int64_t n, const uint32_t* words) {
                                  piece(std::false_type{}, first, col, n, words, nullptr);
                                });
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
        if (r1 > r0) for_each_piece<kFromMask>(r0 * row_len, r1 * row_len, row_len, seed, offset, accumulate);
      } else {
        for (int64_t r = r0; r < r1; ++r) {
          for_each_piece<kFromMask>(r * row_len + c0, r * row_len + c1, row_len, seed, offset, accumulate);
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

}  // namespace FD_CPU_ISA_NAMESPACE
