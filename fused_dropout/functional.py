"""The public functional API. Every function validates its arguments (naming the culprit), never mutates an
input unless asked to (inplace=True), and routes the call to one backend family's op for its op-table row."""
from __future__ import annotations

import torch

from . import _fast_path, _geometry_path
from . import _validate as check
from . import backends, distributed
from ._rng import make_seed
from .geometry import MaskGeometry, mask_geometry
from .op_table import BIAS_ACT_OPS, OPS_BY_NAME, FusedOp

_NO_GEOMETRY = (None, None, None)  # (noise_shape, global_shape, shard_offsets) of the common call
_DROPOUT = OPS_BY_NAME["dropout"]


def _validate_randomness(x, seed, offset, generator) -> None:
    """Checks the randomness arguments of a call that draws no randomness (eval mode, p = 0)."""
    check.seed_bits(seed)
    check.offset(offset)
    check.generator(generator, x.device)


def _validated(op: FusedOp, x, residual, bias, p, training):
    """The checked (x, residual, bias, p, training) of a call of `op`. Tensors of different floating dtypes are
    cast to their promoted dtype (torch's type promotion, as the eager composition does: a bfloat16 x under
    autocast with a float32 bias gives a float32 result). The cast is a copy of the narrower tensors; the
    kernels themselves take one dtype."""
    check.floating_tensor(x, "x")
    if op.residual:
        check.companion(residual, x, "residual", x.shape)
    if bias is not None:
        check.companion(bias, x, "bias", check.bias_shape(x))
    dtype = check.promoted_dtype(x, residual, bias)
    x, residual, bias = (t if t is None or t.dtype == dtype else t.to(dtype) for t in (x, residual, bias))
    return x, residual, bias, check.probability(p), check.flag(training, "training")


def _mask_geometry(x, offset, geometry_args) -> MaskGeometry | None:
    """The validated geometry of (noise_shape, global_shape, shard_offsets), None when all three are None (the
    row-major index: the common case)."""
    if all(arg is None for arg in geometry_args):
        return None
    return mask_geometry(x.shape, *geometry_args, offset=check.offset(offset))


def apply(op: FusedOp, x, residual, bias, p, training, seed, offset, generator, backend,
          geometry_args=_NO_GEOMETRY, seed_tensor=None) -> torch.Tensor:
    """Runs `op` (a row of the op table) on validated arguments. With training=False or p = 0 nothing is
    dropped and no randomness is drawn: the op runs with p = 0 (activation(x + bias) + residual in one pass).
    A mask geometry goes to the kernels as their mask runs (a plain offset when it is a shard of whole rows), or
    when it has more runs than they take to the composite of _geometry_path. A given seed_tensor (a DTensor
    call's seed, shared by its ranks) is used instead of a draw."""
    ops = backends.ops_for(backend, x.device)
    geometry = _mask_geometry(x, offset, geometry_args)  # checked in every mode
    if not training or p == 0.0:
        _validate_randomness(x, seed, offset, generator)
        seed_tensor, offset, p = None, 0, 0.0
    else:
        seed_bits = check.seed_bits(seed)
        offset = check.offset(offset)
        generator = check.generator(generator, x.device)
        if seed_tensor is None:
            seed_tensor = make_seed(x.device, seed_bits, generator)
        if geometry is not None:
            if not _geometry_path.kernels_take(geometry):
                return _geometry_path.forward(op, x, residual, bias, p, seed_tensor, offset, geometry, ops)
            return ops.forward[op.name](*op.pack(x, residual, bias, seed_tensor, offset + geometry.base, p,
                                                 geometry.kernel_runs))
    return ops.forward[op.name](*op.pack(x, residual, bias, seed_tensor, offset, p))


