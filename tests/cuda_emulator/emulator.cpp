// Runs the CUDA kernels' per-thread bodies (csrc/cuda/kernel_bodies.h) on the CPU, over every block and thread,
// through the launcher's own host logic (csrc/cuda/launch_plan.h: op and dtype dispatch, vector or scalar path,
// flat mask or mask runs, grid geometry, bias-gradient tiling). Only the kernel launch differs: a Runner that loops
// over the grid. Built and driven by tests/test_cuda_logic.py, which checks the outputs against the mask
// specification.
//
// usage: emulator --list   prints the op list of csrc/op_list.h, one op a line:
//                            forward <name> optional_bias <0|1> residual <0|1> backward <backward op>
//                            backward <name> saved <rng_state|y>
//        emulator DIR      with DIR/spec.txt holding "key value" lines and DIR/<tensor>.bin the raw inputs;
//                          writes DIR/out.bin (forward) or DIR/grad_in.bin and DIR/grad_bias.bin (backward) and
//                          prints the grid of the last kernel, "vector_path <0|1>" and "mask_runs <0|1>" (whether
//                          the kernels of a mask with runs ran). An optional key "runs" gives the mask runs as
//                          comma-separated extent,stride pairs (the ops' mask_runs argument); "-" or no key: none.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/launch_plan.h"

using namespace fused_dropout;
using namespace fused_dropout::cuda;

namespace {

std::map<std::string, std::string> spec;

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::exit(2);
}

std::string get(const std::string& key) {
  auto it = spec.find(key);
  if (it == spec.end()) fail("spec lacks " + key);
  return it->second;
}
int64_t get_int(const std::string& key) { return std::stoll(get(key)); }
uint64_t get_u64(const std::string& key) { return std::stoull(get(key)); }

// A buffer whose data starts `misalign` elements past a 16-byte boundary (as a storage offset would). Output
// buffers are filled with 0xFF bytes (NaN for every float type), so an element no thread wrote shows up.
constexpr unsigned char kPoison = 0xFF;

struct Buffer {
  std::vector<unsigned char> bytes;
  void* data = nullptr;
  Buffer(size_t n, size_t element_size, int64_t misalign, unsigned char fill = 0)
      : bytes((n + 64) * element_size + 64, fill) {
    auto base = reinterpret_cast<uintptr_t>(bytes.data());
    base = (base + 63) & ~uintptr_t(63);
    data = reinterpret_cast<void*>(base + static_cast<uintptr_t>(misalign) * element_size);
  }
};

Buffer read_tensor(const std::string& dir, const std::string& name, size_t n, size_t element_size,
                   int64_t misalign) {
  Buffer buffer(n, element_size, misalign);
  std::ifstream in(dir + "/" + name + ".bin", std::ios::binary);
  in.read(static_cast<char*>(buffer.data), static_cast<std::streamsize>(n * element_size));
  if (static_cast<size_t>(in.gcount()) != n * element_size) fail("short read of " + name);
  return buffer;
}

