"""What is benchmarked: the three ops, their providers, and the bytes each op must move.

Bytes per element (s = element size; N = bias length, counted once per call, not per element):

    op                   forward              backward                          forward+backward
    dropout              2s  (x, y)           2s  (grad, grad_x)                4s
    bias_relu_dropout    2s + N*s/numel       3s  (grad, saved y, grad_x)       5s + 2N*s/numel
    dropout_add          3s  (x, residual, y) 2s  (grad, grad_x; grad_residual  5s + 2N*s/numel (with bias)
                                                   is grad itself, no copy)

A provider that stores a mask for its backward (nn.Dropout and compositions built on it, torch.compile of
them) also moves that mask: +1 byte per element written in the forward and +1 read in the backward. The fused
ops store none. x.clone() (2s per element) is the memory floor: fraction of clone = achieved bandwidth / clone's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

import fused_dropout as fd

OPS = ("dropout", "bias_relu_dropout", "dropout_add")
MODES = ("fwd", "bwd", "fwd+bwd")
P = 0.1


@dataclass(frozen=True)
class Inputs:
    x: torch.Tensor
    bias: torch.Tensor | None
    residual: torch.Tensor | None

    def grad_targets(self) -> tuple[torch.Tensor, ...]:
        return tuple(t for t in (self.x, self.bias, self.residual) if t is not None)


def make_inputs(op: str, shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> Inputs:
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, dtype=dtype, device=device, generator=generator).requires_grad_()
    bias = residual = None
    if op != "dropout":
        bias = torch.randn(shape[-1], dtype=dtype, device=device, generator=generator).requires_grad_()
    if op == "dropout_add":
        residual = torch.randn(shape, dtype=dtype, device=device, generator=generator).requires_grad_()
    return Inputs(x, bias, residual)


def eager_fn(op: str) -> Callable[[Inputs], torch.Tensor]:
    """The unfused composition a user would write (nn.Dropout semantics)."""
    if op == "dropout":
        return lambda i: F.dropout(i.x, P)
    if op == "bias_relu_dropout":
        return lambda i: F.dropout(F.relu(i.x + i.bias), P)
    return lambda i: i.residual + F.dropout(i.x + i.bias, P)


def fused_fn(op: str, backend: str) -> Callable[[Inputs], torch.Tensor]:
    if op == "dropout":
        return lambda i: fd.dropout(i.x, P, backend=backend)
    if op == "bias_relu_dropout":
        return lambda i: fd.bias_relu_dropout(i.x, i.bias, P, backend=backend)
    return lambda i: fd.dropout_add(i.x, i.residual, P, bias=i.bias, backend=backend)


def compiled_fn(op: str) -> Callable[[Inputs], torch.Tensor]:
    # The "bwd" mode replays one backward graph (retain_graph=True), which compiled backwards with donated
    # buffers refuse; donation only saves memory, so it is turned off for the benchmark.
    import torch._functorch.config

    torch._functorch.config.donated_buffer = False
    # dynamic=True: one compile per op and dtype, not one per size of the sweep.
    compiled = torch.compile(lambda x, bias, residual: eager_fn(op)(Inputs(x, bias, residual)), dynamic=True)
    return lambda i: compiled(i.x, i.bias, i.residual)


def clone_fn(op: str) -> Callable[[Inputs], torch.Tensor]:
    return lambda i: i.x.clone()


def stores_mask(provider: str) -> bool:
    return provider in ("eager", "compile")


def bytes_moved(op: str, mode: str, provider: str, numel: int, row_len: int, element_size: int) -> float:
    """Bytes the op must move for one call in this mode (see the module docstring)."""
    s = element_size
    if provider == "clone":
        return 2 * s * numel
    per_element = {
        "dropout": {"fwd": 2 * s, "bwd": 2 * s},
        "bias_relu_dropout": {"fwd": 2 * s, "bwd": 3 * s},
        "dropout_add": {"fwd": 3 * s, "bwd": 2 * s},
    }[op]
    per_call = {"fwd": 0, "bwd": 0} if op == "dropout" else {"fwd": row_len * s, "bwd": row_len * s}
    mask = 1 if stores_mask(provider) else 0
    total = 0.0
    for part in ("fwd", "bwd"):
        if mode in (part, "fwd+bwd"):
            total += (per_element[part] + mask) * numel + per_call[part]
    return total


def saved_bytes_per_element(fn: Callable[[Inputs], torch.Tensor], inputs: Inputs) -> float:
    """Bytes the autograd graph keeps for the backward, per element (measured with saved_tensors_hooks)."""
    total = 0
    seen = set()

    def pack(t):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen and t.data_ptr() not in (g.data_ptr() for g in inputs.grad_targets()):
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(inputs)
    return total / inputs.x.numel()
