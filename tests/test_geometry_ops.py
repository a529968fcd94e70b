"""The ops under a mask geometry (noise_shape, global_shape, shard_offsets) on every backend: the masks of the
spec's text (spec_impl), the values of the spec for that mask, a shard's slice of the whole tensor's result,
gradients to the second derivative, and the arguments' checks."""
import warnings

import pytest
import torch

import fused_dropout as fd
import spec_impl
from conftest import CPU_BACKENDS, OP_VARIANTS, OPS, call_op, gradcheck_mode, make_input, op_inputs
from fused_dropout import reference
from fused_dropout.geometry import mask_geometry

pytestmark = pytest.mark.filterwarnings("ignore:fused_dropout. this mask geometry:UserWarning")

SEED, P = 2**64 - 77, 0.4

# (x.shape, noise_shape, global_shape, shard_offsets): the structured masks and shards users ask for.
GEOMETRIES = [
    pytest.param((4, 3, 2, 3), (4, 1, 1, 1), None, None, id="droppath"),
    pytest.param((2, 3, 4, 2), (2, 3, 1, 1), None, None, id="channel2d"),
    pytest.param((5, 2, 6), (1, 2, 6), None, None, id="locked-time-first"),
    pytest.param((3, 7), None, (9, 7), (4, 0), id="row-shard"),
    pytest.param((4, 5), None, (4, 12), (0, 6), id="column-shard"),
    pytest.param((2, 3, 4), (6, 1, 8), (6, 5, 8), (3, 1, 2), id="box-broadcast"),
    pytest.param((3, 4), (1, 1), None, None, id="one-decision"),
]


def kept(out: torch.Tensor) -> list:
    return (out != 0).reshape(-1).tolist()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape, noise, sizes, starts", GEOMETRIES)
def test_masks_follow_the_spec(backend, shape, noise, sizes, starts):
    ones = torch.ones(shape)
    for offset in (0, 3):
        out = fd.dropout(ones, P, seed=SEED, offset=offset, backend=backend, noise_shape=noise, global_shape=sizes,
                         shard_offsets=starts)
        assert kept(out) == spec_impl.geometric_mask(shape, SEED, offset, P, noise, sizes, starts)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_values_are_the_spec_values_for_the_shared_mask(backend, op, with_bias, dtype):
    shape, noise = (4, 3, 6), (4, 1, 6)
    x, residual, bias = op_inputs(op, shape, dtype, with_bias=with_bias)
    bits = torch.int16 if dtype == torch.bfloat16 else torch.int32
    negative_nan = -64 + 1 if dtype == torch.bfloat16 else -4194304 + 1  # sign set, a payload: not canonical
    for t in (x, residual):  # specials in kept and dropped rows: NaNs, infinities, signed zeros
        if t is not None:
            t.view(bits)[:, 0, 0] = negative_nan
            t[:, 0, 1], t[:, 0, 2], t[:, 0, 3] = float("inf"), -float("inf"), -0.0
    got = call_op(op, x, residual, bias, P, seed=SEED, backend=backend, noise_shape=noise)
    keep = torch.tensor(spec_impl.geometric_mask(shape, SEED, 0, P, noise)).reshape(shape)
    expected = reference.forward_with_keep(op, x, residual, bias, keep, P)
    assert torch.equal(got.view(bits), expected.view(bits))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
@pytest.mark.parametrize("noise", [None, (6, 1), (1, 10)])
def test_a_shard_gets_its_box_of_the_whole_result(backend, op, with_bias, noise):
    whole_shape = (6, 10)
    x, residual, bias = op_inputs(op, whole_shape, with_bias=with_bias)
    whole = call_op(op, x, residual, bias, P, seed=SEED, offset=5, backend=backend, noise_shape=noise)
    for rows, cols in [((0, 6), (0, 10)), ((2, 5), (0, 10)), ((0, 4), (3, 10)), ((1, 3), (7, 9))]:
        box = (slice(*rows), slice(*cols))
        shard = call_op(op, x[box], None if residual is None else residual[box],
                        None if bias is None else bias[box[1]], P, seed=SEED, offset=5, backend=backend,
                        noise_shape=noise, global_shape=whole_shape, shard_offsets=(rows[0], cols[0]))
        assert torch.equal(shard, whole[box]), (rows, cols)