void write_tensor(const std::string& dir, const std::string& name, const void* data, size_t bytes) {
  std::ofstream out(dir + "/" + name + ".bin", std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
}

// The Runner of launch_plan.h: each "kernel" runs its per-thread body for every block and thread of its grid.
struct EmulatorRunner {
  bool vector_path = false;
  bool mask_runs = false;
  Grid last_grid{0, 0, 0};

  template <typename Body>
  void run_grid(const Grid& g, bool vec, bool runs, Body&& body) {
    vector_path = vec;
    mask_runs = runs;
    last_grid = g;
    for (int64_t by = 0; by < g.y; ++by)
      for (int64_t bx = 0; bx < g.x; ++bx)
        for (int64_t t = 0; t < g.block; ++t) body(ThreadCoord{bx, by, t, g.block, g.x});
  }

  template <typename scalar_t, typename Element, bool kVec, bool kRuns>
  void forward(const Grid& g, const ForwardArgs<scalar_t>& args) {
    run_grid(g, kVec, kRuns, [&](const ThreadCoord& t) { forward_thread<scalar_t, Element, kVec, kRuns>(args, t); });
  }

  template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns>
  void backward(const Grid& g, const BackwardArgs<scalar_t>& args) {
    run_grid(g, kVec, kRuns, [&](const ThreadCoord& t) { backward_thread<scalar_t, kOp, kVec, kRuns>(args, t); });
  }

  template <typename scalar_t, BackwardOp kOp, bool kVec, bool kRuns>
  void backward_bias_tiles(const Grid& g, const BackwardArgs<scalar_t>& args, const BiasGradPlan& plan,
                           typename ComputeType<scalar_t>::type* partial) {
    run_grid(g, kVec, kRuns, [&](const ThreadCoord& t) {
      backward_bias_tile_thread<scalar_t, kOp, kVec, kRuns>(args, plan, partial, t);
    });
  }

  template <typename scalar_t>
  void column_sum(const Grid& g, const typename ComputeType<scalar_t>::type* partial, int64_t row_blocks,
                  int64_t row_len, scalar_t* grad_bias) {
    // The tiles' path and mask are what the test checks.
    run_grid(g, vector_path, mask_runs, [&](const ThreadCoord& t) {
      column_sum_thread<scalar_t>(partial, row_blocks, row_len, grad_bias, t);
    });
  }
};

// "launcher": the launcher's shape on a GPU with `sms` multiprocessors; "grid_stride": tiny blocks and grids, so
// every thread loops.
LaunchShape launch_shape() {
  const std::string geometry = get("geometry");
  if (geometry == "launcher") return device_launch_shape(static_cast<int>(get_int("sms")));
  if (geometry == "grid_stride") return {24, 32, 1};  // one multiprocessor of 24-thread blocks
  fail("unknown geometry " + geometry);
}

DType dtype_named(const std::string& name, size_t& element_size) {
  if (name == "float16") return element_size = 2, DType::kFloat16;
  if (name == "bfloat16") return element_size = 2, DType::kBFloat16;
  if (name == "float32") return element_size = 4, DType::kFloat32;
  if (name == "float64") return element_size = 8, DType::kFloat64;
  fail("unknown dtype " + name);
}

// The enumerator whose list name is `name`; exits for a name outside the list.
ForwardOp forward_op_named(const std::string& name) {
#define FD_MATCH(op_name, ...) \
  if (name == #op_name) return ForwardOp::op_name;
  FD_FORWARD_OPS(FD_MATCH)
#undef FD_MATCH
  fail("forward op " + name + " is not in csrc/op_list.h");
}

BackwardOp backward_op_named(const std::string& name) {
#define FD_MATCH(op_name, ...) \
  if (name == #op_name) return BackwardOp::op_name;
  FD_BACKWARD_OPS(FD_MATCH)
#undef FD_MATCH
  fail("backward op " + name + " is not in csrc/op_list.h");
}

void print_op_list() {
#define FD_PRINT_FORWARD(name, Activation, optional_bias, residual, backward)                                  \
  std::printf("forward %s optional_bias %d residual %d backward %s\n", #name, (optional_bias) ? 1 : 0,        \
              (residual) ? 1 : 0, #backward);
  FD_FORWARD_OPS(FD_PRINT_FORWARD)
#undef FD_PRINT_FORWARD
#define FD_PRINT_BACKWARD(name, saved, Activation) \
  std::printf("backward %s saved %s activation %s\n", #name, #saved, #Activation);
  FD_BACKWARD_OPS(FD_PRINT_BACKWARD)
#undef FD_PRINT_BACKWARD
}

void report(const EmulatorRunner& runner) {
  std::printf("grid %lld %lld block %d\n", static_cast<long long>(runner.last_grid.x),
              static_cast<long long>(runner.last_grid.y), runner.last_grid.block);
  std::printf("vector_path %d\n", runner.vector_path ? 1 : 0);
  std::printf("mask_runs %d\n", runner.mask_runs ? 1 : 0);
}

// The "runs" key: extent,stride,extent,stride,... (outermost first), or "-" for none (the flat mask), for a tensor
// of numel elements.
MaskRuns spec_runs(int64_t numel) {
  MaskRuns runs;
  auto it = spec.find("runs");
  if (it == spec.end() || it->second == "-") return runs;
  std::vector<int64_t> values;
  std::istringstream items(it->second);
  for (std::string item; std::getline(items, item, ',');) values.push_back(std::stoll(item));
  if (values.size() % 2 != 0 || values.size() > 2 * kMaxMaskRuns) fail("runs must be up to 6 extent,stride pairs");
  runs.count = static_cast<int32_t>(values.size() / 2);
  int64_t product = 1;
  for (int r = 0; r < runs.count; ++r) {
    runs.extent[r] = values[2 * r];
    runs.stride[r] = values[2 * r + 1];
    product *= runs.extent[r];
  }
  if (product != numel) fail("the runs' extents must multiply to numel");
  return runs;
}

void forward(const std::string& dir, DType dtype, size_t element_size) {
  const ForwardOp op = forward_op_named(get("op"));
  const int64_t numel = get_int("numel"), row_len = get_int("row_len"), misalign = get_int("misalign");
  const bool has_bias = get_int("has_bias") != 0, has_residual = get_int("has_residual") != 0;
  Buffer x = read_tensor(dir, "x", numel, element_size, misalign);
  Buffer residual = read_tensor(dir, has_residual ? "residual" : "x", numel, element_size, misalign);
  Buffer bias = read_tensor(dir, has_bias ? "bias" : "x", has_bias ? row_len : 0, element_size, 0);
  Buffer out(numel, element_size, 0, kPoison);
  const int64_t seed = static_cast<int64_t>(get_u64("seed"));
  const uint64_t offset = get_u64("offset");
  const ForwardLaunch launch{dtype, op, x.data, has_bias ? bias.data : nullptr,
                             has_residual ? residual.data : nullptr, out.data, numel, has_bias ? row_len : 1,
                             &seed, offset, get_u64("threshold"), std::strtod(get("scale").c_str(), nullptr),
                             spec_runs(numel)};
  EmulatorRunner runner;
  if (!run_forward(launch, launch_shape(), runner)) fail("the launcher found no kernel for this forward launch");
  write_tensor(dir, "out", out.data, numel * element_size);
  report(runner);
}

void backward(const std::string& dir, DType dtype, size_t element_size) {
  const BackwardOp op = backward_op_named(get("op"));
  const int64_t numel = get_int("numel"), row_len = get_int("row_len"), misalign = get_int("misalign");
  const bool bias_grad = get_int("bias_grad") != 0, saved_y = get("saved") == "y";
  const bool saved_input = get("saved") == "input", saved_bias = saved_input && get_int("has_bias") != 0;
  Buffer grad = read_tensor(dir, "grad", numel, element_size, misalign);
  Buffer y = read_tensor(dir, saved_y ? "y" : "grad", numel, element_size, misalign);
  Buffer x = read_tensor(dir, saved_input ? "x" : "grad", numel, element_size, misalign);
  Buffer bias = read_tensor(dir, saved_bias ? "bias" : "grad", saved_bias ? row_len : 0, element_size, 0);
  Buffer grad_in(numel, element_size, 0, kPoison), grad_bias(bias_grad ? row_len : 0, element_size, 0, kPoison);
  // The partial sums start poisoned too: every one the column sums read must have been written.
  const size_t workspace_bytes = bias_grad ? bias_grad_workspace_bytes(dtype, numel, row_len) : 0;
  Buffer workspace(workspace_bytes, 1, 0, kPoison);
  const int64_t seed = static_cast<int64_t>(get_u64("seed"));
  const uint64_t offset = get_u64("offset");
  const BackwardLaunch launch{dtype, op, grad.data, saved_y ? y.data : nullptr, grad_in.data,
                              bias_grad ? grad_bias.data : nullptr, bias_grad ? workspace.data : nullptr, numel,
                              bias_grad || saved_bias ? row_len : 1, saved_y ? nullptr : &seed, offset,
                              get_u64("threshold"), std::strtod(get("scale").c_str(), nullptr),
                              saved_input ? x.data : nullptr, saved_bias ? bias.data : nullptr, spec_runs(numel)};
  EmulatorRunner runner;
  if (!run_backward(launch, launch_shape(), runner)) fail("the launcher found no kernel for this backward launch");
  if (bias_grad) write_tensor(dir, "grad_bias", grad_bias.data, row_len * element_size);
  write_tensor(dir, "grad_in", grad_in.data, numel * element_size);
  report(runner);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) fail("usage: emulator --list | emulator DIR");
  const std::string arg = argv[1];
  if (arg == "--list") {
    print_op_list();
    return 0;
  }
  std::ifstream in(arg + "/spec.txt");
  std::string key, value;
  while (in >> key >> value) spec[key] = value;
  size_t element_size = 0;
  const DType dtype = dtype_named(get("dtype"), element_size);
  const std::string kind = get("kind");
  if (kind == "forward") {
    forward(arg, dtype, element_size);
  } else if (kind == "backward") {
    backward(arg, dtype, element_size);
  } else {
    fail("unknown kind " + kind);
  }
  return 0;
}
