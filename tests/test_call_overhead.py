"""What a call dispatches, and the shortcut the common call takes (fused_dropout/_fast_path.py).

A forward with seed=None dispatches the seed draw and its kernel, nothing else; a backward its backward kernel;
eval mode and p = 0 draw nothing (dropout returns x itself). Counted with the benchmark's own TorchDispatchMode
(fused_dropout.bench.overhead.DispatchedOps), which sees every op reaching the dispatcher. Autograd itself adds a
`detach` when an op saves its output and another in a backward that unpacks it, for any op (torch.relu shows the
same, checked below): those are not the op's.

The shortcut must give exactly what the fully validated path gives: compared bit for bit with calls that take
the full path (an explicit backend), and it must step aside for anything it does not check.
"""
import numpy as np
import pytest
import torch

import fused_dropout as fd
from conftest import CPU_BACKENDS, OP_VARIANTS, call_op, make_input, op_inputs
from fused_dropout import _fast_path, backends
from fused_dropout.bench.overhead import DispatchedOps

AUTOGRAD_BOOKKEEPING = ("detach",)
DEFAULT_CPU_FAMILY_PREFIX = "" if "cpu" in fd.available_backends() else "torch_"


def kernel_ops(names):
    return [name for name in names if name not in AUTOGRAD_BOOKKEEPING]


def test_autograd_bookkeeping_is_autograds_own():
    x = make_input((4, 8), requires_grad=True)
    with DispatchedOps() as forward:
        y = torch.relu(x)
    grad = torch.ones_like(y)
    with DispatchedOps() as backward:
        torch.autograd.grad(y, x, grad)
    assert forward.names == ["relu", "detach"]
    assert backward.names == ["detach", "threshold_backward"]


@pytest.mark.parametrize("backend", [None] + CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
def test_forward_dispatches_the_seed_draw_and_the_kernel(op, with_bias, backend):
    x, residual, bias = op_inputs(op, (4, 8), torch.float32, requires_grad=True, with_bias=with_bias)
    with DispatchedOps() as forward:
        y = call_op(op, x, residual, bias, 0.3, backend=backend)
    kernel = (backends.FAMILIES[backends._FAMILY_OF_BACKEND[backend]].prefix if backend
              else DEFAULT_CPU_FAMILY_PREFIX) + op.op_name
    assert kernel_ops(forward.names) == ["randint", kernel]
    targets = tuple(t for t in (x, residual, bias) if t is not None)
    grad = torch.ones_like(y)
    with DispatchedOps() as backward:
        torch.autograd.grad(y, targets, grad)
    assert kernel_ops(backward.names) == [kernel.replace(op.op_name, op.backward_op.op_name)]


@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
def test_eval_and_p_zero_draw_nothing(op, with_bias):
    x, residual, bias = op_inputs(op, (4, 8), torch.float32, with_bias=with_bias)
    for kwargs in ({"training": False}, {"p": 0.0}):
        p = kwargs.pop("p", 0.3)
        with DispatchedOps() as calls:
            out = call_op(op, x, residual, bias, p, **kwargs)
        if op.name == "dropout":
            assert calls.names == [] and out is x
        else:
            assert calls.names == [DEFAULT_CPU_FAMILY_PREFIX + op.op_name]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
def test_the_shortcut_equals_the_validated_path(op, with_bias, training):
    x, residual, bias = op_inputs(op, (5, 12), torch.float32, with_bias=with_bias)
    default = fd.available_backends()[0] if "cpu" in fd.available_backends() else "torch"
    for seed, offset in ((7, 0), (2**64 - 5, 3), (-3, 2**40 + 1)):
        fast = call_op(op, x, residual, bias, 0.4, training=training, seed=seed, offset=offset)
        full = call_op(op, x, residual, bias, 0.4, training=training, seed=seed, offset=offset, backend=default)
        assert torch.equal(fast, full)
    # A drawn seed: the same draw from the same generator state.
    torch.manual_seed(11)
    fast = call_op(op, x, residual, bias, 0.4, training=training)
    torch.manual_seed(11)
    full = call_op(op, x, residual, bias, 0.4, training=training, backend=default)
    assert torch.equal(fast, full)


def test_the_shortcut_is_taken_for_the_common_call_only():
    op = fd.op_table.OPS_BY_NAME["dropout_add"]
    x, residual, bias = make_input((3, 4)), make_input((3, 4), seed=1), make_input((4,), seed=2)

    def takes_shortcut(**changes):
        args = dict(op=op, x=x, residual=residual, bias=bias, p=0.5, training=True, seed=None, offset=0,
                    generator=None, backend=None)
        args.update(changes)
        return _fast_path.forward(**args) is not None

    assert takes_shortcut()
    assert takes_shortcut(seed=5, offset=8, bias=None)
    # Everything the shortcut does not check itself goes to the full path (which converts or refuses it).
    for changes in (dict(p=np.float64(0.5)), dict(p=torch.tensor(0.5)), dict(p=1), dict(p=1.5), dict(p=float("nan")),
                    dict(training=1), dict(seed=np.int64(3)), dict(offset=-1), dict(offset=2**63),
                    dict(generator=torch.Generator()), dict(backend="cpu"), dict(backend="auto"),
                    dict(x=torch.nn.Parameter(x)), dict(x=x.int()), dict(x=x.to_sparse()),
                    dict(residual=residual.double()), dict(residual=residual[:2]), dict(bias=bias.double()),
                    dict(bias=bias[:3]), dict(bias=torch.empty(4, device="meta"))):
        assert not takes_shortcut(**changes), changes


def test_the_environment_backend_is_honoured(monkeypatch):
    x = make_input((3, 4))
    monkeypatch.setenv(backends.ENV_VAR, "torch")
    with DispatchedOps() as calls:
        fd.dropout(x, 0.5, seed=1)
    assert calls.names[-1] == "torch_dropout_fwd"
    monkeypatch.delenv(backends.ENV_VAR)
    with DispatchedOps() as calls:
        fd.dropout(x, 0.5, seed=1)
    assert calls.names[-1] == DEFAULT_CPU_FAMILY_PREFIX + "dropout_fwd"


def test_a_torch_function_mode_sees_the_seed_draw():
    """The shortcut draws the seed in C++ (the draw torch.randint makes, without its argument parsing); under a
    TorchFunctionMode it calls torch.randint itself, so the mode sees every torch call it saw before."""
    from torch.overrides import TorchFunctionMode

    class Calls(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    x = make_input((3, 4))
    with Calls() as calls:
        fd.dropout(x, 0.5)
    assert "randint" in calls.names


@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
@pytest.mark.parametrize("training", [True, False])
def test_the_public_functions_take_the_shortcut(op, with_bias, training, monkeypatch):
    """A plain call never reaches the full validation (it would cost the per-call time the shortcut saves)."""
    x, residual, bias = op_inputs(op, (5, 12), torch.float32, with_bias=with_bias)

    def refuse(*args, **kwargs):
        raise AssertionError("the common call took the validated path")

    monkeypatch.setattr(fd.functional, "_validated", refuse)
    call_op(op, x, residual, bias, 0.4, training=training)
    with pytest.raises(AssertionError, match="validated path"):  # a geometry argument leaves the shortcut
        call_op(op, x, residual, bias, 0.4, training=training, noise_shape=x.shape)
