"""The ops under a mask geometry that the kernels cannot take as their mask runs (kernels_take: geometries of
more than six runs), and drop_path's unscaled values (scale_by_keep=False): these calls
run as a composite of torch ops around one shared mask, and say so (a warning, shown once per call site by
Python's default filter). Every other geometry goes to the kernels in one pass (functional.apply).

The mask is made once per shared decision, on the "mask box": x's shape with the broadcast dims collapsed to 1
(B values for DropPath's (B, 1, ..., 1), N * C for channel dropout), by the backend's own dropout kernel when
the box's mask indices are one contiguous range (every unsharded geometry), else by the reference's Philox on
the box's indices. The values follow the spec exactly, in fewer passes than the reference (tests hold them bit
for bit to fused_dropout.reference.forward_with_keep), so the bits are those every backend gives. The backward
keeps the box mask (or the output y for ReLU, as the fused ops do): grad_in = keep ? grad * scale : 0, itself
differentiable (double backward).
"""
from __future__ import annotations

import sys
import warnings

import torch

from . import reference
from .geometry import MAX_KERNEL_RUNS, MaskGeometry, mask_geometry, mask_indices
from .op_table import OPS_BY_NAME, FusedOp
from .activations import ACTIVATIONS
from .spec import compute_dtype, keep_mask_at, scale_tensor

_WARNING = ("fused_dropout: this mask geometry (noise_shape, or a shard that is not whole rows) runs as a "
            "composite of torch ops around one shared mask on this backend, not as one fused pass over memory; the "
            "results are the spec's bits")


def _stacklevel_of_caller() -> int:
    """The warnings stacklevel (counted from the function that warns) of the first frame outside this package:
    the user's call, whichever public function or module led here."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith(__package__ + "."):
        frame, level = frame.f_back, level + 1
    return level


def kernels_take(geometry: MaskGeometry) -> bool:
    """Whether the kernels run the geometry themselves (as their mask runs, in one pass): every geometry of up to
    MAX_KERNEL_RUNS runs, on every backend."""
    return geometry.contiguous or len(geometry.runs) <= MAX_KERNEL_RUNS


def box_keep(geometry: MaskGeometry, seed: torch.Tensor, offset: int, p: float, ops, device) -> torch.Tensor:
    """The keep decisions of the geometry's mask box (x's shape with the broadcast dims set to 1), bool."""
    box_shape = geometry.mask_box
    box = mask_geometry(box_shape, geometry.noise_shape, geometry.global_shape, geometry.shard_offsets, offset)
    if kernels_take(box):
        # The kernel's own decisions: a kept 1 becomes the scale (>= 1, never 0), a dropped one exactly 0.
        ones = torch.ones(box_shape, device=device)
        return ops.forward["dropout"](*_DROPOUT.pack(ones, None, None, seed, offset + box.base, p,
                                                     box.kernel_runs)) != 0
    return keep_mask_at(mask_indices(box, device), seed, offset, p).reshape(box_shape)


def forward(op: FusedOp, x, residual, bias, p: float, seed: torch.Tensor, offset: int, geometry: MaskGeometry,
            ops, scale: bool = True) -> torch.Tensor:
    """The op's result under the geometry, with autograd. scale=False leaves the kept values unscaled (timm's
    drop_path with scale_by_keep=False): the decisions are drawn with p, the values made with scale 1."""
    if not torch.compiler.is_compiling():  # said when the call runs eagerly (a traced frame cannot be walked)
        warnings.warn(_WARNING, UserWarning, stacklevel=_stacklevel_of_caller())
    keep = box_keep(geometry, seed, offset, p, ops, x.device)
    if residual is x:  # torch.compile traces no autograd.Function given one tensor twice; a view is another
        residual = residual.view_as(residual)
    return _SharedMaskOp.apply(x, residual, bias, keep, p if scale else 0.0, op)


# The values in few passes over memory (the reference's where-on-bits NaN rule costs several): tests hold them
# bit for bit to fused_dropout.reference.forward_with_keep.
_NAN, _INF = float("nan"), float("inf")
_DROPOUT = OPS_BY_NAME["dropout"]


def _masked_scale(v: torch.Tensor, keep: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    """keep ? v * scale : 0 in v's (compute) type: +0 where dropped, whatever v is there."""
    return torch.where(keep, v * scale_tensor(p, dtype, v.device), 0.0)


