// The schemas of the native ops (torch.ops.fused_dropout.<name>), generated from op_list.h. This library owns the
// fused_dropout namespace; Python adds its triton_ and torch_ families with a FRAGMENT library. The seed is a
// one-element int64 tensor on the input's device, which the kernels read themselves (so a drawn seed needs no
// host sync and a captured CUDA graph draws a new one per replay); it may be None when p = 0. The offset is a
// plain int.
#include <torch/library.h>

#include <string>

#include "op_traits.h"

namespace fused_dropout {
namespace {

// <name>_fwd(Tensor x[, Tensor residual][, Tensor? bias], Tensor? seed, int offset, float p,
//            int[] mask_runs=[]) -> Tensor; the mask runs (mask_runs.h) default to the flat mask.
template <ForwardOp kOp>
std::string forward_schema() {
  using Traits = ForwardOpTraits<kOp>;
  std::string schema = std::string(Traits::kName) + "_fwd(Tensor x";
  if (Traits::kResidual) schema += ", Tensor residual";
  if (Traits::kOptionalBias) schema += ", Tensor? bias";
  return schema + ", Tensor? seed, int offset, float p, int[] mask_runs=[]) -> Tensor";
}

// <name>(Tensor grad, <saved>, float p, bool bias_grad) -> (Tensor, Tensor): grad_in, and the column
// sums of grad_in when bias_grad (else an empty tensor).
template <BackwardOp kOp>
std::string backward_schema() {
  using Traits = BackwardOpTraits<kOp>;
  return std::string(Traits::kName) + "(Tensor grad, " + Traits::kSavedSchema +
         ", float p, bool bias_grad) -> (Tensor, Tensor)";
}

}  // namespace

TORCH_LIBRARY(fused_dropout, m) {
#define FD_DEFINE_FORWARD(name, ...) m.def(forward_schema<ForwardOp::name>().c_str());
  FD_FORWARD_OPS(FD_DEFINE_FORWARD)
#undef FD_DEFINE_FORWARD
#define FD_DEFINE_BACKWARD(name, ...) m.def(backward_schema<BackwardOp::name>().c_str());
  FD_BACKWARD_OPS(FD_DEFINE_BACKWARD)
#undef FD_DEFINE_BACKWARD
}

}  // namespace fused_dropout
