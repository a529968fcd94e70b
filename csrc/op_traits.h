// The op enums and per-op traits, generated from op_list.h. No torch and no CUDA types: the kernels, the torch
// glue and the test drivers all include it.
#pragma once

#include "activations.h"
#include "op_list.h"

namespace fused_dropout {

#define FD_ENUMERATOR(name, ...) name,
enum class ForwardOp { FD_FORWARD_OPS(FD_ENUMERATOR) };
enum class BackwardOp { FD_BACKWARD_OPS(FD_ENUMERATOR) };
#undef FD_ENUMERATOR

// What a backward op saved from the forward, and so where its keep decision comes from.
enum class SavedForBackward { rng_state, y, input };

// The saved arguments in the backward op's schema: the RNG state is the seed tensor (absent when p = 0), the
// forward's offset and its mask geometry (mask_runs.h; empty: the flat mask); the output is one tensor; the input
// is x and the optional bias, then the RNG state.
constexpr const char* saved_schema(SavedForBackward saved) {
  return saved == SavedForBackward::rng_state ? "Tensor? seed, int offset, int[] mask_runs"
         : saved == SavedForBackward::y       ? "Tensor y"
                                              : "Tensor x, Tensor? bias, Tensor? seed, int offset, int[] mask_runs";
}

template <ForwardOp kOp>
struct ForwardOpTraits;
template <BackwardOp kOp>
struct BackwardOpTraits;

#define FD_FORWARD_TRAITS(op_name, ActivationPolicy, optional_bias, residual, backward_op) \
  template <>                                                                              \
  struct ForwardOpTraits<ForwardOp::op_name> {                                             \
    static constexpr const char* kName = #op_name;                                         \
    using Activation = ActivationPolicy;                                                   \
    static constexpr bool kOptionalBias = optional_bias;                                   \
    static constexpr bool kResidual = residual;                                            \
    static constexpr BackwardOp kBackward = BackwardOp::backward_op;                       \
  };
FD_FORWARD_OPS(FD_FORWARD_TRAITS)
#undef FD_FORWARD_TRAITS

#define FD_BACKWARD_TRAITS(op_name, saved, ActivationPolicy)                                              \
  template <>                                                                                             \
  struct BackwardOpTraits<BackwardOp::op_name> {                                                          \
    static constexpr const char* kName = #op_name;                                                        \
    static constexpr const char* kSavedName = #saved;                                                     \
    static constexpr const char* kSavedSchema = saved_schema(SavedForBackward::saved);                    \
    static constexpr bool kKeepFromRngState = SavedForBackward::saved != SavedForBackward::y;             \
    static constexpr bool kSavesInput = SavedForBackward::saved == SavedForBackward::input;               \
    using Activation = ActivationPolicy; /* whose derivative multiplies grad_in (kSavesInput only) */     \
  };
FD_BACKWARD_OPS(FD_BACKWARD_TRAITS)
#undef FD_BACKWARD_TRAITS

template <BackwardOp kOp>
constexpr bool kKeepFromRngState = BackwardOpTraits<kOp>::kKeepFromRngState;
template <BackwardOp kOp>
constexpr bool kSavesInput = BackwardOpTraits<kOp>::kSavesInput;

}  // namespace fused_dropout
