// CPU kernels of the three ops (forward and backward), templated over the tensor type and the element function.
#pragma once

#include "../dropout_math.h"
#include "../kernel_args.h"

namespace fused_dropout {
namespace cpu {

template <typename scalar_t, typename Element>
void forward(const ForwardArgs<scalar_t>& args);

template <typename scalar_t, BackwardKeep kKeep>
void backward(const BackwardArgs<scalar_t>& args);

// "avx2" or "generic": which compiled variant the dispatcher runs on this machine.
const char* isa_name();

// Selects the variant by name ("avx2" or "generic"); false when this CPU or build cannot run it.
bool set_isa(const char* name);

}  // namespace cpu
}  // namespace fused_dropout
