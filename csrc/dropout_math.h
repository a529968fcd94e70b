// The mask rule and the per-element math of every op, shared by the CPU and CUDA kernels (and by the host-side
// test driver of the CUDA launch logic). The specification lives in docs/mask_spec.md; this file is its code.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "op_traits.h"
#include "philox.h"
#include "rounded_arithmetic.h"

namespace fused_dropout {

// keep(i) <=> r_w >= T with T = floor(p * 2^32). Multiplying by 2^32 is exact in float64, so floor() is exact too.
// T is 64-bit because p = 1 gives T = 2^32, which no 32-bit word reaches: nothing is kept.
inline uint64_t keep_threshold(double p) { return static_cast<uint64_t>(floor(p * 4294967296.0)); }

// scale = 1 / (1 - p), computed in float64 and rounded once to the compute type by the caller. With p = 1 nothing
// is kept, so the scale is never applied; 0 keeps it finite.
inline double dropout_scale(double p) { return p < 1.0 ? 1.0 / (1.0 - p) : 0.0; }

// keep(i) <=> r_w >= T, with a 32-bit compare, which vectorises far better than a 64-bit one: T < 2^32 is
// compared directly, and T = 2^32 (p = 1) keeps nothing. This is the one keep rule of every C++ kernel.
struct KeepRule {
  uint32_t threshold;
  bool keep_any;
  FD_HOST_DEVICE explicit KeepRule(uint64_t t)
      : threshold(t > 0xFFFFFFFFull ? 0xFFFFFFFFu : static_cast<uint32_t>(t)), keep_any(t <= 0xFFFFFFFFull) {}
  FD_HOST_DEVICE bool operator()(uint32_t word) const { return keep_any & (word >= threshold); }
};

// The mask index rule, the one place the C++ kernels derive it: element i of a call with offset o uses word
// (o + i) & 3 of Philox group (o + i) >> 2.
struct MaskPosition {
  uint64_t group;
  int word;  // 0..3
};
FD_HOST_DEVICE MaskPosition mask_position(uint64_t offset, uint64_t i) {
  const uint64_t global = offset + i;
  return {global >> 2, static_cast<int>(global & 3u)};
}

// Philox groups covering `count` consecutive elements whose first element uses word `first_word` of its group.
template <typename Int>
FD_HOST_DEVICE Int groups_covering(Int first_word, Int count) {
  return (first_word + count + 3) >> 2;
}

// The compute type: float32 for float16/bfloat16/float32 tensors, float64 for float64 tensors.
template <typename scalar_t>
struct ComputeType {
  using type = float;
};
template <>
struct ComputeType<double> {
  using type = double;
};

// ---- the one NaN every op writes ---------------------------------------------------------------------------
//
// Hardware does not agree on NaN bits: x86 arithmetic that creates a NaN gives the negative default NaN
// 0xFFC00000, a GPU's FMUL gives 0x7FFFFFFF, CUDA's float -> half/bfloat16 conversions give 0x7FFF, and NaN
// operands pass their payload and sign through in some units and not in others. So the spec fixes the bits: every
// NaN written (output, grad_in, grad_bias) is its dtype's canonical quiet NaN (docs/mask_spec.md, Values).

// A binary floating-point storage format (BitsType wide, kMantissaBits stored mantissa bits) and its canonical
// quiet NaN: sign clear, exponent all ones, only the top (quiet) mantissa bit set.
template <typename BitsType, int kMantissaBits>
struct BinaryFloatFormat {
  using Bits = BitsType;
  static constexpr Bits kCanonicalNaN =
      static_cast<Bits>((static_cast<Bits>(~Bits(0)) >> 1) ^ ((Bits(1) << (kMantissaBits - 1)) - 1));
};
using Float16Storage = BinaryFloatFormat<uint16_t, 10>;
using BFloat16Storage = BinaryFloatFormat<uint16_t, 7>;
using Float32Storage = BinaryFloatFormat<uint32_t, 23>;
using Float64Storage = BinaryFloatFormat<uint64_t, 52>;
// The table of docs/mask_spec.md.
static_assert(Float16Storage::kCanonicalNaN == 0x7E00u, "float16 canonical NaN");
static_assert(BFloat16Storage::kCanonicalNaN == 0x7FC0u, "bfloat16 canonical NaN");
static_assert(Float32Storage::kCanonicalNaN == 0x7FC00000u, "float32 canonical NaN");
static_assert(Float64Storage::kCanonicalNaN == 0x7FF8000000000000ull, "float64 canonical NaN");

// StorageFormat<scalar_t>: the format of an element type. float and double are mapped here; the 16-bit types are
// each side's own (c10::Half and c10::BFloat16 in the CPU kernels, __half and __nv_bfloat16 in the CUDA kernels),
// so each side maps its types where it includes their headers.
template <typename scalar_t>
struct StorageFormat;
template <>
struct StorageFormat<float> : Float32Storage {};
template <>
struct StorageFormat<double> : Float64Storage {};

// `rounded` (the element-type rounding of `value`, made by the caller's conversion) with a NaN replaced by the
// canonical NaN. The replacement is selected on the rounded bits: canonicalising before the rounding would not
// survive it, since CUDA's conversions turn every NaN into 0x7FFF. Whether it is a NaN is read from `value`
// (rounding neither makes nor removes a NaN), one compare in the compute type. Branch-free, so element loops
// stay vectorised.
template <typename scalar_t, typename acc_t>
FD_HOST_DEVICE scalar_t with_canonical_nan(scalar_t rounded, acc_t value) {
  using Format = StorageFormat<scalar_t>;
  static_assert(sizeof(typename Format::Bits) == sizeof(scalar_t), "the storage format has the element's width");
  typename Format::Bits bits;
  memcpy(&bits, &rounded, sizeof(bits));
  bits = value != value ? Format::kCanonicalNaN : bits;
  memcpy(&rounded, &bits, sizeof(bits));
  return rounded;
}

// Forward element function of every op of op_list.h: out = [residual +] (keep ? act(x [+ b]) * scale : 0).
// A dropped element contributes exactly 0, whatever x is (inf and NaN included). The element type carries its op
// (kOp), so no code maps an element type back to an op.
template <ForwardOp kOpValue, bool kBias>
struct ForwardElement {
  using Traits = ForwardOpTraits<kOpValue>;
  static_assert(Traits::kOptionalBias || !kBias, "this op takes no bias");
  static constexpr ForwardOp kOp = kOpValue;
  static constexpr bool kHasBias = kBias;
  static constexpr bool kHasResidual = Traits::kResidual;

