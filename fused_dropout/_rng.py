"""The seed every op takes: a one-element int64 tensor on the input's device, which the kernels read themselves.

With no seed given, it is drawn with torch.randint from the given generator or the device's default generator:
torch.manual_seed reproduces a run, torch.utils.checkpoint (which restores the RNG state) recomputes the same
mask, the draw is one device op (no host sync, CUDA-graph capturable: a captured graph draws a new seed per
replay) and torch.compile keeps it in the graph. The offset is a plain int argument of the op.
"""
from __future__ import annotations

import torch

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def make_seed(device: torch.device, seed_bits: int | None, generator=None) -> torch.Tensor:
    """The seed tensor: `seed_bits` (an int64 pattern) when given, else a draw from `generator`. One op."""
    if seed_bits is None:
        return torch.randint(INT64_MIN, INT64_MAX, (1,), dtype=torch.int64, device=device, generator=generator)
    return torch.full((1,), seed_bits, dtype=torch.int64, device=device)
