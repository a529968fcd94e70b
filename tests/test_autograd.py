"""Gradients: gradcheck in float64, every dtype against the reference formulas, the memory contract of the
backward (no per-element mask saved), inplace, double backward and checkpoint recompute."""
import pytest
import torch
from torch.utils.checkpoint import checkpoint

import fused_dropout as fd
from conftest import (CPU_BACKENDS, DTYPES, OP_VARIANTS, assert_close, call_op, gradcheck_mode, make_input,
                      op_inputs)


def ops_with_args(x, bias, residual, backend, seed=17, p=0.35):
    return {
        "dropout": lambda: fd.dropout(x, p, seed=seed, backend=backend),
        "bias_relu_dropout": lambda: fd.bias_relu_dropout(x, bias, p, seed=seed, backend=backend),
        "dropout_add": lambda: fd.dropout_add(x, residual, p, bias=bias, seed=seed, backend=backend),
    }


def _differentiable_inputs(op, with_bias):
    x, residual, bias = op_inputs(op, (3, 5), torch.float64, requires_grad=True, with_bias=with_bias)
    # Keep x + bias away from 0 so relu is differentiable at every point gradcheck perturbs.
    with torch.no_grad():
        x.add_(torch.sign(x) * 0.1)
        if bias is not None:
            bias.mul_(0.01)
    return tuple(t for t in (x, residual, bias) if t is not None)


