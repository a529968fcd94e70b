// The ops of the native family, declared once. Everything op-specific in the C++ layers is generated from these
// two lists: the ForwardOp/BackwardOp enums and their traits (op_traits.h), the op -> element-type dispatch that
// the CPU kernels, the CUDA launcher and the CUDA emulator share (op_dispatch.h), the TORCH_LIBRARY schemas
// (op_schemas.cpp) and the CPU/CUDA impl registrations (ops_over_launcher.h).
//
// GOAL: a new op is ONE line here. E.g. bias + dropout with no activation:
//   X(bias_dropout, Identity, true, false, mask_bwd)
// (plus its Python reference, which the tests compare against).
//
// FD_FORWARD_OPS(X): X(name, activation policy (activations.h), takes an optional bias, takes a residual,
//                      backward op). Schema: <name>_fwd(Tensor x[, Tensor residual][, Tensor? bias],
//                      Tensor? seed, int offset, float p, int[] mask_runs=[]) -> Tensor
// The names are also the enumerators (ForwardOp::dropout, ...), so the schema name and the enum cannot diverge.
#pragma once

#define FD_FORWARD_OPS(X)                                                 \
  X(dropout, Identity, false, false, mask_bwd)                            \
  X(bias_relu_dropout, Relu, true, false, relu_output_bwd)                \
  X(dropout_add, Identity, true, true, mask_bwd)                          \
  X(bias_dropout, Identity, true, false, mask_bwd)                        \
  X(bias_gelu_dropout, Gelu, true, false, gelu_input_bwd)                 \
  X(bias_gelu_tanh_dropout, GeluTanh, true, false, gelu_tanh_input_bwd)   \
  X(bias_silu_dropout, Silu, true, false, silu_input_bwd)

// FD_BACKWARD_OPS(X): X(name, saved arguments, activation policy). The saved arguments say where the keep
// decision comes from and what grad_in is multiplied by:
//   rng_state: the RNG mask, recomputed from the seed and offset;   y: the saved forward output, keep where y > 0;
//   input: the RNG mask, and the saved input x and bias, for the activation's derivative at x + bias (the smooth
//   activations, whose derivative the output does not give).
// grad_in = keep ? (grad * scale) * activation'(x + bias) : 0, the factor only for `input` (Identity otherwise).
// Schema: <name>(Tensor grad, <saved arguments>, float p, bool bias_grad) -> (Tensor, Tensor), the saved arguments
// being "Tensor? seed, int offset, int[] mask_runs", "Tensor y" or "Tensor x, Tensor? bias, Tensor? seed, int offset,
// int[] mask_runs"
// (op_traits.h, saved_schema).
#define FD_BACKWARD_OPS(X)                   \
  X(mask_bwd, rng_state, Identity)           \
  X(relu_output_bwd, y, Identity)            \
  X(gelu_input_bwd, input, Gelu)             \
  X(gelu_tanh_input_bwd, input, GeluTanh)    \
  X(silu_input_bwd, input, Silu)
