// Plain-pointer argument blocks shared by the CPU and CUDA kernels. The torch glue fills them; the kernels never
// see a torch type, which keeps the CUDA sources free of ATen headers.
//
// ForwardArgs / BackwardArgs are the fields of a call (ForwardFields / BackwardFields) plus its mask geometry
// (mask_runs.h). The flat CUDA kernels take the fields alone as their parameter: the 100 bytes of runs in a
// kernel's parameter block made ptxas spill registers in the 32-register scalar kernels, which never read them.
#pragma once

#include <stdint.h>

#include "mask_runs.h"

namespace fused_dropout {

template <typename scalar_t>
struct ForwardFields {
  const scalar_t* x;         // contiguous input, numel elements
  const scalar_t* bias;      // [row_len] or nullptr
  const scalar_t* residual;  // contiguous, numel elements, or nullptr
  scalar_t* out;             // contiguous output, numel elements
  int64_t numel;
  int64_t row_len;            // bias length (x.shape[-1]); 1 when the op has no bias
  const int64_t* seed;        // [1] seed bits, read by the kernel itself (graph-capture safe on CUDA); nullptr when p = 0
  uint64_t offset;            // element-index offset of the mask (docs/mask_spec.md)
  uint64_t threshold;         // keep iff word >= threshold
  double scale;               // 1 / (1 - p), rounded to the compute type in the kernel
};

template <typename scalar_t>
struct ForwardArgs : ForwardFields<scalar_t> {
  MaskRuns runs{};  // the mask geometry (mask_runs.h); no runs: the flat mask
};

template <typename scalar_t>
struct BackwardFields {
  const scalar_t* grad;       // contiguous incoming gradient
  const scalar_t* y;          // saved forward output (relu_output_bwd), else nullptr
  scalar_t* grad_in;          // contiguous gradient of the op's input
  scalar_t* grad_bias;        // [row_len] or nullptr when no bias gradient is wanted
  int64_t numel;
  int64_t row_len;            // the bias (or bias gradient) length when there is one, else 1
  const int64_t* seed;        // mask_bwd, *_input_bwd: [1] seed bits (nullptr when p = 0); relu_output_bwd: nullptr
  uint64_t offset;            // mask_bwd, *_input_bwd: the forward's offset
  uint64_t threshold;
  double scale;
  const scalar_t* x = nullptr;     // *_input_bwd: the forward's contiguous input, numel elements
  const scalar_t* bias = nullptr;  // *_input_bwd: the forward's bias [row_len], or nullptr
};

template <typename scalar_t>
struct BackwardArgs : BackwardFields<scalar_t> {
  MaskRuns runs{};  // mask_bwd, *_input_bwd: the forward's mask geometry (mask_runs.h)
};

}  // namespace fused_dropout
