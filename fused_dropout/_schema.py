"""The op schemas, in one place for every backend.

Each backend family registers the same five ops under its own prefix in the fused_dropout namespace:
"" for the native C++/CUDA kernels (dispatched by device), "triton_" and "torch_" for the others.
The rng_state argument is an int64 tensor [seed bits, offset] on the input's device; kernels read it themselves.
"""

SCHEMAS = {
    "dropout_fwd": "(Tensor x, Tensor rng_state, float p) -> Tensor",
    "bias_relu_dropout_fwd": "(Tensor x, Tensor? bias, Tensor rng_state, float p) -> Tensor",
    "dropout_add_fwd": "(Tensor x, Tensor residual, Tensor? bias, Tensor rng_state, float p) -> Tensor",
    # grad_x = dropout(grad) with the forward's mask; grad_bias = column sums of grad_x when bias_grad.
    "dropout_bwd": "(Tensor grad, Tensor rng_state, float p, bool bias_grad) -> (Tensor, Tensor)",
    # grad_h = grad * scale where y > 0; grad_bias = column sums of grad_h when bias_grad.
    "bias_relu_dropout_bwd": "(Tensor grad, Tensor y, float p, bool bias_grad) -> (Tensor, Tensor)",
}

FAMILY_PREFIXES = {"native": "", "triton": "triton_", "torch": "torch_"}
