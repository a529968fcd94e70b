"""Argument checks of the registered ops, shared by every Python kernel (reference, Triton) and by the fake
kernels of every family, so a direct torch.ops call is checked the same way whatever the backend (the native
kernels make the same checks in C++, csrc). They read only metadata (dtype, device, shape): they run under
FakeTensor and never touch data. Errors are RuntimeErrors naming the argument, as the C++ checks raise."""
from __future__ import annotations


import torch

from .geometry import checked_kernel_runs
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


def _seed(seed: torch.Tensor | None, ref: torch.Tensor, p: float) -> None:
    if seed is None:
        if p != 0.0:
            _fail("seed must be given when p > 0 (a one-element int64 tensor)")
        return
    if seed.dtype != torch.int64 or seed.numel() != 1:
        _fail(f"seed must be a one-element int64 tensor, got {seed.dtype} of {seed.numel()} elements")
    if seed.device != ref.device:
        _fail(f"seed must be on {ref.device}, got {seed.device}")


def _offset(offset: int) -> None:
    if not 0 <= offset < 2**63:
        _fail(f"offset must be in [0, 2**63), got {offset}")


def _mask_runs(runs, numel: int, offset: int) -> None:
    checked_kernel_runs(runs, numel, offset, RuntimeError)


def check_forward(op: FusedOp, args: ForwardArgs) -> None:
    _floating(args.x, "x")
    _probability(args.p)
    _seed(args.seed, args.x, args.p)
    _offset(args.offset)
    _mask_runs(args.mask_runs, args.x.numel(), args.offset)
    if args.residual is not None:
        _like(args.residual, args.x, "residual", "x", args.x.shape)
    if args.bias is not None:
        _like(args.bias, args.x, "bias", "x", (row_len_of(args.x),))


def check_backward(backward: Backward, grad: torch.Tensor, saved: tuple, p: float) -> None:
    """`saved`: the backward op's saved arguments, in backward.saved's order."""
    _floating(grad, "grad")
    _probability(p)
    named = dict(zip(backward.saved, saved))
    if backward.keeps_from_mask:
        _seed(named["seed"], grad, p)
        _offset(named["offset"])
        _mask_runs(named["mask_runs"], grad.numel(), named["offset"])
    if "y" in named:
        _like(named["y"], grad, "y", "grad", grad.shape)
    if backward.saves_input:
        _like(named["x"], grad, "x", "grad", grad.shape)
        if named["bias"] is not None:
            _like(named["bias"], grad, "bias", "grad", (row_len_of(grad),))
