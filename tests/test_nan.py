"""Every NaN an op writes (forward output, grad_in, grad_bias) is its dtype's canonical quiet NaN, sign clear
(docs/mask_spec.md, Values), whatever NaN went in and however the NaN was made: payloads, signs and signalling
NaNs in x, bias, residual or the incoming gradient, and NaNs that arithmetic creates (inf + -inf). Dropped
elements stay exactly 0 (or exactly a non-NaN residual)."""
import math

import pytest
import torch

from conftest import CPU_BACKENDS, DTYPES, OP_VARIANTS, call_op, op_inputs
from fused_dropout import dropout_mask, spec
from fused_dropout.activations import ACTIVATIONS

# Making NaNs is the point here: numpy (under Triton's interpreter) may warn about it.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

P, SEED = 0.3, 11
SHAPE = (16, 24)  # enough rows that every column has kept and dropped elements
BITS_VIEW = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
             torch.float64: torch.int64}
# (total bits, mantissa bits), written out here rather than taken from the package under test.
FORMATS = {torch.float16: (16, 10), torch.bfloat16: (16, 7), torch.float32: (32, 23), torch.float64: (64, 52)}
CANONICAL = {torch.float16: 0x7E00, torch.bfloat16: 0x7FC0, torch.float32: 0x7FC00000,
             torch.float64: 0x7FF8000000000000}


def nan_patterns(dtype):
    """NaN bit patterns of `dtype`: quiet and signalling, either sign, small and full payloads, the canonical one
    and the ones hardware makes (x86's negative default NaN, the all-ones NaN of GPU conversions)."""
    total, mantissa = FORMATS[dtype]
    sign, exponent = 1 << (total - 1), ((1 << (total - 1)) - 1) ^ ((1 << mantissa) - 1)
    quiet, payload_mask = 1 << (mantissa - 1), (1 << mantissa) - 1
    return [exponent | quiet, sign | exponent | quiet, exponent | 1, sign | exponent | 5,
            exponent | payload_mask, sign | exponent | payload_mask, exponent | quiet | 0x15]


def from_bits(patterns, dtype):
    total = FORMATS[dtype][0]
    signed = [b - (1 << total) if b >> (total - 1) else b for b in patterns]
    return torch.tensor(signed, dtype=BITS_VIEW[dtype]).view(dtype)


def bits(t):
    return t.contiguous().view(BITS_VIEW[t.dtype])


def canonical_nan(dtype):
    return CANONICAL[dtype]  # all positive: the signed view holds the same number


def scatter_nans(t, stride, start, seed):
    """t with every stride-th element (from start) replaced by NaN patterns, cycled from a seed-dependent place."""
    patterns = nan_patterns(t.dtype)
    flat = t.detach().clone().reshape(-1)
    positions = torch.arange(start, flat.numel(), stride)
    chosen = [patterns[(seed + k) % len(patterns)] for k in range(positions.numel())]
    flat[positions] = from_bits(chosen, t.dtype)
    return flat.reshape(t.shape)


def assert_canonical_where(actual, where, what):
    got = bits(actual)[where]
    assert got.numel() > 0, f"{what}: no element to check"
    assert bool((got == canonical_nan(actual.dtype)).all()), \
        f"{what}: non-canonical NaN bits {sorted({hex(int(b)) for b in got[got != canonical_nan(actual.dtype)]})}"


def expected_forward_nan(op, x, residual, bias, keep):
    """Where the output must be NaN, from the op's definition evaluated in float64."""
    v = x.double() if bias is None else x.double() + bias.double()
    kept = torch.where(keep, ACTIVATIONS[op.activation].forward(v) * (1 / (1 - P)), torch.zeros((), dtype=v.dtype))
    return (kept if residual is None else residual.double() + kept).isnan()


