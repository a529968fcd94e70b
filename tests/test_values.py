"""Output values: against the unfused composition with the same mask (per-dtype tolerance), and bit-identical
between backends (they all compute the spec's float32/float64 expression with the same roundings)."""
import pytest
import torch
import torch.nn.functional as F

import fused_dropout as fd
from conftest import CPU_BACKENDS, DTYPES, assert_close, make_input

SHAPES = [(7,), (33, 65), (3, 5, 130)]


def scale(p):
    return 1.0 / (1.0 - p)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_equals_masked_scaling(backend, dtype, shape):
    p = 0.3
    x = make_input(shape, dtype)
    keep = fd.dropout_mask(shape, p, 11)
    expected = torch.where(keep, x * scale(p), torch.zeros_like(x))
    assert_close(fd.dropout(x, p, seed=11, backend=backend), expected, dtype)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_bias_relu_dropout_equals_composition(backend, dtype, shape):
    p = 0.2
    x, bias = make_input(shape, dtype), make_input(shape[-1:], dtype, seed=1)
    keep = fd.dropout_mask(shape, p, 12, offset=1)
    expected = torch.where(keep, F.relu(x + bias) * scale(p), torch.zeros_like(x))
    assert_close(fd.bias_relu_dropout(x, bias, p, seed=12, offset=1, backend=backend), expected, dtype)
    expected_no_bias = torch.where(keep, F.relu(x) * scale(p), torch.zeros_like(x))
    assert_close(fd.bias_relu_dropout(x, None, p, seed=12, offset=1, backend=backend), expected_no_bias, dtype)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_add_equals_composition(backend, dtype, shape):
    p = 0.6
    x, residual = make_input(shape, dtype), make_input(shape, dtype, seed=2)
    bias = make_input(shape[-1:], dtype, seed=3)
    keep = fd.dropout_mask(shape, p, 13)
    expected = residual + torch.where(keep, (x + bias) * scale(p), torch.zeros_like(x))
    assert_close(fd.dropout_add(x, residual, p, bias=bias, seed=13, backend=backend), expected, dtype)
    expected_no_bias = residual + torch.where(keep, x * scale(p), torch.zeros_like(x))
    assert_close(fd.dropout_add(x, residual, p, seed=13, backend=backend), expected_no_bias, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backends_agree_bit_for_bit(dtype):
    x, residual = make_input((17, 45), dtype), make_input((17, 45), dtype, seed=4)
    bias = make_input((45,), dtype, seed=5)
    results = {}
    for backend in CPU_BACKENDS:
        results[backend] = (
            fd.dropout(x, 0.3, seed=21, offset=2, backend=backend),
            fd.bias_relu_dropout(x, bias, 0.3, seed=21, offset=2, backend=backend),
            fd.dropout_add(x, residual, 0.3, bias=bias, seed=21, offset=2, backend=backend),
        )
    reference = results.pop("torch")
    for backend, outs in results.items():
        for out, ref in zip(outs, reference):
            assert torch.equal(out, ref), backend


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fused_value_rounds_once_from_float32(backend):
    # In bfloat16, x + bias rounded before relu/scale (the eager composition) can differ from the spec's single
    # rounding; the fused op must produce exactly the single-rounding result.
    x = make_input((8, 64), torch.bfloat16)
    bias = make_input((64,), torch.bfloat16, seed=1)
    keep = fd.dropout_mask(x.shape, 0.1, 3)
    exact = torch.where(keep, torch.relu(x.float() + bias.float()) * torch.tensor(1 / 0.9, dtype=torch.float32), 0.0)
    assert torch.equal(fd.bias_relu_dropout(x, bias, 0.1, seed=3, backend=backend), exact.to(torch.bfloat16))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_eval_mode_and_p_zero_drop_nothing(backend):
    x, residual = make_input((9, 12)), make_input((9, 12), seed=1)
    bias = make_input((12,), seed=2)
    for training, p in ((False, 0.5), (True, 0.0)):
        assert fd.dropout(x, p, training=training, backend=backend) is x
        assert torch.equal(fd.bias_relu_dropout(x, bias, p, training=training, backend=backend), F.relu(x + bias))
        assert torch.equal(fd.dropout_add(x, residual, p, training=training, bias=bias, backend=backend),
                           residual + (x + bias))


def test_eval_mode_consumes_no_randomness():
    x = make_input((9, 12))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    fd.dropout(x, 0.5, training=False)
    fd.bias_relu_dropout(x, None, 0.5, training=False)
    fd.dropout_add(x, x, 0.0)
    assert torch.equal(torch.get_rng_state(), state)
