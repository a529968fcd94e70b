// The CUDA kernels: __global__ wrappers around the per-thread bodies of kernel_bodies.h, and the entry points of
// cuda_launch.h, which hand launch_plan.h a Runner that launches them. No torch headers here.
#include <cuda_runtime.h>

#include "cuda_launch.h"
#include "kernel_bodies.h"
#include "launch_geometry.h"
#include "launch_plan.h"

namespace fused_dropout {
namespace cuda {
namespace {

__device__ __forceinline__ ThreadCoord coord() {
  return {blockIdx.x, blockIdx.y, threadIdx.x, blockDim.x, gridDim.x};
}

// The flat kernels take the call's fields without the mask geometry (kernel_args.h: the runs in the parameter
// block cost the scalar kernels spills); their bodies see the flat mask (no runs).
template <typename scalar_t, typename Element, bool kVec>
__global__ void __launch_bounds__(kFlatThreads, kForwardBlocksPerSm<scalar_t, Element>)
    forward_kernel(ForwardFields<scalar_t> fields) {
  forward_thread<scalar_t, Element, kVec>(ForwardArgs<scalar_t>{fields}, coord());
}

template <typename scalar_t, BackwardOp kOp, bool kVec>
__global__ void __launch_bounds__(kFlatThreads, kBackwardBlocksPerSm<scalar_t, kOp>)
    backward_kernel(BackwardFields<scalar_t> fields) {
  backward_thread<scalar_t, kOp, kVec>(BackwardArgs<scalar_t>{fields}, coord());
}

template <typename scalar_t, BackwardOp kOp, bool kVec>
__global__ void __launch_bounds__(kTileThreads)
    backward_bias_kernel(BackwardFields<scalar_t> fields, BiasGradPlan plan,
                         typename ComputeType<scalar_t>::type* partial) {
  backward_bias_tile_thread<scalar_t, kOp, kVec>(BackwardArgs<scalar_t>{fields}, plan, partial, coord());
}

// The same bodies under a mask with runs (kRuns = true). Kernels of their own rather than a template flag on the
// ones above: the flat kernels keep their names (which the tests and the H100 model read: kVec is their last
// template argument) and their code.
template <typename scalar_t, typename Element, bool kVec>
__global__ void __launch_bounds__(kFlatThreads, kForwardBlocksPerSm<scalar_t, Element, true>)
    forward_runs_kernel(ForwardArgs<scalar_t> args) {
  forward_thread<scalar_t, Element, kVec, true>(args, coord());
}

template <typename scalar_t, BackwardOp kOp, bool kVec>
__global__ void __launch_bounds__(kFlatThreads, kBackwardBlocksPerSm<scalar_t, kOp, true>)
    backward_runs_kernel(BackwardArgs<scalar_t> args) {
  backward_thread<scalar_t, kOp, kVec, true>(args, coord());
}

template <typename scalar_t, BackwardOp kOp, bool kVec>
__global__ void __launch_bounds__(kTileThreads, kRunsTileBlocksPerSm)
    backward_bias_runs_kernel(BackwardArgs<scalar_t> args, BiasGradPlan plan,
                              typename ComputeType<scalar_t>::type* partial) {
  backward_bias_tile_thread<scalar_t, kOp, kVec, true>(args, plan, partial, coord());
}

template <typename scalar_t>
__global__ void __launch_bounds__(kFlatThreads, kColumnSumBlocksPerSm<scalar_t>)
    column_sum_kernel(const typename ComputeType<scalar_t>::type* partial, int64_t row_blocks, int64_t row_len,
                      scalar_t* grad_bias) {
  column_sum_thread<scalar_t>(partial, row_blocks, row_len, grad_bias, coord());
}

dim3 blocks_of(const Grid& grid) { return dim3(static_cast<unsigned>(grid.x), static_cast<unsigned>(grid.y)); }

// The Runner of launch_plan.h that launches the kernels above on one stream.
struct DeviceRunner {
  cudaStream_t stream;

  template <typename scalar_t, typename Element, bool kVec, bool kRuns>
  void forward(const Grid& g, const ForwardArgs<scalar_t>& args) const {
    if constexpr (kRuns) {
      forward_runs_kernel<scalar_t, Element, kVec><<<blocks_of(g), g.block, 0, stream>>>(args);
    } else {
      forward_kernel<scalar_t, Element, kVec><<<blocks_of(g), g.block, 0, stream>>>(args);
    }
  }

  template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns>
  void backward(const Grid& g, const BackwardArgs<scalar_t>& args) const {
    if constexpr (kRuns) {
      backward_runs_kernel<scalar_t, kOp, kVec><<<blocks_of(g), g.block, 0, stream>>>(args);
    } else {
      backward_kernel<scalar_t, kOp, kVec><<<blocks_of(g), g.block, 0, stream>>>(args);
    }
  }

  template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns>
  void backward_bias_tiles(const Grid& g, const BackwardArgs<scalar_t>& args, const BiasGradPlan& plan,
                           typename ComputeType<scalar_t>::type* partial) const {
    if constexpr (kRuns) {
      backward_bias_runs_kernel<scalar_t, kOp, kVec><<<blocks_of(g), g.block, 0, stream>>>(args, plan, partial);
    } else {
      backward_bias_kernel<scalar_t, kOp, kVec><<<blocks_of(g), g.block, 0, stream>>>(args, plan, partial);
    }
  }

  template <typename scalar_t>
  void column_sum(const Grid& g, const typename ComputeType<scalar_t>::type* partial, int64_t row_blocks,
                  int64_t row_len, scalar_t* grad_bias) const {
    column_sum_kernel<scalar_t><<<blocks_of(g), g.block, 0, stream>>>(partial, row_blocks, row_len, grad_bias);
  }
};

LaunchShape current_device_shape() {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  return device_launch_shape(sms);
}

}  // namespace

size_t backward_workspace_bytes(DType dtype, int64_t numel, int64_t row_len) {
  return bias_grad_workspace_bytes(dtype, numel, row_len);
}

cudaError_t launch_forward(const ForwardLaunch& launch, cudaStream_t stream) {
  if (launch.numel == 0) return cudaSuccess;
  DeviceRunner runner{stream};
  if (!run_forward(launch, current_device_shape(), runner)) return cudaErrorInvalidValue;
  return cudaGetLastError();
}

cudaError_t launch_backward(const BackwardLaunch& launch, cudaStream_t stream) {
  if (launch.numel == 0) return cudaSuccess;
  DeviceRunner runner{stream};
  if (!run_backward(launch, current_device_shape(), runner)) return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fused_dropout
