"""The Triton kernels under a mask geometry (the ops' mask_runs, csrc/mask_runs.h), called through the launch module
directly: their masks bit for bit against the spec's text (spec_impl, for the geometry's arguments or for the runs'
formula), their values against the reference for that mask (fused_dropout.reference), for every op and backward
kind; the paths of the runs kernel (a tile row inside one stretch of the innermost run of stride 1 or 0, and the
per-element path elsewhere); the flat mask for runs that amount to it; bad runs refused."""
import math

import pytest
import torch

import spec_impl
from conftest import OP_VARIANTS, assert_column_sum_close, make_input, op_inputs
from fused_dropout import backends, reference
from fused_dropout.geometry import mask_geometry
from fused_dropout.op_table import BACKWARDS, OPS_BY_NAME

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    not backends.TRITON_INSTALLED or (DEVICE == "cpu" and not backends.triton_interpreting()),
    reason="triton needs a GPU or TRITON_INTERPRET=1",
)
if backends.TRITON_INSTALLED:
    import triton

    from fused_dropout.triton_backend import kernels, launch

SEED_BITS = 2**64 - 77
SEED = torch.tensor([SEED_BITS - 2**64], dtype=torch.int64, device=DEVICE)
P = 0.4
BITS = {torch.bfloat16: torch.int16, torch.float32: torch.int32, torch.float64: torch.int64}

# (x.shape, noise_shape, global_shape, shard_offsets). Small ones: one tile, crossing every run's stretches. Long
# ones (a float32 flat tile holds 2048 elements): tiles inside one stretch of the innermost run (its fast paths)
# and tiles across a stretch's end.
GEOMETRIES = {
    "droppath": ((4, 3, 2, 3), (4, 1, 1, 1), None, None),
    "channel1d": ((2, 3, 5), (2, 3, 1), None, None),
    "channel2d": ((2, 3, 4, 2), (2, 3, 1, 1), None, None),
    "channel3d": ((2, 2, 3, 2, 2), (2, 2, 1, 1, 1), None, None),
    "locked": ((5, 2, 6), (1, 2, 6), None, None),
    "row-shard": ((3, 7), None, (9, 7), (4, 0)),
    "column-shard": ((4, 5), None, (4, 12), (0, 6)),
    "2d-shard": ((3, 5), None, (9, 13), (4, 6)),
    "shard-broadcast": ((2, 3, 4), (6, 1, 8), (6, 5, 8), (3, 1, 2)),
    "one-decision": ((3, 4), (1, 1), None, None),
    "droppath-long": ((3, 2100), (3, 1), None, None),
    "locked-long": ((2, 1, 2050), (1, 1, 2050), None, None),
    "column-shard-long": ((2, 2053), None, (2, 4106), (0, 2053)),
}
OFFSETS = [0, 3, 2**40 + 2]


def geometry_call(name, offset):
    """(shape, the kernels' offset and runs, the spec's keep mask) of a geometry at an offset."""
    shape, noise, sizes, starts = GEOMETRIES[name]
    geometry = mask_geometry(shape, noise, sizes, starts, offset=offset)
    keep = spec_impl.geometric_mask(shape, SEED_BITS, offset, P, noise, sizes, starts)
    return shape, offset + geometry.base, geometry.kernel_runs, torch.tensor(keep).reshape(shape)


