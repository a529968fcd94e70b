// The forward element loop of the float32 ops whose activation is the identity or relu (dropout, dropout_add,
// bias_dropout, bias_relu_dropout; the 16-bit types through their float32 buffers), in AVX2 intrinsics, for the
// whole vectors of 8 elements (the plain loop does the tail). The element loop shares the vector pipes with the
// Philox of the same tile, so every operation counts. The same bits as the plain loop (forward_elements in
// cpu_kernels_impl.h), by these steps on v = x [+ bias]:
//  - keep: the word >= the threshold, unsigned, as max_epu32(word, threshold) == word (AVX2 compares signed only).
//  - relu: max(+0, v). vmaxps returns its second operand when the operands compare equal or either is a NaN, so
//    -0 stays -0 and a NaN stays itself, as `v < 0 ? 0 : v` does; a negative number or -inf becomes +0.
//  - the NaN rule: where v is unordered with itself it becomes the canonical NaN (a compare and a blend).
//  - keep ? v * scale : +0 as the product ANDed with the keep mask. The canonical NaN times scale is the canonical
//    NaN, and with a finite scale > 0 the product is a NaN only where v is one (vector_forward_elements_apply).
//  - with a residual (the identity only) the sum residual + (keep ? v * scale : +0) is made first and the NaN rule
//    applied to it, as the plain loop does (inf + -inf makes a NaN there).
// Denormals-are-zero (torch.set_flush_denormal) changes nothing: vmaxps and the compare read a denormal as a zero
// as the plain loop's compare does, and keep its bits, which the multiply then reads as the same zero.
// Include only where AVX2 is enabled, inside namespace fused_dropout::cpu.
#pragma once

#include <immintrin.h>
#include <stdint.h>

#include <type_traits>

#include "../activations.h"
#include "../dropout_math.h"
#include "forward_elements_vector.h"

namespace fused_dropout {
namespace cpu {

// out[k] for k in [0, n - n % 8), as forward_elements in cpu_kernels_impl.h computes it (see the top of this
// file); returns how many elements it wrote, a multiple of 8.
template <typename Element>
inline int64_t forward_elements_avx2(const float* __restrict__ x, const float* __restrict__ bias,
                                     const float* __restrict__ residual, float* __restrict__ out,
                                     const uint32_t* __restrict__ words, int64_t n, KeepRule keep_rule,
                                     float scale) {
  constexpr bool kRelu = std::is_same_v<typename Element::Traits::Activation, Relu>;
  const __m256 canonical_nan =
      _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(Float32Storage::kCanonicalNaN)));
  const __m256i threshold = _mm256_set1_epi32(static_cast<int>(keep_rule.threshold));
  const __m256 keep_any = _mm256_castsi256_ps(_mm256_set1_epi32(keep_rule.keep_any ? -1 : 0));
  const __m256 scales = _mm256_set1_ps(scale);
  const __m256 zero = _mm256_setzero_ps();
  auto canonicalise_nan = [&](__m256 value) {
    return _mm256_blendv_ps(value, canonical_nan, _mm256_cmp_ps(value, value, _CMP_UNORD_Q));
  };
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const __m256i word = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + k));
    __m256 keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(word, threshold), word));
    if (!keep_rule.keep_any) keep = _mm256_and_ps(keep, keep_any);  // p = 1: nothing kept (a rare call)
    __m256 v = _mm256_loadu_ps(x + k);
    if constexpr (Element::kHasBias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + k));
    __m256 result;
    if constexpr (Element::kHasResidual) {
      const __m256 dropped_out = _mm256_and_ps(_mm256_mul_ps(v, scales), keep);
      result = canonicalise_nan(_mm256_add_ps(_mm256_loadu_ps(residual + k), dropped_out));
    } else {
      if constexpr (kRelu) v = _mm256_max_ps(zero, v);
      result = _mm256_and_ps(_mm256_mul_ps(canonicalise_nan(v), scales), keep);
    }
    _mm256_storeu_ps(out + k, result);
  }
  return k;
}

}  // namespace cpu
}  // namespace fused_dropout
