// CPU registration of the fused_dropout ops: the shared op logic of op_impl.h with a launcher that runs the
// kernels of cpu_kernels.cpp. The schemas are defined in Python (fused_dropout/_schema.py).
#include "../op_impl.h"
#include "cpu_kernels.h"

namespace fused_dropout {
namespace {

template <typename scalar_t>
const scalar_t* data_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<scalar_t>() : nullptr;
}

struct CpuLauncher {
  template <typename Element>
  static void forward(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                      const std::optional<at::Tensor>& residual, at::Tensor& out, const at::Tensor& rng_state,
                      double p) {
    FD_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_dropout_forward_cpu", [&] {
      const ForwardArgs<scalar_t> args{x.data_ptr<scalar_t>(), data_or_null<scalar_t>(bias),
                                       data_or_null<scalar_t>(residual), out.data_ptr<scalar_t>(), x.numel(),
                                       Element::kHasBias ? row_length(x) : 1, rng_state.data_ptr<int64_t>(),
                                       keep_threshold(p), dropout_scale(p)};
      cpu::forward<scalar_t, Element>(args);
    });
  }

  template <BackwardKeep kKeep>
  static void backward(const at::Tensor& grad, const at::Tensor& keep_source, at::Tensor& grad_in,
                       std::optional<at::Tensor>& grad_bias, double p) {
    constexpr bool kFromMask = kKeep == BackwardKeep::kMask;
    FD_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "fused_dropout_backward_cpu", [&] {
      const BackwardArgs<scalar_t> args{grad.data_ptr<scalar_t>(),
                                        kFromMask ? nullptr : keep_source.data_ptr<scalar_t>(),
                                        grad_in.data_ptr<scalar_t>(),
                                        grad_bias.has_value() ? grad_bias->data_ptr<scalar_t>() : nullptr,
                                        grad.numel(),
                                        grad_bias.has_value() ? row_length(grad) : 1,
                                        kFromMask ? keep_source.data_ptr<int64_t>() : nullptr,
                                        keep_threshold(p),
                                        dropout_scale(p)};
      cpu::backward<scalar_t, kKeep>(args);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fused_dropout, CPU, m) { FusedOps<CpuLauncher>::register_all(m); }

}  // namespace fused_dropout
