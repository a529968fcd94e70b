"""The common call, at the cost of an ATen op: a call whose arguments are plainly valid (a dense floating x, a
float p, companions of x's dtype, device and shape, the default backend, no generator) goes straight to its op
with one seed draw. Anything else returns None and takes the public functions' full validation (functional.py),
which gives the same result, and the errors. Eval mode and p = 0 take their shortcut here before any backend
resolution: dropout returns x, the other ops run once with p = 0 and no seed.

Each check here is one the full path makes too; none is skipped, they are only cheaper where the answer is
plainly yes. A call costs a few hundred nanoseconds of Python on top of the seed draw and the op.
"""
from __future__ import annotations

import os

import torch

from . import _native
from . import _validate as check
from . import backends
from ._rng import make_seed
from .op_table import FusedOp

_Tensor = torch.Tensor
_DTYPES = frozenset(check.FLOAT_DTYPES)
_STRIDED = torch.strided
_OFFSET_LIMIT = check.OFFSET_LIMIT
# The seed draw without torch.randint's Python argument parsing (the same op and draw, made in C++); a
# TorchFunctionMode still sees torch.randint itself.
_draw_seed_like = _native._C.draw_seed_like if _native.LOADED else None
_function_mode_enabled = torch._C._is_torch_function_mode_enabled
_AUTO_FAMILY: dict = {}  # device type -> the family backend=None resolves to without FUSED_DROPOUT_BACKEND

# `ENV_VAR in os.environ` costs over a microsecond (it encodes the key on every lookup); the encoded key looked up
# in the mapping's own dict costs a few tens of nanoseconds and sees every change made through os.environ. Where
# os.environ has no such dict, the shortcut is not taken.
_ENVIRON_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey(backends.ENV_VAR) if _ENVIRON_DATA is not None else None


def _auto_family(device: torch.device):
    family = _AUTO_FAMILY.get(device.type)
    if family is None:
        family = _AUTO_FAMILY[device.type] = backends.ops_for(None, device)
    return family


def _companion(t, x: torch.Tensor, x_dtype, x_device) -> bool:
    """t is a dense tensor of x's dtype and device (its shape is checked by the caller)."""
    return (type(t) is _Tensor and t.dtype is x_dtype and t.layout is _STRIDED and not t.is_nested
            and t.device == x_device)


def forward(op: FusedOp, x, residual, bias, p, training, seed, offset, generator, backend):
    """The op's result for a plainly valid common call, else None. The checks are ordered cheapest first and each
    runs once: this is the path whose cost the per-call benchmark (bench --overhead) measures."""
    if (type(x) is not _Tensor or type(p) is not float or generator is not None or backend is not None
            or type(offset) is not int or not (training is True or training is False)):
        return None
    dtype = x.dtype
    if (not 0.0 <= p <= 1.0 or not 0 <= offset < _OFFSET_LIMIT or (seed is not None and type(seed) is not int)
            or dtype not in _DTYPES or x.layout is not _STRIDED or x.is_nested):
        return None
    if not training or p == 0.0:
        if not op.bias and not op.residual and op.activation == "identity":
            return x  # nothing to compute: dropout in eval mode is the identity (as the full path returns it)
    device = x.device
    if residual is not None or op.residual:
        if not (_companion(residual, x, dtype, device) and residual.shape == x.shape):
            return None
    if bias is not None:
        if not (_companion(bias, x, dtype, device) and bias.shape == (x.shape[-1:] if x.dim() else (1,))):
            return None
    if _ENVIRON_DATA is None or _ENV_KEY in _ENVIRON_DATA or torch.compiler.is_compiling():
        return None  # the backend comes from the environment; under torch.compile the full path is traced
    if not training or p == 0.0:
        seed_tensor, p = None, 0.0
    elif seed is None and _draw_seed_like is not None and not _function_mode_enabled():
        seed_tensor = _draw_seed_like(x)
    else:
        seed_tensor = make_seed(device, None if seed is None else check.seed_bits(seed))
    return _auto_family(device).forward[op.name](*op.pack(x, residual, bias, seed_tensor, offset, p))
