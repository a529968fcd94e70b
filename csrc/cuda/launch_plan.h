// Everything the CUDA launcher decides on the host, written once over a Runner that launches the kernels:
// dtype and op dispatch (op_dispatch.h), argument blocks, vector or scalar path, flat mask or mask runs, grid
// geometry, bias-gradient tiling. dropout_kernels.cu passes a Runner that launches the __global__ kernels;
// tests/cuda_emulator passes one that runs the same per-thread bodies over every block and thread on the CPU. So
// the emulator tests check the launcher's own dispatch and geometry, not a copy of them.
//
// Runner provides (Grid from launch_geometry.h; kRuns: the kernels of a mask with runs, a separate instantiation of
// the bodies, so the flat kernels stay exactly what they are without runs):
//   template <typename scalar_t, typename Element, bool kVec, bool kRuns>
//       void forward(const Grid&, const ForwardArgs<scalar_t>&);
//   template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns>
//       void backward(const Grid&, const BackwardArgs<scalar_t>&);
//   template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns> void backward_bias_tiles(const Grid&,
//       const BackwardArgs<scalar_t>&, const BiasGradPlan&, typename ComputeType<scalar_t>::type* partial);
//   template <typename scalar_t> void column_sum(const Grid&, const typename ComputeType<scalar_t>::type* partial,
//       int64_t row_blocks, int64_t row_len, scalar_t* grad_bias);
#pragma once

#include <stddef.h>

#include <type_traits>

#include "../op_dispatch.h"
#include "cuda_launch.h"
#include "kernel_bodies.h"
#include "launch_geometry.h"

