"""Bad input: a clear error naming the argument, raised before anything runs, and no input tensor changed."""
import math
import os
import subprocess
import sys

import pytest
import torch

import fused_dropout as fd
from conftest import CPU_BACKENDS, make_input, requires_cuda


def snapshot(*tensors):
    return [t.clone() for t in tensors]


def unchanged(tensors, copies):
    return all(torch.equal(t, c) for t, c in zip(tensors, copies))


BAD_P = [(-0.1, ValueError), (1.5, ValueError), (math.nan, ValueError), ("0.5", TypeError), (None, TypeError),
         (True, TypeError), (torch.tensor(0.5, requires_grad=True), TypeError)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("p, error", BAD_P)
def test_bad_p(backend, p, error):
    x, residual, bias = make_input((4, 6)), make_input((4, 6), seed=1), make_input((6,), seed=2)
    copies = snapshot(x, residual, bias)
    for call in (lambda: fd.dropout(x, p, backend=backend), lambda: fd.dropout(x, p, inplace=True, backend=backend),
                 lambda: fd.bias_relu_dropout(x, bias, p, backend=backend),
                 lambda: fd.dropout_add(x, residual, p, bias=bias, backend=backend)):
        with pytest.raises(error, match="p"):
            call()
    assert unchanged((x, residual, bias), copies)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.uint8, torch.complex64])
def test_non_floating_x(dtype):
    x = torch.ones(4, 6, dtype=dtype)
    copy = x.clone()
    with pytest.raises(TypeError, match="x must be"):
        fd.dropout(x, 0.5)
    with pytest.raises(TypeError, match="x must be"):
        fd.bias_relu_dropout(x, None, 0.5)
    with pytest.raises(TypeError, match="x must be"):
        fd.dropout_add(x, x, 0.5)
    assert torch.equal(x, copy)


