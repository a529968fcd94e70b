// CUDA registration of the fused_dropout ops: the ops of ops_over_launcher.h with a launcher that calls the
// kernels' entry points (cuda_launch.h) on torch's current stream. The RNG state stays on the device: kernels
// read it themselves, so nothing here synchronises and CUDA-graph capture works.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../dropout_math.h"
#include "../ops_over_launcher.h"
#include "cuda_launch.h"

namespace fused_dropout {
namespace {

cuda::DType cuda_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kHalf:
      return cuda::DType::kFloat16;
    case at::kBFloat16:
      return cuda::DType::kBFloat16;
    case at::kFloat:
      return cuda::DType::kFloat32;
    case at::kDouble:
      return cuda::DType::kFloat64;
    default:
      TORCH_CHECK(false, "unsupported dtype ", t.scalar_type());
  }
}

const void* data_or_null(const std::optional<at::Tensor>& t) { return t.has_value() ? t->data_ptr() : nullptr; }

void check_launch(cudaError_t status, const char* what) {
  // cudaErrorInvalidValue before any launch: the op is not in csrc/op_list.h (see launch_plan.h).
  TORCH_CHECK(status == cudaSuccess, "fused_dropout ", what, " kernel launch failed: ", cudaGetErrorString(status));
}

struct CudaLauncher {
  static void forward(ForwardOp op, const at::Tensor& x, const std::optional<at::Tensor>& bias,
                      const std::optional<at::Tensor>& residual, at::Tensor& out, const RngArgs& rng, double p) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cuda::ForwardLaunch launch{cuda_dtype(x), op, x.data_ptr(), data_or_null(bias), data_or_null(residual),
                                     out.data_ptr(), x.numel(), bias.has_value() ? row_len_of(x) : 1,
                                     rng.seed_data(), rng.offset, keep_threshold(p), dropout_scale(p), rng.runs};
    check_launch(cuda::launch_forward(launch, at::cuda::getCurrentCUDAStream()), "forward");
  }

  static void backward(BackwardOp op, const at::Tensor& grad, const RngArgs& rng, const SavedInput& saved,
                       at::Tensor& grad_in, std::optional<at::Tensor>& grad_bias, double p) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const int64_t row_len = grad_bias.has_value() || saved.bias.has_value() ? row_len_of(grad) : 1;
    at::Tensor workspace;
    if (grad_bias.has_value()) {
      const size_t bytes = cuda::backward_workspace_bytes(cuda_dtype(grad), grad.numel(), row_len);
      workspace = at::empty({static_cast<int64_t>(bytes)}, grad.options().dtype(at::kByte));
    }
    const cuda::BackwardLaunch launch{cuda_dtype(grad),
                                      op,
                                      grad.data_ptr(),
                                      data_or_null(saved.y),
                                      grad_in.data_ptr(),
                                      grad_bias.has_value() ? grad_bias->data_ptr() : nullptr,
                                      workspace.defined() ? workspace.data_ptr() : nullptr,
                                      grad.numel(),
                                      row_len,
                                      rng.seed_data(),
                                      rng.offset,
                                      keep_threshold(p),
                                      dropout_scale(p),
                                      data_or_null(saved.x),
                                      data_or_null(saved.bias),
                                      rng.runs};
    check_launch(cuda::launch_backward(launch, at::cuda::getCurrentCUDAStream()), "backward");
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fused_dropout, CUDA, m) { register_ops<CudaLauncher>(m); }

}  // namespace fused_dropout
