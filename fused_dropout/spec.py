"""The mask specification (docs/mask_spec.md) in Python: the Philox generator, the keep rule, the mask index
rule, the scale and the canonical NaN. Every Python layer (the reference backend, the Triton kernels and launcher,
validation, fake kernels, dropout_mask) takes these from here, so the spec has one home in this language.

Philox is computed in int64 tensor arithmetic with 16-bit limbs, so no intermediate overflows and no value ever
leaves the device (no .item()): it works under torch.compile and CUDA graph capture too.
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
    """T = floor(p * 2^32); exact in float64 because 2^32 is a power of two. keep <=> word >= T."""
    return int(p * 4294967296.0)


def dropout_scale(p: float) -> float:
    """scale = 1 / (1 - p) in float64 (0 when p = 1: nothing is kept, so it is never applied)."""
    return 1.0 / (1.0 - p) if p < 1.0 else 0.0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Values are computed in float32, or float64 for float64 tensors."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def canonical_nan_bits(total_bits: int, mantissa_bits: int) -> int:
    """The canonical quiet NaN of a binary floating-point format: sign clear, exponent all ones, only the top
    (quiet) mantissa bit set. Every NaN an op writes has these bits, because hardware disagrees on NaN payloads
    and signs (x86 makes 0xFFC00000, GPUs 0x7FFFFFFF and 0x7FFF, some units pass an operand's payload through)."""
    return ((1 << (total_bits - 1)) - 1) ^ ((1 << (mantissa_bits - 1)) - 1)


# (total bits, mantissa bits) of each output dtype; CANONICAL_NAN_BITS is then 0x7E00, 0x7FC0, 0x7FC00000 and
# 0x7FF8000000000000.
_FLOAT_FORMATS = {torch.float16: (16, 10), torch.bfloat16: (16, 7), torch.float32: (32, 23), torch.float64: (64, 52)}
CANONICAL_NAN_BITS = {dtype: canonical_nan_bits(*fmt) for dtype, fmt in _FLOAT_FORMATS.items()}
_SAME_WIDTH_INT = {16: torch.int16, 32: torch.int32, 64: torch.int64}


def to_output_dtype(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """v (compute type) rounded once to `dtype`, every NaN written as the canonical NaN. The NaN is replaced
    after the rounding, on the output's bits: a NaN constant put through a conversion may not keep its bits."""
    rounded = v.to(dtype)
    bits_type = _SAME_WIDTH_INT[_FLOAT_FORMATS[dtype][0]]
    canonical = torch.tensor(CANONICAL_NAN_BITS[dtype], dtype=bits_type, device=v.device)
    return torch.where(v.isnan(), canonical, rounded.view(bits_type)).view(dtype)


def scale_tensor(p: float, dtype: torch.dtype, device) -> torch.Tensor:
    """The scale rounded once to the compute type of `dtype`."""
    return torch.tensor(dropout_scale(p), dtype=compute_dtype(dtype), device=device)


def row_len_of(t: torch.Tensor) -> int:
    """The bias length of t, the length of the rows a bias runs along: its last dimension, 1 for a 0-d tensor."""
    return t.shape[-1] if t.dim() > 0 else 1


def mask_word_coordinates(offset: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The mask index rule: element i uses word w = g & 3 of Philox group q = g >> 2, g = offset + i.

    Returns (q mod 2^32, q >> 32, w) as int64 tensors. offset + i may pass 2^63 and wrap in int64; the masks
    recover the unsigned bits of g, so q is exact for every g < 2^64.
    """
    global_index = offset + index
    return (global_index >> 2) & MASK32, (global_index >> 34) & 0x3FFFFFFF, global_index & 3


def keep_mask(numel: int, seed: torch.Tensor | None, offset: int, p: float) -> torch.Tensor:
    """The flat keep-mask of `numel` elements for the seed bits (a one-element int64 tensor, any device) and the
    element offset. With p = 0 every element is kept and the seed may be None."""
    device = seed.device if seed is not None else None
    return keep_mask_at(torch.arange(numel, dtype=torch.int64, device=device), seed, offset, p)


def keep_mask_at(index: torch.Tensor, seed: torch.Tensor | None, offset: int, p: float) -> torch.Tensor:
    """The keep decision of each mask index in `index` (int64, any shape; the element's row-major index, or its
    mask index under a mask geometry, fused_dropout.geometry), for the seed bits and the offset."""
    if seed is None:
        if p != 0.0:
            raise ValueError("keep_mask: a seed is needed when p > 0")
        return torch.ones(index.shape, dtype=torch.bool, device=index.device)
    seed = seed.reshape(())
    group_lo, group_hi, word = mask_word_coordinates(offset, index.to(seed.device).reshape(-1))
    zero = torch.zeros_like(group_lo)
    words = torch.stack(philox4x32_10(group_lo, group_hi, zero, zero, seed & MASK32, (seed >> 32) & MASK32), -1)
    chosen = torch.gather(words, 1, word.unsqueeze(1)).squeeze(1)
    return (chosen >= keep_threshold(p)).reshape(index.shape)
