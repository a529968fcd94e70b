"""The kernels' own mask geometry (the ops' `mask_runs` argument, csrc/mask_runs.h): every CPU variant and thread
count gives the spec's bits under broadcast masks and shards, including runs that cross the kernels' tiles and
parallel chunks, strides other than 0 and 1, and group counters that carry into their high word; and a bad
`mask_runs` is refused by every family, naming it, before anything is written."""
import pytest
import torch

import fused_dropout as fd
import spec_impl
from conftest import CPU_ISAS, DEFAULT_CPU_ISA, OP_VARIANTS, assert_column_sum_close, call_op, make_input, op_inputs
from fused_dropout import backends
from fused_dropout.geometry import mask_geometry
from fused_dropout.op_table import OPS_BY_NAME

SEED, P = 987654321, 0.35

# (shape, noise_shape, global_shape, shard_offsets, offset). Each crosses the CPU kernels' 1024-element tiles; the
# first two their 32768-element parallel chunks too.
GEOMETRIES = [
    pytest.param((3, 5, 37, 61), (3, 5, 1, 1), None, None, 1, id="channel-runs-cross-tiles"),
    pytest.param((40, 3, 300), (1, 3, 300), None, None, 2, id="locked-inner-run-of-900"),
    pytest.param((3, 2100), None, (3, 3001), (0, 701), 3, id="column-shard-misaligned"),
    pytest.param((700, 1), None, (700, 8), (0, 5), 0, id="one-column-stride-8"),
    pytest.param((4, 3, 250), (4, 1, 250), (4, 9, 250), (0, 2, 0), 4 * 2**32 - 700, id="shard-broadcast-carry"),
    pytest.param((400, 3), (1000, 1), (1000, 3), (500, 0), 6, id="row-decisions-made-per-run"),
]
# The CPU kernels make the words of the span of mask indices once when it is small against numel (every geometry
# above but the column shards and the last, which make them run by run): both ways are covered.


def expected_mask(shape, noise, sizes, starts, offset):
    return torch.tensor(spec_impl.geometric_mask(shape, SEED, offset, P, noise, sizes, starts)).reshape(shape)


def run(op, with_bias, shape, geometry_args, offset, backend):
    x, residual, bias = op_inputs(op, shape, torch.float32, seed=3, with_bias=with_bias)
    leaves = [t.requires_grad_() for t in (x, residual, bias) if t is not None]
    noise, sizes, starts = geometry_args
    out = call_op(op, x, residual, bias, P, seed=SEED, offset=offset, backend=backend, noise_shape=noise,
                  global_shape=sizes, shard_offsets=starts)
    grad = make_input(shape, seed=9)
    return [out, *torch.autograd.grad(out, leaves, grad)]


@pytest.fixture
def restore_cpu_state():
    threads = torch.get_num_threads()
    yield
    backends._C.set_cpu_isa(DEFAULT_CPU_ISA)
    torch.set_num_threads(threads)


@pytest.mark.skipif(not backends.NATIVE_CPU, reason="needs the native CPU kernels")
@pytest.mark.parametrize("shape, noise, sizes, starts, offset", GEOMETRIES)
def test_every_cpu_variant_and_thread_count_gives_the_spec_mask(shape, noise, sizes, starts, offset,
                                                                restore_cpu_state):
    expected = expected_mask(shape, noise, sizes, starts, offset)
    ones = torch.ones(shape)
    for variant in CPU_ISAS:
        for threads in (1, 2):
            backends._C.set_cpu_isa(variant)
            torch.set_num_threads(threads)
            out = fd.dropout(ones, P, seed=SEED, offset=offset, backend="cpu", noise_shape=noise,
                             global_shape=sizes, shard_offsets=starts)
            assert torch.equal(out != 0, expected), (variant, threads)


@pytest.mark.skipif(not backends.NATIVE_CPU, reason="needs the native CPU kernels")
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
@pytest.mark.parametrize("shape, noise, sizes, starts, offset", GEOMETRIES[2:])
def test_cpu_values_and_gradients_equal_the_reference(op, with_bias, shape, noise, sizes, starts, offset,
                                                      restore_cpu_state):
    expected = run(op, with_bias, shape, (noise, sizes, starts), offset, "torch")
    for variant in CPU_ISAS:
        backends._C.set_cpu_isa(variant)
        got = run(op, with_bias, shape, (noise, sizes, starts), offset, "cpu")
        per_element = got[:-1] if with_bias else got
        assert all(torch.equal(g, e) for g, e in zip(per_element, expected)), variant
        if with_bias:  # the column sums of grad_x, in the kernel's own order
            assert_column_sum_close(got[-1], got[1].reshape(-1, shape[-1]))


def _families():
    names = ["torch"] + (["native"] if backends.NATIVE_CPU else [])
    return [pytest.param(fd.ops.FAMILIES[name], id=name) for name in names]


BAD_RUNS = [
    ((4, 1, 5), "pairs"),                 # an odd count
    ((2, 1) * 7, "pairs"),                # seven runs, one more than the kernels take
    ((4, 0, 6, 1), "multiply"),           # extents that do not make the 20 elements
    ((4, 5, 0, 1), "extents >= 1"),
    ((4, -1, 5, 1), "strides >= 0"),
    ((4, 2**62, 5, 1), "2\\*\\*63"),      # mask indices past 2^63
]


@pytest.mark.parametrize("family", _families())
@pytest.mark.parametrize("runs, words", BAD_RUNS)
def test_bad_mask_runs_are_refused_naming_them(family, runs, words):
    x = make_input((4, 5))
    before = x.clone()
    seed = torch.tensor([SEED], dtype=torch.int64)
    with pytest.raises(RuntimeError, match=f"mask_runs.*{words}|{words}.*mask_runs"):
        family.dropout_fwd(x, seed, 0, P, list(runs))
    with pytest.raises(RuntimeError, match=f"mask_runs.*{words}|{words}.*mask_runs"):
        family.mask_bwd(x, seed, 0, list(runs), P, False)
    assert torch.equal(x, before)


@pytest.mark.parametrize("family", _families())
def test_the_backward_ops_take_the_forwards_runs(family):
    """grad_in's zeros are exactly the forward's dropped elements, under the same runs (a shared decision per row
    of 6: whole rows kept or dropped)."""
    op = OPS_BY_NAME["dropout"]
    x, grad = make_input((5, 6)), make_input((5, 6), seed=2)
    seed = torch.tensor([SEED], dtype=torch.int64)
    runs = mask_geometry((5, 6), (5, 1)).kernel_runs
    out = family.dropout_fwd(*op.pack(x, None, None, seed, 7, P, runs))
    grad_in, _ = family.mask_bwd(grad, seed, 7, runs, P, False)
    assert torch.equal(out == 0, grad_in == 0)
    kept_rows = (out != 0).all(1)
    assert torch.equal(kept_rows | (out == 0).all(1), torch.ones(5, dtype=torch.bool))  # whole rows
    assert 0 < kept_rows.sum() < 5
