// fused_dropout::_activation_probe(v, activation, derivative_order): the C++ activation policies
// (activations.h) applied to each element of a float32 or float64 CPU tensor, so the tests can compare them bit for
// bit with the torch and Triton definitions and measure their accuracy. Not part of the public API; one plain loop
// (built with the extension's flags: -ffp-contract=off), not the kernels.
#include <torch/library.h>

#include <ATen/ATen.h>

#include <string>

#include "activations.h"

namespace fused_dropout {
namespace {

template <typename Activation, typename T>
void apply(const T* in, T* out, int64_t n, int64_t order) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = order == 0   ? Activation::forward(in[i])
             : order == 1 ? Activation::derivative(in[i])
                          : Activation::second_derivative(in[i]);
  }
}

template <typename T>
void apply_named(const std::string& activation, const T* in, T* out, int64_t n, int64_t order) {
  if (activation == "identity") return apply<Identity>(in, out, n, order);
  if (activation == "relu") return apply<Relu>(in, out, n, order);
  if (activation == "gelu") return apply<Gelu>(in, out, n, order);
  if (activation == "gelu_tanh") return apply<GeluTanh>(in, out, n, order);
  if (activation == "silu") return apply<Silu>(in, out, n, order);
  TORCH_CHECK(false, "_activation_probe: unknown activation '", activation, "'");
}

at::Tensor activation_probe(const at::Tensor& v, c10::string_view activation, int64_t derivative_order) {
  TORCH_CHECK(v.device().is_cpu(), "_activation_probe runs on CPU tensors");
  TORCH_CHECK(v.scalar_type() == at::kFloat || v.scalar_type() == at::kDouble,
              "_activation_probe computes in float32 or float64, not ", v.scalar_type());
  TORCH_CHECK(derivative_order >= 0 && derivative_order <= 2, "_activation_probe: derivative_order is 0, 1 or 2");
  const at::Tensor in = v.contiguous();
  at::Tensor out = at::empty_like(in);
  const std::string name(activation);
  if (in.scalar_type() == at::kFloat) {
    apply_named(name, in.data_ptr<float>(), out.data_ptr<float>(), in.numel(), derivative_order);
  } else {
    apply_named(name, in.data_ptr<double>(), out.data_ptr<double>(), in.numel(), derivative_order);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fused_dropout, m) {
  m.def("_activation_probe(Tensor v, str activation, int derivative_order) -> Tensor");
}

TORCH_LIBRARY_IMPL(fused_dropout, CPU, m) { m.impl("_activation_probe", &activation_probe); }

}  // namespace fused_dropout
