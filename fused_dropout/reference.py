"""Pure-PyTorch implementation of the mask specification and of every op, forward and backward.

It runs on any device, is registered as the "torch" backend, and is what the tests compare the fused kernels
with. Philox is computed in int64 tensor arithmetic with 16-bit limbs, so no intermediate overflows and no value
ever leaves the device (no .item()): it works under torch.compile and CUDA graph capture too.
"""
from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
PHILOX_ROUND_A = 0xD2511F53
PHILOX_ROUND_B = 0xCD9E8D57
PHILOX_KEY_A = 0x9E3779B9
PHILOX_KEY_B = 0xBB67AE85
PHILOX_ROUNDS = 10


def _mulhilo(constant: int, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of constant * value, value an int64 tensor holding uint32 values."""
    c_hi, c_lo = constant >> 16, constant & 0xFFFF
    low_part = value * c_lo  # < 2^48
    high_part = value * c_hi  # < 2^48; the product is high_part * 2^16 + low_part
    hi = (high_part + (low_part >> 16)) >> 16
    lo = (((high_part & 0xFFFF) << 16) + low_part) & MASK32
    return hi, lo


def philox4x32_10(c0, c1, c2, c3, k0, k1) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 on int64 tensors holding uint32 values (broadcasting like any torch op)."""
    for _ in range(PHILOX_ROUNDS):
        hi0, lo0 = _mulhilo(PHILOX_ROUND_B, c2)
        hi1, lo1 = _mulhilo(PHILOX_ROUND_A, c0)
        c0, c1, c2, c3 = hi0 ^ c1 ^ k0, lo0, hi1 ^ c3 ^ k1, lo1
        k0 = (k0 + PHILOX_KEY_A) & MASK32
        k1 = (k1 + PHILOX_KEY_B) & MASK32
    return c0, c1, c2, c3


def keep_threshold(p: float) -> int:
    """T = floor(p * 2^32); exact in float64 because 2^32 is a power of two."""
    return int(p * 4294967296.0)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def dropout_scale(p: float) -> float:
    """scale = 1 / (1 - p) in float64 (0 when p = 1: nothing is kept, so it is never applied)."""
    return 1.0 / (1.0 - p) if p < 1.0 else 0.0


def scale_tensor(p: float, dtype: torch.dtype, device) -> torch.Tensor:
    """The scale rounded once to the compute type."""
    return torch.tensor(dropout_scale(p), dtype=compute_dtype(dtype), device=device)


def keep_mask(numel: int, rng_state: torch.Tensor, p: float) -> torch.Tensor:
    """The flat keep-mask of `numel` elements for rng_state = [seed bits, offset] (int64, any device)."""
    device = rng_state.device
    seed, offset = rng_state[0], rng_state[1]
    index = torch.arange(numel, dtype=torch.int64, device=device)
    # offset + i may pass 2^63 and wrap; the masks below recover the unsigned bits of (offset + i) >> 2.
    global_index = offset + index
    group_lo = (global_index >> 2) & MASK32
    group_hi = (global_index >> 34) & 0x3FFFFFFF
    word = global_index & 3
    zero = torch.zeros_like(group_lo)
    k0 = seed & MASK32
    k1 = (seed >> 32) & MASK32
    words = torch.stack(philox4x32_10(group_lo, group_hi, zero, zero, k0, k1), dim=-1)
    chosen = torch.gather(words, 1, word.unsqueeze(1)).squeeze(1)
    return chosen >= keep_threshold(p)


def _forward(x, rng_state, p, *, bias=None, residual=None, relu=False):
    acc = compute_dtype(x.dtype)
    keep = keep_mask(x.numel(), rng_state, p).reshape(x.shape)
    v = x.to(acc)
    if bias is not None:
        v = v + bias.to(acc).reshape(x.shape[-1:])  # a 0-d x takes a bias of shape [1]
    if relu:
        v = torch.relu(v)
    out = torch.where(keep, v * scale_tensor(p, x.dtype, x.device), torch.zeros((), dtype=acc, device=x.device))
    if residual is not None:
        out = residual.to(acc) + out
    return out.to(x.dtype)


def dropout_fwd(x: torch.Tensor, rng_state: torch.Tensor, p: float) -> torch.Tensor:
    return _forward(x, rng_state, p)


def bias_relu_dropout_fwd(x, bias, rng_state, p):
    return _forward(x, rng_state, p, bias=bias, relu=True)


def dropout_add_fwd(x, residual, bias, rng_state, p):
    return _forward(x, rng_state, p, bias=bias, residual=residual)


def row_length(t: torch.Tensor) -> int:
    """The bias length of t: its last dimension, 1 for a 0-d tensor."""
    return t.shape[-1] if t.dim() > 0 else 1


def _bias_grad(grad_in: torch.Tensor, bias_grad: bool) -> torch.Tensor:
    if not bias_grad:
        return grad_in.new_zeros((0,))
    acc = compute_dtype(grad_in.dtype)
    row_len = row_length(grad_in)
    if row_len == 0:  # an empty last dimension has an empty bias
        return grad_in.new_zeros((0,))
    return grad_in.to(acc).reshape(-1, row_len).sum(0).to(grad_in.dtype)


def _backward(grad, keep, p):
    acc = compute_dtype(grad.dtype)
    scaled = grad.to(acc) * scale_tensor(p, grad.dtype, grad.device)
    return torch.where(keep, scaled, torch.zeros((), dtype=acc, device=grad.device)).to(grad.dtype)


def dropout_bwd(grad, rng_state, p, bias_grad):
    grad_x = _backward(grad, keep_mask(grad.numel(), rng_state, p).reshape(grad.shape), p)
    return grad_x, _bias_grad(grad_x, bias_grad)


def bias_relu_dropout_bwd(grad, y, p, bias_grad):
    grad_h = _backward(grad, y > 0, p)
    return grad_h, _bias_grad(grad_h, bias_grad)
