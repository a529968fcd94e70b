"""The public functional API. Every function validates its arguments (naming the culprit), never mutates an
input unless asked to (inplace=True), and routes the call to one backend family's op for its op-table row."""
from __future__ import annotations

import torch

from . import _validate as check
from . import backends, spec
from ._rng import make_state, no_dropout_state
from .op_table import OPS_BY_NAME, FusedOp


def _state(x: torch.Tensor, seed, offset, generator) -> torch.Tensor:
    seed_bits = check.seed_bits(seed)
    offset = check.offset(offset)
    generator = check.generator(generator, x.device)
    return make_state(x.device, seed_bits, offset, generator)


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


def apply(op: FusedOp, x, residual, bias, p, training, seed, offset, generator, backend) -> torch.Tensor:
    """Runs `op` (a row of the op table) on validated arguments. With training=False or p = 0 nothing is
    dropped and no randomness is drawn: the op runs with p = 0 (activation(x + bias) + residual in one pass)."""
    ops = backends.ops_for(backend, x.device)
    if not training or p == 0.0:
        _validate_randomness(x, seed, offset, generator)
        state, p = no_dropout_state(x.device), 0.0
    else:
        state = _state(x, seed, offset, generator)
    return ops.forward[op.name](*op.pack(x, residual, bias, state, p))


def dropout(x, p=0.5, training=True, inplace=False, *, seed=None, offset=0, generator=None, backend=None):
    """Dropout with the project's mask: element i is kept iff its Philox word is >= floor(p * 2^32).

    Same contract as torch.nn.functional.dropout; `seed` fixes the mask, `offset` shifts the element index (for a
    shard of a larger tensor), `generator` is drawn from when seed is None. The backward saves no mask.
    """
    op = OPS_BY_NAME["dropout"]
    x, _, _, p, training = _validated(op, x, None, None, p, training)
    inplace = check.flag(inplace, "inplace")
    if not training or p == 0.0:
        backends.resolve(backend, x.device)  # a bad backend argument is an error in every mode
        _validate_randomness(x, seed, offset, generator)
        return x
    out = apply(op, x, None, None, p, training, seed, offset, generator, backend)
    return x.copy_(out) if inplace else out


def bias_relu_dropout(x, bias, p=0.5, training=True, *, seed=None, offset=0, generator=None, backend=None):
    """dropout(relu(x + bias)) in one pass; bias has shape [x.shape[-1]] or is None. Mixed dtypes promote.

    The backward uses the saved output (y > 0 marks kept, active elements): no mask is stored.
    """
    op = OPS_BY_NAME["bias_relu_dropout"]
    x, _, bias, p, training = _validated(op, x, None, bias, p, training)
    return apply(op, x, None, bias, p, training, seed, offset, generator, backend)


def dropout_add(x, residual, p=0.5, training=True, *, bias=None, seed=None, offset=0, generator=None, backend=None):
    """residual + dropout(x + bias) in one pass; residual has x's shape, bias [x.shape[-1]] or None. Mixed
    dtypes promote (torch's type promotion), as the eager composition does."""
    op = OPS_BY_NAME["dropout_add"]
    x, residual, bias, p, training = _validated(op, x, residual, bias, p, training)
    return apply(op, x, residual, bias, p, training, seed, offset, generator, backend)


def dropout_mask(shape, p, seed, *, offset=0, device=None) -> torch.Tensor:
    """The boolean keep-mask every op applies for this shape, p, seed and offset (computed by the reference)."""
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
    state = make_state(device, check.seed_bits(seed), check.offset(offset))
    return spec.keep_mask(shape.numel(), state, p).reshape(shape)
