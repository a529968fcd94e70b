"""The Triton backend: its Philox is tl.randint4x bit for bit, every tiling gives the spec's mask and values,
the bias gradient reduces deterministically, bfloat16 rounds to nearest even. On the CPU these run through
Triton's interpreter (TRITON_INTERPRET=1, set by scripts/run_tests.sh); with a GPU they run on it."""
from types import SimpleNamespace

import pytest
import torch

import fused_dropout as fd
from conftest import DTYPES, assert_column_sum_close, make_input
from fused_dropout import backends, spec
from fused_dropout.activations import ACTIVATIONS
from fused_dropout.op_table import BACKWARDS, OPS
from spec_impl import mask as spec_mask

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    not backends.TRITON_INSTALLED or (DEVICE == "cpu" and not backends.triton_interpreting()),
    reason="triton needs a GPU or TRITON_INTERPRET=1",
)

if backends.TRITON_INSTALLED:
    import triton
    import triton.language as tl

    from fused_dropout.triton_backend import kernels, launch

    @triton.jit
    def _randint4x_kernel(out_ptr, seed, first_group, BLOCK: tl.constexpr):
        group = first_group + tl.arange(0, BLOCK).to(tl.int64)
        r0, r1, r2, r3 = tl.randint4x(seed, group)
        lane = tl.arange(0, BLOCK) * 4
        tl.store(out_ptr + lane, r0.to(tl.int64, bitcast=False))
        tl.store(out_ptr + lane + 1, r1.to(tl.int64))
        tl.store(out_ptr + lane + 2, r2.to(tl.int64))
        tl.store(out_ptr + lane + 3, r3.to(tl.int64))

    @triton.jit
    def _philox_kernel(out_ptr, seed, first_group, BLOCK: tl.constexpr):
        group = (first_group + tl.arange(0, BLOCK).to(tl.int64)).to(tl.uint64)
        r0, r1, r2, r3 = kernels._philox(seed, group)
        lane = tl.arange(0, BLOCK) * 4
        tl.store(out_ptr + lane, r0.to(tl.int64))
        tl.store(out_ptr + lane + 1, r1.to(tl.int64))
        tl.store(out_ptr + lane + 2, r2.to(tl.int64))
        tl.store(out_ptr + lane + 3, r3.to(tl.int64))

    @triton.jit
    def _round_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr, INTERPRETER: tl.constexpr):
        i = tl.arange(0, BLOCK)
        tl.store(out_ptr + i, kernels._round_to(tl.load(x_ptr + i), tl.bfloat16, INTERPRETER))


@pytest.mark.parametrize("seed", [0, 7, 2**32 + 3, 2**63 - 5])
@pytest.mark.parametrize("first_group", [0, 2**32 - 2, 2**45 + 9])
def test_reference_philox_is_triton_randint4x(seed, first_group):
    out = torch.empty(64, dtype=torch.int64, device=DEVICE)
    _randint4x_kernel[(1,)](out, seed, first_group, BLOCK=16)
    group = first_group + torch.arange(16, dtype=torch.int64)
    zero = torch.zeros_like(group)
    seed_t = torch.tensor(seed, dtype=torch.int64)
    words = spec.philox4x32_10(group & 0xFFFFFFFF, group >> 32, zero, zero, seed_t & 0xFFFFFFFF, seed_t >> 32)
    assert out.cpu().reshape(16, 4).tolist() == torch.stack(words, 1).tolist()


@pytest.mark.parametrize("seed", [0, 7, 2**32 + 3, 2**63 - 5, -1])
@pytest.mark.parametrize("first_group", [0, 2**32 - 2, 2**45 + 9])
def test_kernel_philox_is_triton_randint4x(seed, first_group):
    # The kernels' Philox (one wide multiply per product) gives tl.randint4x's words, hence the spec's.
    ours, theirs = (torch.empty(64, dtype=torch.int64, device=DEVICE) for _ in range(2))
    _philox_kernel[(1,)](ours, seed, first_group, BLOCK=16)
    _randint4x_kernel[(1,)](theirs, seed, first_group, BLOCK=16)
    assert torch.equal(ours, theirs)


