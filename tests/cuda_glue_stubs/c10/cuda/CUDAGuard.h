// Test stub: the one class cuda_ops.cpp uses from this header (see ATen/cuda/CUDAContext.h beside it).
#pragma once
#include <c10/core/Device.h>

namespace c10::cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device device);
};
}  // namespace c10::cuda
