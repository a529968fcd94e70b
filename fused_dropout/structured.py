"""Structured dropout on the mask geometry's noise_shape: channel dropout (dropout1d / 2d / 3d, with
torch.nn.functional's semantics and input-rank rules) and DropPath (timm's drop_path). Each is the project's
dropout with a mask shared along some dims: the same seed gives the same decisions on every backend."""
from __future__ import annotations

import warnings

import torch

from . import _geometry_path
from . import _validate as check
from . import backends, distributed
from . import functional as F
from ._rng import make_seed
from .geometry import mask_geometry
from .op_table import OPS_BY_NAME


def _feature_noise_shape(x: torch.Tensor, batched: bool) -> tuple[int, ...]:
    """One decision per (sample, channel): dims 0 and 1 of a batched input, dim 0 of an unbatched one."""
    kept_dims = 2 if batched else 1
    return tuple(x.shape[:kept_dims]) + (1,) * (x.dim() - kept_dims)


def _channel_dropout(name: str, x, p, training, inplace, batched: bool, seed, offset, generator, backend):
    check.floating_tensor(x, "x")
    if x.dim() < (2 if batched else 1):
        raise RuntimeError(f"{name}: channel dropout needs a channel dimension, got a {x.dim()}-D input")
    return F.dropout(x, p, training, inplace, seed=seed, offset=offset, generator=generator, backend=backend,
                     noise_shape=_feature_noise_shape(x, batched))


@F._with_common_args
def dropout1d(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              seed: int | None = None, offset: int = 0, generator: torch.Generator | None = None,
              backend: str | None = None) -> torch.Tensor:
    """Channel dropout as torch.nn.functional.dropout1d: each channel of each sample is zeroed whole with
    probability p (the others scaled by 1 / (1 - p)). x is (N, C, L) or, unbatched, (C, L).

    Args:
        x (Tensor): float16, bfloat16, float32 or float64, 2-D or 3-D (other ranks: RuntimeError, as torch).
        inplace (bool): write the result into x.
{common_args}
    """
    if isinstance(x, torch.Tensor) and x.dim() not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {x.dim()}D input (N, C, L) or "
                           "(C, L)")
    batched = not isinstance(x, torch.Tensor) or x.dim() == 3
    return _channel_dropout("dropout1d", x, p, training, inplace, batched, seed, offset, generator, backend)


@F._with_common_args
def dropout2d(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              seed: int | None = None, offset: int = 0, generator: torch.Generator | None = None,
              backend: str | None = None) -> torch.Tensor:
    """Channel dropout as torch.nn.functional.dropout2d: one decision per (sample, channel) of an (N, C, H, W)
    input. As torch does today, a 3-D input is taken as (N, C, L) with a warning, and other ranks run channel
    dropout on dims 0 and 1 with a deprecation warning.

    Args:
        x (Tensor): float16, bfloat16, float32 or float64, (N, C, H, W).
        inplace (bool): write the result into x.
{common_args}
    """
    if isinstance(x, torch.Tensor):
        if x.dim() not in (3, 4):
            warnings.warn(f"dropout2d: Received a {x.dim()}-D input to dropout2d, which is deprecated (as in "
                          "torch.nn.functional.dropout2d): channel dropout is applied on dims 0 and 1; use dropout "
                          "for element-wise dropout", stacklevel=2)
        if x.dim() == 3:
            warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                          "behavior is desired - input is interpreted as shape (N, C, L), as "
                          "torch.nn.functional.dropout2d does; use dropout1d for that", stacklevel=2)
    return _channel_dropout("dropout2d", x, p, training, inplace, True, seed, offset, generator, backend)


