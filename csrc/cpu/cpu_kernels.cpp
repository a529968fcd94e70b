// Instantiates the CPU kernels twice (baseline ISA and AVX2) and dispatches on the running CPU. Both variants
// compute the same bits: the code is the same and floating-point contraction is off (-ffp-contract=off).
#include "cpu_kernels.h"

#include "../op_dispatch.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <type_traits>
#include <vector>

namespace fused_dropout {

// The CPU's 16-bit element types, in the canonical-NaN rule of dropout_math.h.
template <>
struct StorageFormat<c10::Half> : Float16Storage {};
template <>
struct StorageFormat<c10::BFloat16> : BFloat16Storage {};

namespace cpu {

#define FD_CPU_ISA_NAMESPACE generic
#include "cpu_kernels_impl.h"
#undef FD_CPU_ISA_NAMESPACE

#if defined(__x86_64__) && defined(__GNUC__)
#define FD_HAVE_AVX2_VARIANT 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
}  // namespace cpu
}  // namespace fused_dropout
#include "philox_avx2.h"
namespace fused_dropout {
namespace cpu {
#define FD_CPU_ISA_NAMESPACE avx2
#define FD_CPU_PHILOX_AVX2 1
#include "cpu_kernels_impl.h"
#undef FD_CPU_PHILOX_AVX2
#undef FD_CPU_ISA_NAMESPACE
#pragma GCC pop_options
#endif

namespace {
bool cpu_supports_avx2() {
#if defined(FD_HAVE_AVX2_VARIANT)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// Which variant runs; tests switch it to prove both variants give the same bits.
std::atomic<bool> g_use_avx2{cpu_supports_avx2()};

bool use_avx2() { return g_use_avx2.load(std::memory_order_relaxed); }
}  // namespace

const char* isa_name() { return use_avx2() ? "avx2" : "generic"; }

bool set_isa(const char* name) {
  const std::string wanted(name);
  if (wanted == "generic") {
    g_use_avx2 = false;
    return true;
  }
  if (wanted == "avx2" && cpu_supports_avx2()) {
    g_use_avx2 = true;
    return true;
  }
  return false;
}

// The op list's element types are instantiated here, through the dispatch both variants share.
template <typename scalar_t>
bool forward(ForwardOp op, const ForwardArgs<scalar_t>& args) {
  return dispatch_forward_op(op, args.bias != nullptr, [&](auto element) {
    using Element = decltype(element);
#if defined(FD_HAVE_AVX2_VARIANT)
    if (use_avx2()) return avx2::forward<scalar_t, Element>(args);
#endif
    generic::forward<scalar_t, Element>(args);
  });
}

template <typename scalar_t>
bool backward(BackwardOp op, const BackwardArgs<scalar_t>& args) {
  return dispatch_backward_op(op, [&](auto op_tag) {
    constexpr BackwardOp kOp = decltype(op_tag)::value;
#if defined(FD_HAVE_AVX2_VARIANT)
    if (use_avx2()) return avx2::backward<scalar_t, kOp>(args);
#endif
    generic::backward<scalar_t, kOp>(args);
  });
}

#define FD_INSTANTIATE_CPU(scalar_t)                                        \
  template bool forward<scalar_t>(ForwardOp, const ForwardArgs<scalar_t>&); \
  template bool backward<scalar_t>(BackwardOp, const BackwardArgs<scalar_t>&);

FD_INSTANTIATE_CPU(float)
FD_INSTANTIATE_CPU(double)
FD_INSTANTIATE_CPU(c10::Half)
FD_INSTANTIATE_CPU(c10::BFloat16)

}  // namespace cpu
}  // namespace fused_dropout
