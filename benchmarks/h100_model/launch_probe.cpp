// The launch geometry of every CUDA kernel, as the launcher itself computes it: csrc/cuda/launch_plan.h's
// run_forward / run_backward over a Runner that records each kernel's grid instead of launching it, on a device
// of one multiprocessor and a tensor large enough that every grid-stride grid reaches its cap. So a grid-stride
// kernel's grid is exactly the resident blocks per multiprocessor it is launched with (and compiled for, through
// __launch_bounds__), read from the launcher's code, never re-typed. Built with a host compiler by
// benchmarks/h100_model/cuda_kernels.py (no GPU, nothing is dereferenced: the pointers only carry alignment).
//
// Prints one line per kernel:  <kind> <op> <bias 0|1> <dtype> vector <0|1> grid <x> <y> block <threads>
// kind: forward, backward (grid-stride), backward_tiles (the row-tiled bias gradient), column_sum.
#include <cstdint>
#include <cstdio>
#include <string>

#include "cuda/launch_plan.h"

using namespace fused_dropout;
using namespace fused_dropout::cuda;

namespace {

constexpr int64_t kNumel = int64_t{1} << 26;  // every grid-stride grid of one multiprocessor reaches its cap
constexpr int64_t kRowLen = int64_t{1} << 14;  // column sums too: 64 blocks of 256 threads needed

struct Launch {
  const char* kind;
  Grid grid;
  bool vec;
};

// The Runner of launch_plan.h: remembers the grids, runs nothing.
struct RecordingRunner {
  Launch launches[2];
  int count = 0;
  void record(const char* kind, const Grid& g, bool vec) { launches[count++] = {kind, g, vec}; }

  // The probe's launches have no mask runs (kRuns is false): the flat kernels are the ones modeled.
  template <typename scalar_t, typename Element, bool kVec, bool kRuns>
  void forward(const Grid& g, const ForwardArgs<scalar_t>&) { record("forward", g, kVec); }

  template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns>
  void backward(const Grid& g, const BackwardArgs<scalar_t>&) { record("backward", g, kVec); }

  template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns>
  void backward_bias_tiles(const Grid& g, const BackwardArgs<scalar_t>&, const BiasGradPlan&,
                           typename ComputeType<scalar_t>::type*) {
    record("backward_tiles", g, kVec);
  }

  template <typename scalar_t>
  void column_sum(const Grid& g, const typename ComputeType<scalar_t>::type*, int64_t, int64_t, scalar_t*) {
    record("column_sum", g, launches[0].vec);
  }
};

void print(const RecordingRunner& runner, const char* op, bool bias, const char* dtype) {
  for (int i = 0; i < runner.count; ++i) {
    const Launch& l = runner.launches[i];
    std::printf("%s %s %d %s vector %d grid %lld %lld block %d\n", l.kind, op, bias ? 1 : 0, dtype, l.vec ? 1 : 0,
                static_cast<long long>(l.grid.x), static_cast<long long>(l.grid.y), l.grid.block);
  }
}

// 64-byte aligned stand-ins for device pointers.
void* pointer(int n) { return reinterpret_cast<void*>(static_cast<uintptr_t>(n) << 20); }

}  // namespace

int main() {
  const LaunchShape shape = device_launch_shape(1);
  const int64_t seed = 0;
  const struct {
    DType dtype;
    const char* name;
  } dtypes[] = {{DType::kBFloat16, "bf16"}, {DType::kFloat16, "fp16"}, {DType::kFloat32, "fp32"},
                {DType::kFloat64, "fp64"}};
  for (const auto& d : dtypes) {
#define FD_PROBE_FORWARD(op_name, Activation, optional_bias, residual, backward)                                \
  for (bool bias : {false, true}) {                                                                            \
    if (bias && !(optional_bias)) continue;                                                                    \
    const ForwardLaunch launch{d.dtype, ForwardOp::op_name, pointer(1), bias ? pointer(2) : nullptr,           \
                               (residual) ? pointer(3) : nullptr, pointer(4), kNumel, bias ? kRowLen : 1, &seed, \
                               0, 0, 1.0};                                                                     \
    RecordingRunner runner;                                                                                    \
    if (!run_forward(launch, shape, runner)) return 1;                                                         \
    print(runner, #op_name, bias, d.name);                                                                     \
  }
    FD_FORWARD_OPS(FD_PROBE_FORWARD)
#undef FD_PROBE_FORWARD
#define FD_PROBE_BACKWARD(op_name, saved, Activation)                                                          \
  for (bool bias_grad : {false, true}) {                                                                       \
    const bool from_y = std::string(#saved) == "y", input = std::string(#saved) == "input";                    \
    const BackwardLaunch launch{d.dtype, BackwardOp::op_name, pointer(1), from_y ? pointer(2) : nullptr,       \
                                pointer(3), bias_grad ? pointer(4) : nullptr, bias_grad ? pointer(5) : nullptr, \
                                kNumel, (bias_grad || input) ? kRowLen : 1, from_y ? nullptr : &seed, 0, 0, 1.0, \
                                input ? pointer(6) : nullptr, input ? pointer(7) : nullptr};                   \
    RecordingRunner runner;                                                                                    \
    if (!run_backward(launch, shape, runner)) return 1;                                                        \
    print(runner, #op_name, bias_grad, d.name);                                                                \
  }
    FD_BACKWARD_OPS(FD_PROBE_BACKWARD)
#undef FD_PROBE_BACKWARD
  }
  return 0;
}
