"""The activations of the fused ops, in Python: the one place the reference backend and the eager compositions
take them from. Each has the value and its derivative (what a backward that recomputes the activation needs).
The C++ and Triton kernels have their own single definitions (csrc, triton_backend/kernels.py); the tests hold
all of them bit-identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]  # d forward / d v, in v's dtype


def _relu(v: torch.Tensor) -> torch.Tensor:
    return torch.relu(v)  # NaN stays NaN, as every backend's ReLU does


ACTIVATIONS = {
    "identity": Activation("identity", lambda v: v, torch.ones_like),
    "relu": Activation("relu", _relu, lambda v: (v > 0).to(v.dtype)),
}