def _as_function(op, backend, with_bias):
    def fn(*inputs):
        inputs = list(inputs)
        x = inputs.pop(0)
        residual = inputs.pop(0) if op.residual else None
        bias = inputs.pop(0) if op.bias and with_bias else None
        return call_op(op, x, residual, bias, 0.35, seed=17, backend=backend)

    return fn


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
def test_gradcheck_and_gradgradcheck_float64(backend, op, with_bias):
    inputs = _differentiable_inputs(op, with_bias)
    fn = _as_function(op, backend, with_bias)
    assert torch.autograd.gradcheck(fn, inputs, check_forward_ad=True, **gradcheck_mode(backend))
    # The backward ops are differentiable too. Squaring the output makes the second derivative through x (and
    # bias) nonzero, and it also differentiates the backward ops in their incoming gradient.
    assert torch.autograd.gradgradcheck(lambda *a: fn(*a) ** 2, inputs, check_fwd_over_rev=True,
                                        **gradcheck_mode(backend))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_second_derivative_of_bias_relu_dropout_is_two_scale_squared(backend):
    # y = bias_relu_dropout(x, 0, p): d/dx sum(y^2) = 2 y scale (where kept and x > 0), and its derivative is
    # 2 scale^2 there, 0 elsewhere.
    p = 0.3
    x = make_input((8, 16), torch.float64, requires_grad=True)
    y = fd.bias_relu_dropout(x, torch.zeros(16, dtype=torch.float64), p, seed=5, backend=backend)
    (first,) = torch.autograd.grad((y**2).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    active = fd.dropout_mask(x.shape, p, 5) & (x > 0)
    assert 0 < int(active.sum()) < x.numel()
    scale = 1 / (1 - p)
    assert torch.equal(second, torch.where(active, torch.tensor(2 * scale * scale, dtype=torch.float64), 0.0))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_match_reference_formulas(backend, dtype):
    p, seed = 0.35, 17
    x = make_input((12, 20), dtype, requires_grad=True)
    bias = make_input((20,), dtype, seed=1, requires_grad=True)
    residual = make_input((12, 20), dtype, seed=2, requires_grad=True)
    grad = make_input((12, 20), dtype, seed=3)
    keep = fd.dropout_mask(x.shape, p, seed)
    s = 1 / (1 - p)
    masked_grad = torch.where(keep, grad.double() * s, 0.0)

    y = fd.dropout(x, p, seed=seed, backend=backend)
    (gx,) = torch.autograd.grad(y, x, grad)
    assert_close(gx, masked_grad.to(dtype), dtype)

    y = fd.bias_relu_dropout(x, bias, p, seed=seed, backend=backend)
    gx, gb = torch.autograd.grad(y, (x, bias), grad)
    active = keep & ((x.double() + bias.double()) > 0)
    expected = torch.where(active, grad.double() * s, 0.0)
    assert_close(gx, expected.to(dtype), dtype)
    assert_close(gb, expected.sum(0).to(dtype), dtype)

    y = fd.dropout_add(x, residual, p, bias=bias, seed=seed, backend=backend)
    gx, gr, gb = torch.autograd.grad(y, (x, residual, bias), grad)
    assert_close(gx, masked_grad.to(dtype), dtype)
    assert torch.equal(gr, grad)
    assert_close(gb, masked_grad.sum(0).to(dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_gradient_is_deterministic_across_thread_counts(dtype):
    # 2000 x 70: several row blocks (of at least 32K elements each) and several parallel tasks, so a reduction
    # order that followed the thread count would show.
    x = make_input((2000, 70), dtype, requires_grad=True)
    bias = make_input((70,), dtype, seed=1, requires_grad=True)
    grad = make_input((2000, 70), dtype, seed=2)
    results = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        y = fd.bias_relu_dropout(x, bias, 0.3, seed=4, backend="cpu")
        results.append(torch.autograd.grad(y, bias, grad)[0])
    assert all(torch.equal(r, results[0]) for r in results)


def saved_bytes(fn):
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backward_saves_no_mask(backend):
    x = make_input((64, 64), requires_grad=True)
    bias = make_input((64,), seed=1, requires_grad=True)
    residual = make_input((64, 64), seed=2, requires_grad=True)
    # dropout and dropout_add keep only the seed (one int64 tensor element; the offset is an int).
    assert saved_bytes(lambda: fd.dropout(x, 0.5, backend=backend)) == 8
    assert saved_bytes(lambda: fd.dropout_add(x, residual, 0.5, bias=bias, backend=backend)) == 8
    # bias_relu_dropout keeps its output y (which the next layer holds anyway), nothing else.
    assert saved_bytes(lambda: fd.bias_relu_dropout(x, bias, 0.5, backend=backend)) == x.numel() * 4
    # nn.Dropout, for comparison, stores a mask of one byte per element.
    assert saved_bytes(lambda: torch.nn.functional.dropout(x, 0.5)) >= x.numel()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_inplace_gives_same_mask_and_gradient(backend):
    base = make_input((16, 16), requires_grad=True)
    out_of_place = fd.dropout(base * 1, 0.4, seed=6, backend=backend)
    h = base * 1
    result = fd.dropout(h, 0.4, inplace=True, seed=6, backend=backend)
    assert result is h
    assert torch.equal(h, out_of_place)
    (g_inplace,) = torch.autograd.grad(h.sum(), base)
    (g_ref,) = torch.autograd.grad(out_of_place.sum(), base)
    assert torch.equal(g_inplace, g_ref)


def test_inplace_on_leaf_requiring_grad_is_refused_like_torch():
    x = make_input((4, 4), requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        fd.dropout(x, 0.5, inplace=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op", ["dropout", "bias_relu_dropout", "dropout_add"])
def test_checkpoint_recompute_uses_the_same_mask(backend, op):
    x = make_input((32, 24), requires_grad=True)
    bias = make_input((24,), seed=1, requires_grad=True)
    residual = make_input((32, 24), seed=2)

    def block(t):
        t = t * 1.5
        if op == "dropout":
            return fd.dropout(t, 0.5, backend=backend) * 2
        if op == "bias_relu_dropout":
            return fd.bias_relu_dropout(t, bias, 0.5, backend=backend) * 2
        return fd.dropout_add(t, residual, 0.5, bias=bias, backend=backend) * 2

    torch.manual_seed(0)
    y_ckpt = checkpoint(block, x, use_reentrant=False)
    g_ckpt = torch.autograd.grad(y_ckpt.sum(), x)[0]
    torch.manual_seed(0)
    y = block(x)
    g = torch.autograd.grad(y.sum(), x)[0]
    assert torch.equal(y_ckpt, y)
    assert torch.equal(g_ckpt, g)
