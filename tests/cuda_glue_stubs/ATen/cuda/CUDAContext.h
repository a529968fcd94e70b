// Test stub: the one declaration cuda_ops.cpp uses from this header, so the glue can be compiled (syntax only)
// on a machine whose torch is a CPU build. The real header comes with a CUDA build of torch.
#pragma once
#include <cuda_runtime_api.h>

namespace at::cuda {
struct CUDAStream {
  operator cudaStream_t() const { return nullptr; }
};
CUDAStream getCurrentCUDAStream(signed char device_index = -1);
}  // namespace at::cuda