def _run(op: FusedOp, x, residual, bias, p, training, seed, offset, generator, backend,
         geometry_args=_NO_GEOMETRY) -> torch.Tensor:
    """A public call of `op`: the common call's shortcut (_fast_path), else full validation and apply."""
    if geometry_args == _NO_GEOMETRY:  # a tuple of three Nones: the common call
        out = _fast_path.forward(op, x, residual, bias, p, training, seed, offset, generator, backend)
        if out is not None:
            return out
    if type(x) is not torch.Tensor and distributed.is_dtensor(x):
        return _run_on_shards(op, x, residual, bias, p, training, seed, offset, generator, backend, geometry_args)
    x, residual, bias, p, training = _validated(op, x, residual, bias, p, training)
    return apply(op, x, residual, bias, p, training, seed, offset, generator, backend, geometry_args)


def _run_on_shards(op: FusedOp, x, residual, bias, p, training, seed, offset, generator, backend, geometry_args):
    """`op` on DTensors (fused_dropout.distributed): each rank computes its shard's box of the whole result."""
    p_value, training_value = check.probability(p), check.flag(training, "training")
    seed_tensor = None
    if training_value and p_value != 0.0 and seed is None:
        local = x.to_local()
        seed_tensor = distributed.shared_seed(x, make_seed(local.device, None,
                                                           check.generator(generator, local.device)))

    def on_shard(local_x, local_residual, local_bias, seed_tensor, global_shape, shard_offsets, noise_shape):
        local_x, local_residual, local_bias, p_local, training_local = _validated(op, local_x, local_residual,
                                                                                   local_bias, p, training)
        return apply(op, local_x, local_residual, local_bias, p_local, training_local, seed, offset, generator,
                     backend, (noise_shape, global_shape, shard_offsets), seed_tensor)

    return distributed.run(on_shard, x, residual, bias, seed_tensor, *geometry_args)


_COMMON_ARGS = """
        p (float): probability of dropping an element, in [0, 1] (a Python number or a 0-d tensor).
        training (bool): apply dropout only when True; False (or p = 0) drops nothing and draws no randomness.
        seed (int, optional): fixes the mask (any 64-bit pattern, in [-2**63, 2**64)). None draws one on x's
            device with torch.randint from `generator` (or the default generator), so torch.manual_seed
            reproduces a run and checkpoint recomputation gives the same mask.
        offset (int): shifts the element index, so a shard holding elements [offset, offset + numel) of a larger
            tensor gets exactly its slice of that tensor's mask. Default 0.
        generator (torch.Generator, optional): drawn from when seed is None.
        backend (str, optional): "cpu", "cuda", "triton" or "torch"; None or "auto" takes FUSED_DROPOUT_BACKEND,
            else the fastest available for x's device. Every backend gives the same bits.
        noise_shape (sequence of int, optional): the mask's shape M (default global_shape): each M_d is
            global_shape[d] or 1, and the mask is shared along the dims where it is 1 (channel dropout: (N, C, 1,
            1); DropPath: (B, 1, ..., 1); locked dropout: 1 along time).
        global_shape (sequence of int, optional): the whole tensor's shape when x is a shard of it (default
            x.shape); with shard_offsets, x gets exactly its box of the whole tensor's mask.
        shard_offsets (sequence of int, optional): where x starts in the whole tensor, per dim (default zeros).
            Every backend runs the geometry in one pass: the kernels take it as (extent, stride) runs of the
            mask index (a shard of whole rows is a plain offset). A geometry of more than six runs (a tensor of
            rank 7 or more masked along alternate dims) runs as a composite of torch ops around one shared mask
            (a warning says so)."""


def _with_common_args(fn):
    fn.__doc__ = fn.__doc__.replace("{common_args}", _COMMON_ARGS.strip("\n"))
    return fn


