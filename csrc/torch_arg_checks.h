// Torch-side argument checks shared by the CPU and CUDA ops (ops_over_launcher.h): a safety net behind the
// Python validation, for callers that reach torch.ops.fused_dropout directly.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/safe_numerics.h>

#include <optional>

#include "mask_runs.h"

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

// The mask runs (mask_runs.h) of a tensor of numel elements, as the kernels take them: none (the flat mask) or 1 to
// kMaxMaskRuns (extent, stride) pairs, extents >= 1 multiplying to numel, strides >= 0, and every mask index within
// 2^63 past the offset.
inline MaskRuns mask_runs_of(c10::IntArrayRef values, int64_t numel, int64_t offset) {
  MaskRuns runs;
  if (values.empty()) return runs;
  TORCH_CHECK(values.size() % 2 == 0 && values.size() <= 2 * kMaxMaskRuns, "mask_runs must be 1 to ", kMaxMaskRuns,
              " (extent, stride) pairs, got ", values);
  int64_t product = 1;
  uint64_t last_index = static_cast<uint64_t>(offset);
  bool fits = true;
  for (size_t r = 0; r < values.size() / 2; ++r) {
    const int64_t extent = values[2 * r], stride = values[2 * r + 1];
    TORCH_CHECK(extent >= 1 && stride >= 0, "mask_runs must have extents >= 1 and strides >= 0, got ", values);
    TORCH_CHECK(!c10::mul_overflows(product, extent, &product), "mask_runs' extents overflow int64: ", values);
    // (extent - 1) * stride added to the largest index so far, checked against 2^63.
    uint64_t step = 0;
    fits = fits && !c10::mul_overflows(static_cast<uint64_t>(extent - 1), static_cast<uint64_t>(stride), &step) &&
           step < (uint64_t(1) << 63) - last_index;
    if (fits) last_index += step;
    runs.extent[r] = extent;
    runs.stride[r] = stride;
  }
  TORCH_CHECK(product == numel, "mask_runs' extents must multiply to the tensor's ", numel, " elements, got ",
              values);
  TORCH_CHECK(fits, "offset + the largest mask index of mask_runs ", values, " passes 2**63");
  runs.count = static_cast<int32_t>(values.size() / 2);
  return runs;
}

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