def test_a_shard_of_whole_rows_is_a_plain_offset_on_the_kernels():
    """The row shard's geometry is contiguous: it runs the fused kernel with a larger offset (no warning)."""
    x = make_input((3, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shard = fd.dropout(x, P, seed=SEED, global_shape=(9, 7), shard_offsets=(4, 0))
    assert torch.equal(shard, fd.dropout(x, P, seed=SEED, offset=4 * 7))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("shape, noise, sizes, starts", GEOMETRIES)
def test_the_kernels_take_the_geometry_in_one_pass(backend, shape, noise, sizes, starts):
    """No composite: one op call, given the geometry as its mask runs (its base added to the offset)."""
    x = make_input(shape)
    geometry = mask_geometry(shape, noise, sizes, starts, offset=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fd.dropout(x, P, seed=SEED, offset=3, backend=backend, noise_shape=noise, global_shape=sizes,
                         shard_offsets=starts)
    ops = fd.ops.FAMILIES["torch" if backend == "torch" else "native"]
    seed = torch.tensor([SEED - 2**64], dtype=torch.int64)
    expected = ops.dropout_fwd(*fd.op_table.OPS_BY_NAME["dropout"].pack(x, None, None, seed, 3 + geometry.base, P,
                                                                        geometry.kernel_runs))
    assert torch.equal(out, expected)


def test_the_composite_says_so_at_the_callers_line():
    # Seven runs, one more than the kernels take (a mask shared along every other dim of a rank-7 tensor).
    shape, noise = (2,) * 7, (2, 1, 2, 1, 2, 1, 2)
    assert len(mask_geometry(shape, noise).runs) == 7
    for call in (lambda: fd.dropout_add(make_input(shape), make_input(shape), P, seed=1, noise_shape=noise),
                 lambda: fd.drop_path(make_input((2, 3)), P, True, scale_by_keep=False, seed=1)):
        with pytest.warns(UserWarning, match="composite of torch ops") as record:
            call()
        assert record[0].filename == __file__


# Every backend runs these geometries in its kernels (mask runs). The interpreted Triton kernel, at a launch per
# call of the function gradgradcheck differentiates (in fast mode: conftest.gradcheck_mode), runs one op here.
GRADIENT_CASES = [pytest.param(backend, op, with_bias, id=f"{backend}-{op.name}-{'bias' if with_bias else 'nobias'}")
                  for backend in CPU_BACKENDS for op in OPS for with_bias in ([True, False] if op.bias else [False])
                  if backend != "triton" or (op.name == "dropout_add" and with_bias)]


@pytest.mark.parametrize("backend, op, with_bias", GRADIENT_CASES)
@pytest.mark.parametrize("geometry", [dict(noise_shape=(3, 1, 4)),
                                      dict(global_shape=(3, 2, 9), shard_offsets=(0, 0, 5)),
                                      dict(noise_shape=(1, 2, 9), global_shape=(3, 2, 9), shard_offsets=(0, 0, 2))])
def test_gradients_to_the_second_derivative(backend, op, with_bias, geometry):
    x, residual, bias = op_inputs(op, (3, 2, 4), torch.float64, requires_grad=True, with_bias=with_bias)
    inputs = tuple(t for t in (x, residual, bias) if t is not None)

    def fn(*tensors):
        args = dict(zip([name for name, t in zip(("x", "residual", "bias"), (x, residual, bias)) if t is not None],
                        tensors))
        return call_op(op, args["x"], args.get("residual"), args.get("bias"), 0.3, seed=5, backend=backend,
                       **geometry)

    assert torch.autograd.gradcheck(fn, inputs, **gradcheck_mode(backend))
    assert torch.autograd.gradgradcheck(fn, inputs, **gradcheck_mode(backend))


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_eval_and_p_zero_check_the_geometry_and_drop_nothing(op):
    x, residual, bias = op_inputs(op, (4, 5))
    plain = call_op(op, x, residual, bias, 0.0)
    for training, p in ((False, P), (True, 0.0)):
        assert torch.equal(call_op(op, x, residual, bias, p, training=training, noise_shape=(4, 1)), plain)
        with pytest.raises(ValueError, match="noise_shape"):
            call_op(op, x, residual, bias, p, training=training, noise_shape=(2, 1))


def test_inplace_dropout_under_a_geometry():
    x = make_input((4, 6))
    expected = fd.dropout(x, P, seed=SEED, noise_shape=(4, 1))
    out = fd.dropout(x, P, inplace=True, seed=SEED, noise_shape=(4, 1))
    assert out is x and torch.equal(x, expected)


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_bad_geometry_names_the_argument_and_touches_nothing(op):
    x, residual, bias = op_inputs(op, (4, 5))
    before = [t.clone() for t in (x, residual, bias) if t is not None]
    for kwargs, error, words in [(dict(noise_shape=(4, 2)), ValueError, "noise_shape"),
                                 (dict(global_shape=(4,)), ValueError, "global_shape"),
                                 (dict(global_shape=(8, 5), shard_offsets=(5, 0)), ValueError, "shard_offsets"),
                                 (dict(shard_offsets="00"), TypeError, "shard_offsets"),
                                 (dict(noise_shape=(4, 1), offset=2**63 - 3), ValueError, "offset")]:
        with pytest.raises(error, match=words):
            call_op(op, x, residual, bias, P, seed=1, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, [t for t in (x, residual, bias) if t is not None]))


def test_the_mask_box_is_what_the_geometry_shares():
    assert mask_geometry((8, 3, 5, 5), (8, 1, 1, 1)).mask_box == (8, 1, 1, 1)
    assert mask_geometry((4, 5), None, (4, 12), (0, 6)).mask_box == (4, 5)


@pytest.mark.parametrize("call", [
    pytest.param(lambda t: fd.dropout2d(t, P, seed=SEED), id="dropout2d"),
    pytest.param(lambda t: fd.drop_path(t, P, True, False, seed=SEED), id="drop_path-unscaled"),
    pytest.param(lambda t: fd.dropout_add(t, t, P, seed=SEED, noise_shape=(4, 1, 2, 1)), id="dropout_add-self"),
    pytest.param(lambda t: fd.dropout(t, P, seed=SEED, global_shape=(4, 3, 2, 4), shard_offsets=(0, 0, 0, 1)),
                 id="column-shard"),
])
def test_torch_compile_fullgraph_matches_eager(call):
    torch._dynamo.reset()
    x = make_input((4, 3, 2, 2), requires_grad=True)
    expected = call(x)
    (grad_expected,) = torch.autograd.grad(expected.sum(), x)
    got = torch.compile(call, fullgraph=True, backend="aot_eager")(x)
    (grad_got,) = torch.autograd.grad(got.sum(), x)
    assert torch.equal(got, expected) and torch.equal(grad_got, grad_expected)
