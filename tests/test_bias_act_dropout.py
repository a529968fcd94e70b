"""bias_act_dropout and FusedBiasActDropout: dropout(activation(x + bias)) for every activation, on every backend.
The op table's generic tests (values across backends, NaN, gradcheck, opcheck, compile) run the new ops too; this
file checks what is particular to them: the values against the activation math and torch's own activations, the
mapping of each activation name to its op, what the backward saves, the second derivative and the module."""
import pytest
import torch

import fused_dropout as fd
from conftest import CPU_BACKENDS, DTYPES, assert_close, make_input
from test_autograd import saved_bytes
from fused_dropout.activations import ACTIVATIONS
from fused_dropout.op_table import BIAS_ACT_OPS, EAGER_ACTIVATIONS
from fused_dropout.spec import compute_dtype, to_output_dtype

SMOOTH = ["gelu", "gelu_tanh", "silu"]
ALL_ACTIVATIONS = sorted(BIAS_ACT_OPS)


def scale(p):
    return 1.0 / (1.0 - p)


def expected_values(x, bias, p, keep, activation):
    """The spec's values: activation(x + bias) in the compute type by the project's math, scaled where kept,
    rounded once."""
    acc = compute_dtype(x.dtype)
    v = x.to(acc) + (0 if bias is None else bias.to(acc))
    out = torch.where(keep, ACTIVATIONS[activation].forward(v) * scale(p), torch.zeros((), dtype=acc))
    return to_output_dtype(out, x.dtype)


def test_every_activation_has_an_op():
    assert set(ALL_ACTIVATIONS) == {"identity", "relu", "gelu", "gelu_tanh", "silu"}
    assert BIAS_ACT_OPS["relu"].name == "bias_relu_dropout"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_values_are_the_activation_math_under_the_mask(backend, dtype, activation):
    shape, p = (5, 3, 40), 0.3
    x, bias = make_input(shape, dtype) * 3, make_input(shape[-1:], dtype, seed=1)
    keep = fd.dropout_mask(shape, p, 21, offset=3)
    out = fd.bias_act_dropout(x, bias, p, activation=activation, seed=21, offset=3, backend=backend)
    assert torch.equal(out.view(torch.uint8), expected_values(x, bias, p, keep, activation).view(torch.uint8))
    no_bias = fd.bias_act_dropout(x, None, p, activation=activation, seed=21, offset=3, backend=backend)
    assert torch.equal(no_bias.view(torch.uint8), expected_values(x, None, p, keep, activation).view(torch.uint8))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_values_match_torch_activations(backend, dtype, activation):
    """Against the composition a user writes with torch's own activation (to the dtype's tolerance)."""
    shape, p = (33, 65), 0.2
    x, bias = make_input(shape, dtype) * 2, make_input(shape[-1:], dtype, seed=2)
    keep = fd.dropout_mask(shape, p, 5)
    v = (x.to(compute_dtype(dtype)) + bias.to(compute_dtype(dtype)))
    expected = torch.where(keep, EAGER_ACTIVATIONS[activation](v) * scale(p), torch.zeros_like(v)).to(dtype)
    assert_close(fd.bias_act_dropout(x, bias, p, activation=activation, seed=5, backend=backend), expected, dtype)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_relu_and_identity_are_the_existing_ops(backend):
    x, bias = make_input((16, 24)), make_input((24,), seed=3)
    relu = fd.bias_act_dropout(x, bias, 0.4, activation="relu", seed=9, backend=backend)
    assert torch.equal(relu, fd.bias_relu_dropout(x, bias, 0.4, seed=9, backend=backend))
    identity = fd.bias_act_dropout(x, bias, 0.4, activation="identity", seed=9, backend=backend)
    assert torch.equal(identity, fd.dropout(x + bias, 0.4, seed=9, backend=backend))  # float32: x + bias rounds once


@pytest.mark.parametrize("activation", SMOOTH)
def test_the_same_mask_as_every_other_op(activation):
    """Where the activation is positive the kept elements are exactly dropout's."""
    x = make_input((32, 32)).abs() + 1
    out = fd.bias_act_dropout(x, None, 0.5, activation=activation, seed=4)
    assert torch.equal(out != 0, fd.dropout(x, 0.5, seed=4) != 0)


@pytest.mark.parametrize("bad", ["GELU", "tanh", "", None, 3])
def test_unknown_activation_is_a_value_error_naming_it(bad):
    x = make_input((4, 4))
    with pytest.raises(ValueError, match="activation"):
        fd.bias_act_dropout(x, None, 0.5, activation=bad)
    with pytest.raises(ValueError, match="activation"):
        fd.FusedBiasActDropout(4, activation=bad)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("activation", SMOOTH)
