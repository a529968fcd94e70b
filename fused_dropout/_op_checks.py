"""Argument checks of the registered ops, shared by every Python kernel (reference, Triton) and by the fake
kernels of every family, so a direct torch.ops call is checked the same way whatever the backend (the native
kernels make the same checks in C++, csrc). They read only metadata (dtype, device, shape): they run under
FakeTensor and never touch data. Errors are RuntimeErrors naming the argument, as the C++ checks raise."""
from __future__ import annotations

import torch

from .op_table import Backward, ForwardArgs, FusedOp
from .spec import row_len_of

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _fail(message: str):
    raise RuntimeError(message)


def _floating(t: torch.Tensor, name: str) -> None:
    if t.dtype not in FLOAT_DTYPES:
        _fail(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")


def _probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:  # NaN fails too
        _fail(f"p must be in [0, 1], got {p}")


def _like(t: torch.Tensor, ref: torch.Tensor, name: str, ref_name: str, shape) -> None:
    if t.dtype != ref.dtype:
        _fail(f"{name} must have dtype {ref.dtype} ({ref_name}'s), got {t.dtype}")
    if t.device != ref.device:
        _fail(f"{name} must be on {ref.device} ({ref_name}'s device), got {t.device}")
    if tuple(t.shape) != tuple(shape):
        _fail(f"{name} must have shape {list(shape)}, got {list(t.shape)}")


def _rng_state(state: torch.Tensor, ref: torch.Tensor) -> None:
    if state.dtype != torch.int64 or state.numel() != 2 or not state.is_contiguous():
        _fail("rng_state must be a contiguous int64 tensor of 2 elements [seed, offset]")
    if state.device != ref.device:
        _fail(f"rng_state must be on {ref.device}, got {state.device}")


def check_forward(op: FusedOp, args: ForwardArgs) -> None:
    _floating(args.x, "x")
    _probability(args.p)
    _rng_state(args.rng_state, args.x)
    if args.residual is not None:
        _like(args.residual, args.x, "residual", "x", args.x.shape)
    if args.bias is not None:
        _like(args.bias, args.x, "bias", "x", (row_len_of(args.x),))


def check_backward(backward: Backward, grad: torch.Tensor, saved: torch.Tensor, p: float) -> None:
    _floating(grad, "grad")
    _probability(p)
    if backward.saved == "rng_state":
        _rng_state(saved, grad)
    else:
        _like(saved, grad, backward.saved, "grad", grad.shape)
