"""Host side of the Triton backend: two entry points, forward(op, ...) and backward(kind, ...), driven by an op
declaration (name, activation, bias, residual) rather than one function per op; the tile choice; and
specializations(), every kernel variant they can launch (compiled for real GPUs by tests/test_triton_compile.py).
On the CPU they run only under TRITON_INTERPRET=1 (how CI tests them)."""
from __future__ import annotations

import struct
from typing import NamedTuple

import torch
import triton

from .. import spec
from ..backends import triton_interpreting
from ..geometry import MAX_KERNEL_RUNS, checked_kernel_runs, merged_runs
from ..op_table import BACKWARDS, OPS, SMOOTH_ACTIVATIONS
from . import kernels

__all__ = ["forward", "backward", "specializations"]

# What kernels.py implements: _activate_and_drop has a branch per activation, backward_kernel one per kind of
# saved arguments (the smooth activations' backwards are its "input" kind with their ACTIVATION).
ACTIVATIONS = ("identity", "relu", "gelu", "gelu_tanh", "silu")
BACKWARD_KINDS = tuple(BACKWARDS)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Elements per program, by element size: enough bytes in flight per program to stream at full bandwidth while
# keeping the Philox words in registers. Only powers of two, so a new tensor size never means a new compile
# unless the bias length moves to another power-of-two bucket.
_ELEMENTS_PER_PROGRAM = {2: 4096, 4: 2048, 8: 1024}
_COLUMN_SUM_BLOCK = 1024  # columns per program of the bias gradient's final reduction, at most
# Warps per program: 4, so a 16-bit program's thread handles 32 elements and its fixed work (tile coordinates,
# the Philox key schedule) is spread over twice the elements 8 warps would give it.
_NUM_WARPS = 4

# FMA contraction off on GPUs: the same roundings as the spec and the other backends, so values agree bit for bit.
COMPILE_OPTIONS = {"enable_fp_fusion": False}


class Tile(NamedTuple):
    rows: int  # BR
    columns: int  # BC
    num_warps: int


class Specialization(NamedTuple):
    """One variant of a kernel as the launcher launches it: for tensors of `dtype`, these constexprs (unused
    pointers are None constexprs) and num_warps, compiled with COMPILE_OPTIONS."""

    kernel: triton.JITFunction
    dtype: torch.dtype
    constexprs: dict
    num_warps: int


# Column blocks narrower than the row length by this factor at most, to fill the lanes past a row's end: a
# row of 3072 or 5120 is cut into 1024-column blocks, not padded to 4096 or 8192 (a quarter of the lanes idle).
_LEAST_COLUMNS = 256
# At most this many columns per block in column views: several rows of 1024 compile to fewer instructions per
# element than one row of 4096 (measured on the sm_90 SASS).
_MOST_COLUMNS = 1024
_MOST_IDLE_LANES = 1 / 16  # of the row length
_RUNS_AT_FULL_TILE = 2  # DropPath, channel and locked dropout, column shards: the common geometries


def _idle_lanes(row_len: int, columns: int) -> int:
    return triton.cdiv(row_len, columns) * columns - row_len