def test_x_not_a_tensor():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fd.dropout([1.0, 2.0], 0.5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_bias(backend):
    x = make_input((4, 6))
    copy = x.clone()
    cases = [
        (make_input((5,)), ValueError, "bias must have shape"),
        (make_input((1, 6)), ValueError, "bias must have shape"),
        (torch.ones(6, dtype=torch.int64), TypeError, "bias must be float16, bfloat16, float32 or float64"),
        (torch.ones(6, dtype=torch.complex64), TypeError, "bias must be float16, bfloat16, float32 or float64"),
        ([0.0] * 6, TypeError, "bias must be a torch.Tensor"),
        (make_input((6,), device="meta"), RuntimeError, "bias must be on"),
    ]
    for bias, error, message in cases:
        with pytest.raises(error, match=message):
            fd.bias_relu_dropout(x, bias, 0.5, backend=backend)
        with pytest.raises(error, match=message):
            fd.dropout_add(x, x.clone(), 0.5, bias=bias, backend=backend)
    assert torch.equal(x, copy)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_residual(backend):
    x = make_input((4, 6))
    copy = x.clone()
    cases = [
        (make_input((4, 5)), ValueError, "residual must have shape"),
        (make_input((6,)), ValueError, "residual must have shape"),  # broadcastable is still refused
        (torch.ones((4, 6), dtype=torch.int32), TypeError, "residual must be float16, bfloat16, float32 or float64"),
        (make_input((4, 6), device="meta"), RuntimeError, "residual must be on"),
        (None, TypeError, "residual must be a torch.Tensor"),
    ]
    for residual, error, message in cases:
        with pytest.raises(error, match=message):
            fd.dropout_add(x, residual, 0.5, backend=backend)
    assert torch.equal(x, copy)


@pytest.mark.parametrize("offset, error", [(-1, ValueError), (2**63, ValueError), (1.5, TypeError),
                                           ("3", TypeError), (True, TypeError)])
def test_bad_offset(offset, error):
    x = make_input((4, 6))
    copy = x.clone()
    for call in (lambda: fd.dropout(x, 0.5, offset=offset), lambda: fd.dropout(x, 0.5, training=False, offset=offset),
                 lambda: fd.bias_relu_dropout(x, None, 0.5, offset=offset),
                 lambda: fd.dropout_add(x, x, 0.5, offset=offset),
                 lambda: fd.dropout_mask((4,), 0.5, 1, offset=offset)):
        with pytest.raises(error, match="offset"):
            call()
    assert torch.equal(x, copy)


@pytest.mark.parametrize("seed, error", [(2**64, ValueError), (-(2**63) - 1, ValueError), (1.0, TypeError),
                                         ("7", TypeError), (False, TypeError)])
def test_bad_seed(seed, error):
    x = make_input((4, 6))
    copy = x.clone()
    for call in (lambda: fd.dropout(x, 0.5, seed=seed), lambda: fd.bias_relu_dropout(x, None, 0.5, seed=seed),
                 lambda: fd.dropout_add(x, x, 0.5, seed=seed), lambda: fd.dropout_mask((4,), 0.5, seed)):
        with pytest.raises(error, match="seed"):
            call()
    assert torch.equal(x, copy)


def test_bad_generator():
    x = make_input((4, 6))
    with pytest.raises(TypeError, match="generator"):
        fd.dropout(x, 0.5, generator=123)


@requires_cuda
def test_generator_on_another_device():
    x = make_input((4, 6), device="cuda")
    with pytest.raises(RuntimeError, match="generator"):
        fd.dropout(x, 0.5, generator=torch.Generator())


def test_unknown_backend():
    x = make_input((4, 6))
    copy = x.clone()
    with pytest.raises(ValueError, match="unknown backend"):
        fd.dropout(x, 0.5, backend="tpu")
    with pytest.raises(TypeError, match="backend"):
        fd.dropout(x, 0.5, backend=3)
    assert torch.equal(x, copy)


def test_backend_not_available_for_the_device():
    x = make_input((4, 6))
    with pytest.raises(RuntimeError, match=r"backend 'cuda' is not available for cpu tensors.*available here"):
        fd.dropout(x, 0.5, backend="cuda")
    if "triton" not in CPU_BACKENDS:
        with pytest.raises(RuntimeError, match="backend 'triton' is not available"):
            fd.dropout(x, 0.5, backend="triton")


def test_bad_backend_from_environment(monkeypatch):
    monkeypatch.setenv("FUSED_DROPOUT_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="FUSED_DROPOUT_BACKEND=nonsense"):
        fd.dropout(make_input((4, 6)), 0.5)


def test_bad_training_and_inplace_flags():
    x = make_input((4, 6))
    with pytest.raises(TypeError, match="training"):
        fd.dropout(x, 0.5, training="yes")
    with pytest.raises(TypeError, match="inplace"):
        fd.dropout(x, 0.5, inplace=None)


def test_bad_dropout_mask_arguments():
    with pytest.raises(TypeError, match="seed"):
        fd.dropout_mask((4,), 0.5, None)
    with pytest.raises(TypeError, match="shape"):
        fd.dropout_mask(4.5, 0.5, 1)
    with pytest.raises(ValueError, match="shape"):
        fd.dropout_mask((-1, 3), 0.5, 1)
    with pytest.raises(ValueError, match="p"):
        fd.dropout_mask((4,), 2.0, 1)


FAMILIES_HERE = sorted({fd.backends._FAMILY_OF_BACKEND[b] for b in CPU_BACKENDS})


@pytest.mark.parametrize("family", FAMILIES_HERE)
def test_direct_op_calls_are_checked_too(family):
    """Callers that bypass the Python API get the same errors from every family, not a bad read."""
    ops = fd.backends.FAMILIES[family]
    x = make_input((4, 6))
    seed = torch.tensor([1])
    copy = x.clone()
    for bad_seed in (torch.tensor([1, 0]), torch.tensor([1], dtype=torch.int32), torch.tensor([1.0])):
        with pytest.raises(RuntimeError, match="seed must be a one-element int64 tensor"):
            ops.dropout_fwd(x, bad_seed, 0, 0.5)
        with pytest.raises(RuntimeError, match="seed must be a one-element int64 tensor"):
            ops.mask_bwd(x, bad_seed, 0, (), 0.5, False)
    with pytest.raises(RuntimeError, match="seed must be given when p > 0"):
        ops.dropout_fwd(x, None, 0, 0.5)
    with pytest.raises(RuntimeError, match="seed must be given when p > 0"):
        ops.mask_bwd(x, None, 0, (), 0.5, False)
    with pytest.raises(RuntimeError, match="offset must be in"):
        ops.dropout_fwd(x, seed, -1, 0.5)
    with pytest.raises(RuntimeError, match="offset must be in"):
        ops.mask_bwd(x, seed, -4, (), 0.5, False)
    for p in (1.5, -0.5, 2.0, math.nan):
        with pytest.raises(RuntimeError, match="p must be in"):
            ops.dropout_fwd(x, seed, 0, p)
        with pytest.raises(RuntimeError, match="p must be in"):
            ops.mask_bwd(x, seed, 0, (), p, False)
    with pytest.raises(RuntimeError, match="bias must have shape"):
        ops.bias_relu_dropout_fwd(x, make_input((5,)), seed, 0, 0.5)
    with pytest.raises(RuntimeError, match="residual must have shape"):
        ops.dropout_add_fwd(x, make_input((4, 5)), None, seed, 0, 0.5)
    with pytest.raises(RuntimeError, match="residual must have dtype"):
        ops.dropout_add_fwd(x, x.double(), None, seed, 0, 0.5)
    for dtype in (torch.int32, torch.int64, torch.bool):
        with pytest.raises(RuntimeError, match="x must be"):
            ops.dropout_fwd(torch.ones(3, dtype=dtype), seed, 0, 0.5)
        with pytest.raises(RuntimeError, match="grad must be"):
            ops.mask_bwd(torch.ones(3, dtype=dtype), seed, 0, (), 0.5, False)
    with pytest.raises(RuntimeError, match="y must have shape"):
        ops.relu_output_bwd(x, make_input((4, 5)), 0.5, True)
    assert torch.equal(x, copy)


@pytest.mark.parametrize("family", FAMILIES_HERE)
def test_a_companion_on_another_device_is_refused_not_read(family):
    """A meta residual or bias with a CPU x used to reach the meta kernel and return uninitialised memory."""
    ops = fd.backends.FAMILIES[family]
    x = make_input((4, 6))
    seed = torch.tensor([1])
    with pytest.raises(RuntimeError, match="residual must be on cpu"):
        ops.dropout_add_fwd(x, torch.empty((4, 6), device="meta"), None, seed, 0, 0.5)
    with pytest.raises(RuntimeError, match="bias must be on cpu"):
        ops.bias_relu_dropout_fwd(x, torch.empty((6,), device="meta"), seed, 0, 0.5)
    with pytest.raises(RuntimeError, match="seed must be on cpu"):
        ops.dropout_fwd(x, torch.empty((1,), dtype=torch.int64, device="meta"), 0, 0.5)


def test_a_broken_native_build_warns_once_and_names_the_error():
    """Blocking the import of fused_dropout._C must warn (with the import error) and leave cpu unavailable."""
    code = (
        "import sys, warnings\n"
        "sys.modules['fused_dropout._C'] = None\n"  # makes `from . import _C` raise ImportError
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import fused_dropout as fd\n"
        "    import fused_dropout.backends\n"
        "    fd.dropout(__import__('torch').ones(8), 0.5)\n"
        "messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]\n"
        "print(len([m for m in messages if 'fused_dropout._C failed to import' in m]))\n"
        "print('import of fused_dropout._C halted' in messages[0])\n"
        "print(fd.available_backends())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TRITON_INTERPRET": "0"})
    assert result.returncode == 0, result.stderr
    count, names_error, available = result.stdout.split("\n")[:3]
    assert count == "1" and names_error == "True"
    assert available == "['torch']"
