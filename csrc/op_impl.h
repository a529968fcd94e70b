// The five ops, written once over a Launcher policy: checks, contiguous inputs, output allocation, then
// Launcher::forward / Launcher::backward run the kernels. cpu/cpu_ops.cpp and cuda/cuda_ops.cpp supply the
// launchers and register the ops for their dispatch key.
//
// Launcher must provide:
//   template <typename Element> static void forward(const at::Tensor& x, const std::optional<at::Tensor>& bias,
//       const std::optional<at::Tensor>& residual, at::Tensor& out, const at::Tensor& rng_state, double p);
//   template <BackwardKeep kKeep> static void backward(const at::Tensor& grad, const at::Tensor& keep_source,
//       at::Tensor& grad_in, std::optional<at::Tensor>& grad_bias, double p);
// Every tensor handed to a launcher is contiguous and non-empty.
#pragma once

#include <torch/library.h>

#include "op_glue.h"

namespace fused_dropout {

template <class Launcher>
struct FusedOps {
  template <typename Element>
  static at::Tensor forward(const at::Tensor& x_in, const std::optional<at::Tensor>& bias_in,
                            const std::optional<at::Tensor>& residual_in, const at::Tensor& rng_state, double p) {
    check_floating(x_in, "x");
    check_probability(p);
    check_rng_state(rng_state, x_in);
    check_bias(bias_in, x_in);
    std::optional<at::Tensor> bias, residual;
    if (bias_in.has_value()) bias = bias_in->contiguous();
    if (residual_in.has_value()) {
      check_like(*residual_in, x_in, "residual");
      TORCH_CHECK(residual_in->sizes() == x_in.sizes(), "residual must have shape ", x_in.sizes(), ", got ",
                  residual_in->sizes());
      residual = residual_in->contiguous();
    }
    const at::Tensor x = x_in.contiguous();
    at::Tensor out = empty_output(x);
    if (x.numel() > 0) Launcher::template forward<Element>(x, bias, residual, out, rng_state, p);
    return out;
  }

  template <BackwardKeep kKeep>
  static std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_in, const at::Tensor& keep_source_in,
                                                     double p, bool bias_grad) {
    check_floating(grad_in, "grad");
    check_probability(p);
    if (kKeep == BackwardKeep::kMask) {
      check_rng_state(keep_source_in, grad_in);
    } else {
      check_like(keep_source_in, grad_in, "y");
      TORCH_CHECK(keep_source_in.sizes() == grad_in.sizes(), "y must have shape ", grad_in.sizes());
    }
    const at::Tensor grad = grad_in.contiguous();
    const at::Tensor keep_source = keep_source_in.contiguous();
    at::Tensor grad_x = empty_output(grad);
    const int64_t row_len = row_length(grad);
    at::Tensor grad_bias_tensor = at::zeros({bias_grad ? row_len : 0}, grad.options());
    std::optional<at::Tensor> grad_bias;
    if (bias_grad) grad_bias = grad_bias_tensor;
    if (grad.numel() > 0) Launcher::template backward<kKeep>(grad, keep_source, grad_x, grad_bias, p);
    return {grad_x, grad_bias_tensor};
  }

  static at::Tensor dropout_fwd(const at::Tensor& x, const at::Tensor& rng_state, double p) {
    return forward<DropoutElement>(x, std::nullopt, std::nullopt, rng_state, p);
  }

  static at::Tensor bias_relu_dropout_fwd(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                                          const at::Tensor& rng_state, double p) {
    if (bias.has_value()) return forward<BiasReluDropoutElement<true>>(x, bias, std::nullopt, rng_state, p);
    return forward<BiasReluDropoutElement<false>>(x, std::nullopt, std::nullopt, rng_state, p);
  }

  static at::Tensor dropout_add_fwd(const at::Tensor& x, const at::Tensor& residual,
                                    const std::optional<at::Tensor>& bias, const at::Tensor& rng_state, double p) {
    if (bias.has_value()) return forward<DropoutAddElement<true>>(x, bias, residual, rng_state, p);
    return forward<DropoutAddElement<false>>(x, std::nullopt, residual, rng_state, p);
  }

  static std::tuple<at::Tensor, at::Tensor> dropout_bwd(const at::Tensor& grad, const at::Tensor& rng_state,
                                                        double p, bool bias_grad) {
    return backward<BackwardKeep::kMask>(grad, rng_state, p, bias_grad);
  }

  static std::tuple<at::Tensor, at::Tensor> bias_relu_dropout_bwd(const at::Tensor& grad, const at::Tensor& y,
                                                                  double p, bool bias_grad) {
    return backward<BackwardKeep::kPositiveOutput>(grad, y, p, bias_grad);
  }

  static void register_all(torch::Library& m) {
    m.impl("dropout_fwd", &dropout_fwd);
    m.impl("bias_relu_dropout_fwd", &bias_relu_dropout_fwd);
    m.impl("dropout_add_fwd", &dropout_add_fwd);
    m.impl("mask_bwd", &dropout_bwd);
    m.impl("relu_output_bwd", &bias_relu_dropout_bwd);
  }
};

}  // namespace fused_dropout
