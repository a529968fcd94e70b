"""Host side of the Triton backend: tile choice, launches and the five op functions (same signatures as
fused_dropout.reference). On the CPU they run only under TRITON_INTERPRET=1 (how CI tests them)."""
from __future__ import annotations

import struct

import torch
import triton

from .. import spec
from ..backends import triton_interpreting
from . import kernels

# Elements per program, by element size: enough bytes in flight per program to stream at full bandwidth while
# keeping the Philox words in registers. Only powers of two, so a new tensor size never means a new compile
# unless the bias length moves to another power-of-two bucket.
_ELEMENTS_PER_PROGRAM = {2: 4096, 4: 2048, 8: 1024}


def _tile(row_len: int, has_columns: bool, element_size: int) -> tuple[int, int, int]:
    """(BR, BC, num_warps) for a [rows, row_len] view."""
    elements = _ELEMENTS_PER_PROGRAM[element_size]
    if not has_columns:
        return 1, elements, 8 if elements >= 4096 else 4
    columns = max(4, min(triton.next_power_of_2(row_len), elements))
    rows = max(1, elements // columns)
    return rows, columns, 8 if rows * columns >= 4096 else 4


def _scale_bits(p: float, dtype: torch.dtype) -> int:
    """The bit pattern of scale = 1 / (1 - p) rounded once to the compute type (0 when p = 1)."""
    scale = spec.dropout_scale(p)
    if dtype == torch.float64:
        return struct.unpack("<q", struct.pack("<d", scale))[0]
    return struct.unpack("<i", struct.pack("<f", scale))[0]


def _check_device(t: torch.Tensor) -> None:
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and triton_interpreting():
        return
    raise RuntimeError(
        f"the triton backend runs CUDA tensors (or CPU tensors under TRITON_INTERPRET=1), got {t.device}"
    )


def _launch_options() -> dict:
    # FMA contraction off: the same roundings as the spec and the other backends, so values agree bit for bit.
    return {} if triton_interpreting() else {"enable_fp_fusion": False}


def _forward(x, rng_state, p, *, bias=None, residual=None, relu=False):
    _check_device(x)
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    has_columns = bias is not None
    row_len = spec.row_len_of(x) if has_columns else x.numel()
    rows = x.numel() // row_len
    br, bc, num_warps = _tile(row_len, has_columns, x.element_size())
    grid = (triton.cdiv(rows, br) * triton.cdiv(row_len, bc),)
    kernels.forward_kernel[grid](
        x, bias.contiguous() if bias is not None else x, residual.contiguous() if residual is not None else x,
        out, rng_state, rows, row_len, spec.keep_threshold(p), _scale_bits(p, x.dtype),
        HAS_BIAS=has_columns, RELU=relu, HAS_RESIDUAL=residual is not None, ACC_F64=x.dtype == torch.float64,
        BR=br, BC=bc, num_warps=num_warps, **_launch_options(),
    )
    return out


def _backward(grad, keep_source, p, bias_grad, *, from_mask):
    _check_device(grad)
    grad = grad.contiguous()
    grad_in = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device)
    row_len = spec.row_len_of(grad)
    grad_bias = torch.zeros((row_len if bias_grad else 0,), dtype=grad.dtype, device=grad.device)
    if grad.numel() == 0:
        return grad_in, grad_bias
    view_len = row_len if bias_grad else grad.numel()
    rows = grad.numel() // view_len
    br, bc, num_warps = _tile(view_len, bias_grad, grad.element_size())
    row_blocks = triton.cdiv(rows, br)
    acc_dtype = spec.compute_dtype(grad.dtype)
    partial = torch.empty((row_blocks, view_len) if bias_grad else (1,), dtype=acc_dtype, device=grad.device)
    y = grad if from_mask else keep_source.contiguous()
    state = keep_source if from_mask else grad  # unused pointers still need a tensor
    kernels.backward_kernel[(row_blocks * triton.cdiv(view_len, bc),)](
        grad, y, state, grad_in, partial, rows, view_len, spec.keep_threshold(p), _scale_bits(p, grad.dtype),
        FROM_MASK=from_mask, BIAS_GRAD=bias_grad, ACC_F64=grad.dtype == torch.float64,
        BR=br, BC=bc, num_warps=num_warps, **_launch_options(),
    )
    if bias_grad:
        sum_block = min(1024, triton.next_power_of_2(view_len))
        kernels.column_sum_kernel[(triton.cdiv(view_len, sum_block),)](
            partial, grad_bias, row_blocks, view_len, BC=sum_block, ACC_F64=grad.dtype == torch.float64
        )
    return grad_in, grad_bias


def forward(op, x, residual, bias, rng_state, p):
    return _forward(x, rng_state, p, bias=bias, residual=residual, relu=op.activation == "relu")


def backward(kind, grad, saved, p, bias_grad):
    return _backward(grad, saved, p, bias_grad, from_mask=kind == "mask")