def runs_index(runs, e):
    """m(e) from the interface's formula: sum over runs of ((e / inner_r) % extent_r) * stride_r."""
    m, inner = 0, 1
    for extent, stride in reversed(list(zip(runs[0::2], runs[1::2]))):
        m += (e // inner) % extent * stride
        inner *= extent
    return m


def runs_mask(runs, shape, offset, p=P):
    return torch.tensor([spec_impl.keep(runs_index(runs, e), SEED_BITS, offset, p)
                         for e in range(math.prod(shape))]).reshape(shape)


def kept(out):
    return out != 0


def same_bits(a, b):
    return torch.equal(a.view(BITS[a.dtype]), b.view(BITS[b.dtype]))


@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("offset", OFFSETS)
def test_masks_follow_the_spec_flat_and_by_columns(name, offset):
    # A flat view (dropout) and a column view (bias_dropout: rows of the last dimension, several per tile).
    shape, kernel_offset, runs, keep = geometry_call(name, offset)
    ones = torch.ones(shape, device=DEVICE)
    out = launch.forward(OPS_BY_NAME["dropout"], ones, None, None, SEED, kernel_offset, P, runs)
    assert torch.equal(kept(out).cpu(), keep)
    zeros = torch.zeros(shape[-1:], device=DEVICE)
    out = launch.forward(OPS_BY_NAME["bias_dropout"], ones, None, zeros, SEED, kernel_offset, P, runs)
    assert torch.equal(kept(out).cpu(), keep)


# Runs no geometry makes: inner strides other than 0 and 1 (a transposed mask, a strided one), runs that overlap,
# six runs; flat and column views. And innermost runs of stride 0 shorter than 4 elements, whose chunks of four
# cross more than one of their stretches.
DIRECT_RUNS = [
    ((4, 3), (4, 1, 3, 0)),
    ((5, 2, 3), (5, 7, 2, 1, 3, 0)),
    ((4, 5), (10, 1, 2, 0)),  # rows of 5: a row's first chunk of four may start mid-stretch and cross two ends
    ((3, 4), (3, 1, 4, 3)),
    ((5, 6), (5, 2, 6, 7)),
    ((2, 3, 2, 2, 2, 3), (2, 1, 3, 0, 2, 5, 2, 0, 2, 11, 3, 1)),
    ((4, 1030), (4, 3, 1030, 1)),
    ((2, 2, 1030), (2, 2, 2, 0, 1030, 2)),
]


@pytest.mark.parametrize("shape, runs", DIRECT_RUNS)
@pytest.mark.parametrize("offset", [1, 2**40])
def test_any_runs_follow_their_formula(shape, runs, offset):
    ones = torch.ones(shape, device=DEVICE)
    keep = runs_mask(runs, shape, offset)
    out = launch.forward(OPS_BY_NAME["dropout"], ones, None, None, SEED, offset, P, runs)
    assert torch.equal(kept(out).cpu(), keep)
    out = launch.forward(OPS_BY_NAME["bias_dropout"], ones, None, torch.zeros(shape[-1:], device=DEVICE), SEED,
                         offset, P, runs)
    assert torch.equal(kept(out).cpu(), keep)


@pytest.mark.parametrize("inner_stride", [0, 1])
def test_a_tile_one_element_past_a_stretch_takes_the_per_element_path(inner_stride):
    # A float32 flat tile over rows one element shorter: the first tile reaches one element into
    # the second stretch of the innermost run, whose mask index is not the fast paths' (the first stretch's last
    # one for stride 1, its shared one for stride 0). The offset is one where that gives another decision.
    columns = launch._tile(1, False, 4).columns
    shape = (3, columns - 1)
    runs = (3, 1, columns - 1, 0) if inner_stride == 0 else (3, 0, columns - 1, 1)
    wrong_index = 0 if inner_stride == 0 else columns - 1
    offset = next(o for o in range(64) if spec_impl.keep(runs_index(runs, columns - 1), SEED_BITS, o, P)
                  != spec_impl.keep(wrong_index, SEED_BITS, o, P))
    out = launch.forward(OPS_BY_NAME["dropout"], torch.ones(shape, device=DEVICE), None, None, SEED, offset, P, runs)
    assert torch.equal(kept(out).cpu(), runs_mask(runs, shape, offset))


def test_indices_up_to_2_to_the_63():
    # The largest mask index plus the offset is 2^63 - 1: g crosses 2^62 and 2^63 - 4 in uint64 without wrapping.
    runs = (4, 1, 30, 0)
    for offset in (2**63 - 4, 2**63 - 7):
        ones = torch.ones((4, 30), device=DEVICE)
        out = launch.forward(OPS_BY_NAME["dropout"], ones, None, None, SEED, offset, P, runs)
        assert torch.equal(kept(out).cpu(), runs_mask(runs, (4, 30), offset))


@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["droppath", "column-shard"])
def test_forward_values_are_the_references_for_the_mask(op, with_bias, dtype, name):
    shape, kernel_offset, runs, keep = geometry_call(name, 3)
    x, residual, bias = op_inputs(op, shape, dtype, with_bias=with_bias)
    out = launch.forward(op, x, residual, bias, SEED, kernel_offset, P, runs)
    assert same_bits(out, reference.forward_with_keep(op, x, residual, bias, keep, P))


