"""Argument checks of the public API. Every failure names the argument. Nothing here touches the data of x, bias
or residual; a tensor given as p, seed or offset is read (.item() / __index__), as torch reads such scalars."""
from __future__ import annotations

import math
import operator
import sys

import torch

from .spec import row_len_of

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
UINT64_LIMIT = 1 << 64
INT64_MIN = -(1 << 63)
OFFSET_LIMIT = 1 << 63  # the offset is stored as an int64 next to the seed


class ProbabilityError(ValueError, RuntimeError):
    """A NaN p. This API has always raised ValueError for it; torch.nn.functional.dropout raises RuntimeError (from
    ATen). Being both, it is caught by code written for either."""


def _type_name(value) -> str:
    """The name of value's type for an error message; qualified outside builtins and torch, so that a numpy bool
    reads "numpy.bool" (its __name__ is plain "bool" in numpy 2) and a numpy integer "numpy.int64"."""
    cls = type(value)
    module = cls.__module__.split(".")[0]
    return cls.__name__ if module in ("builtins", "torch") else f"{module}.{cls.__name__}"


def _numpy():
    """numpy if it is already imported, else None: a numpy scalar cannot exist before numpy is imported, so this
    never imports numpy (which may not be installed)."""
    return sys.modules.get("numpy")


def _is_numpy_bool(value) -> bool:
    np = _numpy()
    return np is not None and isinstance(value, np.bool_)


def _is_numpy_real(value) -> bool:
    """A numpy integer or floating scalar (not a bool, complex or array), as torch accepts for a float argument."""
    np = _numpy()
    return np is not None and isinstance(value, (np.integer, np.floating))


def _tensor_probability(p: torch.Tensor) -> float:
    """The value of a tensor p, accepted where torch.nn.functional.dropout accepts it: 0-d, not requiring grad."""
    if p.dim() != 0:
        raise TypeError(f"p must be a number or a 0-d tensor, got a tensor of shape {list(p.shape)}")
    if p.requires_grad:
        raise TypeError("p must not require grad (no gradient flows to p), got a tensor with requires_grad=True")
    if p.dtype == torch.bool or p.is_complex() or p.is_quantized:
        raise TypeError(f"p must be a real number in [0, 1], got a tensor of dtype {p.dtype}")
    if p.device.type == "meta":
        raise RuntimeError("p is a meta tensor: its value cannot be read")
    # .item() copies the value to the host: for a CUDA p it waits for the device (a host sync), exactly as
    # torch.nn.functional.dropout does for a tensor p. The value is read at every call, never cached.
    return float(p.item())


def probability(p) -> float:
    """p as a float in [0, 1]. Accepts what torch.nn.functional.dropout accepts (Python and numpy ints and floats,
    0-d real tensors not requiring grad), except bools of any kind, which are rejected on purpose."""
    if isinstance(p, bool) or _is_numpy_bool(p):
        raise TypeError(f"p must be a real number in [0, 1], got {_type_name(p)}")
    if isinstance(p, torch.Tensor):
        p = _tensor_probability(p)
    elif isinstance(p, int) and not 0 <= p <= 1:  # compared as an int: float(10**400) would overflow
        raise ValueError(f"p must be in [0, 1], got {p}")
    elif isinstance(p, (int, float)) or _is_numpy_real(p):
        p = float(p)
    else:
        raise TypeError(f"p must be a real number in [0, 1], got {_type_name(p)}")
    if math.isnan(p):
        raise ProbabilityError(f"p must be in [0, 1], got {p}")
    if p < 0.0 or p > 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    return p


def strided(t: torch.Tensor, name: str) -> torch.Tensor:
    """The kernels read dense memory: sparse (COO, CSR, CSC, BSR, BSC), nested and mkldnn tensors are refused here,
    by name, instead of by the dispatcher ("Could not run ... with arguments from the 'SparseCPU' backend")."""
    if t.is_nested:  # a nested tensor of the default kind even reports layout torch.strided
        raise TypeError(f"{name} must be a dense tensor with the strided layout, got a nested tensor "
                        f"(layout {t.layout}); run each component separately or pad it to a dense tensor")
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense tensor with the strided layout, got layout {t.layout}; "
                        f"convert it with .to_dense()")
    return t


def floating_tensor(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_type_name(x)}")
    strided(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    return x


def companion(t, x: torch.Tensor, name: str, shape) -> torch.Tensor:
    """A floating tensor on x's device with `shape` (bias, residual). Its dtype may differ from x's: the call
    then runs in the promoted dtype (promoted_dtype), as the eager composition would."""
    floating_tensor(t, name)
    if t.device != x.device:
        raise RuntimeError(f"{name} must be on x's device {x.device}, got {t.device}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    return t


def promoted_dtype(*tensors) -> torch.dtype:
    """torch's type promotion over the call's floating tensors (None entries skipped): bfloat16 x with a float32
    bias gives float32, as x + bias does. Under autocast this is what the eager composition returns too."""
    dtype = None
    for t in tensors:
        if t is not None:
            # promote_types is a dispatched op: called only when the dtypes differ.
            dtype = t.dtype if dtype is None or dtype == t.dtype else torch.promote_types(dtype, t.dtype)
    return dtype


def bias_shape(x: torch.Tensor) -> tuple[int]:
    """The bias runs along the last dimension; a 0-d x takes a bias of shape [1]."""
    return (row_len_of(x),)


def _integer(value, name: str) -> int:
    """A Python int, numpy integer or integer tensor of one element (read with __index__; for a CUDA tensor that
    is a host sync). Bools are refused, including bool tensors, whose __index__ would turn True into 1."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
        raise TypeError(f"{name} must be an int, got a tensor of dtype torch.bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {_type_name(value)}") from None


def seed_bits(seed) -> int | None:
    """None, or the seed's unsigned 64-bit pattern stored as a signed int64 value."""
    if seed is None:
        return None
    seed = _integer(seed, "seed")
    if not INT64_MIN <= seed < UINT64_LIMIT:
        raise ValueError(f"seed must fit in 64 bits (in [-2**63, 2**64)), got {seed}")
    seed &= UINT64_LIMIT - 1
    return seed - UINT64_LIMIT if seed >= OFFSET_LIMIT else seed


def offset(value) -> int:
    value = _integer(value, "offset")
    if value < 0:
        raise ValueError(f"offset must be >= 0, got {value}")
    if value >= OFFSET_LIMIT:
        raise ValueError(f"offset must be < 2**63, got {value}")
    return value


def generator(gen, device: torch.device):
    if gen is None:
        return None
    if not isinstance(gen, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {_type_name(gen)}")
    if gen.device.type != device.type:
        raise RuntimeError(f"generator is on {gen.device} but x is on {device}")
    return gen


def flag(value, name: str) -> bool:
    """A bool (a numpy bool counts; so does a Python int, as before). Strings, None, floats and tensors are refused:
    their truthiness is rarely what the caller meant."""
    if not isinstance(value, (bool, int)) and not _is_numpy_bool(value):
        raise TypeError(f"{name} must be a bool, got {_type_name(value)}")
    return bool(value)
