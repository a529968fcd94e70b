// The ops of op_list.h, written once over a Launcher policy: checks, contiguous inputs, output allocation, then
// Launcher::forward / Launcher::backward run the kernels. cpu/cpu_ops.cpp and cuda/cuda_ops.cpp supply the
// launchers and call register_ops<Launcher> for their dispatch key; the schemas are op_schemas.cpp's.
//
// Launcher must provide:
//   static void forward(ForwardOp op, const at::Tensor& x, const std::optional<at::Tensor>& bias,
//       const std::optional<at::Tensor>& residual, at::Tensor& out, const RngArgs& rng, double p);
//   static void backward(BackwardOp op, const at::Tensor& grad, const RngArgs& rng, const SavedInput& saved,
//       at::Tensor& grad_in, std::optional<at::Tensor>& grad_bias, double p);
// Every tensor handed to a launcher is contiguous and non-empty. A backward gets what the backward op saved: y
// (relu_output_bwd), the RNG arguments (mask_bwd), or the RNG arguments and the input x with its bias
// (*_input_bwd); the seed is absent when p = 0.
#pragma once

#include <torch/library.h>

#include <optional>
#include <tuple>

#include "op_traits.h"
#include "torch_arg_checks.h"

namespace fused_dropout {

// A contiguous tensor with x's shape, dtype and device, for the kernels to write.
inline at::Tensor empty_output(const at::Tensor& x) {
  return at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
}

// `out` (row-major) in the layout at::empty_like(like) has: a dense permuted input (channels_last, a transposed
// matrix) gets an output with its strides, as nn.Dropout's does; any other input a row-major one. The kernels
// write in logical row-major order (the mask follows the logical index), so such inputs pay one copy here.
inline at::Tensor in_layout_of(const at::Tensor& like, const at::Tensor& out) {
  if (like.is_contiguous()) return out;
  at::Tensor target = at::empty_like(like);
  if (target.is_contiguous()) return out;
  target.copy_(out);
  return target;
}

// The mask's arguments as the kernels take them.
struct RngArgs {
  std::optional<at::Tensor> seed;
  uint64_t offset;
  MaskRuns runs;  // the mask geometry (mask_runs.h); no runs: the flat mask
  const int64_t* seed_data() const { return seed.has_value() ? seed->data_ptr<int64_t>() : nullptr; }
};

// The per-element tensors a backward op saved besides the RNG state: the input x and its bias (*_input_bwd), or
// the output y (relu_output_bwd).
struct SavedInput {
  std::optional<at::Tensor> x;
  std::optional<at::Tensor> y;
  std::optional<at::Tensor> bias;
};

inline std::optional<at::Tensor> contiguous_or_none(const std::optional<at::Tensor>& t) {
  if (!t.has_value()) return std::nullopt;
  return t->contiguous();
}

template <class Launcher>
struct FusedOps {
  template <ForwardOp kOp>
  static at::Tensor forward(const at::Tensor& x_in, const std::optional<at::Tensor>& bias,
                            const std::optional<at::Tensor>& residual, const std::optional<at::Tensor>& seed,
                            int64_t offset, double p, c10::IntArrayRef mask_runs) {
    check_floating(x_in, "x");
    check_probability(p);
    check_seed(seed, x_in, p);
    check_offset(offset);
    const MaskRuns runs = mask_runs_of(mask_runs, x_in.numel(), offset);
    check_bias(bias, x_in);
    if (residual.has_value()) check_same_shape_like(*residual, x_in, "residual");
    const at::Tensor x = x_in.contiguous();
    at::Tensor out = empty_output(x);
    if (x.numel() > 0) {
      const RngArgs rng{seed, static_cast<uint64_t>(offset), runs};
      Launcher::forward(kOp, x, contiguous_or_none(bias), contiguous_or_none(residual), out, rng, p);
    }
    return in_layout_of(x_in, out);
  }

  // What the backward op saved (BackwardOpTraits::kSavedSchema): the seed, offset and mask runs (mask_bwd), y
  // (relu_output_bwd), or x, the bias, the seed, the offset and the mask runs (*_input_bwd).
  template <BackwardOp kOp>
  static std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_in, const std::optional<at::Tensor>& seed,
                                                     int64_t offset, c10::IntArrayRef mask_runs,
                                                     const SavedInput& saved_in, double p, bool bias_grad) {
    check_floating(grad_in, "grad");
    check_probability(p);
    RngArgs rng{std::nullopt, 0, MaskRuns{}};
    SavedInput saved;
    if constexpr (kKeepFromRngState<kOp>) {
      check_seed(seed, grad_in, p);
      check_offset(offset);
      rng = {seed, static_cast<uint64_t>(offset), mask_runs_of(mask_runs, grad_in.numel(), offset)};
    }
    if constexpr (kSavesInput<kOp>) {
      check_same_shape_like(*saved_in.x, grad_in, "x");
      check_bias(saved_in.bias, grad_in);
      saved = {saved_in.x->contiguous(), std::nullopt, contiguous_or_none(saved_in.bias)};
    } else if constexpr (!kKeepFromRngState<kOp>) {
      check_same_shape_like(*saved_in.y, grad_in, BackwardOpTraits<kOp>::kSavedName);
      saved.y = saved_in.y->contiguous();
    }
    const at::Tensor grad = grad_in.contiguous();
    at::Tensor grad_x = empty_output(grad);
    // Zeros when wanted (an empty grad sums to 0); else an empty tensor, which needs no fill.
    at::Tensor grad_bias_tensor =
        bias_grad ? at::zeros({row_len_of(grad)}, grad.options()) : at::empty({0}, grad.options());
    std::optional<at::Tensor> grad_bias;
    if (bias_grad) grad_bias = grad_bias_tensor;
    if (grad.numel() > 0) Launcher::backward(kOp, grad, rng, saved, grad_x, grad_bias, p);
    return {in_layout_of(grad_in, grad_x), grad_bias_tensor};
  }
};