def _canonical_nans(t: torch.Tensor) -> torch.Tensor:
    """t with every NaN written as its dtype's canonical NaN, in place: nan_to_num writes the constant made from
    Python's NaN (0x7FF8000000000000), which rounds to 0x7FC00000, 0x7FC0 and 0x7E00 in the narrower types."""
    return t.nan_to_num_(nan=_NAN, posinf=_INF, neginf=-_INF)


class _SharedMaskOp(torch.autograd.Function):
    """residual + dropout(activation(x + bias)) with a given (broadcast) keep mask."""

    @staticmethod
    def forward(ctx, x, residual, bias, keep, p, op):
        v = reference.pre_activation(x, bias)
        out = _masked_scale(ACTIVATIONS[op.activation].forward(v), keep, p, x.dtype)
        if residual is not None:
            out = out.add_(residual)  # in the compute type: out is acc, residual promotes into it
        out = _canonical_nans(out.to(x.dtype))
        ctx.p, ctx.relu, ctx.has_residual = p, op.activation == "relu", residual is not None
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.smooth = op.backward_op.saves_input  # the derivative needs x + bias, as the fused op's backward
        ctx.activation = op.activation
        # ReLU keeps its output (kept and active <=> y > 0), as the fused op does; the others the box mask (and
        # the smooth activations x and the bias too).
        ctx.save_for_backward(out if ctx.relu else keep, *((x, bias) if ctx.smooth else ()))
        return out

    @staticmethod
    def backward(ctx, grad):
        saved, *inputs = ctx.saved_tensors
        keep = saved > 0 if ctx.relu else saved
        if ctx.smooth:
            grad_x = _MaskedGradThrough.apply(grad, keep, ctx.p, ctx.activation, *inputs)
        else:
            grad_x = _MaskedGrad.apply(grad, keep, ctx.p)
        grad_bias = _ColumnSums.apply(grad_x) if ctx.bias_shape is not None and ctx.needs_input_grad[2] else None
        return grad_x, grad if ctx.has_residual else None, grad_bias, None, None, None


class _MaskedGrad(torch.autograd.Function):
    """keep ? grad * scale : 0: linear in grad with a diagonal (keep * scale), so its backward is itself."""

    @staticmethod
    def forward(ctx, grad, keep, p):
        ctx.save_for_backward(keep)
        ctx.p = p
        return _canonical_nans(_masked_scale(grad.to(compute_dtype(grad.dtype)), keep, p, grad.dtype).to(grad.dtype))

    @staticmethod
    def backward(ctx, grad_grad):
        (keep,) = ctx.saved_tensors
        return _MaskedGrad.apply(grad_grad, keep, ctx.p), None, None


class _MaskedGradThrough(torch.autograd.Function):
    """keep ? (grad * scale) * activation'(x + bias) : 0 (the smooth activations' backward): linear in grad, so its
    backward in grad is itself; in x and the bias it is keep * scale * activation''(x + bias) * grad * gg."""

    @staticmethod
    def forward(ctx, grad, keep, p, activation, x, bias):
        ctx.save_for_backward(grad, keep, x, bias)
        ctx.p, ctx.activation = p, activation
        return reference.masked_grad_through(grad, keep, p, activation, x, bias)

    @staticmethod
    def backward(ctx, grad_grad):
        grad, keep, x, bias = ctx.saved_tensors
        gg = _MaskedGradThrough.apply(grad_grad, keep, ctx.p, ctx.activation, x, bias)
        grad_x = _MaskedGrad.apply(reference.curvature(grad, grad_grad, ctx.activation, x, bias), keep, ctx.p)
        grad_bias = None if bias is None else reference.column_sums(grad_x)
        return gg, None, None, None, grad_x, grad_bias


class _ColumnSums(torch.autograd.Function):
    """The bias gradient: sums over every dim but the last, rounded once (every NaN canonical, as the kernels'
    column sums); its backward broadcasts along the rows."""

    @staticmethod
    def forward(ctx, grad_x):
        ctx.shape = grad_x.shape
        return reference.column_sums(grad_x)

    @staticmethod
    def backward(ctx, grad_bias):
        return grad_bias.reshape(ctx.shape[-1:] if len(ctx.shape) else ()).expand(ctx.shape)
