"""Outputs and gradients keep their input's layout, as torch.empty_like (and nn.Dropout) do, while the mask
still follows the logical row-major index: channels_last, transposed and other dense permutations."""
import itertools

import pytest
import torch

import fused_dropout as fd
from conftest import CPU_BACKENDS, OP_VARIANTS, call_op, make_input, op_inputs
from fused_dropout.backends import FAMILIES, _FAMILY_OF_BACKEND

P, SEED = 0.3, 31


SHAPE = (2, 3, 4, 10)
# Each maps a SHAPE tensor to the same values in another layout (sliced: half the columns).
LAYOUTS = [
    ("channels_last", lambda t: t.contiguous(memory_format=torch.channels_last)),
    ("transposed_storage", lambda t: t.transpose(0, 1).contiguous().transpose(0, 1)),
    ("sliced", lambda t: t[..., ::2]),  # not dense: a row-major output, as torch.empty_like gives
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
@pytest.mark.parametrize("layout, relayout", LAYOUTS, ids=[name for name, _ in LAYOUTS])
def test_output_and_gradient_keep_the_input_layout(backend, op, with_bias, layout, relayout):
    x, residual, bias = op_inputs(op, SHAPE, with_bias=with_bias)
    x = relayout(x).requires_grad_()
    if residual is not None:
        residual = relayout(residual)
    if bias is not None:
        bias = bias[: x.shape[-1]].contiguous()
    out = call_op(op, x, residual, bias, P, seed=SEED, backend=backend)
    assert out.stride() == torch.empty_like(x).stride()
    row_major = call_op(op, x.detach().contiguous(), None if residual is None else residual.contiguous(), bias, P,
                        seed=SEED, backend=backend)
    assert torch.equal(out, row_major)  # same values: the mask follows the logical index
    grad = relayout(make_input(SHAPE, seed=9))
    (grad_x,) = torch.autograd.grad(out, x, grad)
    assert grad_x.stride() == torch.empty_like(grad).stride()
    (expected,) = torch.autograd.grad(call_op(op, x, residual, bias, P, seed=SEED, backend=backend), x,
                                      grad.contiguous())
    assert torch.equal(grad_x, expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_dropout_stride_and_mean_are_preserved_for_every_permutation(backend):
    # As PyTorch's test_Dropout_stride_mean_preserve: every permutation of a 4-d tensor.
    base = make_input((2, 3, 4, 5)).abs() + 1
    for perm in itertools.permutations(range(4)):
        x = base.permute(perm).contiguous().permute(tuple(perm.index(d) for d in range(4)))
        assert torch.equal(x, base)
        out = fd.dropout(x, P, seed=SEED, backend=backend)
        assert out.stride() == x.stride(), perm
        kept = fd.dropout_mask(x.shape, P, SEED)
        assert torch.equal(out != 0, kept), perm
        assert torch.equal(out[kept], x[kept] * torch.tensor(1 / (1 - P))), perm


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fake_kernels_promise_the_real_layout(backend):
    ops = FAMILIES[_FAMILY_OF_BACKEND[backend]]
    x = make_input((2, 3, 4, 5)).contiguous(memory_format=torch.channels_last)
    seed = torch.tensor([SEED])
    torch.library.opcheck(ops.dropout_fwd, (x, seed, 0, P))
    torch.library.opcheck(ops.dropout_add_fwd, (x, x.contiguous(), None, seed, 0, P))
    torch.library.opcheck(ops.mask_bwd, (x, seed, 0, (), P, True))
    torch.library.opcheck(ops.relu_output_bwd, (x, x.relu(), P, False))
