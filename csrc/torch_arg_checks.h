// Torch-side argument checks shared by the CPU and CUDA ops (ops_over_launcher.h): a safety net behind the
// Python validation, for callers that reach torch.ops.fused_dropout directly.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace fused_dropout {

// The bias runs along the last dimension; a 0-d tensor is one row of one element.
inline int64_t row_len_of(const at::Tensor& x) { return x.dim() == 0 ? 1 : x.size(-1); }

inline void check_floating(const at::Tensor& t, const char* name) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, name,
              " must be float16, bfloat16, float32 or float64, got ", dtype);
}

inline void check_probability(double p) {
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "p must be in [0, 1], got ", p);
}

// The seed: a one-element int64 tensor on x's device (the kernels read it there), needed whenever p > 0.
inline void check_seed(const std::optional<at::Tensor>& seed, const at::Tensor& x, double p) {
  TORCH_CHECK(seed.has_value() || p == 0.0, "seed must be given when p > 0 (a one-element int64 tensor)");
  if (!seed.has_value()) return;
  TORCH_CHECK(seed->scalar_type() == at::kLong && seed->numel() == 1,
              "seed must be a one-element int64 tensor, got ", seed->scalar_type(), " of ", seed->numel(), " elements");
  TORCH_CHECK(seed->device() == x.device(), "seed must be on ", x.device(), ", got ", seed->device());
}

inline void check_offset(int64_t offset) { TORCH_CHECK(offset >= 0, "offset must be in [0, 2**63), got ", offset); }

inline void check_like(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), name, " must have dtype ", x.scalar_type(), ", got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), name, " must be on ", x.device(), ", got ", t.device());
}

inline void check_bias(const std::optional<at::Tensor>& bias, const at::Tensor& x) {
  if (!bias.has_value()) return;
  check_like(*bias, x, "bias");
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == row_len_of(x), "bias must have shape [", row_len_of(x),
              "], got ", bias->sizes());
}

inline void check_same_shape_like(const at::Tensor& t, const at::Tensor& x, const char* name) {
  check_like(t, x, name);
  TORCH_CHECK(t.sizes() == x.sizes(), name, " must have shape ", x.sizes(), ", got ", t.sizes());
}

}  // namespace fused_dropout
