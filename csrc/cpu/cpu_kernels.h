// CPU kernels of the ops of op_list.h (forward and backward), templated over the tensor type; the op is chosen
// at run time through op_dispatch.h, which instantiates one kernel per element type of the list.
#pragma once

#include "../kernel_args.h"
#include "../op_traits.h"

namespace fused_dropout {
namespace cpu {

// False when (op, args.bias != nullptr) names no element of the op list; nothing ran then.
template <typename scalar_t>
bool forward(ForwardOp op, const ForwardArgs<scalar_t>& args);

// False when op is not in the backward list; nothing ran then.
template <typename scalar_t>
bool backward(BackwardOp op, const BackwardArgs<scalar_t>& args);

// "avx512", "avx2" or "generic": which compiled variant the dispatcher runs (by default the widest this CPU runs).
const char* isa_name();

// Selects the variant by name ("avx512", "avx2" or "generic"); false when this CPU or build cannot run it.
bool set_isa(const char* name);

}  // namespace cpu
}  // namespace fused_dropout