@F._with_common_args
def dropout3d(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
              seed: int | None = None, offset: int = 0, generator: torch.Generator | None = None,
              backend: str | None = None) -> torch.Tensor:
    """Channel dropout as torch.nn.functional.dropout3d: one decision per (sample, channel) of an
    (N, C, D, H, W) input, or per channel of an unbatched (C, D, H, W) one. Other ranks run channel dropout on
    dims 0 and 1 with a deprecation warning, as torch does.

    Args:
        x (Tensor): float16, bfloat16, float32 or float64, 4-D or 5-D.
        inplace (bool): write the result into x.
{common_args}
    """
    batched = True
    if isinstance(x, torch.Tensor):
        if x.dim() not in (4, 5):
            warnings.warn(f"dropout3d: Received a {x.dim()}-D input to dropout3d, which is deprecated (as in "
                          "torch.nn.functional.dropout3d): channel dropout is applied on dims 0 and 1; use dropout "
                          "for element-wise dropout", stacklevel=2)
        batched = x.dim() != 4
    return _channel_dropout("dropout3d", x, p, training, inplace, batched, seed, offset, generator, backend)


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True, *,
              seed: int | None = None, offset: int = 0, generator: torch.Generator | None = None,
              backend: str | None = None) -> torch.Tensor:
    """Stochastic depth per sample, with timm's signature and semantics: each sample (index along dim 0) is zeroed
    whole with probability drop_prob; with scale_by_keep the kept samples are scaled by 1 / (1 - drop_prob),
    without it they are left as they are. training=False (the default, as timm's) or drop_prob = 0 returns x.

    In a residual block, `x + drop_path(f(x))` is `dropout_add(f(x), x, p, noise_shape=(B, 1, ..., 1))`.

    Args:
        x (Tensor): float16, bfloat16, float32 or float64, with a batch dimension (dim 0).
        drop_prob (float): probability of dropping a sample, in [0, 1].
        training (bool): drop only when True.
        scale_by_keep (bool): scale the kept samples by 1 / (1 - drop_prob).
        seed, offset, generator, backend: as in fused_dropout.dropout.
    """
    check.floating_tensor(x, "x")
    if x.dim() == 0:
        raise ValueError("drop_path: x must have a batch dimension (dim 0), got a 0-d tensor")
    scale_by_keep = check.flag(scale_by_keep, "scale_by_keep")
    noise = (x.shape[0],) + (1,) * (x.dim() - 1)
    if scale_by_keep:
        return F.dropout(x, drop_prob, training, seed=seed, offset=offset, generator=generator, backend=backend,
                         noise_shape=noise)
    if distributed.is_dtensor(x):
        # Each rank its shard's box of the whole tensor's result; a drawn seed is the first rank's (as F's ops).
        seed_tensor = None
        if check.flag(training, "training") and check.probability(drop_prob) != 0.0 and seed is None:
            local = x.to_local()
            seed_tensor = distributed.shared_seed(x, make_seed(local.device, None,
                                                               check.generator(generator, local.device)))

        def on_shard(local_x, _residual, _bias, seed_tensor, global_shape, shard_offsets, noise_shape):
            return _unscaled_drop_path(local_x, drop_prob, training, seed, offset, generator, backend,
                                       (noise_shape, global_shape, shard_offsets), seed_tensor)

        return distributed.run(on_shard, x, None, None, seed_tensor, noise, None, None)
    return _unscaled_drop_path(x, drop_prob, training, seed, offset, generator, backend, (noise, None, None))


def _unscaled_drop_path(x, drop_prob, training, seed, offset, generator, backend, geometry_args, seed_tensor=None):
    """drop_path with scale_by_keep=False on a plain tensor (a whole one, or a DTensor's shard under its geometry):
    the decisions drawn with drop_prob, the kept samples left as they are (the composite of _geometry_path: the
    kernels scale what they keep)."""
    op = OPS_BY_NAME["dropout"]
    x, _, _, p, training = F._validated(op, x, None, None, drop_prob, training)
    ops = backends.ops_for(backend, x.device)
    geometry = mask_geometry(x.shape, *geometry_args, offset=check.offset(offset))
    if not training or p == 0.0:
        F._validate_randomness(x, seed, offset, generator)
        return x
    if seed_tensor is None:
        seed_tensor = make_seed(x.device, check.seed_bits(seed), check.generator(generator, x.device))
    return _geometry_path.forward(op, x, None, None, p, seed_tensor, check.offset(offset), geometry, ops,
                                  scale=False)
