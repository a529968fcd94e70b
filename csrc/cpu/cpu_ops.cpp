// CPU implementations of the fused_dropout ops: checks, allocation and dtype dispatch around the kernels of
// cpu_kernels.cpp. The schemas are defined in Python (fused_dropout/_schema.py), in one place for every backend.
#include <torch/library.h>

#include "../op_glue.h"
#include "cpu_kernels.h"

namespace fused_dropout {
namespace {

template <typename Element>
at::Tensor forward_cpu(const at::Tensor& x_in, const std::optional<at::Tensor>& bias_in,
                       const std::optional<at::Tensor>& residual_in, const at::Tensor& rng_state, double p) {
  check_floating(x_in, "x");
  check_probability(p);
  check_rng_state(rng_state, x_in);
  check_bias(bias_in, x_in);
  const at::Tensor x = x_in.contiguous();
  std::optional<at::Tensor> bias, residual;
  if (bias_in.has_value()) bias = bias_in->contiguous();
  if (residual_in.has_value()) {
    check_like(*residual_in, x_in, "residual");
    TORCH_CHECK(residual_in->sizes() == x_in.sizes(), "residual must have shape ", x_in.sizes(), ", got ",
                residual_in->sizes());
    residual = residual_in->contiguous();
  }
  at::Tensor out = empty_output(x);
  if (x.numel() == 0) return out;
  FD_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_dropout_forward_cpu", [&] {
    ForwardArgs<scalar_t> args{x.data_ptr<scalar_t>(), optional_data<scalar_t>(bias),
                               optional_data<scalar_t>(residual), out.data_ptr<scalar_t>(), x.numel(),
                               Element::kHasBias ? row_length(x) : 1, rng_state.data_ptr<int64_t>(),
                               keep_threshold(p), dropout_scale(p)};
    cpu::forward<scalar_t, Element>(args);
  });
  return out;
}

at::Tensor dropout_fwd(const at::Tensor& x, const at::Tensor& rng_state, double p) {
  return forward_cpu<DropoutElement>(x, std::nullopt, std::nullopt, rng_state, p);
}

at::Tensor bias_relu_dropout_fwd(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                                 const at::Tensor& rng_state, double p) {
  if (bias.has_value()) return forward_cpu<BiasReluDropoutElement<true>>(x, bias, std::nullopt, rng_state, p);
  return forward_cpu<BiasReluDropoutElement<false>>(x, std::nullopt, std::nullopt, rng_state, p);
}

at::Tensor dropout_add_fwd(const at::Tensor& x, const at::Tensor& residual, const std::optional<at::Tensor>& bias,
                           const at::Tensor& rng_state, double p) {
  if (bias.has_value()) return forward_cpu<DropoutAddElement<true>>(x, bias, residual, rng_state, p);
  return forward_cpu<DropoutAddElement<false>>(x, std::nullopt, residual, rng_state, p);
}

template <BackwardKeep kKeep>
std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_in, const at::Tensor& keep_source,
                                                double p, bool bias_grad) {
  check_floating(grad_in, "grad");
  check_probability(p);
  if (kKeep == BackwardKeep::kMask) {
    check_rng_state(keep_source, grad_in);
  } else {
    check_like(keep_source, grad_in, "y");
    TORCH_CHECK(keep_source.sizes() == grad_in.sizes(), "y must have shape ", grad_in.sizes());
  }
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor y = kKeep == BackwardKeep::kMask ? keep_source : keep_source.contiguous();
  at::Tensor grad_x = empty_output(grad);
  const int64_t row_len = row_length(grad);
  at::Tensor grad_bias = at::zeros({bias_grad ? row_len : 0}, grad.options());
  if (grad.numel() == 0) return {grad_x, grad_bias};
  FD_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "fused_dropout_backward_cpu", [&] {
    BackwardArgs<scalar_t> args{grad.data_ptr<scalar_t>(),
                                kKeep == BackwardKeep::kMask ? nullptr : y.data_ptr<scalar_t>(),
                                grad_x.data_ptr<scalar_t>(),
                                bias_grad ? grad_bias.data_ptr<scalar_t>() : nullptr,
                                grad.numel(),
                                bias_grad ? row_len : 1,
                                kKeep == BackwardKeep::kMask ? y.data_ptr<int64_t>() : nullptr,
                                keep_threshold(p),
                                dropout_scale(p)};
    cpu::backward<scalar_t, kKeep>(args);
  });
  return {grad_x, grad_bias};
}

std::tuple<at::Tensor, at::Tensor> dropout_bwd(const at::Tensor& grad, const at::Tensor& rng_state, double p,
                                               bool bias_grad) {
  return backward_cpu<BackwardKeep::kMask>(grad, rng_state, p, bias_grad);
}

std::tuple<at::Tensor, at::Tensor> bias_relu_dropout_bwd(const at::Tensor& grad, const at::Tensor& y, double p,
                                                         bool bias_grad) {
  return backward_cpu<BackwardKeep::kPositiveOutput>(grad, y, p, bias_grad);
}

}  // namespace

TORCH_LIBRARY_IMPL(fused_dropout, CPU, m) {
  m.impl("dropout_fwd", &dropout_fwd);
  m.impl("bias_relu_dropout_fwd", &bias_relu_dropout_fwd);
  m.impl("dropout_add_fwd", &dropout_add_fwd);
  m.impl("dropout_bwd", &dropout_bwd);
  m.impl("bias_relu_dropout_bwd", &bias_relu_dropout_bwd);
}

}  // namespace fused_dropout
