"""The RNG state every op takes: an int64 tensor [seed bits, offset] on the input's device.

With no seed, the seed is drawn with torch.randint from the given generator or the device's default generator:
torch.manual_seed reproduces a run, torch.utils.checkpoint (which restores the RNG state) recomputes the same
mask, the draw is a device op (no host sync, CUDA-graph capturable) and torch.compile keeps it in the graph.
"""
from __future__ import annotations

import torch

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def make_state(device: torch.device, seed_bits: int | None, offset: int, generator=None) -> torch.Tensor:
    if seed_bits is None:
        seed = torch.randint(INT64_MIN, INT64_MAX, (1,), dtype=torch.int64, device=device, generator=generator)
    else:
        seed = torch.full((1,), seed_bits, dtype=torch.int64, device=device)
    return torch.cat([seed, torch.full((1,), offset, dtype=torch.int64, device=device)])


def no_dropout_state(device: torch.device) -> torch.Tensor:
    """The state passed with p = 0 (eval mode): its value is never used for a decision, nothing is drawn."""
    return torch.zeros(2, dtype=torch.int64, device=device)
