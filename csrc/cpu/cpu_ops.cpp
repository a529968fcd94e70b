// CPU registration of the fused_dropout ops: the ops of ops_over_launcher.h with a launcher that runs the kernels
// of cpu_kernels.cpp. The schemas are op_schemas.cpp's.
#include <ATen/Dispatch.h>

#include "../ops_over_launcher.h"
#include "../dropout_math.h"
#include "cpu_kernels.h"

namespace fused_dropout {
namespace {

template <typename scalar_t>
const scalar_t* data_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<scalar_t>() : nullptr;
}

// ATen's scalar types map to the kernels' own types here (c10::Half, c10::BFloat16): no conversion needed.
#define FD_DISPATCH_FLOATING_TYPES(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

struct CpuLauncher {
  static void forward(ForwardOp op, const at::Tensor& x, const std::optional<at::Tensor>& bias,
                      const std::optional<at::Tensor>& residual, at::Tensor& out, const RngArgs& rng, double p) {
    bool listed = false;
    FD_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_dropout_forward_cpu", [&] {
      const ForwardArgs<scalar_t> args{{x.data_ptr<scalar_t>(), data_or_null<scalar_t>(bias),
                                        data_or_null<scalar_t>(residual), out.data_ptr<scalar_t>(), x.numel(),
                                        bias.has_value() ? row_len_of(x) : 1, rng.seed_data(), rng.offset,
                                        keep_threshold(p), dropout_scale(p)},
                                       rng.runs};
      listed = cpu::forward<scalar_t>(op, args);
    });
    TORCH_CHECK(listed, "fused_dropout: forward op ", static_cast<int>(op), (bias.has_value() ? " with" : " without"),
                " bias has no CPU kernel (not in csrc/op_list.h)");
  }

  static void backward(BackwardOp op, const at::Tensor& grad, const RngArgs& rng, const SavedInput& saved,
                       at::Tensor& grad_in, std::optional<at::Tensor>& grad_bias, double p) {
    bool listed = false;
    FD_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "fused_dropout_backward_cpu", [&] {
      const BackwardArgs<scalar_t> args{{grad.data_ptr<scalar_t>(),
                                         data_or_null<scalar_t>(saved.y),
                                         grad_in.data_ptr<scalar_t>(),
                                         grad_bias.has_value() ? grad_bias->data_ptr<scalar_t>() : nullptr,
                                         grad.numel(),
                                         grad_bias.has_value() || saved.bias.has_value() ? row_len_of(grad) : 1,
                                         rng.seed_data(),
                                         rng.offset,
                                         keep_threshold(p),
                                         dropout_scale(p),
                                         data_or_null<scalar_t>(saved.x),
                                         data_or_null<scalar_t>(saved.bias)},
                                        rng.runs};
      listed = cpu::backward<scalar_t>(op, args);
    });
    TORCH_CHECK(listed, "fused_dropout: backward op ", static_cast<int>(op),
                " has no CPU kernel (not in csrc/op_list.h)");
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fused_dropout, CPU, m) { register_ops<CpuLauncher>(m); }

}  // namespace fused_dropout