# Bias lengths around the tile edges: 1 and 3 (several rows per tile, rows straddling Philox groups),
# 4 and 64 (aligned), 4099 (a row split over column tiles, with a tail), 3072 (three full column blocks of 1024),
# and many rows (several row blocks).
SHAPES = [(50, 1), (37, 3), (9, 4), (70, 64), (3, 4099), (5, 3072), (2100, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 2**32 + 1])
def test_every_tiling_follows_the_spec(shape, offset):
    x = make_input(shape, device=DEVICE).abs() + 1
    bias = make_input(shape[-1:], seed=1, device=DEVICE).abs()
    keep = fd.dropout_mask(shape, 0.45, 2**40 + 1, offset=offset, device=DEVICE)
    out = fd.bias_relu_dropout(x, bias, 0.45, seed=2**40 + 1, offset=offset, backend="triton")
    assert torch.equal(out != 0, keep)
    ref = fd.bias_relu_dropout(x, bias, 0.45, seed=2**40 + 1, offset=offset, backend="torch")
    assert torch.equal(out, ref)


# offset + i passes 2^63 for the last elements: an int64 index wraps negative there and picks another Philox group.
# Cases: several rows per tile (unaligned and aligned rows), and a second tile starting past 2^63 (flat and
# column tiles hold 2048 float32 elements).
PAST_THE_INT64_LIMIT = [((41,), 2**63 - 6), ((12, 3), 2**63 - 6), ((5, 8), 2**63 - 6), ((2100,), 2**63 - 1000)]


@pytest.mark.parametrize("shape, offset", PAST_THE_INT64_LIMIT)
def test_indices_past_2_to_the_63_follow_the_spec(shape, offset):
    x = make_input(shape, device=DEVICE).abs() + 1  # positive, so relu keeps every kept element non-zero
    bias = make_input(shape[-1:], seed=1, device=DEVICE).abs().requires_grad_(True)
    expected = spec_mask(x.numel(), 9, offset, 0.5)
    without_bias = fd.dropout(x, 0.5, seed=9, offset=offset, backend="triton")
    assert (without_bias != 0).flatten().tolist() == expected
    with_bias = fd.bias_relu_dropout(x, bias, 0.5, seed=9, offset=offset, backend="triton")
    assert (with_bias != 0).flatten().tolist() == expected
    # The mask-kind backward recomputes the mask in its own kernel, here in the bias gradient's column tiles.
    x_leaf = x.clone().requires_grad_(True)
    out = fd.dropout_add(x_leaf, x, 0.5, bias=bias, seed=9, offset=offset, backend="triton")
    (grad_x,) = torch.autograd.grad(out, x_leaf, torch.ones_like(out))
    assert (grad_x != 0).flatten().tolist() == expected


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_gradient_over_row_blocks(shape, dtype):
    x = make_input(shape, dtype, device=DEVICE, requires_grad=True)
    bias = make_input(shape[-1:], dtype, seed=1, device=DEVICE, requires_grad=True)
    grad = make_input(shape, dtype, seed=2, device=DEVICE)
    results = {}
    for backend in ("triton", "torch"):
        y = fd.dropout_add(x, x.detach(), 0.3, bias=bias, seed=5, backend=backend)
        results[backend] = torch.autograd.grad(y, (x, bias), grad)
    assert torch.equal(results["triton"][0], results["torch"][0])
    assert_column_sum_close(results["triton"][1], results["triton"][0].reshape(-1, shape[-1]))
    # Deterministic: the same bits on every call.
    again = torch.autograd.grad(fd.dropout_add(x, x.detach(), 0.3, bias=bias, seed=5, backend="triton"), bias, grad)
    assert torch.equal(again[0], results["triton"][1])


def test_bfloat16_rounds_to_nearest_even():
    # Exact ties between two bfloat16 values go to the even one; just above a tie goes up; inf and NaN survive.
    one = 1.0
    ulp = 2.0**-7
    values = torch.tensor([one + ulp / 2, one + 3 * ulp / 2, one + ulp / 2 + 2**-20, -(one + ulp / 2),
                           float("inf"), float("-inf"), float("nan"), 3.4e38, 1e-40, 0.0, -0.0, 2.5,
                           1.00390625, 65504.0, 1e-8, -7.123], dtype=torch.float32, device=DEVICE)
    out = torch.empty(16, dtype=torch.bfloat16, device=DEVICE)
    _round_kernel[(1,)](values, out, BLOCK=16, INTERPRETER=backends.triton_interpreting())
    expected = values.to(torch.bfloat16)  # torch rounds to nearest even
    assert torch.equal(out.view(torch.int16)[:6], expected.view(torch.int16)[:6])
    assert bool(out[6].isnan())
    assert torch.equal(out.view(torch.int16)[7:], expected.view(torch.int16)[7:])


