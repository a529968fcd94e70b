"""nn.Module wrappers of the fused ops."""
from __future__ import annotations

import torch
from torch import nn

from . import functional as F


class FusedDropout(nn.Dropout):
    """Drop-in replacement for nn.Dropout (same arguments, attributes, repr and train/eval behaviour).

    It is an nn.Dropout subclass, so code that looks for nn.Dropout still finds it. `backend` picks a backend
    (None: the best one for the input's device).
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, backend: str | None = None):
        # nn.Dropout's own check names no argument and lets through a p that forward would reject (NaN, a tensor
        # requiring grad): check here, so the error names p and comes at construction. p is kept as given, like
        # nn.Dropout does (a tensor p is read at every forward).
        F.check.probability(p)
        super().__init__(p, inplace)
        self.backend = backend

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.dropout(input, self.p, self.training, self.inplace, backend=self.backend)


class FusedBiasReLUDropout(nn.Module):
    """dropout(relu(x + bias)) with a learnable bias of shape [num_features] (initialised to zeros)."""

    def __init__(self, num_features: int, p: float = 0.5, *, device=None, dtype=None, backend: str | None = None):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        self.num_features = num_features
        self.p = F.check.probability(p)
        self.backend = backend
        self.bias = nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.bias_relu_dropout(x, self.bias, self.p, self.training, backend=self.backend)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, p={self.p}"


class FusedDropoutAdd(nn.Module):
    """residual + dropout(x + bias), for residual connections; bias is an optional forward argument."""

    def __init__(self, p: float = 0.5, *, backend: str | None = None):
        super().__init__()
        self.p = F.check.probability(p)
        self.backend = backend

    def forward(self, x: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.dropout_add(x, residual, self.p, self.training, bias=bias, backend=self.backend)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def replace_dropout(module: nn.Module) -> nn.Module:
    """Swaps every plain nn.Dropout inside `module` (or `module` itself) for a FusedDropout with the same p,
    inplace flag and train/eval mode. Returns the module (a new one only when `module` itself was a Dropout).

    A Dropout held at several places (a shared instance) is replaced at all of them by one FusedDropout, so the
    sharing survives. nn.Dropout subclasses are left alone: they may override forward.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")

    replacements: dict[int, FusedDropout] = {}  # id of a replaced nn.Dropout -> its FusedDropout

    def fused_from(dropout: nn.Dropout) -> FusedDropout:
        if id(dropout) not in replacements:
            fused = FusedDropout(dropout.p, dropout.inplace)
            fused.train(dropout.training)
            replacements[id(dropout)] = fused
        return replacements[id(dropout)]

    if type(module) is nn.Dropout:
        return fused_from(module)
    # modules() visits each distinct module once, and named_children() names a child held under two names only
    # once: read every parent's _modules instead, so that every place a Dropout is held gets replaced. The list is
    # taken first so the walk never descends into the FusedDropouts it inserts; it also keeps every replaced
    # Dropout alive until the walk ends, so no id in `replacements` can be reused by a new object.
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if type(child) is nn.Dropout:
                setattr(parent, name, fused_from(child))
    return module