  template <typename acc_t>
  FD_HOST_DEVICE static acc_t apply(acc_t x, acc_t bias, acc_t residual, bool keep, acc_t scale) {
    const acc_t v = Traits::Activation::forward(kBias ? fd_add(x, bias) : x);
    // Multiply first, select after: a branch-free select is what lets the compilers vectorise the loop.
    const acc_t scaled = fd_mul(v, scale);
    const acc_t dropped = keep ? scaled : acc_t(0);
    return kHasResidual ? fd_add(residual, dropped) : dropped;
  }
};

// Backward element function: grad_in = keep ? grad * scale : 0. For mask_bwd `keep` is the mask; for
// relu_output_bwd it is y > 0 on the saved output (kept and relu active).
template <typename acc_t>
FD_HOST_DEVICE acc_t backward_element(acc_t grad, bool keep, acc_t scale) {
  const acc_t scaled = fd_mul(grad, scale);
  return keep ? scaled : acc_t(0);
}

// Backward element function of the ops that save their input (*_input_bwd): grad_in = keep ? (grad * scale) *
// activation'(v) : 0 at the pre-activation value v = x [+ bias]. A dropped element is exactly 0, even where the
// derivative is NaN.
template <typename Activation, typename acc_t>
FD_HOST_DEVICE acc_t backward_element_through(acc_t grad, bool keep, acc_t scale, acc_t v) {
  const acc_t through = fd_mul(fd_mul(grad, scale), Activation::derivative(v));
  return keep ? through : acc_t(0);
}

}  // namespace fused_dropout