def test_tile_heuristic_is_bounded_and_power_of_two():
    seen = set()
    for row_len in [1, 3, 4, 100, 768, 1024, 4096, 8192, 50000]:
        for size in (2, 4, 8):
            br, bc, warps = launch._tile(row_len, True, size)
            assert br & (br - 1) == 0 and bc & (bc - 1) == 0 and bc >= 4 and warps == launch._NUM_WARPS
            assert br * bc <= launch._ELEMENTS_PER_PROGRAM[size] or br == 1
            seen.add((br, bc, warps))
    assert len(seen) < 40  # new sizes map to a small set of compiled variants


@pytest.mark.parametrize("row_len", [3072, 5120, 4096, 1536, 768])
def test_column_blocks_fill_rows_that_are_not_powers_of_two(row_len):
    # 3072 = 3 x 1024, 5120 = 5 x 1024: no lane of a column block is past the row's end.
    for size in (2, 4, 8):
        tile = launch._tile(row_len, True, size)
        assert row_len % tile.columns == 0, tile


def test_p_one_keeps_nothing_even_where_a_word_reaches_the_clamped_threshold():
    # p = 1 arrives as threshold 2^32 - 1 and scale 0: a word of 0xFFFFFFFF passes the 32-bit compare, so on a
    # zero scale the kernels must write 0 for kept elements too (inf * 0 would be NaN). With threshold 0 every word
    # passes: only that rule makes the output 0. Forward with and without bias, and the mask backward.
    x = torch.full((4, 8), float("inf"), device=DEVICE)
    seed = torch.tensor([3], dtype=torch.int64, device=DEVICE)
    p_one = dict(seed_ptr=seed, offset=0, threshold=0, scale_bits=0)
    for activation, bias in (("identity", None), ("relu", x[0]), ("gelu", x[0]), ("silu", None)):
        out = torch.empty_like(x)
        tile = launch._tile(8, True, 4) if bias is not None else launch._tile(32, False, 4)
        variant = launch._forward_specialization(activation, bias is not None, False, x.dtype, tile)
        pointers = dict(x_ptr=x, out_ptr=out, **({} if bias is None else dict(bias_ptr=bias)))
        shape = dict(rows=4, row_len=8) if bias is not None else dict(rows=1, row_len=32)
        launch._launch(variant, (1,), **pointers, **shape, **p_one)
        assert torch.equal(out, torch.zeros_like(x)), activation
    grad_in = torch.empty_like(x)
    variant = launch._backward_specialization("mask", False, False, x.dtype, launch._tile(32, False, 4))
    launch._launch(variant, (1,), grad_ptr=x, grad_in_ptr=grad_in, rows=1, row_len=32, **p_one)
    assert torch.equal(grad_in, torch.zeros_like(x))
    # The smooth activations' backward: an infinite saved input and bias, whose derivative is 0 or 1 (or NaN at
    # inf + -inf), must not reach a kept element either.
    for kind in ("gelu_input", "silu_input"):
        grad_in = torch.empty_like(x)
        variant = launch._backward_specialization(kind, True, False, x.dtype, launch._tile(8, True, 4))
        launch._launch(variant, (1,), grad_ptr=x, x_ptr=x, bias_ptr=-x[0], grad_in_ptr=grad_in, rows=4, row_len=8,
                       **p_one)
        assert torch.equal(grad_in, torch.zeros_like(x)), kind


def test_p_does_not_specialise_the_kernels():
    # A new p is a new threshold and scale: they are typed arguments, never compile-time values.
    for kernel in (kernels.forward_kernel, kernels.backward_kernel):
        if not isinstance(kernel, triton.runtime.jit.JITFunction):  # the interpreter's wrapper: the JIT's view
            kernel = triton.runtime.jit.JITFunction(kernel.fn, **kernel.kwargs)
        params = {param.name: param for param in kernel.params}
        assert params["threshold"].do_not_specialize and params["threshold"].annotation_type == "u32"
        assert params["scale_bits"].do_not_specialize and params["scale_bits"].annotation_type == "i64"
        # Nor does the offset: every offset shares one compile.
        assert params["offset"].do_not_specialize and params["offset"].annotation_type == "i64"


def declared_op(activation="identity", bias=False, residual=False):
    """An op declaration as the op table writes one: the attributes forward() reads."""
    return SimpleNamespace(name=f"test_{activation}_op", activation=activation, bias=bias, residual=residual)


TORCH_ACTIVATIONS = {name: activation.forward for name, activation in ACTIVATIONS.items()}  # the same math


