"""torch.library.opcheck on every op of every family, and torch.compile(fullgraph=True) of each op and module."""
import pytest
import torch

import fused_dropout as fd
from conftest import CPU_BACKENDS, OPS, make_input, op_inputs
from fused_dropout.backends import FAMILIES, _FAMILY_OF_BACKEND
from fused_dropout.op_table import BACKWARDS


def op_samples(dtype=torch.float32):
    """{op schema name: [argument tuples]} for every forward op of the table (with and without bias, p in
    {0.3, 0, 1}) and every backward op (with and without the bias gradient)."""
    seed, offset = torch.tensor([123456789], dtype=torch.int64), 5
    samples = {}
    for op in OPS:
        samples[op.op_name] = []
        for with_bias in ([True, False] if op.bias else [False]):
            x, residual, bias = op_inputs(op, (6, 20), dtype, requires_grad=True, with_bias=with_bias)
            samples[op.op_name] += [op.pack(x, residual, bias, seed, offset, p) for p in (0.3, 0.0, 1.0)]
            samples[op.op_name].append(op.pack(x, residual, bias, None, 0, 0.0))  # no seed when p = 0
    plain = make_input((6, 20), dtype)
    named = {"seed": seed, "offset": offset, "mask_runs": (), "y": plain.relu(),
             "x": make_input((6, 20), dtype, seed=3)}
    for backward in BACKWARDS.values():
        samples[backward.op_name] = []
        for bias in (make_input((20,), dtype, seed=4), None) if backward.saves_input else (None,):
            saved = tuple(bias if name == "bias" else named[name] for name in backward.saved)
            samples[backward.op_name] += [(plain, *saved, 0.3, bias_grad) for bias_grad in (True, False)]
    return samples


def test_samples_cover_every_op_of_a_family():
    names = {name for name in vars(FAMILIES["torch"]) if name.endswith(("_fwd", "_bwd"))}
    assert names == set(op_samples())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_opcheck(backend, dtype):
    ops = FAMILIES[_FAMILY_OF_BACKEND[backend]]
    for name, samples in op_samples(dtype).items():
        for args in samples:
            torch.library.opcheck(getattr(ops, name), args)


def run_all_ops(x, bias, residual, backend):
    a = fd.dropout(x, 0.2, backend=backend)
    b = fd.bias_relu_dropout(x, bias, 0.2, backend=backend)
    c = fd.dropout_add(x, residual, 0.2, bias=bias, backend=backend)
    return a, b, c


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_compile_fullgraph_forward_backward_and_fresh_masks(backend):
    torch._dynamo.reset()
    x = make_input((8, 32), requires_grad=True)
    bias = make_input((32,), seed=1, requires_grad=True)
    residual = make_input((8, 32), seed=2, requires_grad=True)
    compiled = torch.compile(lambda *a: run_all_ops(*a, backend), fullgraph=True, backend="aot_eager")
    outs1 = compiled(x, bias, residual)
    sum(o.sum() for o in outs1).backward()
    assert x.grad is not None and bias.grad is not None and residual.grad is not None
    outs2 = compiled(x, bias, residual)
    for a, b in zip(outs1, outs2):
        assert not torch.equal(a, b)  # the mask changes every call
    # Each output is a valid dropout of its input: kept entries scale exactly, the others are zero.
    kept = outs1[0] != 0
    assert torch.allclose(outs1[0][kept], x[kept] / 0.8)


def test_compile_with_inductor_does_not_recompile_per_call():
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    x = make_input((8, 32), requires_grad=True)
    bias = make_input((32,), seed=1, requires_grad=True)
    fn = torch.compile(lambda t, b: fd.bias_relu_dropout(t, b, 0.5).sum(), fullgraph=True, backend=counter)
    values = set()
    for _ in range(4):
        loss = fn(x, bias)
        loss.backward()
        values.add(loss.item())
    assert counter.frame_count == 1
    assert len(values) == 4


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_compile_fullgraph_modules(backend):
    torch._dynamo.reset()
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 32, bias=False),
        fd.FusedBiasReLUDropout(32, 0.1, backend=backend),
        fd.FusedDropout(0.1, backend=backend),
    )
    add = fd.FusedDropoutAdd(0.1, backend=backend)
    x = make_input((4, 32), requires_grad=True)
    compiled = torch.compile(lambda t: add(model(t), t), fullgraph=True, backend="aot_eager")
    compiled(x).sum().backward()
    assert model[1].bias.grad is not None and x.grad is not None


def test_compile_with_inductor_matches_eager_for_a_fixed_seed():
    torch._dynamo.reset()
    x = make_input((16, 64))
    bias = make_input((64,), seed=1)
    fn = torch.compile(lambda t, b: fd.bias_relu_dropout(t, b, 0.3, seed=9), fullgraph=True)
    assert torch.equal(fn(x, bias), fd.bias_relu_dropout(x, bias, 0.3, seed=9))


@pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
def test_compiled_autograd_matches_eager_backward(compiler):
    """Compiled autograd traces each forward op's backward node (its compiled_args / apply_with_saved): the
    gradients equal eager autograd's, bit for bit, for every op with the state the node keeps (seed and offset, or
    the output y; the bias gradient flag)."""
    from torch._dynamo import compiled_autograd

    torch._dynamo.reset()
    x = make_input((8, 32), requires_grad=True)
    bias = make_input((32,), seed=1, requires_grad=True)
    residual = make_input((8, 32), seed=2, requires_grad=True)
    weight = make_input((8, 32), seed=3)  # a non-uniform upstream gradient

    def gradients():
        a = fd.dropout(x, 0.2, seed=5, offset=4)
        b = fd.bias_relu_dropout(x, bias, 0.3, seed=6)
        c = fd.dropout_add(x, residual, 0.4, bias=bias, seed=7)
        loss = ((a + b + c) * weight).sum()
        return torch.autograd.grad(loss, (x, bias, residual))

    expected = gradients()
    with compiled_autograd._enable(torch.compile(backend=compiler, fullgraph=True)):
        got = gradients()
    for e, g in zip(expected, got):
        assert torch.equal(e, g)
