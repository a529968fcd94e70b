"""The "torch" backend: every op of the op table in plain PyTorch, on any device, following the mask
specification of fused_dropout.spec. It is what the tests compare the fused kernels with."""
from __future__ import annotations

import math

import torch

from .activations import ACTIVATIONS
from .geometry import kernel_runs_indices
from .op_table import BACKWARDS, FusedOp
from .spec import compute_dtype, keep_mask_at, row_len_of, scale_tensor, to_output_dtype


def _masked_scale(v: torch.Tensor, keep: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    """keep ? v * scale : 0 in the compute type (a dropped element is exactly 0, even for inf or NaN)."""
    zero = torch.zeros((), dtype=v.dtype, device=v.device)
    return torch.where(keep, v * scale_tensor(p, dtype, v.device), zero)


def _keep(shape, device, seed, offset: int, p: float, mask_runs) -> torch.Tensor:
    """The keep mask of a tensor of `shape`: element e decides by mask index m(e) of the mask runs (the flat
    index without runs; fused_dropout.geometry)."""
    index = kernel_runs_indices(mask_runs, math.prod(shape), None if seed is None else seed.device)
    return keep_mask_at(index, seed, offset, p).to(device).reshape(shape)


def forward(op: FusedOp, x, residual, bias, seed, offset, p, mask_runs=()):
    keep = _keep(x.shape, x.device, seed, offset, p, mask_runs)
    return forward_with_keep(op, x, residual, bias, keep, p)


def pre_activation(x: torch.Tensor, bias) -> torch.Tensor:
    """x + bias (x without a bias) in the compute type: the value the activation is applied to."""
    v = x.to(compute_dtype(x.dtype))
    return v if bias is None else v + bias.to(v.dtype).reshape(x.shape[-1:])  # a 0-d x takes a bias of shape [1]


def curvature(grad, direction, activation: str, x, bias) -> torch.Tensor:
    """grad * direction * activation''(x + bias), in the compute type and rounded to x's dtype: what keep * scale
    multiplies in the derivative of the smooth activations' grad_in as x + bias moves along `direction`."""
    v = pre_activation(x, bias)
    product = grad.to(v.dtype) * direction.to(v.dtype) * ACTIVATIONS[activation].second_derivative(v)
    return product.to(x.dtype)


def forward_with_keep(op: FusedOp, x, residual, bias, keep, p):
    """The op's values for a given keep mask (x's shape, or broadcast to it: a mask geometry's shared mask)."""
    acc = compute_dtype(x.dtype)
    v = pre_activation(x, bias)
    out = _masked_scale(ACTIVATIONS[op.activation].forward(v), keep, p, x.dtype)
    if residual is not None:
        out = residual.to(acc) + out
    return to_output_dtype(out, x.dtype)


def _column_sums(grad_in: torch.Tensor, bias_grad: bool) -> torch.Tensor:
    row_len = row_len_of(grad_in)
    if not bias_grad or row_len == 0:  # an empty last dimension has an empty bias
        return grad_in.new_zeros((row_len if bias_grad else 0,))
    acc = compute_dtype(grad_in.dtype)
    return to_output_dtype(grad_in.to(acc).reshape(-1, row_len).sum(0), grad_in.dtype)


def backward(kind: str, grad, saved: tuple, p, bias_grad):
    """kind "mask": saved is (seed, offset, mask_runs); "relu_output": saved is (y,), the forward's output (keep <=>
    y > 0); "<activation>_input": saved is (x, bias, seed, offset, mask_runs), and grad_in is also multiplied by
    activation'(x + bias) (op_table.BACKWARDS)."""
    if kind not in BACKWARDS:
        raise ValueError(f"unknown backward kind {kind!r}")
    backward_kind = BACKWARDS[kind]
    named = dict(zip(backward_kind.saved, saved))
    if backward_kind.keeps_from_mask:
        keep = _keep(grad.shape, grad.device, named["seed"], named["offset"], p, named["mask_runs"])
    else:
        keep = named["y"] > 0
    if backward_kind.saves_input:
        grad_in = masked_grad_through(grad, keep, p, backward_kind.activation, named["x"], named["bias"])
    else:
        grad_in = masked_grad(grad, keep, p)
    return grad_in, _column_sums(grad_in, bias_grad)


def masked_grad_through(grad, keep, p: float, activation: str, x, bias) -> torch.Tensor:
    """keep ? (grad * scale) * activation'(x + bias) : 0 in the compute type, rounded once to grad's dtype (keep of
    grad's shape or broadcast to it); a dropped element is exactly 0, whatever the derivative is there."""
    acc = compute_dtype(grad.dtype)
    v = pre_activation(x, bias)
    through = (grad.to(acc) * scale_tensor(p, grad.dtype, grad.device)) * ACTIVATIONS[activation].derivative(v)
    zero = torch.zeros((), dtype=acc, device=grad.device)
    return to_output_dtype(torch.where(keep, through, zero), grad.dtype)


def masked_grad(grad: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """keep ? grad * scale : 0, in grad's dtype (keep of grad's shape or broadcast to it)."""
    return to_output_dtype(_masked_scale(grad.to(compute_dtype(grad.dtype)), keep, p, grad.dtype), grad.dtype)


def column_sums(grad_in: torch.Tensor) -> torch.Tensor:
    """The bias gradient of grad_in: its sums over every dim but the last, in grad_in's dtype."""
    return _column_sums(grad_in, True)
