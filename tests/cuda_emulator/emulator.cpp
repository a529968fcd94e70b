// Runs the CUDA kernels' per-thread bodies (csrc/cuda/kernel_bodies.h) on the CPU, over every block and thread
// of a launch geometry, with the launcher's own decisions (vector or scalar path, bias-gradient tiling). Built
// and driven by tests/test_cuda_logic.py, which checks the outputs against the mask specification.
//
// usage: emulator DIR   with DIR/spec.txt holding "key value" lines and DIR/<tensor>.bin the raw inputs;
// writes DIR/out.bin (forward) or DIR/grad_in.bin and DIR/grad_bias.bin (backward).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/kernel_bodies.h"

using namespace fused_dropout;
using namespace fused_dropout::cuda;

namespace {

std::map<std::string, std::string> spec;

std::string get(const std::string& key) {
  auto it = spec.find(key);
  if (it == spec.end()) {
    std::fprintf(stderr, "spec lacks %s\n", key.c_str());
    std::exit(2);
  }
  return it->second;
}
int64_t get_int(const std::string& key) { return std::stoll(get(key)); }
uint64_t get_u64(const std::string& key) { return std::stoull(get(key)); }

// A buffer whose data starts `misalign` elements past a 16-byte boundary (as a storage offset would). Output
// buffers are filled with 0xFF bytes (NaN for every float type), so an element no thread wrote shows up.
constexpr unsigned char kPoison = 0xFF;

template <typename T>
struct Buffer {
  std::vector<unsigned char> bytes;
  T* data = nullptr;
  Buffer(size_t n, int64_t misalign, unsigned char fill = 0) : bytes((n + 64) * sizeof(T) + 64, fill) {
    auto base = reinterpret_cast<uintptr_t>(bytes.data());
    base = (base + 63) & ~uintptr_t(63);
    data = reinterpret_cast<T*>(base) + misalign;
  }
};

template <typename T>
Buffer<T> read_tensor(const std::string& dir, const std::string& name, size_t n, int64_t misalign) {
  Buffer<T> buffer(n, misalign);
  std::ifstream in(dir + "/" + name + ".bin", std::ios::binary);
  in.read(reinterpret_cast<char*>(buffer.data), static_cast<std::streamsize>(n * sizeof(T)));
  if (static_cast<size_t>(in.gcount()) != n * sizeof(T)) {
    std::fprintf(stderr, "short read of %s\n", name.c_str());
    std::exit(2);
  }
  return buffer;
}

template <typename T>
void write_tensor(const std::string& dir, const std::string& name, const T* data, size_t n) {
  std::ofstream out(dir + "/" + name + ".bin", std::ios::binary);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
}

template <typename Body>
void run_grid(int64_t grid_x, int64_t grid_y, int64_t block_dim, Body&& body) {
  for (int64_t by = 0; by < grid_y; ++by)
    for (int64_t bx = 0; bx < grid_x; ++bx)
      for (int64_t t = 0; t < block_dim; ++t) body(ThreadCoord{bx, by, t, block_dim, grid_x});
}

template <typename scalar_t, typename Element>
void forward(const std::string& dir) {
  const int64_t numel = get_int("numel"), row_len = get_int("row_len"), misalign = get_int("misalign");
  auto x = read_tensor<scalar_t>(dir, "x", numel, misalign);
  auto residual = read_tensor<scalar_t>(dir, Element::kHasResidual ? "residual" : "x", numel, misalign);
  auto bias = read_tensor<scalar_t>(dir, Element::kHasBias ? "bias" : "x", Element::kHasBias ? row_len : 0, 0);
  Buffer<scalar_t> out(numel, 0, kPoison);
  const int64_t state[2] = {static_cast<int64_t>(get_u64("seed")), get_int("offset")};
  const ForwardArgs<scalar_t> args{x.data, Element::kHasBias ? bias.data : nullptr,
                                   Element::kHasResidual ? residual.data : nullptr, out.data, numel,
                                   Element::kHasBias ? row_len : 1, state, get_u64("threshold"),
                                   std::strtod(get("scale").c_str(), nullptr)};
  const bool vec = use_vector_path(args);
  run_grid(get_int("grid"), 1, get_int("block"), [&](const ThreadCoord& t) {
    if (vec) {
      forward_thread<scalar_t, Element, true>(args, t);
    } else {
      forward_thread<scalar_t, Element, false>(args, t);
    }
  });
  write_tensor(dir, "out", out.data, numel);
  std::printf("vector_path %d\n", vec ? 1 : 0);
}

template <typename scalar_t, BackwardKeep kKeep>
void backward(const std::string& dir) {
  using acc_t = typename ComputeType<scalar_t>::type;
  const int64_t numel = get_int("numel"), row_len = get_int("row_len"), misalign = get_int("misalign");
  const bool bias_grad = get_int("bias_grad") != 0;
  auto grad = read_tensor<scalar_t>(dir, "grad", numel, misalign);
  auto y = read_tensor<scalar_t>(dir, kKeep == BackwardKeep::kMask ? "grad" : "y", numel, misalign);
  Buffer<scalar_t> grad_in(numel, 0, kPoison), grad_bias(bias_grad ? row_len : 0, 0, kPoison);
  const int64_t state[2] = {static_cast<int64_t>(get_u64("seed")), get_int("offset")};
  const BackwardArgs<scalar_t> args{grad.data, kKeep == BackwardKeep::kMask ? nullptr : y.data, grad_in.data,
                                    bias_grad ? grad_bias.data : nullptr, numel, bias_grad ? row_len : 1, state,
                                    get_u64("threshold"), std::strtod(get("scale").c_str(), nullptr)};
  const bool vec = use_vector_path(args);
  const int64_t block = get_int("block");
  if (!bias_grad) {
    run_grid(get_int("grid"), 1, block, [&](const ThreadCoord& t) {
      if (vec) {
        backward_thread<scalar_t, kKeep, true>(args, t);
      } else {
        backward_thread<scalar_t, kKeep, false>(args, t);
      }
    });
  } else {
    const BiasGradPlan plan = plan_bias_grad(numel, row_len);
    std::vector<acc_t> partial(static_cast<size_t>(plan.row_blocks * row_len), acc_t(-12345));  // poisoned
    run_grid(bias_tile_column_blocks<scalar_t>(row_len, static_cast<int>(block)), plan.row_blocks, block,
             [&](const ThreadCoord& t) {
               if (vec) {
                 backward_bias_tile_thread<scalar_t, kKeep, true>(args, plan, partial.data(), t);
               } else {
                 backward_bias_tile_thread<scalar_t, kKeep, false>(args, plan, partial.data(), t);
               }
             });
    run_grid(get_int("grid"), 1, block, [&](const ThreadCoord& t) {
      column_sum_thread<scalar_t>(partial.data(), plan.row_blocks, row_len, grad_bias.data, t);
    });
    write_tensor(dir, "grad_bias", grad_bias.data, row_len);
  }
  write_tensor(dir, "grad_in", grad_in.data, numel);
  std::printf("vector_path %d\n", vec ? 1 : 0);
}

template <typename scalar_t>
void run(const std::string& dir) {
  const std::string kind = get("kind"), op = get("op");
  const bool bias = get_int("has_bias") != 0;
  if (kind == "forward") {
    if (op == "dropout") return forward<scalar_t, DropoutElement>(dir);
    if (op == "bias_relu_dropout")
      return bias ? forward<scalar_t, BiasReluDropoutElement<true>>(dir)
                  : forward<scalar_t, BiasReluDropoutElement<false>>(dir);
    if (op == "dropout_add")
      return bias ? forward<scalar_t, DropoutAddElement<true>>(dir) : forward<scalar_t, DropoutAddElement<false>>(dir);
  } else if (kind == "backward") {
    if (op == "mask") return backward<scalar_t, BackwardKeep::kMask>(dir);
    if (op == "positive_output") return backward<scalar_t, BackwardKeep::kPositiveOutput>(dir);
  }
  std::fprintf(stderr, "unknown kind/op %s/%s\n", kind.c_str(), op.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: emulator DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  std::ifstream in(dir + "/spec.txt");
  std::string key, value;
  while (in >> key >> value) spec[key] = value;
  const std::string dtype = get("dtype");
  if (dtype == "float16") run<__half>(dir);
  else if (dtype == "bfloat16") run<__nv_bfloat16>(dir);
  else if (dtype == "float32") run<float>(dir);
  else if (dtype == "float64") run<double>(dir);
  else return 2;
  return 0;
}