@pytest.mark.parametrize("activation", launch.ACTIVATIONS if backends.TRITON_INSTALLED else [])
@pytest.mark.parametrize("has_bias", [False, True])
@pytest.mark.parametrize("has_residual", [False, True])
def test_forward_follows_any_declaration(activation, has_bias, has_residual):
    # Combinations no op of today declares (relu with a residual, say) follow the spec too: float32 torch ops
    # round the same intermediates as the kernel.
    shape, p = (6, 10), 0.4
    x = make_input(shape, device=DEVICE)
    bias = make_input(shape[-1:], seed=1, device=DEVICE) if has_bias else None
    residual = make_input(shape, seed=2, device=DEVICE) if has_residual else None
    seed = torch.tensor([77], dtype=torch.int64, device=DEVICE)
    op = declared_op(activation, bias=has_bias, residual=has_residual)
    out = launch.forward(op, x, residual, bias, seed, 3, p)
    v = TORCH_ACTIVATIONS[activation](x + bias if has_bias else x)
    expected = torch.where(fd.dropout_mask(shape, p, 77, offset=3, device=DEVICE), v * (1 / (1 - p)), 0.0)
    assert torch.equal(out, expected + residual if has_residual else expected)


def test_forward_refuses_calls_its_declaration_does_not_allow():
    x, seed = torch.ones(2, 4, device=DEVICE), torch.zeros(1, dtype=torch.int64, device=DEVICE)
    with pytest.raises(ValueError, match="takes no bias"):
        launch.forward(declared_op(), x, None, x[0], seed, 0, 0.5)
    with pytest.raises(ValueError, match="needs a residual"):
        launch.forward(declared_op(residual=True), x, None, None, seed, 0, 0.5)
    with pytest.raises(ValueError, match="takes no residual"):
        launch.forward(declared_op(), x, x, None, seed, 0, 0.5)
    with pytest.raises(NotImplementedError, match="'tanh'"):
        launch.forward(declared_op("tanh"), x, None, None, seed, 0, 0.5)
    with pytest.raises(ValueError, match="unknown backward kind"):
        launch.backward("tanh_input", x, (seed, 0), 0.5, False)


def _variant(spec):
    return spec.kernel.__name__, spec.dtype, tuple(sorted(spec.constexprs.items())), spec.num_warps


def test_specializations_list_every_variant_the_launcher_launches(monkeypatch):
    # tests/test_triton_compile.py compiles what specializations() lists: it must hold whatever a call launches.
    launched = []
    monkeypatch.setattr(launch, "_launch", lambda spec, grid, **args: launched.append(_variant(spec)))
    seed = torch.zeros(1, dtype=torch.int64, device=DEVICE)
    for dtype in DTYPES:
        for row_len in [1, 3, 4, 5, 100, 768, 4099, 50000]:
            x = torch.ones(2, row_len, dtype=dtype, device=DEVICE)
            for op in OPS:
                for bias in (None, x[0]) if op.bias else (None,):
                    launch.forward(op, x, x if op.residual else None, bias, seed, 0, 0.5)
            for kind, backward in BACKWARDS.items():
                named = {"seed": seed, "offset": 0, "mask_runs": (), "y": x, "x": x}
                for bias in (None, x[0]) if backward.saves_input else (None,):
                    saved = tuple(bias if name == "bias" else named[name] for name in backward.saved)
                    for bias_grad in (False, True):
                        launch.backward(kind, x, saved, 0.5, bias_grad)
    listed = {_variant(spec) for spec in launch.specializations()}
    assert set(launched) <= listed, set(launched) - listed
    assert len(set(launched)) > 100


@pytest.mark.skipif(DEVICE == "cuda", reason="checks the CPU refusal")
@pytest.mark.parametrize("entry_point", ["forward", "backward"])
def test_cpu_tensors_need_the_interpreter(monkeypatch, entry_point):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, seed = torch.ones(4), torch.zeros(1, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        if entry_point == "forward":
            launch.forward(declared_op(), x, None, None, seed, 0, 0.5)
        else:
            launch.backward("mask", x, (seed, 0), 0.5, False)


def test_p_zero_and_one_and_empty():
    x = make_input((5, 7), device=DEVICE)
    assert torch.equal(fd.bias_relu_dropout(x, None, 1.0, seed=1, backend="triton"), torch.zeros_like(x))
    assert torch.equal(fd.bias_relu_dropout(x, None, 0.0, backend="triton"), torch.relu(x))
    empty = torch.empty(0, 7, device=DEVICE)
    assert fd.dropout_add(empty, empty, 0.5, bias=torch.ones(7, device=DEVICE), backend="triton").shape == (0, 7)


def test_triton_is_offered_for_cpu_tensors_only_under_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="'triton' is not available for cpu tensors"):
        fd.dropout(torch.ones(4), 0.5, seed=1, backend="triton")
    if DEVICE == "cpu":  # a CPU-only machine: no device left for triton
        assert "triton" not in fd.available_backends()
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert "triton" in fd.available_backends()
