"""Forward-mode AD, torch.func (grad, jvp, vjp, vmap) and per-sample gradients: the right answer for every op on
every backend, or a clear error, never a silent zero."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD

import fused_dropout as fd
from conftest import CPU_BACKENDS, OP_VARIANTS, call_op, make_input, op_inputs

P, SEED = 0.4, 23


def _fn(op, backend, with_bias, **kwargs):
    def fn(x, *rest):
        rest = list(rest)
        residual = rest.pop(0) if op.residual else None
        bias = rest.pop(0) if op.bias and with_bias else None
        return call_op(op, x, residual, bias, P, seed=SEED, backend=backend, **kwargs)

    return fn


def _inputs(op, with_bias, shape=(3, 5)):
    x, residual, bias = op_inputs(op, shape, torch.float64, with_bias=with_bias)
    return tuple(t for t in (x, residual, bias) if t is not None)


def _reverse_mode_jvp(fn, inputs, tangents):
    """J t computed with reverse mode only (the double-vjp trick), independently of the ops' jvp formulas."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    out = fn(*inputs)
    u = torch.zeros_like(out, requires_grad=True)
    grads = torch.autograd.grad(out, inputs, u, create_graph=True)
    (jvp,) = torch.autograd.grad(grads, u, tangents)
    return jvp


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
def test_forward_ad_and_torch_func_jvp_give_the_masked_tangent(backend, op, with_bias):
    fn = _fn(op, backend, with_bias)
    inputs = _inputs(op, with_bias)
    tangents = tuple(make_input(t.shape, torch.float64, seed=40 + i) for i, t in enumerate(inputs))
    expected = _reverse_mode_jvp(fn, inputs, tangents)
    assert expected.abs().sum() > 0  # a zero tangent would pass nothing
    with fwAD.dual_level():
        out = fn(*(fwAD.make_dual(t, dt) for t, dt in zip(inputs, tangents)))
        assert torch.equal(fwAD.unpack_dual(out).tangent, expected)
    primal, tangent = torch.func.jvp(fn, inputs, tangents)
    assert torch.equal(primal, fn(*inputs))
    assert torch.equal(tangent, expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
def test_torch_func_grad_and_vjp_equal_autograd(backend, op, with_bias):
    fn = _fn(op, backend, with_bias)
    inputs = _inputs(op, with_bias)
    weights = make_input(inputs[0].shape, torch.float64, seed=50)
    leaves = [t.clone().requires_grad_() for t in inputs]
    expected = torch.autograd.grad((fn(*leaves) * weights).sum(), leaves)
    grads = torch.func.grad(lambda *a: (fn(*a) * weights).sum(), argnums=tuple(range(len(inputs))))(*inputs)
    _, vjp_fn = torch.func.vjp(fn, *inputs)
    for got in (grads, vjp_fn(weights)):
        for g, e in zip(got, expected):
            assert torch.equal(g, e)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_forward_ad_through_a_direct_op_call(backend):
    ops = fd.backends.FAMILIES[fd.backends._FAMILY_OF_BACKEND[backend]]
    x, dx = make_input((4, 6), torch.float64), make_input((4, 6), torch.float64, seed=1)
    seed = torch.tensor([SEED])
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(ops.dropout_fwd(fwAD.make_dual(x, dx), seed, 3, P)).tangent
    assert torch.equal(tangent, ops.dropout_fwd(dx, seed, 3, P))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
def test_vmap_with_a_seed_applies_each_sample_its_own_call(backend, op, with_bias):
    fn = _fn(op, backend, with_bias)
    batch = _inputs(op, with_bias, shape=(4, 3, 5))
    in_dims = (0,) * len(batch)
    if op.bias and with_bias:  # the bias ([5]) is shared by the samples
        in_dims = in_dims[:-1] + (None,)
    out = torch.func.vmap(fn, in_dims=in_dims)(*batch)
    for b in range(4):
        sample = [t[b] if d == 0 else t for t, d in zip(batch, in_dims)]
        assert torch.equal(out[b], fn(*sample))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_vmap_randomness_modes(backend):
    x = make_input((6, 64)).abs() + 1
    with pytest.raises(RuntimeError, match="randomness"):
        torch.func.vmap(lambda t: fd.dropout(t, 0.5, backend=backend))(x)
    same = torch.func.vmap(lambda t: fd.dropout(t, 0.5, backend=backend), randomness="same")(x)
    different = torch.func.vmap(lambda t: fd.dropout(t, 0.5, backend=backend), randomness="different")(x)
    for out in (same, different):
        kept = out != 0
        assert torch.equal(out[kept], x[kept] * 2)  # a valid dropout of each sample
    assert all(torch.equal(same[0] != 0, same[b] != 0) for b in range(6))
    assert len({tuple((different[b] != 0).tolist()) for b in range(6)}) == 6


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_per_sample_gradients_with_vmap_of_grad(backend):
    x = make_input((5, 8), torch.float64)
    bias = make_input((8,), torch.float64, seed=1)

    def loss(xs, b):
        return (fd.bias_relu_dropout(xs, b, P, seed=SEED, backend=backend) ** 2).sum()

    per_sample = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)), in_dims=(0, None))(x, bias)
    for b in range(5):
        expected = torch.func.grad(loss, argnums=(0, 1))(x[b], bias)
        assert torch.equal(per_sample[0][b], expected[0]) and torch.equal(per_sample[1][b], expected[1])


def test_every_op_has_a_batching_rule():
    """vmap runs our rule (documented randomness semantics), not torch's per-sample fallback with its warning."""
    for family in fd.backends.FAMILIES.values():
        for op in list(family.forward.values()) + list(family.backward.values()):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "FuncTorchBatched"), op.name()
