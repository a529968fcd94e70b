// The CUDA kernels' host entry points: plain pointers, enums and a stream, so the torch glue (cuda_ops.cpp)
// needs no CUDA element types and the kernel sources need no torch headers.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "../mask_runs.h"
#include "../op_traits.h"

namespace fused_dropout {
namespace cuda {

enum class DType { kFloat16, kBFloat16, kFloat32, kFloat64 };

struct ForwardLaunch {
  DType dtype;
  ForwardOp op;
  const void* x;
  const void* bias;      // nullptr: no bias
  const void* residual;  // ops with a residual only
  void* out;
  int64_t numel;
  int64_t row_len;
  const int64_t* seed;  // device pointer to the seed bits; nullptr when p = 0
  uint64_t offset;
  uint64_t threshold;
  double scale;
  MaskRuns runs{};  // the mask geometry (mask_runs.h); no runs: the flat mask
};

struct BackwardLaunch {
  DType dtype;
  BackwardOp op;          // where the keep decision comes from: the mask (mask_bwd, *_input_bwd) or y > 0
                          // (relu_output_bwd)
  const void* grad;
  const void* y;          // relu_output_bwd's saved output, else nullptr
  void* grad_in;
  void* grad_bias;        // nullptr: no bias gradient
  void* workspace;        // backward_workspace_bytes() bytes when grad_bias is set
  int64_t numel;
  int64_t row_len;        // the bias (gradient) length when there is one, else 1
  const int64_t* seed;  // mask_bwd's saved device pointer to the seed bits, else nullptr
  uint64_t offset;      // mask_bwd's saved offset
  uint64_t threshold;
  double scale;
  const void* x = nullptr;     // *_input_bwd's saved input, else nullptr
  const void* bias = nullptr;  // *_input_bwd's saved bias [row_len], or nullptr
  MaskRuns runs{};             // mask_bwd's and *_input_bwd's mask geometry (mask_runs.h)
};

// Bytes of device workspace a backward launch with a bias gradient needs (the per-row-block partial sums).
size_t backward_workspace_bytes(DType dtype, int64_t numel, int64_t row_len);

// cudaErrorInvalidValue when the launch names no kernel (an op or dtype outside the lists).
cudaError_t launch_forward(const ForwardLaunch& launch, cudaStream_t stream);
cudaError_t launch_backward(const BackwardLaunch& launch, cudaStream_t stream);

}  // namespace cuda
}  // namespace fused_dropout