def _tile(row_len: int, has_columns: bool, element_size: int, smooth: bool = False, run_count: int = 0) -> Tile:
    """The tile of a [rows, row_len] view: flat views take one long row of elements, column views as many rows
    of a power-of-two column block as fit. The column block is the row length rounded up to a power of two (at
    most 1024), halved while that leaves more than 1/16 of a row's lanes idle (down to 256 columns): 3072 = 3 x 1024.
    The smooth activations' kernels (smooth) take half the elements per program: their math holds more values per
    element live, and at the full tile a thread's share spills registers. So do the kernels of a mask geometry of
    more than _RUNS_AT_FULL_TILE runs (run_count): their 64-bit divisions by each run's extent, for every element
    or chunk, spill at the full tile of 16-bit types on sm_80."""
    halved = smooth or run_count > _RUNS_AT_FULL_TILE
    elements = _ELEMENTS_PER_PROGRAM[element_size] // (2 if halved else 1)
    if not has_columns:
        return Tile(1, elements, _NUM_WARPS)
    columns = max(4, min(triton.next_power_of_2(row_len), elements, _MOST_COLUMNS))
    while columns > _LEAST_COLUMNS and _idle_lanes(row_len, columns) > row_len * _MOST_IDLE_LANES:
        columns //= 2
    rows = max(1, elements // columns)
    return Tile(rows, columns, _NUM_WARPS)


def _column_sum_block(row_len: int) -> int:
    return min(_COLUMN_SUM_BLOCK, triton.next_power_of_2(row_len))


def _threshold(p: float) -> int:
    """The keep threshold T = floor(p * 2^32) clamped to 32 bits: p = 1 (T = 2^32) is told by a scale of 0."""
    return min(spec.keep_threshold(p), 0xFFFFFFFF)


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


def _check_declaration(op, residual, bias) -> None:
    """The call must match the op's declaration, and its activation must have a kernel branch."""
    if op.activation not in ACTIVATIONS:
        raise NotImplementedError(f"the triton backend has no {op.activation!r} activation (op {op.name})")
    if bias is not None and not op.bias:
        raise ValueError(f"op {op.name} takes no bias")
    if (residual is not None) != op.residual:
        raise ValueError(f"op {op.name} {'needs a' if op.residual else 'takes no'} residual")


def _launch(variant: Specialization, grid: tuple, **tensors_and_scalars) -> None:
    options = {} if triton_interpreting() else COMPILE_OPTIONS
    variant.kernel[grid](**tensors_and_scalars, **variant.constexprs, num_warps=variant.num_warps, **options)


def _unused_pointers(**pointers_in_use: bool) -> dict:
    """None constexprs for the pointer arguments a specialization never reads."""
    return {name: None for name, used in pointers_in_use.items() if not used}


def _mask_runs(mask_runs, numel: int, offset: int) -> tuple:
    """The mask geometry (the ops' `mask_runs`: extent_0, stride_0, ..., outermost first) as the kernels take it:
    validated (ValueError naming mask_runs), then as few (extent, stride) runs as give the same m(e) (fewer
    divisions per element). () is the flat mask, also for runs that amount to it (one run of stride 1), so they
    take the fast path."""
    merged = merged_runs(checked_kernel_runs(mask_runs, numel, offset))
    if len(merged) <= 1 and all(stride == 1 for _, stride in merged):
        return ()
    return merged


def _run_arguments(runs: tuple) -> dict:
    """The kernels' scalar arguments of the runs (those past RUN_COUNT keep their defaults)."""
    arguments = {}
    for r, (extent, stride) in enumerate(runs):
        arguments[f"extent_{r}"], arguments[f"stride_{r}"] = extent, stride
    return arguments


def _forward_specialization(activation: str, has_bias: bool, has_residual: bool, dtype: torch.dtype,
                            tile: Tile, run_count: int = 0) -> Specialization:
    """run_count: the mask geometry's runs (0: the flat mask)."""
    constexprs = dict(
        ACTIVATION=activation, HAS_BIAS=has_bias, HAS_RESIDUAL=has_residual, ACC_F64=dtype == torch.float64,
        BR=tile.rows, BC=tile.columns, INTERPRETER=triton_interpreting(), RUN_COUNT=run_count,
        **_unused_pointers(bias_ptr=has_bias, residual_ptr=has_residual),
    )
    return Specialization(kernels.forward_kernel, dtype, constexprs, tile.num_warps)


def _backward_specialization(kind: str, has_bias: bool, bias_grad: bool, dtype: torch.dtype,
                             tile: Tile, run_count: int = 0) -> Specialization:
    """has_bias: a saved bias to add to the saved input (kinds that save the input only); run_count: the mask
    geometry's runs (0: the flat mask)."""
    backward = BACKWARDS[kind]
    constexprs = dict(
        KIND="input" if backward.saves_input else kind, ACTIVATION=backward.activation, HAS_BIAS=has_bias,
        BIAS_GRAD=bias_grad, ACC_F64=dtype == torch.float64, BR=tile.rows, BC=tile.columns,
        INTERPRETER=triton_interpreting(), RUN_COUNT=run_count,
        **_unused_pointers(y_ptr=not backward.keeps_from_mask, seed_ptr=backward.keeps_from_mask,
                           x_ptr=backward.saves_input, bias_ptr=has_bias, partial_ptr=bias_grad),
    )
    return Specialization(kernels.backward_kernel, dtype, constexprs, tile.num_warps)


def _column_sum_specialization(dtype: torch.dtype, block: int) -> Specialization:
    constexprs = dict(BC=block, ACC_F64=dtype == torch.float64, INTERPRETER=triton_interpreting())
    return Specialization(kernels.column_sum_kernel, dtype, constexprs, 4)


def _seed_or_zero(seed, device) -> torch.Tensor:
    """The seed tensor; with p = 0 there may be none, and a zero stands in (every element is kept anyway)."""
    return seed if seed is not None else torch.zeros(1, dtype=torch.int64, device=device)


def forward(op, x, residual, bias, seed, offset, p, mask_runs=()) -> torch.Tensor:
    """[residual +] dropout(activation(x [+ bias])) for the declared op; residual and bias may be None (a
    residual exactly when op.residual, a bias only when op.bias). seed: a one-element int64 tensor (None when p = 0),
    offset: the mask's element offset, mask_runs: the mask geometry (csrc/mask_runs.h; () is the flat mask)."""
    _check_declaration(op, residual, bias)
    _check_device(x)
    runs = _mask_runs(mask_runs, x.numel(), offset)
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    has_columns = bias is not None
    row_len = spec.row_len_of(x) if has_columns else x.numel()
    rows = x.numel() // row_len
    tile = _tile(row_len, has_columns, x.element_size(), op.activation in SMOOTH_ACTIVATIONS, len(runs))
    variant = _forward_specialization(op.activation, has_columns, residual is not None, x.dtype, tile, len(runs))
    grid = (triton.cdiv(rows, tile.rows) * triton.cdiv(row_len, tile.columns),)
    pointers = dict(x_ptr=x, out_ptr=out, seed_ptr=_seed_or_zero(seed, x.device), offset=offset)
    if bias is not None:
        pointers["bias_ptr"] = bias.contiguous()
    if residual is not None:
        pointers["residual_ptr"] = residual.contiguous()
    _launch(variant, grid, **pointers, rows=rows, row_len=row_len, threshold=_threshold(p),
            scale_bits=_scale_bits(p, x.dtype), **_run_arguments(runs))
    return out


def _saved_by_name(backward_kind, saved: tuple) -> dict:
    """The saved arguments by name. The kinds that recompute the mask save its geometry last (mask_runs); saved
    arguments without it (the schemas before the geometry) mean the flat mask."""
    names = tuple(backward_kind.saved)
    if backward_kind.keeps_from_mask and "mask_runs" not in names:
        names += ("mask_runs",)
    named = dict(zip(names, saved))
    named.setdefault("mask_runs", ())
    return named


def backward(kind, grad, saved, p, bias_grad) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_in, grad_bias): grad_in = keep ? grad * scale : 0, keep from the mask of `saved` = (seed, offset,
    mask_runs) (kind "mask") or where `saved` = (y,), the forward's output, is > 0 (kind "relu_output"); for the
    kinds that save the input, `saved` = (x, bias, seed, offset, mask_runs) and grad_in is also multiplied by
    activation'(x + bias). mask_runs may be left out (the flat mask). grad_bias = the column sums of grad_in over
    its last dimension when bias_grad, else an empty tensor."""
    if kind not in BACKWARD_KINDS:
        raise ValueError(f"unknown backward kind {kind!r}: the triton backend has {list(BACKWARD_KINDS)}")
    _check_device(grad)
    backward_kind = BACKWARDS[kind]
    named = _saved_by_name(backward_kind, saved)
    runs = _mask_runs(named["mask_runs"], grad.numel(), named["offset"]) if backward_kind.keeps_from_mask else ()
    grad = grad.contiguous()
    grad_in = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device)
    grad_bias = torch.zeros((spec.row_len_of(grad) if bias_grad else 0,), dtype=grad.dtype, device=grad.device)
    if grad.numel() == 0:
        return grad_in, grad_bias
    has_bias = named.get("bias") is not None
    # A flat view when neither column sums are wanted nor a bias is read by column.
    has_columns = bias_grad or has_bias
    row_len = spec.row_len_of(grad) if has_columns else grad.numel()
    rows = grad.numel() // row_len
    tile = _tile(row_len, has_columns, grad.element_size(), backward_kind.saves_input, len(runs))
    row_blocks = triton.cdiv(rows, tile.rows)
    pointers = dict(grad_ptr=grad, grad_in_ptr=grad_in)
    if backward_kind.keeps_from_mask:
        pointers.update(seed_ptr=_seed_or_zero(named["seed"], grad.device), offset=named["offset"])
    else:
        pointers.update(y_ptr=named["y"].contiguous(), offset=0)
    if backward_kind.saves_input:
        pointers["x_ptr"] = named["x"].contiguous()
    if has_bias:
        pointers["bias_ptr"] = named["bias"].contiguous()
    if bias_grad:
        acc_dtype = spec.compute_dtype(grad.dtype)
        pointers["partial_ptr"] = torch.empty((row_blocks, row_len), dtype=acc_dtype, device=grad.device)
    variant = _backward_specialization(kind, has_bias, bias_grad, grad.dtype, tile, len(runs))
    _launch(variant, (row_blocks * triton.cdiv(row_len, tile.columns),), **pointers, rows=rows, row_len=row_len,
            threshold=_threshold(p), scale_bits=_scale_bits(p, grad.dtype), **_run_arguments(runs))
    if bias_grad:
        block = _column_sum_block(row_len)
        _launch(_column_sum_specialization(grad.dtype, block), (triton.cdiv(row_len, block),),
                partial_ptr=pointers["partial_ptr"], out_ptr=grad_bias, row_blocks=row_blocks, row_len=row_len)
    return grad_in, grad_bias


def _tiles(has_columns: bool, element_size: int, smooth: bool = False) -> list[Tile]:
    """Every tile _tile can choose: row lengths past the largest power of two per program choose no new tile."""
    if not has_columns:
        return [_tile(1, False, element_size, smooth)]
    largest = _ELEMENTS_PER_PROGRAM[element_size]
    return sorted({_tile(2**k, True, element_size, smooth) for k in range(largest.bit_length())})


def _runs_specializations() -> list[Specialization]:
    """The mask geometry's variants that stand for all of them (RUN_COUNT 1 .. 6 of every op, dtype and tile: too
    many to compile in CI). The runs change only how keep is computed, the same code in every op, so: each kernel
    in a flat and a column view, at two runs (DropPath, channel and locked dropout, column shards) and at six (the
    most divisions, at the halved tile)."""
    bf16 = torch.bfloat16
    return [
        _forward_specialization("identity", False, False, bf16, _tile(1, False, 2, False, 2), 2),
        _forward_specialization("relu", True, False, bf16, _tile(4096, True, 2, False, MAX_KERNEL_RUNS),
                                MAX_KERNEL_RUNS),
        _backward_specialization("mask", False, False, bf16, _tile(1, False, 2, False, MAX_KERNEL_RUNS),
                                 MAX_KERNEL_RUNS),
        _backward_specialization("gelu_input", True, True, torch.float32, _tile(4096, True, 4, True, 2), 2),
    ]


def specializations() -> list[Specialization]:
    """Every kernel variant forward() and backward() can launch for the ops of the table with the flat mask: each
    dtype, op (activation, with and without its optional bias, its residual flag), backward kind with and without
    a saved bias and bias_grad flag, at every tile _tile can choose for it, and every column-sum block; and the
    few variants of a mask geometry that stand for the others (_runs_specializations)."""
    found = []
    for dtype in DTYPES:
        size = dtype.itemsize
        forwards = {(op.activation, has_bias, op.residual) for op in OPS for has_bias in {False, op.bias}}
        for activation, has_bias, has_residual in sorted(forwards):
            found += [_forward_specialization(activation, has_bias, has_residual, dtype, tile)
                      for tile in _tiles(has_bias, size, activation in SMOOTH_ACTIVATIONS)]
        for kind, backward in BACKWARDS.items():
            for has_bias in {False, backward.saves_input}:
                for bias_grad in (False, True):
                    found += [_backward_specialization(kind, has_bias, bias_grad, dtype, tile)
                              for tile in _tiles(bias_grad or has_bias, size, backward.saves_input)]
        blocks = sorted({_column_sum_block(2**k) for k in range(_COLUMN_SUM_BLOCK.bit_length())})
        found += [_column_sum_specialization(dtype, block) for block in blocks]
    return found + _runs_specializations()