// The C++ signature of a forward op follows its schema (op_schemas.cpp): x[, residual][, bias?], seed?, offset, p,
// mask_runs. One entry point per signature shape, not per op.
template <class Launcher, ForwardOp kOp, bool kOptionalBias = ForwardOpTraits<kOp>::kOptionalBias,
          bool kResidual = ForwardOpTraits<kOp>::kResidual>
struct ForwardEntry;

template <class Launcher, ForwardOp kOp>
struct ForwardEntry<Launcher, kOp, false, false> {
  static at::Tensor call(const at::Tensor& x, const std::optional<at::Tensor>& seed, int64_t offset, double p,
                         c10::IntArrayRef mask_runs) {
    return FusedOps<Launcher>::template forward<kOp>(x, std::nullopt, std::nullopt, seed, offset, p, mask_runs);
  }
};

template <class Launcher, ForwardOp kOp>
struct ForwardEntry<Launcher, kOp, true, false> {
  static at::Tensor call(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                         const std::optional<at::Tensor>& seed, int64_t offset, double p,
                         c10::IntArrayRef mask_runs) {
    return FusedOps<Launcher>::template forward<kOp>(x, bias, std::nullopt, seed, offset, p, mask_runs);
  }
};

template <class Launcher, ForwardOp kOp>
struct ForwardEntry<Launcher, kOp, false, true> {
  static at::Tensor call(const at::Tensor& x, const at::Tensor& residual, const std::optional<at::Tensor>& seed,
                         int64_t offset, double p, c10::IntArrayRef mask_runs) {
    return FusedOps<Launcher>::template forward<kOp>(x, std::nullopt, residual, seed, offset, p, mask_runs);
  }
};

template <class Launcher, ForwardOp kOp>
struct ForwardEntry<Launcher, kOp, true, true> {
  static at::Tensor call(const at::Tensor& x, const at::Tensor& residual, const std::optional<at::Tensor>& bias,
                         const std::optional<at::Tensor>& seed, int64_t offset, double p,
                         c10::IntArrayRef mask_runs) {
    return FusedOps<Launcher>::template forward<kOp>(x, bias, residual, seed, offset, p, mask_runs);
  }
};

// The C++ signature of a backward op follows its saved arguments: (grad, seed?, offset, mask_runs, p, bias_grad),
// (grad, y, p, bias_grad) or (grad, x, bias?, seed?, offset, mask_runs, p, bias_grad).
template <class Launcher, BackwardOp kOp, bool kFromRngState = kKeepFromRngState<kOp>,
          bool kInput = kSavesInput<kOp>>
struct BackwardEntry;

template <class Launcher, BackwardOp kOp>
struct BackwardEntry<Launcher, kOp, true, false> {
  static std::tuple<at::Tensor, at::Tensor> call(const at::Tensor& grad, const std::optional<at::Tensor>& seed,
                                                 int64_t offset, c10::IntArrayRef mask_runs, double p,
                                                 bool bias_grad) {
    return FusedOps<Launcher>::template backward<kOp>(grad, seed, offset, mask_runs, SavedInput{}, p, bias_grad);
  }
};

template <class Launcher, BackwardOp kOp>
struct BackwardEntry<Launcher, kOp, false, false> {
  static std::tuple<at::Tensor, at::Tensor> call(const at::Tensor& grad, const at::Tensor& y, double p,
                                                 bool bias_grad) {
    return FusedOps<Launcher>::template backward<kOp>(grad, std::nullopt, 0, {},
                                                      SavedInput{std::nullopt, y, std::nullopt}, p, bias_grad);
  }
};

template <class Launcher, BackwardOp kOp>
struct BackwardEntry<Launcher, kOp, true, true> {
  static std::tuple<at::Tensor, at::Tensor> call(const at::Tensor& grad, const at::Tensor& x,
                                                 const std::optional<at::Tensor>& bias,
                                                 const std::optional<at::Tensor>& seed, int64_t offset,
                                                 c10::IntArrayRef mask_runs, double p, bool bias_grad) {
    return FusedOps<Launcher>::template backward<kOp>(grad, seed, offset, mask_runs, SavedInput{x, std::nullopt, bias},
                                                      p, bias_grad);
  }
};

// Registers every op of op_list.h with the launcher's kernels (for the dispatch key of `m`).
template <class Launcher>
void register_ops(torch::Library& m) {
#define FD_REGISTER_FORWARD(name, ...) m.impl(#name "_fwd", &ForwardEntry<Launcher, ForwardOp::name>::call);
  FD_FORWARD_OPS(FD_REGISTER_FORWARD)
#undef FD_REGISTER_FORWARD
#define FD_REGISTER_BACKWARD(name, ...) m.impl(#name, &BackwardEntry<Launcher, BackwardOp::name>::call);
  FD_BACKWARD_OPS(FD_REGISTER_BACKWARD)
#undef FD_REGISTER_BACKWARD
}

}  // namespace fused_dropout