@_with_common_args
def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *, seed: int | None = None,
            offset: int = 0, generator: torch.Generator | None = None, backend: str | None = None,
            noise_shape=None, global_shape=None, shard_offsets=None) -> torch.Tensor:
    """Dropout with the project's mask: element i is kept iff its Philox word is >= floor(p * 2^32), and kept
    elements are scaled by 1 / (1 - p). Same contract as torch.nn.functional.dropout; the backward saves no mask
    (the 8-byte seed tensor instead).

    Args:
        x (Tensor): float16, bfloat16, float32 or float64, any shape and strides (the mask follows the logical
            row-major index; the output keeps x's layout).
        inplace (bool): write the result into x (the same mask and gradient as out of place).
{common_args}

    Returns:
        Tensor of x's shape and dtype; x itself when nothing is dropped (training=False or p = 0).

    Example:
        >>> x = torch.ones(2, 4)
        >>> fused_dropout.dropout(x, 0.5, seed=1)
        tensor([[2., 2., 2., 2.],
                [2., 2., 0., 2.]])
    """
    op = _DROPOUT
    if inplace is False and noise_shape is None and global_shape is None and shard_offsets is None:
        out = _fast_path.forward(op, x, None, None, p, training, seed, offset, generator, backend)
        if out is not None:
            return out
    geometry_args = (noise_shape, global_shape, shard_offsets)
    if type(x) is not torch.Tensor and distributed.is_dtensor(x):
        if not check.flag(training, "training") or check.probability(p) == 0.0:
            return x
        out = _run_on_shards(op, x, None, None, p, training, seed, offset, generator, backend, geometry_args)
        return x.copy_(out) if check.flag(inplace, "inplace") else out
    x, _, _, p, training = _validated(op, x, None, None, p, training)
    inplace = check.flag(inplace, "inplace")
    if not training or p == 0.0:
        backends.resolve(backend, x.device)  # a bad backend argument is an error in every mode
        _validate_randomness(x, seed, offset, generator)
        _mask_geometry(x, offset, geometry_args)
        return x
    out = apply(op, x, None, None, p, training, seed, offset, generator, backend, geometry_args)
    return x.copy_(out) if inplace else out


@_with_common_args
def bias_relu_dropout(x: torch.Tensor, bias: torch.Tensor | None, p: float = 0.5, training: bool = True, *,
                      seed: int | None = None, offset: int = 0, generator: torch.Generator | None = None,
                      backend: str | None = None, noise_shape=None, global_shape=None,
                      shard_offsets=None) -> torch.Tensor:
    """dropout(relu(x + bias)) in one pass over memory. The backward uses the saved output (y > 0 marks the kept,
    active elements): no mask is stored.

    Args:
        x (Tensor): float16, bfloat16, float32 or float64, shape (*, N).
        bias (Tensor or None): shape (N,) (shape (1,) for a 0-d x). A bias of another floating dtype promotes
            with x as x + bias does (a bfloat16 x under autocast with a float32 bias gives float32).
{common_args}

    Returns:
        Tensor of x's shape, in the promoted dtype of x and bias.

    Example:
        >>> x = torch.tensor([[-1.0, 0.5, 2.0, 3.0]])
        >>> fused_dropout.bias_relu_dropout(x, torch.zeros(4), 0.5, seed=1)
        tensor([[0., 1., 4., 6.]])
    """
    return _run(OPS_BY_NAME["bias_relu_dropout"], x, None, bias, p, training, seed, offset, generator, backend,
                (noise_shape, global_shape, shard_offsets))


def _bias_act_op(activation) -> FusedOp:
    op = BIAS_ACT_OPS.get(activation) if isinstance(activation, str) else None
    if op is None:
        raise ValueError(f"activation must be one of {sorted(BIAS_ACT_OPS)}, got {activation!r}")
    return op


