// Instantiates the CPU kernels three times (baseline ISA, AVX2, AVX-512) and dispatches on the running CPU, the
// widest variant it can run by default. All variants compute the same bits: the code is the same, the vector
// Philox and half conversions are exact, and floating-point contraction is off (-ffp-contract=off).
#include "cpu_kernels.h"
#include "isa_targets.h"

#include "../op_dispatch.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cstring>
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
#define FD_HAVE_X86_VARIANTS 1
FD_BEGIN_ISA(FD_ISA_AVX2)
}  // namespace cpu
}  // namespace fused_dropout
#include "forward_elements_avx2.h"
#include "philox_avx2.h"
namespace fused_dropout {
namespace cpu {
#define FD_CPU_ISA_NAMESPACE avx2
#define FD_CPU_PHILOX_AVX2 1
#define FD_CPU_HALF_F16C_AVX2 1
#define FD_CPU_FORWARD_ELEMENTS_AVX2 1
#include "cpu_kernels_impl.h"
#undef FD_CPU_FORWARD_ELEMENTS_AVX2
#undef FD_CPU_HALF_F16C_AVX2
#undef FD_CPU_PHILOX_AVX2
#undef FD_CPU_ISA_NAMESPACE
FD_END_ISA

FD_BEGIN_ISA(FD_ISA_AVX512)
}  // namespace cpu
}  // namespace fused_dropout
#include "forward_elements_avx512.h"
#include "philox_avx512.h"
namespace fused_dropout {
namespace cpu {
#define FD_CPU_ISA_NAMESPACE avx512
#define FD_CPU_PHILOX_AVX512 1
#define FD_CPU_HALF_F16C_AVX512 1
#define FD_CPU_FORWARD_ELEMENTS_AVX512 1
#include "cpu_kernels_impl.h"
#undef FD_CPU_FORWARD_ELEMENTS_AVX512
#undef FD_CPU_HALF_F16C_AVX512
#undef FD_CPU_PHILOX_AVX512
#undef FD_CPU_ISA_NAMESPACE
FD_END_ISA
#endif

namespace {
enum class Isa : int { generic, avx2, avx512 };

bool cpu_supports(Isa isa) {
#if defined(FD_HAVE_X86_VARIANTS)
  switch (isa) {
    case Isa::generic:
      return true;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::avx512:
      return cpu_supports(Isa::avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
  return false;
#else
  return isa == Isa::generic;
#endif
}

Isa widest_supported() {
  for (Isa isa : {Isa::avx512, Isa::avx2}) {
    if (cpu_supports(isa)) return isa;
  }
  return Isa::generic;
}

constexpr const char* kIsaNames[] = {"generic", "avx2", "avx512"};

// Which variant runs; tests switch it to prove every variant gives the same bits.
std::atomic<Isa> g_isa{widest_supported()};

Isa current_isa() { return g_isa.load(std::memory_order_relaxed); }
}  // namespace

const char* isa_name() { return kIsaNames[static_cast<int>(current_isa())]; }

bool set_isa(const char* name) {
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (std::strcmp(name, kIsaNames[static_cast<int>(isa)]) == 0 && cpu_supports(isa)) {
      g_isa = isa;
      return true;
    }
  }
  return false;
}

// The op list's element types are instantiated here, through the dispatch both variants share.
template <typename scalar_t>
bool forward(ForwardOp op, const ForwardArgs<scalar_t>& args) {
  return dispatch_forward_op(op, args.bias != nullptr, [&](auto element) {
    using Element = decltype(element);
#if defined(FD_HAVE_X86_VARIANTS)
    switch (current_isa()) {
      case Isa::avx512:
        return avx512::forward<scalar_t, Element>(args);
      case Isa::avx2:
        return avx2::forward<scalar_t, Element>(args);
      case Isa::generic:
        break;
    }
#endif
    generic::forward<scalar_t, Element>(args);
  });
}

template <typename scalar_t>
bool backward(BackwardOp op, const BackwardArgs<scalar_t>& args) {
  return dispatch_backward_op(op, [&](auto op_tag) {
    constexpr BackwardOp kOp = decltype(op_tag)::value;
#if defined(FD_HAVE_X86_VARIANTS)
    switch (current_isa()) {
      case Isa::avx512:
        return avx512::backward<scalar_t, kOp>(args);
      case Isa::avx2:
        return avx2::backward<scalar_t, kOp>(args);
      case Isa::generic:
        break;
    }
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