def saved_arguments(kind, x, bias, y, offset, runs):
    named = {"seed": SEED, "offset": offset, "mask_runs": runs, "x": x, "bias": bias, "y": y}
    names = BACKWARDS[kind].saved
    if BACKWARDS[kind].keeps_from_mask and "mask_runs" not in names:
        names += ("mask_runs",)  # the saved arguments with the geometry, whatever the op table's schema says
    return tuple(named[name] for name in names)


def expected_backward(kind, grad, keep, x, bias):
    backward = BACKWARDS[kind]
    if backward.saves_input:
        return reference.masked_grad_through(grad, keep, P, backward.activation, x, bias)
    return reference.masked_grad(grad, keep, P)


# Every kind that recomputes the mask, without and with bias_grad, and with a saved bias where the kind reads one.
BACKWARD_VARIANTS = [(kind, has_bias, bias_grad) for kind, backward in BACKWARDS.items() if backward.keeps_from_mask
                     for has_bias, bias_grad in [(False, False), (False, True), (True, True)]
                     if backward.saves_input or not has_bias]


@pytest.mark.parametrize("kind, has_bias, bias_grad", BACKWARD_VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["locked", "2d-shard"])
def test_backward_values_are_the_references_for_the_mask(kind, has_bias, bias_grad, dtype, name):
    shape, kernel_offset, runs, keep = geometry_call(name, 2**40 + 2)
    grad, x = make_input(shape, dtype, seed=3), make_input(shape, dtype, seed=4)
    bias = make_input(shape[-1:], dtype, seed=5) if has_bias else None
    saved = saved_arguments(kind, x, bias, None, kernel_offset, runs)
    grad_in, grad_bias = launch.backward(kind, grad, saved, P, bias_grad)
    assert same_bits(grad_in, expected_backward(kind, grad, keep, x, bias))
    if bias_grad:
        assert_column_sum_close(grad_bias, grad_in.reshape(-1, shape[-1]))
    else:
        assert grad_bias.numel() == 0


def test_relu_output_backward_keeps_where_y_is_positive():
    # relu_output takes no runs: keep is y > 0, whatever the forward's geometry was.
    shape, kernel_offset, runs, keep = geometry_call("droppath", 0)
    x = make_input(shape)
    y = launch.forward(OPS_BY_NAME["bias_relu_dropout"], x, None, None, SEED, kernel_offset, P, runs)
    grad = make_input(shape, seed=3)
    grad_in, _ = launch.backward("relu_output", grad, (y,), P, False)
    assert same_bits(grad_in, reference.masked_grad(grad, y > 0, P))


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_p_zero_and_one(p):
    shape, kernel_offset, runs, _ = geometry_call("shard-broadcast", 3)
    x, residual, bias = op_inputs(OPS_BY_NAME["dropout_add"], shape)
    keep = torch.full(shape, p == 0.0)
    seed = None if p == 0.0 else SEED
    out = launch.forward(OPS_BY_NAME["dropout_add"], x, residual, bias, seed, kernel_offset, p, runs)
    assert same_bits(out, reference.forward_with_keep(OPS_BY_NAME["dropout_add"], x, residual, bias, keep, p))
    grad = make_input(shape, seed=3)
    grad_in, _ = launch.backward("gelu_input", grad, (x, bias, seed, kernel_offset, runs), p, False)
    assert same_bits(grad_in, reference.masked_grad_through(grad, keep, p, "gelu", x, bias))


def test_saved_arguments_without_runs_are_the_flat_mask():
    grad = make_input((3, 10))
    flat = launch.backward("mask", grad, (SEED, 5, ()), P, False)[0]
    assert torch.equal(launch.backward("mask", grad, (SEED, 5), P, False)[0], flat)
    assert torch.equal(kept(flat), runs_mask((30, 1), (3, 10), 5))


