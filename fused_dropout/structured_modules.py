"""nn.Module forms of the structured dropouts: FusedDropout1d/2d/3d (drop-ins for nn.Dropout1d/2d/3d), DropPath
(a drop-in for timm's) and LockedDropout (one mask for every time step of a sequence)."""
from __future__ import annotations

import torch
from torch import nn

from . import functional as F
from . import structured


class _NotScriptable:
    """torch.jit.script cannot compile these modules' forward (the mask geometry is Python): a clear error
    instead of TorchScript's own."""

    def __prepare_scriptable__(self):
        raise RuntimeError(f"torch.jit.script of {type(self).__name__} is not supported: its mask geometry is computed "
                           "in Python. Use torch.compile or torch.export, or keep the module in eager mode.")


class _FusedChannelDropout(_NotScriptable):
    _function = None  # the structured function the subclass runs

    def __init__(self, p: float = 0.5, inplace: bool = False, *, backend: str | None = None):
        F.check.probability(p)  # at construction, naming p (nn.Dropout's own check names nothing)
        super().__init__(p, inplace)
        self.backend = backend

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return type(self)._function(input, self.p, self.training, self.inplace, backend=self.backend)


class FusedDropout1d(_FusedChannelDropout, nn.Dropout1d):
    """Drop-in for :class:`torch.nn.Dropout1d` (same arguments, repr and train/eval): one decision per
    (sample, channel) of an (N, C, L) or (C, L) input, with the project's mask (fused_dropout.dropout1d)."""

    _function = staticmethod(structured.dropout1d)


class FusedDropout2d(_FusedChannelDropout, nn.Dropout2d):
    """Drop-in for :class:`torch.nn.Dropout2d`: one decision per (sample, channel) of an (N, C, H, W) input
    (fused_dropout.dropout2d, with torch's rank rules)."""

    _function = staticmethod(structured.dropout2d)


class FusedDropout3d(_FusedChannelDropout, nn.Dropout3d):
    """Drop-in for :class:`torch.nn.Dropout3d`: one decision per (sample, channel) of an (N, C, D, H, W) or
    (C, D, H, W) input (fused_dropout.dropout3d)."""

    _function = staticmethod(structured.dropout3d)


class DropPath(_NotScriptable, nn.Module):
    """Stochastic depth per sample, a drop-in for timm's DropPath (same arguments, attributes and repr): in
    training, each sample is zeroed whole with probability drop_prob (fused_dropout.drop_path)."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True, *, backend: str | None = None):
        super().__init__()
        self.drop_prob = F.check.probability(drop_prob)
        self.scale_by_keep = F.check.flag(scale_by_keep, "scale_by_keep")
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return structured.drop_path(x, self.drop_prob, self.training, self.scale_by_keep, backend=self.backend)

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"


class LockedDropout(_NotScriptable, nn.Module):
    """Variational (locked) dropout for sequences: one mask per sequence, shared by every time step. The input is
    (T, B, *) (batch_first=False) or (B, T, *); the mask has x's shape with the time dim set to 1, so the
    same (batch, feature) elements are dropped at every step. The recipe with the functional API is
    `fused_dropout.dropout(x, p, noise_shape=(1, B, H))` for a (T, B, H) input."""

    def __init__(self, p: float = 0.5, batch_first: bool = False, *, backend: str | None = None):
        super().__init__()
        self.p = F.check.probability(p)
        self.batch_first = F.check.flag(batch_first, "batch_first")
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dim() < 2:
            raise ValueError(f"LockedDropout needs a time and a batch dimension, got a {x.dim()}-D input")
        time_dim = 1 if self.batch_first else 0
        noise = tuple(1 if d == time_dim else size for d, size in enumerate(x.shape))
        return F.dropout(x, self.p, self.training, backend=self.backend, noise_shape=noise)

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}"
