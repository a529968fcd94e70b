// Run-time op -> compile-time element type, generated from op_list.h. The CPU kernels, the CUDA launcher and the
// CUDA emulator of the tests all go through these two functions, so a wrong mapping shows up in every test.
// There is no default: an op outside the list (or a bias for an op that takes none) returns false and the
// caller reports it.
#pragma once

#include <type_traits>

#include "dropout_math.h"

namespace fused_dropout {

template <ForwardOp kOp, typename Fn>
bool with_forward_element(bool has_bias, Fn&& fn) {
  if constexpr (ForwardOpTraits<kOp>::kOptionalBias) {
    if (has_bias) {
      fn(ForwardElement<kOp, true>{});
      return true;
    }
  } else {
    if (has_bias) return false;
  }
  fn(ForwardElement<kOp, false>{});
  return true;
}

// Calls fn(ForwardElement<op, has_bias>{}); false when (op, has_bias) names no element of the list.
template <typename Fn>
bool dispatch_forward_op(ForwardOp op, bool has_bias, Fn&& fn) {
  switch (op) {
#define FD_FORWARD_CASE(name, ...) \
  case ForwardOp::name:            \
    return with_forward_element<ForwardOp::name>(has_bias, fn);
    FD_FORWARD_OPS(FD_FORWARD_CASE)
#undef FD_FORWARD_CASE
  }
  return false;
}

template <BackwardOp kOp>
using BackwardOpTag = std::integral_constant<BackwardOp, kOp>;

// Calls fn(BackwardOpTag<op>{}); false when op is not in the list.
template <typename Fn>
bool dispatch_backward_op(BackwardOp op, Fn&& fn) {
  switch (op) {
#define FD_BACKWARD_CASE(name, ...) \
  case BackwardOp::name:            \
    fn(BackwardOpTag<BackwardOp::name>{}); \
    return true;
    FD_BACKWARD_OPS(FD_BACKWARD_CASE)
#undef FD_BACKWARD_CASE
  }
  return false;
}

}  // namespace fused_dropout
