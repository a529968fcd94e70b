"""Mixed dtypes and autocast: x, bias and residual of different floating dtypes follow torch's type promotion,
as the eager compositions do (a bfloat16 Linear output meeting a float32 bias gives float32), forward and
backward, and a model trains under autocast with a GradScaler."""
import pytest
import torch
from torch import nn

import fused_dropout as fd
from conftest import CPU_BACKENDS, OP_VARIANTS, call_op, make_input, op_inputs
from fused_dropout.activations import ACTIVATIONS

P, SEED = 0.3, 5
DTYPE_PAIRS = [(torch.bfloat16, torch.float32), (torch.float16, torch.float32), (torch.float32, torch.float64),
               (torch.bfloat16, torch.float16)]


def _eager_with_the_same_mask(op, x, residual, bias, keep):
    """The op's composition in torch ops (type promotion included) with a given mask."""
    v = x if bias is None else x + bias
    v = ACTIVATIONS[op.activation].forward(v)  # the project's activation math (v is float32 or float64 here)
    dtype = v.dtype if residual is None else torch.promote_types(v.dtype, residual.dtype)
    scale = torch.tensor(1 / (1 - P), dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    out = torch.where(keep, v.to(scale.dtype) * scale, 0.0).to(dtype)
    return out if residual is None else (residual.to(scale.dtype) + out.to(scale.dtype)).to(dtype)


# The variants with a second tensor (a bias or a residual) whose dtype can differ from x's.
MIXED_VARIANTS = [v for v in OP_VARIANTS if v.values[1] or v.values[0].residual]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", MIXED_VARIANTS)
@pytest.mark.parametrize("x_dtype, other_dtype", DTYPE_PAIRS)
def test_mixed_dtypes_promote_like_the_eager_composition(backend, op, with_bias, x_dtype, other_dtype):
    x, residual, bias = op_inputs(op, (6, 8), x_dtype, requires_grad=True, with_bias=with_bias)
    residual = None if residual is None else residual.detach().to(other_dtype).requires_grad_()
    bias = None if bias is None else bias.detach().to(other_dtype).requires_grad_()
    out = call_op(op, x, residual, bias, P, seed=SEED, backend=backend)
    expected_dtype = torch.promote_types(x_dtype, other_dtype)
    assert out.dtype == expected_dtype
    keep = fd.dropout_mask(x.shape, P, SEED)
    assert torch.equal(out, _eager_with_the_same_mask(op, x.detach().to(expected_dtype), None if residual is None
                                                      else residual.detach().to(expected_dtype), None if bias is None
                                                      else bias.detach().to(expected_dtype), keep))
    grad = make_input(out.shape, expected_dtype, seed=7)
    leaves = [t for t in (x, residual, bias) if t is not None]
    grads = torch.autograd.grad(out, leaves, grad)
    for leaf, g in zip(leaves, grads):
        assert g.dtype == leaf.dtype  # each gradient comes back in its input's dtype


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_modules_under_autocast_return_what_the_eager_code_returns(backend):
    x = make_input((4, 16))
    linear = nn.Linear(16, 16, bias=False)
    brd = fd.FusedBiasReLUDropout(16, P, backend=backend)
    add = fd.FusedDropoutAdd(P, backend=backend)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = linear(x)
        assert h.dtype == torch.bfloat16
        y = brd(h)
        z = add(h, x)
        eager_y = torch.relu(h + brd.bias)
        eager_z = x + h
    assert y.dtype == eager_y.dtype == torch.float32
    assert z.dtype == eager_z.dtype == torch.float32
    (y.sum() + z.sum()).backward()
    assert brd.bias.grad.dtype == torch.float32 and linear.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_training_step_under_autocast_with_a_grad_scaler(backend):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32, bias=False), fd.FusedBiasReLUDropout(32, 0.1, backend=backend),
                          nn.Linear(32, 16), fd.FusedDropout(0.1, backend=backend))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x, target = make_input((8, 16)), make_input((8, 16), seed=1)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast("cpu", dtype=torch.float16):
        loss = nn.functional.mse_loss(model(x).float(), target)
    scaler.scale(loss).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == 2.0**10  # no inf/NaN found: the step was taken
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