def _launched_run_counts(monkeypatch):
    counts = []
    monkeypatch.setattr(launch, "_launch", lambda variant, grid, **args: counts.append(
        variant.constexprs.get("RUN_COUNT")))
    return counts


def test_runs_that_amount_to_the_flat_mask_take_the_flat_kernel(monkeypatch):
    # One run of stride 1, extent-1 runs, runs whose strides chain: the flat kernel (RUN_COUNT 0), same mask.
    x = torch.ones((2, 3, 4), device=DEVICE)
    same_as_flat = [(24, 1), (2, 12, 3, 4, 4, 1), (1, 5, 24, 1, 1, 0), (2, 12, 12, 1)]
    expected = launch.forward(OPS_BY_NAME["dropout"], x, None, None, SEED, 3, P)
    for runs in same_as_flat:
        assert torch.equal(launch.forward(OPS_BY_NAME["dropout"], x, None, None, SEED, 3, P, runs), expected)
    counts = _launched_run_counts(monkeypatch)
    for runs in same_as_flat:
        launch.forward(OPS_BY_NAME["dropout"], x, None, None, SEED, 3, P, runs)
    launch.forward(OPS_BY_NAME["dropout"], x, None, None, SEED, 3, P, (24, 0))
    launch.forward(OPS_BY_NAME["dropout"], x, None, None, SEED, 3, P, (2, 0, 1, 7, 3, 4, 4, 1))  # (2, 0), (12, 1)
    launch.backward("mask", x, (SEED, 3, (2, 12, 1, 7, 3, 5, 4, 1)), P, False)  # three runs that do not chain
    assert counts == [0, 0, 0, 0, 1, 2, 3]


BAD_RUNS = [
    ((24,), "pairs"),
    ((2, 0, 2, 0, 2, 0, 3, 0, 1, 0, 1, 0, 1, 0), "pairs"),
    ((0, 1, 24, 1), "extents >= 1"),
    ((2, -1, 12, 1), "strides >= 0"),
    ((2, 12, 11, 1), "multiply to"),
    ((24, 2**62), "2\\*\\*63"),
    ((2.0, 12, 12, 1), "ints"),
]


@pytest.mark.parametrize("runs, message", BAD_RUNS)
def test_bad_runs_are_refused(runs, message):
    x = torch.ones((2, 12), device=DEVICE)
    with pytest.raises(ValueError, match=f"mask_runs.*{message}|{message}.*mask_runs"):
        launch.forward(OPS_BY_NAME["dropout"], x, None, None, SEED, 0, P, runs)
    with pytest.raises(ValueError, match=f"mask_runs.*{message}|{message}.*mask_runs"):
        launch.backward("silu_input", x, (x, None, SEED, 0, runs), P, False)


def test_the_offset_counts_towards_the_index_limit():
    x = torch.ones((2, 12), device=DEVICE)
    launch.forward(OPS_BY_NAME["dropout"], x, None, None, SEED, 2**63 - 12, P, (2, 0, 12, 1))  # largest index 11
    with pytest.raises(ValueError, match="mask_runs"):
        launch.forward(OPS_BY_NAME["dropout"], x, None, None, SEED, 2**63 - 11, P, (2, 0, 12, 1))


def test_the_runs_do_not_specialise_the_kernels():
    # Extents and strides are typed int64 arguments, never compile-time values or divisibility hints: a new geometry
    # of the same RUN_COUNT never means a new compile.
    for kernel in (kernels.forward_kernel, kernels.backward_kernel):
        if not isinstance(kernel, triton.runtime.jit.JITFunction):  # the interpreter's wrapper: the JIT's view
            kernel = triton.runtime.jit.JITFunction(kernel.fn, **kernel.kwargs)
        params = {param.name: param for param in kernel.params}
        for r in range(6):
            for name in (f"extent_{r}", f"stride_{r}"):
                assert params[name].do_not_specialize and params[name].annotation_type == "i64", name
