"""Subnormal (denormal) float16 and bfloat16 inputs are values like any other, on every backend that runs CPU
tensors here: a kept element is its exactly rounded product, a residual passes through unchanged, a subnormal
saved output still marks an active element. Nothing is flushed to zero on a load (Triton's interpreter, for one,
flushes bfloat16 subnormals when it widens them with a plain cast)."""
import math

import pytest
import torch

import fused_dropout as fd
from conftest import CPU_BACKENDS

HALF_DTYPES = [torch.float16, torch.bfloat16]
P = 0.3  # scale = 1 / 0.7 is not a power of two: products really round


def subnormals(dtype: torch.dtype) -> torch.Tensor:
    """Every positive and negative subnormal of dtype (mantissa 1 .. max with a zero exponent), as [2, n]."""
    mantissa_bits = int(-math.log2(torch.finfo(dtype).eps))
    mantissas = torch.arange(1, 2**mantissa_bits, dtype=torch.int32)
    positive = mantissas.to(torch.int16).view(dtype)
    return torch.stack([positive, -positive])


def rounded_once(exact: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float64 values rounded once to dtype, to nearest, ties to the even bit pattern: the nearest finite value
    of dtype found among all its bit patterns (a float64 -> dtype cast may round twice, through float32)."""
    patterns = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    values = patterns.view(dtype).double()
    usable = values.isfinite() & ~((values == 0) & (patterns < 0))  # one zero on the grid
    grid, order = values[usable].sort()
    grid_patterns = patterns[usable][order]
    above = torch.searchsorted(grid, exact).clamp(1, grid.numel() - 1)
    below = above - 1
    distance_below, distance_above = exact - grid[below], grid[above] - exact
    tie_goes_up = (distance_below == distance_above) & (grid_patterns[above] % 2 == 0)
    nearest = torch.where((distance_above < distance_below) | tie_goes_up, above, below)
    return grid[nearest].to(dtype)


def scaled(values: torch.Tensor) -> torch.Tensor:
    """keep ? v * scale : 0 with the spec's float32 scale, computed exactly in float64 and rounded once."""
    scale = torch.tensor(1.0 / (1.0 - P), dtype=torch.float32).double()
    return rounded_once(values.double() * scale, values.dtype)


def mask_of(shape, seed):
    return fd.dropout_mask(shape, P, seed)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_subnormal_x_is_scaled_not_flushed(backend, dtype):
    x = subnormals(dtype)
    keep = mask_of(x.shape, 3)
    expected = torch.where(keep, scaled(x), torch.zeros_like(x))
    assert int((expected != 0).sum()) > 100  # most kept products stay non-zero
    assert torch.equal(fd.dropout(x, P, seed=3, backend=backend), expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_subnormal_bias_is_added_not_flushed(backend, dtype):
    bias = subnormals(dtype)[0]  # positive: relu keeps x + bias = bias
    x = torch.zeros((3, bias.numel()), dtype=dtype)
    keep = mask_of(x.shape, 4)
    expected = torch.where(keep, scaled(bias).expand_as(x), torch.zeros_like(x))
    assert torch.equal(fd.bias_relu_dropout(x, bias, P, seed=4, backend=backend), expected)
    assert torch.equal(fd.dropout_add(x, torch.zeros_like(x), P, bias=bias, seed=4, backend=backend), expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_subnormal_residual_passes_through(backend, dtype):
    residual = subnormals(dtype)
    x = torch.zeros_like(residual)  # residual + (keep ? 0 * scale : 0) is residual itself
    assert torch.equal(fd.dropout_add(x, residual, P, seed=5, backend=backend), residual)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_subnormal_saved_output_marks_active_elements(backend, dtype):
    # With p = 0 nothing is dropped: the saved output y is x itself, subnormal, and y > 0 is where grad flows.
    x = subnormals(dtype).requires_grad_(True)
    y = fd.bias_relu_dropout(x, None, 0.0, backend=backend)
    assert torch.equal(y, torch.relu(x.detach()))
    grad = torch.full_like(y, 3.0)
    (grad_x,) = torch.autograd.grad(y, x, grad)
    assert torch.equal(grad_x, torch.where(x.detach() > 0, grad, torch.zeros_like(grad)))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_subnormal_gradient_is_scaled_not_flushed(backend, dtype):
    grad = subnormals(dtype)
    x = torch.ones_like(grad).requires_grad_(True)
    bias = torch.zeros(grad.shape[-1], dtype=dtype, requires_grad=True)
    out = fd.dropout_add(x, torch.ones_like(grad), P, bias=bias, seed=6, backend=backend)  # backward: mask kind
    grad_x, grad_bias = torch.autograd.grad(out, (x, bias), grad)
    expected = torch.where(mask_of(grad.shape, 6), scaled(grad), torch.zeros_like(grad))
    assert torch.equal(grad_x, expected)
    # Column sums of the stored (subnormal) gradients: exact in the compute type, then rounded once.
    assert torch.equal(grad_bias, rounded_once(expected.double().sum(0), dtype))