def test_gradients_are_the_derivative_under_the_mask(backend, activation):
    shape, p = (6, 40), 0.35
    x = make_input(shape, requires_grad=True)
    bias = make_input(shape[-1:], seed=1, requires_grad=True)
    grad = make_input(shape, seed=2)
    fd.bias_act_dropout(x, bias, p, activation=activation, seed=8, backend=backend).backward(grad)
    keep = fd.dropout_mask(shape, p, 8)
    derivative = ACTIVATIONS[activation].derivative(x.detach() + bias.detach())
    expected = torch.where(keep, (grad * scale(p)) * derivative, torch.zeros(()))
    assert torch.equal(x.grad, expected)
    torch.testing.assert_close(bias.grad, expected.sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("activation", SMOOTH)
def test_second_derivative_is_the_activations_under_the_mask(backend, activation):
    """d2 out / dx2 = keep * scale * activation''(x + bias), elementwise (float64)."""
    shape, p = (4, 12), 0.3
    x = make_input(shape, torch.float64, requires_grad=True)
    bias = make_input(shape[-1:], torch.float64, seed=1)
    out = fd.bias_act_dropout(x, bias, p, activation=activation, seed=2, backend=backend)
    (first,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    keep = fd.dropout_mask(shape, p, 2)
    expected = torch.where(keep, scale(p) * ACTIVATIONS[activation].second_derivative(x.detach() + bias),
                           torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(second, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("activation", SMOOTH)
def test_forward_mode_matches_reverse_mode(backend, activation):
    x = make_input((5, 8), torch.float64)
    bias = make_input((8,), torch.float64, seed=1)
    tangent = make_input((5, 8), torch.float64, seed=2)

    def f(x):
        return fd.bias_act_dropout(x, bias, 0.25, activation=activation, seed=6, backend=backend)

    _, jvp = torch.func.jvp(f, (x,), (tangent,))
    _, vjp_fn = torch.func.vjp(f, x)
    (vjp,) = vjp_fn(tangent)
    torch.testing.assert_close(jvp, vjp)  # the Jacobian is diagonal


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("activation", SMOOTH)
def test_backward_saves_x_bias_and_the_seed(backend, activation):
    """The smooth activations' backward keeps x (the bytes of one input), the bias and the 8-byte seed; no mask
    and no output."""
    x = make_input((64, 64), requires_grad=True)
    bias = make_input((64,), seed=1, requires_grad=True)
    saved = saved_bytes(lambda: fd.bias_act_dropout(x, bias, 0.5, activation=activation, backend=backend))
    assert saved == x.numel() * 4 + bias.numel() * 4 + 8


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_eval_mode_and_p_zero_are_the_activation(backend, activation):
    x, bias = make_input((8, 16)), make_input((16,), seed=1)
    keep = torch.ones(8, 16, dtype=torch.bool)
    expected = expected_values(x, bias, 0.0, keep, activation)
    for out in (fd.bias_act_dropout(x, bias, 0.5, training=False, activation=activation, backend=backend),
                fd.bias_act_dropout(x, bias, 0.0, activation=activation, backend=backend)):
        assert torch.equal(out, expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("activation", SMOOTH)
def test_p_one_drops_everything_even_inf_and_nan(backend, activation):
    x = torch.tensor([[float("inf"), -float("inf"), float("nan"), 1.0]], requires_grad=True)
    out = fd.bias_act_dropout(x, None, 1.0, activation=activation, seed=1, backend=backend)
    assert torch.equal(out, torch.zeros_like(out)) and not out.signbit().any()
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_module_is_the_function_with_its_bias(activation):
    module = fd.FusedBiasActDropout(16, p=0.3, activation=activation)
    with torch.no_grad():
        module.bias.copy_(make_input((16,), seed=1))
    x = make_input((4, 16))
    torch.manual_seed(3)
    out = module(x)
    torch.manual_seed(3)
    assert torch.equal(out, fd.bias_act_dropout(x, module.bias, 0.3, activation=activation))
    module.eval()
    assert torch.equal(module(x), fd.bias_act_dropout(x, module.bias, 0.3, False, activation=activation))
    assert repr(module) == f"FusedBiasActDropout(num_features=16, p=0.3, activation={activation!r})"


@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_scripted_module_drops_what_the_eager_one_drops(activation):
    module = fd.FusedBiasActDropout(8, p=0.5, activation=activation)
    scripted = torch.jit.script(module)
    x = make_input((4, 8))
    torch.manual_seed(5)
    eager = module(x)
    torch.manual_seed(5)
    assert torch.equal(scripted(x), eager)


@pytest.mark.parametrize("activation", SMOOTH)
def test_gelu_mlp_block_trains(activation):
    """A bias-free Linear, the fused bias + activation + dropout, another Linear: gradients reach every weight."""
    torch.manual_seed(0)
    first, second = torch.nn.Linear(16, 32, bias=False), torch.nn.Linear(32, 16)
    act = fd.FusedBiasActDropout(32, p=0.1, activation=activation)
    x = make_input((8, 16))
    loss = second(act(first(x))).pow(2).mean()
    loss.backward()
    for parameter in (first.weight, act.bias, second.weight):
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)
