// The CUDA kernels: __global__ wrappers around the per-thread bodies of kernel_bodies.h, their launch
// geometry, and the dtype/op dispatch behind the entry points of cuda_launch.h. No torch headers here.
#include <cuda_runtime.h>

#include "cuda_launch.h"
#include "kernel_bodies.h"

namespace fused_dropout {
namespace cuda {
namespace {

constexpr int kFlatThreads = 256;
constexpr int kTileThreads = 128;
constexpr int kBlocksPerSm = 8;  // grid-stride kernels: enough resident blocks to hide latency, no more

__device__ __forceinline__ ThreadCoord coord() {
  return {blockIdx.x, blockIdx.y, threadIdx.x, blockDim.x, gridDim.x};
}

template <typename scalar_t, typename Element, bool kVec>
__global__ void __launch_bounds__(kFlatThreads) forward_kernel(ForwardArgs<scalar_t> args) {
  forward_thread<scalar_t, Element, kVec>(args, coord());
}

template <typename scalar_t, BackwardKeep kKeep, bool kVec>
__global__ void __launch_bounds__(kFlatThreads) backward_kernel(BackwardArgs<scalar_t> args) {
  backward_thread<scalar_t, kKeep, kVec>(args, coord());
}

template <typename scalar_t, BackwardKeep kKeep, bool kVec>
__global__ void __launch_bounds__(kTileThreads)
    backward_bias_kernel(BackwardArgs<scalar_t> args, BiasGradPlan plan,
                         typename ComputeType<scalar_t>::type* partial) {
  backward_bias_tile_thread<scalar_t, kKeep, kVec>(args, plan, partial, coord());
}

template <typename scalar_t>
__global__ void __launch_bounds__(kFlatThreads)
    column_sum_kernel(const typename ComputeType<scalar_t>::type* partial, int64_t row_blocks, int64_t row_len,
                      scalar_t* grad_bias) {
  column_sum_thread<scalar_t>(partial, row_blocks, row_len, grad_bias, coord());
}

int64_t flat_grid(int64_t work_items, int threads) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int64_t needed = (work_items + threads - 1) / threads;
  const int64_t resident = static_cast<int64_t>(sms > 0 ? sms : 1) * kBlocksPerSm;
  return needed < resident ? (needed > 0 ? needed : 1) : resident;
}

template <typename scalar_t, typename Element>
void forward_typed(const ForwardLaunch& l, cudaStream_t stream) {
  const ForwardArgs<scalar_t> args{static_cast<const scalar_t*>(l.x), static_cast<const scalar_t*>(l.bias),
                                   static_cast<const scalar_t*>(l.residual), static_cast<scalar_t*>(l.out),
                                   l.numel, l.row_len, l.rng_state, l.threshold, l.scale};
  const int64_t chunks = (l.numel + kChunk<scalar_t> - 1) / kChunk<scalar_t>;
  const dim3 grid(static_cast<unsigned>(flat_grid(chunks, kFlatThreads)));
  if (use_vector_path(args)) {
    forward_kernel<scalar_t, Element, true><<<grid, kFlatThreads, 0, stream>>>(args);
  } else {
    forward_kernel<scalar_t, Element, false><<<grid, kFlatThreads, 0, stream>>>(args);
  }
}

template <typename scalar_t>
void forward_dispatch_op(const ForwardLaunch& l, cudaStream_t stream) {
  const bool bias = l.bias != nullptr;
  switch (l.op) {
    case ForwardOp::kDropout:
      return forward_typed<scalar_t, DropoutElement>(l, stream);
    case ForwardOp::kBiasReluDropout:
      return bias ? forward_typed<scalar_t, BiasReluDropoutElement<true>>(l, stream)
                  : forward_typed<scalar_t, BiasReluDropoutElement<false>>(l, stream);
    case ForwardOp::kDropoutAdd:
      return bias ? forward_typed<scalar_t, DropoutAddElement<true>>(l, stream)
                  : forward_typed<scalar_t, DropoutAddElement<false>>(l, stream);
  }
}

template <typename scalar_t, BackwardKeep kKeep>
void backward_typed(const BackwardLaunch& l, cudaStream_t stream) {
  using acc_t = typename ComputeType<scalar_t>::type;
  const BackwardArgs<scalar_t> args{static_cast<const scalar_t*>(l.grad), static_cast<const scalar_t*>(l.y),
                                    static_cast<scalar_t*>(l.grad_in), static_cast<scalar_t*>(l.grad_bias),
                                    l.numel, l.row_len, l.rng_state, l.threshold, l.scale};
  const bool vectorised = use_vector_path(args);
  if (l.grad_bias == nullptr) {
    const int64_t chunks = (l.numel + kChunk<scalar_t> - 1) / kChunk<scalar_t>;
    const dim3 grid(static_cast<unsigned>(flat_grid(chunks, kFlatThreads)));
    if (vectorised) {
      backward_kernel<scalar_t, kKeep, true><<<grid, kFlatThreads, 0, stream>>>(args);
    } else {
      backward_kernel<scalar_t, kKeep, false><<<grid, kFlatThreads, 0, stream>>>(args);
    }
    return;
  }
  const BiasGradPlan plan = plan_bias_grad(l.numel, l.row_len);
  auto* partial = static_cast<acc_t*>(l.workspace);
  const dim3 tiles(static_cast<unsigned>(bias_tile_column_blocks<scalar_t>(l.row_len, kTileThreads)),
                   static_cast<unsigned>(plan.row_blocks));
  if (vectorised) {
    backward_bias_kernel<scalar_t, kKeep, true><<<tiles, kTileThreads, 0, stream>>>(args, plan, partial);
  } else {
    backward_bias_kernel<scalar_t, kKeep, false><<<tiles, kTileThreads, 0, stream>>>(args, plan, partial);
  }
  const dim3 grid(static_cast<unsigned>(flat_grid(l.row_len, kFlatThreads)));
  column_sum_kernel<scalar_t><<<grid, kFlatThreads, 0, stream>>>(partial, plan.row_blocks, l.row_len,
                                                                 static_cast<scalar_t*>(l.grad_bias));
}

// Calls fn with a value of the CUDA element type matching dtype (only its type is used).
template <typename Fn>
void dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat16:
      return fn(__half());
    case DType::kBFloat16:
      return fn(__nv_bfloat16());
    case DType::kFloat32:
      return fn(float());
    case DType::kFloat64:
      return fn(double());
  }
}

}  // namespace

size_t backward_workspace_bytes(DType dtype, int64_t numel, int64_t row_len) {
  if (numel == 0 || row_len == 0) return 0;
  const BiasGradPlan plan = plan_bias_grad(numel, row_len);
  const size_t acc_size = dtype == DType::kFloat64 ? sizeof(double) : sizeof(float);
  return static_cast<size_t>(plan.row_blocks * row_len) * acc_size;
}

cudaError_t launch_forward(const ForwardLaunch& launch, cudaStream_t stream) {
  if (launch.numel == 0) return cudaSuccess;
  dispatch_dtype(launch.dtype, [&](auto tag) { forward_dispatch_op<decltype(tag)>(launch, stream); });
  return cudaGetLastError();
}

cudaError_t launch_backward(const BackwardLaunch& launch, cudaStream_t stream) {
  if (launch.numel == 0) return cudaSuccess;
  dispatch_dtype(launch.dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    if (launch.keep_from_mask) {
      backward_typed<scalar_t, BackwardKeep::kMask>(launch, stream);
    } else {
      backward_typed<scalar_t, BackwardKeep::kPositiveOutput>(launch, stream);
    }
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace fused_dropout
