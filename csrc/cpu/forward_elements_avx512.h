// The forward element loop of the float32 ops whose activation is the identity or relu (dropout, dropout_add,
// bias_dropout, bias_relu_dropout; the 16-bit types through their float32 buffers), in AVX-512 intrinsics: 4 vector
// operations per 16 elements where the compiler's vectorisation of the plain loop takes 5 to 8, which matters
// because the element loop shares its two 512-bit ports with the Philox of the same tile. The same bits as that
// loop (forward_elements in cpu_kernels_impl.h), by these steps:
//  - relu and the NaN rule in one vfixupimmps on v = x [+ bias]: a NaN becomes the canonical NaN (the
//    instruction's "keep the destination" answer, the destination being the canonical NaN), a negative number or
//    -inf becomes +0, anything else (+-0, positive, +inf) stays itself; that is `v < 0 ? 0 : v` with its NaN
//    canonicalised. The identity keeps everything but the NaN.
//  - then the keep mask (one unsigned compare of the word with the threshold) zero-masks the multiply by scale:
//    a dropped element is +0. The canonical NaN times scale is the canonical NaN (x86 passes a quiet NaN operand
//    through), and for a finite scale > 0 the product is a NaN only where v is one, so canonicalising v before
//    the multiply canonicalises the product. Calls with another scale take the plain loop
//    (vector_forward_elements_apply in forward_elements_vector.h).
//  - with a residual the sum residual + (keep ? v * scale : 0) is made first and canonicalised after, as the plain
//    loop does (inf + -inf makes a NaN there).
// With denormals-are-zero set (torch.set_flush_denormal) vfixupimmps classifies a denormal as a zero and keeps it,
// and the multiply then reads it as the zero the plain loop's multiply reads: the same bits (test_cpu_variants checks
// it with the flag set).
// Include only where AVX-512F is enabled, inside namespace fused_dropout::cpu.
#pragma once

#include <immintrin.h>
#include <stdint.h>

#include <type_traits>

#include "../activations.h"
#include "../dropout_math.h"
#include "forward_elements_vector.h"

namespace fused_dropout {
namespace cpu {

// vfixupimmps's table: a 4-bit answer per class of its input, at bit 4 * class.
namespace fixup {
enum Class : int { kQuietNaN, kSignallingNaN, kZero, kPositiveOne, kNegativeInf, kPositiveInf, kNegative, kPositive };
enum Answer : uint32_t { kDestination = 0, kInput = 1, kPositiveZero = 8 };

constexpr uint32_t table(Answer quiet_nan, Answer signalling_nan, Answer zero, Answer positive_one,
                         Answer negative_inf, Answer positive_inf, Answer negative, Answer positive) {
  return quiet_nan << (4 * kQuietNaN) | signalling_nan << (4 * kSignallingNaN) | zero << (4 * kZero) |
         positive_one << (4 * kPositiveOne) | negative_inf << (4 * kNegativeInf) |
         positive_inf << (4 * kPositiveInf) | negative << (4 * kNegative) | positive << (4 * kPositive);
}

// NaN -> the destination (the canonical NaN), everything else itself.
constexpr uint32_t kCanonicalNaN = table(kDestination, kDestination, kInput, kInput, kInput, kInput, kInput, kInput);
// relu with its NaN canonicalised: NaN -> the canonical NaN, negative and -inf -> +0, the rest (+-0 too) itself.
constexpr uint32_t kReluCanonicalNaN =
    table(kDestination, kDestination, kInput, kInput, kPositiveZero, kInput, kPositiveZero, kInput);
}  // namespace fixup

// out[k] for k in [0, n), as forward_elements in cpu_kernels_impl.h computes it (see the top of this file).
template <typename Element>
inline void forward_elements_avx512(const float* __restrict__ x, const float* __restrict__ bias,
                                    const float* __restrict__ residual, float* __restrict__ out,
                                    const uint32_t* __restrict__ words, int64_t n, KeepRule keep_rule, float scale) {
  constexpr bool kRelu = std::is_same_v<typename Element::Traits::Activation, Relu>;
  const __m512 canonical_nan =
      _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(Float32Storage::kCanonicalNaN)));
  const __m512i activation_table =
      _mm512_set1_epi32(static_cast<int>(kRelu ? fixup::kReluCanonicalNaN : fixup::kCanonicalNaN));
  const __m512i nan_table = _mm512_set1_epi32(static_cast<int>(fixup::kCanonicalNaN));
  const __m512i threshold = _mm512_set1_epi32(static_cast<int>(keep_rule.threshold));
  const __mmask16 keep_any = keep_rule.keep_any ? 0xFFFF : 0;
  const __m512 scales = _mm512_set1_ps(scale);
  // 16 elements from k on, those of `lanes` only (the rest neither read nor written); kFull: all 16.
  auto elements = [&](int64_t k, __mmask16 lanes, auto full) {
    constexpr bool kFull = decltype(full)::value;
    auto load = [&](const float* p) { return kFull ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes, p); };
    const __m512i word = kFull ? _mm512_loadu_si512(words + k) : _mm512_maskz_loadu_epi32(lanes, words + k);
    const __mmask16 keep = _mm512_mask_cmpge_epu32_mask(keep_any & lanes, word, threshold);
    __m512 v = load(x + k);
    if constexpr (Element::kHasBias) v = _mm512_add_ps(v, load(bias + k));
    __m512 result;
    if constexpr (Element::kHasResidual) {
      const __m512 sum = _mm512_add_ps(load(residual + k), _mm512_maskz_mul_ps(keep, v, scales));
      result = _mm512_fixupimm_ps(canonical_nan, sum, nan_table, 0);
    } else {
      result = _mm512_maskz_mul_ps(keep, _mm512_fixupimm_ps(canonical_nan, v, activation_table, 0), scales);
    }
    if constexpr (kFull) {
      _mm512_storeu_ps(out + k, result);
    } else {
      _mm512_mask_storeu_ps(out + k, lanes, result);
    }
  };
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) elements(k, 0xFFFF, std::true_type{});
  if (k < n) elements(k, static_cast<__mmask16>((1u << (n - k)) - 1), std::false_type{});
}

}  // namespace cpu
}  // namespace fused_dropout
