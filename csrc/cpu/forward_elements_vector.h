// What the hand-written forward element loops (forward_elements_avx2.h, forward_elements_avx512.h) cover and when
// they apply; both compute the same bits as the plain loop (forward_elements in cpu_kernels_impl.h).
// Include inside namespace fused_dropout::cpu.
#pragma once

#include <limits>
#include <type_traits>

#include "../activations.h"
#include "../dropout_math.h"

namespace fused_dropout {
namespace cpu {

// Whether Element's forward has a hand-written element loop: float32 compute, the identity or relu, and relu only
// without a residual (relu before a residual add would need its own NaN step).
template <typename Element, typename T>
constexpr bool kHasVectorForwardElements =
    std::is_same_v<T, float> &&
    (std::is_same_v<typename Element::Traits::Activation, Identity> ||
     (std::is_same_v<typename Element::Traits::Activation, Relu> && !Element::kHasResidual));

// The condition the loops rely on, checked once per call: a finite scale > 0 (or nothing kept, when the scale is
// never applied). With it the canonical NaN times scale is the canonical NaN (x86 passes a quiet NaN operand
// through) and the product is a NaN only where v is one, so canonicalising v before the multiply canonicalises the
// product. Calls with another scale take the plain loop.
inline bool vector_forward_elements_apply(const KeepRule& keep_rule, float scale) {
  return !keep_rule.keep_any || (scale > 0.0f && scale <= std::numeric_limits<float>::max());
}

}  // namespace cpu
}  // namespace fused_dropout