def test_canonical_nan_table_of_the_spec():
    assert spec.CANONICAL_NAN_BITS == CANONICAL
    for dtype, value in CANONICAL.items():
        nan = from_bits([value], dtype)
        assert bool(nan.isnan().all()) and not bool(nan.signbit().any()), dtype


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,with_bias", OP_VARIANTS)
def test_forward_writes_only_the_canonical_nan(op, with_bias, dtype, backend):
    x, residual, bias = op_inputs(op, SHAPE, dtype, seed=3, with_bias=with_bias)
    x = scatter_nans(x, 3, 0, seed=0)
    if bias is not None:
        bias = scatter_nans(bias, 5, 1, seed=1)
        # inf + -inf: x = +inf in a column whose bias is -inf makes a NaN the inputs did not hold.
        bias[4] = -math.inf
        x[:, 4] = math.inf
    if residual is not None:
        residual = scatter_nans(residual, 7, 2, seed=2)
        # residual + v with residual = -inf and v = +inf (where kept) makes one too.
        x[:, 5], residual[:, 5] = math.inf, -math.inf
    keep = dropout_mask(SHAPE, P, SEED)
    out = call_op(op, x, residual, bias, P, seed=SEED, backend=backend)

    nan = expected_forward_nan(op, x, residual, bias, keep)
    assert bool((keep & nan).any()) and bool((~keep & x.isnan()).any())
    assert_canonical_where(out, nan, "output")
    assert not bool(out[~nan].isnan().any())
    dropped_value = torch.zeros_like(out) if residual is None else residual
    dropped = ~keep & ~nan
    assert torch.equal(bits(out)[dropped], bits(dropped_value)[dropped])  # +0 exactly, or the residual's bits
    if residual is not None:
        made_by_arithmetic = keep[:, 5]  # +inf kept, added to -inf: a NaN no input held
        assert bool(made_by_arithmetic.any())
        assert_canonical_where(out[:, 5], made_by_arithmetic, "inf + -inf in the residual add")
    if bias is not None:
        assert_canonical_where(out[:, 4], keep[:, 4], "inf + -inf in the bias add")


def incoming_gradient_with_nans(shape, dtype):
    return scatter_nans(torch.ones(shape, dtype=dtype), 2, 0, seed=4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,with_bias", OP_VARIANTS)
def test_backward_writes_only_the_canonical_nan(op, with_bias, dtype, backend):
    x, residual, bias = op_inputs(op, SHAPE, dtype, seed=5, requires_grad=True, with_bias=with_bias)
    y = call_op(op, x, residual, bias, P, seed=SEED, backend=backend)
    grad = incoming_gradient_with_nans(SHAPE, dtype)
    inputs = (x,) if bias is None else (x, bias)
    grads = torch.autograd.grad(y, inputs, grad)

    # The backward's keep decision: the mask, or y > 0 for the ops whose backward reads the saved output.
    keep = dropout_mask(SHAPE, P, SEED) if op.backward_op.keeps_from_mask else y.detach() > 0
    grad_in = grads[0]
    assert_canonical_where(grad_in, keep & grad.isnan(), "grad_in")
    assert torch.equal(bits(grad_in)[~keep], torch.zeros_like(bits(grad_in)[~keep]))  # +0 where dropped
    assert not bool(grad_in[keep & ~grad.isnan()].isnan().any())
    if bias is not None:
        grad_bias = grads[1]
        nan_columns = (keep & grad.isnan()).any(0)
        assert bool(nan_columns.any())
        assert_canonical_where(grad_bias, nan_columns, "grad_bias of NaN gradients")
        assert not bool(grad_bias[~nan_columns].isnan().any())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,with_bias", [variant for variant in OP_VARIANTS if variant.values[1]])
def test_bias_gradient_of_inf_and_minus_inf_is_the_canonical_nan(op, with_bias, dtype, backend):
    x, residual, bias = op_inputs(op, SHAPE, dtype, seed=6, requires_grad=True, with_bias=with_bias)
    with torch.no_grad():
        x.abs_().add_(1)  # positive pre-activations: every kept element is active, so the gradient reaches it
        bias.abs_()
    y = call_op(op, x, residual, bias, P, seed=SEED, backend=backend)
    keep = dropout_mask(SHAPE, P, SEED)
    # In every column, +inf and -inf incoming gradients at two kept rows: the column sum is inf + -inf.
    grad = torch.ones(SHAPE, dtype=dtype)
    for col in range(SHAPE[1]):
        rows = keep[:, col].nonzero().flatten()
        assert rows.numel() >= 2, col
        grad[rows[0], col], grad[rows[1], col] = math.inf, -math.inf
    _, grad_bias = torch.autograd.grad(y, (x, bias), grad)
    assert_canonical_where(grad_bias, torch.ones_like(grad_bias, dtype=torch.bool), "grad_bias of inf + -inf")