namespace fused_dropout {
namespace cuda {

// Calls fn with a value of the CUDA element type matching dtype (only its type is used); false for no dtype.
template <typename Fn>
bool dispatch_dtype(DType dtype, Fn&& fn) {
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
  return false;
}

// Calls fn(std::true_type{}) for the vector path, fn(std::false_type{}) for the scalar one.
template <typename Fn>
void with_vector_path(bool vectorised, Fn&& fn) {
  if (vectorised) {
    fn(std::true_type{});
  } else {
    fn(std::false_type{});
  }
}

// Calls fn(std::true_type{}) when the launch's mask has runs (mask_runs.h) and its kernel reads the mask
// (kReadsMask), else fn(std::false_type{}). Without kReadsMask (relu_output_bwd: keep is y > 0) no runs kernel is
// instantiated at all.
template <bool kReadsMask, typename Fn>
void with_mask_geometry(const MaskRuns& runs, Fn&& fn) {
  if constexpr (kReadsMask) {
    if (!runs.flat()) {
      fn(std::true_type{});
      return;
    }
  }
  fn(std::false_type{});
}

// The smooth activations (gelu, gelu_tanh, silu) and their derivatives: 50-110 arithmetic instructions per
// element, so their kernels are compute-bound and need registers more than the latency hiding of a higher
// occupancy: a thread's chunk (16 elements of a 16-bit type) of gelu spills at 128 registers.
template <typename Activation>
constexpr bool kComputeBound = !std::is_same<Activation, Identity>::value && !std::is_same<Activation, Relu>::value;
constexpr int kComputeBoundBlocksPerSm = 1;  // up to 255 registers per thread at kFlatThreads

// The resident blocks per multiprocessor each grid-stride kernel is compiled for and launched with (kRuns: its
// kernel of a mask with runs).
template <typename scalar_t, typename Element>
constexpr int kFlatForwardBlocksPerSm =
    kComputeBound<typename Element::Traits::Activation>
        ? kComputeBoundBlocksPerSm
        : blocks_per_sm(sizeof(scalar_t), 1 + int{Element::kHasResidual} + int{Element::kHasBias});
template <typename scalar_t, typename Element, bool kRuns = false>
constexpr int kForwardBlocksPerSm = kRuns ? runs_blocks_per_sm(kFlatForwardBlocksPerSm<scalar_t, Element>)
                                          : kFlatForwardBlocksPerSm<scalar_t, Element>;
template <typename scalar_t, BackwardOp kOp>
constexpr int kFlatBackwardBlocksPerSm = kComputeBound<typename BackwardOpTraits<kOp>::Activation>
                                             ? kComputeBoundBlocksPerSm
                                             : blocks_per_sm(sizeof(scalar_t), kKeepFromRngState<kOp> ? 1 : 2);
template <typename scalar_t, BackwardOp kOp, bool kRuns = false>
constexpr int kBackwardBlocksPerSm = kRuns ? runs_blocks_per_sm(kFlatBackwardBlocksPerSm<scalar_t, kOp>)
                                           : kFlatBackwardBlocksPerSm<scalar_t, kOp>;
template <typename scalar_t>
constexpr int kColumnSumBlocksPerSm = blocks_per_sm(sizeof(scalar_t), 1);

template <typename scalar_t>
int64_t chunks_of(int64_t numel) {
  return (numel + kChunk<scalar_t> - 1) / kChunk<scalar_t>;
}

inline size_t bias_grad_workspace_bytes(DType dtype, int64_t numel, int64_t row_len) {
  if (numel == 0 || row_len == 0) return 0;
  const BiasGradPlan plan = plan_bias_grad(numel, row_len);
  const size_t acc_size = dtype == DType::kFloat64 ? sizeof(double) : sizeof(float);
  return static_cast<size_t>(plan.row_blocks * row_len) * acc_size;
}

// False when the launch names no kernel (its op or dtype is outside the lists); nothing ran then.
template <class Runner>
bool run_forward(const ForwardLaunch& l, const LaunchShape& shape, Runner& runner) {
  return dispatch_dtype(l.dtype, [&](auto scalar_tag) {
    using scalar_t = decltype(scalar_tag);
    return dispatch_forward_op(l.op, l.bias != nullptr, [&](auto element) {
      using Element = decltype(element);
      const ForwardArgs<scalar_t> args{{static_cast<const scalar_t*>(l.x), static_cast<const scalar_t*>(l.bias),
                                        static_cast<const scalar_t*>(l.residual), static_cast<scalar_t*>(l.out),
                                        l.numel, l.row_len, l.seed, l.offset, l.threshold, l.scale},
                                       l.runs};
      with_vector_path(use_vector_path(args), [&](auto vec) {
        with_mask_geometry<true>(l.runs, [&](auto runs) {
          constexpr bool kRuns = decltype(runs)::value;
          const Grid grid =
              flat_grid(chunks_of<scalar_t>(l.numel), kForwardBlocksPerSm<scalar_t, Element, kRuns>, shape);
          runner.template forward<scalar_t, Element, decltype(vec)::value, kRuns>(grid, args);
        });
      });
    });
  });
}

template <class Runner>
bool run_backward(const BackwardLaunch& l, const LaunchShape& shape, Runner& runner) {
  return dispatch_dtype(l.dtype, [&](auto scalar_tag) {
    using scalar_t = decltype(scalar_tag);
    using acc_t = typename ComputeType<scalar_t>::type;
    return dispatch_backward_op(l.op, [&](auto op_tag) {
      constexpr BackwardOp kOp = decltype(op_tag)::value;
      const BackwardArgs<scalar_t> args{{static_cast<const scalar_t*>(l.grad), static_cast<const scalar_t*>(l.y),
                                         static_cast<scalar_t*>(l.grad_in), static_cast<scalar_t*>(l.grad_bias),
                                         l.numel, l.row_len, l.seed, l.offset, l.threshold, l.scale,
                                         static_cast<const scalar_t*>(l.x), static_cast<const scalar_t*>(l.bias)},
                                        l.runs};
      with_vector_path(use_vector_path(args), [&](auto vec) {
        constexpr bool kVec = decltype(vec)::value;
        if (l.grad_bias == nullptr) {
          with_mask_geometry<kKeepFromRngState<kOp>>(l.runs, [&](auto runs) {
            constexpr bool kRuns = decltype(runs)::value;
            runner.template backward<scalar_t, kOp, kVec, kRuns>(
                flat_grid(chunks_of<scalar_t>(l.numel), kBackwardBlocksPerSm<scalar_t, kOp, kRuns>, shape), args);
          });
          return;
        }
        const BiasGradPlan plan = plan_bias_grad(l.numel, l.row_len);
        auto* partial = static_cast<acc_t*>(l.workspace);
        const Grid tiles{bias_tile_column_blocks<scalar_t>(l.row_len, shape.tile_threads), plan.row_blocks,
                         shape.tile_threads};
        with_mask_geometry<kKeepFromRngState<kOp>>(l.runs, [&](auto runs) {
          runner.template backward_bias_tiles<scalar_t, kOp, kVec, decltype(runs)::value>(tiles, args, plan, partial);
        });
        const Grid sums = flat_grid(l.row_len, kColumnSumBlocksPerSm<scalar_t>, shape);
        runner.template column_sum<scalar_t>(sums, partial, plan.row_blocks, l.row_len,
                                             static_cast<scalar_t*>(l.grad_bias));
      });
    });
  });
}

}  // namespace cuda
}  // namespace fused_dropout