@_with_common_args
def bias_act_dropout(x: torch.Tensor, bias: torch.Tensor | None, p: float = 0.5, training: bool = True, *,
                     activation: str = "relu", seed: int | None = None, offset: int = 0,
                     generator: torch.Generator | None = None, backend: str | None = None, noise_shape=None,
                     global_shape=None, shard_offsets=None) -> torch.Tensor:
    """dropout(activation(x + bias)) in one pass over memory, with the mask every op draws for the same seed.

    The activations are computed in float32 (float64 for float64 tensors) by the project's own math, the same
    bits on every backend (docs/mask_spec.md, Values): "gelu" is torch's exact (erf) gelu, "gelu_tanh" its
    approximate="tanh" form, "silu" x * sigmoid(x), "identity" bias + dropout, "relu" the op of
    bias_relu_dropout. The backward of gelu, gelu_tanh and silu saves x (one tensor of x's size) and the 16-byte
    RNG state and recomputes x + bias and the mask; relu's saves only its output; identity's only the seed.

    Args:
        x (Tensor): float16, bfloat16, float32 or float64, shape (*, N).
        bias (Tensor or None): shape (N,) (shape (1,) for a 0-d x), or None for dropout(activation(x)). Mixed
            floating dtypes promote as x + bias does.
        activation (str): "relu", "gelu", "gelu_tanh", "silu" or "identity". Keyword only.
{common_args}

    Returns:
        Tensor of x's shape, in the promoted dtype of x and bias.

    Example:
        >>> x = torch.tensor([[-1.0, 0.5, 2.0, 3.0]])
        >>> fused_dropout.bias_act_dropout(x, None, 0.5, activation="silu", seed=1)
        tensor([[-0.5379,  0.6225,  3.5232,  5.7154]])
    """
    return _run(_bias_act_op(activation), x, None, bias, p, training, seed, offset, generator, backend,
                (noise_shape, global_shape, shard_offsets))


@_with_common_args
def dropout_add(x: torch.Tensor, residual: torch.Tensor, p: float = 0.5, training: bool = True, *,
                bias: torch.Tensor | None = None, seed: int | None = None, offset: int = 0,
                generator: torch.Generator | None = None, backend: str | None = None, noise_shape=None,
                global_shape=None, shard_offsets=None) -> torch.Tensor:
    """residual + dropout(x + bias) in one pass over memory, for residual connections. The backward saves no
    mask (the 8-byte seed tensor); the residual's gradient is the incoming gradient itself.

    Args:
        x (Tensor): float16, bfloat16, float32 or float64, shape (*, N).
        residual (Tensor): x's shape.
        bias (Tensor, optional): shape (N,). Tensors of different floating dtypes promote, as the eager
            composition does.
{common_args}

    Returns:
        Tensor of x's shape, in the promoted dtype of x, residual and bias.

    Example:
        >>> x, residual = torch.ones(1, 4), torch.full((1, 4), 10.0)
        >>> fused_dropout.dropout_add(x, residual, 0.5, seed=3)
        tensor([[12., 10., 12., 12.]])
    """
    return _run(OPS_BY_NAME["dropout_add"], x, residual, bias, p, training, seed, offset, generator, backend,
                (noise_shape, global_shape, shard_offsets))


def dropout_mask(shape, p: float, seed: int, *, offset: int = 0, noise_shape=None, global_shape=None,
                 shard_offsets=None, device=None) -> torch.Tensor:
    """The boolean keep-mask every op applies for this shape, p, seed, offset and mask geometry (made by the
    default backend's dropout kernel).

    Args:
        shape (sequence of int): the shape of the (local) tensor the mask is for.
        p (float): drop probability in [0, 1].
        seed (int): the seed (a drawn seed cannot be named in advance).
        offset (int): the element-index offset, as the ops take it.
        noise_shape, global_shape, shard_offsets: the mask geometry, as the ops take it.
        device: where the mask is computed and returned (default CPU).

    Returns:
        A bool tensor of `shape`, True where an element is kept (equal along the dims noise_shape broadcasts).

    Example:
        >>> fused_dropout.dropout_mask((2, 4), 0.5, seed=1)
        tensor([[ True,  True,  True,  True],
                [ True,  True, False,  True]])
    """
    p = check.probability(p)
    if seed is None:
        raise TypeError("seed must be an int: the mask of a drawn seed cannot be named in advance")
    try:
        shape = torch.Size(shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints, got {shape!r}") from None
    if any(size < 0 for size in shape):
        raise ValueError(f"shape must have non-negative sizes, got {list(shape)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    offset = check.offset(offset)
    geometry = mask_geometry(shape, noise_shape, global_shape, shard_offsets, offset)
    seed_tensor = make_seed(device, check.seed_bits(seed))
    # The decisions of the mask box (all of shape without a broadcast dim), by the default backend's kernel.
    keep = _geometry_path.box_keep(geometry, seed_tensor, offset, p, backends.ops_for(None, device), device)
    return keep.expand(shape).contiguous()
