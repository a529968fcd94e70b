"""Proof of the CUDA kernels without a GPU: tests/cuda_emulator runs their per-thread bodies (the code the
__global__ kernels call) over every block and thread on the CPU, through the launcher's own host logic
(csrc/cuda/launch_plan.h: op and dtype dispatch, vector or scalar path, grid geometry, bias-gradient tiling).
Outputs must match the pure-PyTorch reference family bit for bit, and every output element must be written (the
emulator poisons its outputs with NaN). The ops come from the emulator's copy of csrc/op_list.h, the launch
geometry from the launcher's own functions: nothing here re-types them."""
import functools
import itertools
import math
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest
import torch

import fused_dropout as fd  # noqa: F401 - defines the torch_ reference ops the expectations come from
import spec_impl
from conftest import assert_column_sum_close, make_input
from fused_dropout import reference, spec
from fused_dropout.geometry import mask_geometry
from fused_dropout.op_table import BACKWARDS, OPS_BY_NAME
from spec_impl import M32, philox4x32_10
from test_nan import CANONICAL as CANONICAL_NAN
from test_nan import bits as nan_bits
from test_nan import scatter_nans

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_INCLUDE = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "include")
COMPILER = shutil.which(os.environ.get("CXX", "g++"))

pytestmark = pytest.mark.skipif(
    COMPILER is None or not os.path.exists(os.path.join(CUDA_INCLUDE, "cuda_bf16.h")),
    reason="needs a host C++ compiler and the CUDA headers",
)

H100_SMS = 132  # the launcher sizes its grids from the device's multiprocessor count; emulate an H100
INT_VIEW = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
            torch.float64: torch.int64}
DTYPE_NAME = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32",
              torch.float64: "float64"}


@dataclass(frozen=True)
class ForwardOp:
    name: str
    optional_bias: bool
    residual: bool
    backward: str


@dataclass(frozen=True)
class BackwardOp:
    name: str
    saved: str  # "rng_state", "y" or "input"


def saved_cases(op, seed_tensor, offset, y, x, bias):
    """[(the reference's saved arguments, the emulator's has_bias)] of backward op `op`: the RNG state (the flat
    mask: no runs), y, or the input x with and without its bias (the emulator reads the files "y", "x" and "bias")."""
    if op.saved == "input":
        return [((x, None, seed_tensor, offset, ()), 0), ((x, bias, seed_tensor, offset, ()), 1)]
    return [({"rng_state": (seed_tensor, offset, ()), "y": (y,)}[op.saved], 0)]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    binary = str(tmp_path_factory.mktemp("emulator") / "emulator")
    subprocess.run([COMPILER, "-O2", "-std=c++17", "-ffp-contract=off", f"-I{ROOT}/csrc", f"-I{CUDA_INCLUDE}",
                    os.path.join(ROOT, "tests", "cuda_emulator", "emulator.cpp"), "-o", binary], check=True)
    return binary


@pytest.fixture(scope="module")
def op_list(emulator):
    """(forward ops, backward ops) of csrc/op_list.h, as the emulator was compiled with them."""
    lines = subprocess.run([emulator, "--list"], capture_output=True, text=True, check=True).stdout.splitlines()
    forward, backward = [], []
    for line in lines:
        kind, name, *pairs = line.split()
        fields = dict(zip(pairs[::2], pairs[1::2]))
        if kind == "forward":
            forward.append(ForwardOp(name, fields["optional_bias"] == "1", fields["residual"] == "1",
                                     fields["backward"]))
        else:
            backward.append(BackwardOp(name, fields["saved"]))
    assert forward and backward, lines
    return forward, backward


def reference_op(name):
    """The pure-PyTorch reference of a native op: written independently of the C++ code."""
    return getattr(torch.ops.fused_dropout, "torch_" + name).default


def write(directory, name, tensor):
    with open(os.path.join(directory, name + ".bin"), "wb") as handle:
        handle.write(tensor.contiguous().view(INT_VIEW[tensor.dtype]).numpy().tobytes())


def read(directory, name, dtype, shape):
    with open(os.path.join(directory, name + ".bin"), "rb") as handle:
        data = bytearray(handle.read())
    return torch.frombuffer(data, dtype=INT_VIEW[dtype]).view(dtype).reshape(shape).clone()


def run(emulator, directory, check=True, **spec):
    """Runs one launch; returns the emulator's report ({"vector_path": 0 or 1, ...})."""
    with open(os.path.join(directory, "spec.txt"), "w") as handle:
        for key, value in spec.items():
            handle.write(f"{key} {value}\n")
    result = subprocess.run([emulator, str(directory)], capture_output=True, text=True)
    if not check:
        return result
    assert result.returncode == 0, result.stderr
    report = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    return {"vector_path": int(report["vector_path"]), "mask_runs": int(report["mask_runs"]), "grid": report["grid"]}


SHAPES = [(1,), (7,), (3, 8), (5, 9), (33, 129), (64, 1024), (3, 4099), (700, 24)]
DTYPES = list(DTYPE_NAME)
# The launcher's geometry on an H100, and tiny blocks and grids that make every thread loop (grid stride).
GEOMETRIES = {"launcher": {"geometry": "launcher", "sms": H100_SMS}, "grid_stride": {"geometry": "grid_stride"}}


def forward_cases(forward_ops):
    """Every forward op, with and without bias when it takes one."""
    return [(op, has_bias) for op in forward_ops for has_bias in ((False, True) if op.optional_bias else (False,))]


def test_cases_cover_every_op_with_and_without_bias(op_list):
    forward_ops, backward_ops = op_list
    cases = forward_cases(forward_ops)
    assert {op.name for op, _ in cases} == {op.name for op in forward_ops}
    assert {(op.name, True) for op in forward_ops if op.optional_bias} <= {(op.name, b) for op, b in cases}
    assert {op.backward for op in forward_ops} <= {op.name for op in backward_ops}


@pytest.mark.parametrize("geometry_kind", list(GEOMETRIES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_bodies_follow_the_spec(emulator, op_list, tmp_path, shape, dtype, geometry_kind):
    index = SHAPES.index(shape) + DTYPES.index(dtype)
    offset = [0, 1, 2, 3, 2**32 + 1][index % 5]
    misalign = index % 2  # odd cases start one element past a 16-byte boundary: the scalar path
    seed, p = 2**63 + 12345 + index, 0.35
    x, residual = make_input(shape, dtype, seed=index), make_input(shape, dtype, seed=index + 100)
    bias = make_input(shape[-1:], dtype, seed=index + 200)
    seed_tensor = torch.tensor([seed - 2**64], dtype=torch.int64)  # the seed's bits as an int64
    numel, row_len = x.numel(), shape[-1]
    for name, tensor in (("x", x), ("residual", residual), ("bias", bias)):
        write(tmp_path, name, tensor)
    for op, has_bias in forward_cases(op_list[0]):
        args = [x] + ([residual] if op.residual else []) + ([bias if has_bias else None] if op.optional_bias else [])
        expected = reference_op(op.name + "_fwd")(*args, seed_tensor, offset, p)
        report = run(emulator, tmp_path, kind="forward", op=op.name, dtype=DTYPE_NAME[dtype], numel=numel,
                     row_len=row_len, has_bias=int(has_bias), has_residual=int(op.residual), seed=seed,
                     offset=offset, threshold=spec.keep_threshold(p), scale=repr(1 / (1 - p)),
                     misalign=misalign, **GEOMETRIES[geometry_kind])
        assert report["vector_path"] == (1 if misalign == 0 else 0)
        out = read(tmp_path, "out", dtype, shape)
        assert torch.equal(out, expected), (op, has_bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_bodies_follow_the_spec(emulator, op_list, tmp_path, shape, dtype):
    index = SHAPES.index(shape) * 3 + DTYPES.index(dtype)
    offset = [0, 3, 2**33 + 2][index % 3]
    misalign = index % 2
    seed, p = 77 + index, 0.4
    grad = make_input(shape, dtype, seed=index)
    seed_tensor = torch.tensor([seed], dtype=torch.int64)
    # A saved output y: zeros where dropped, negative and positive values elsewhere (relu cut nothing here).
    y = reference_op("dropout_fwd")(make_input(shape, dtype, seed=index + 1), seed_tensor, offset, p)
    # A saved input and bias (the smooth activations' backward), spread over their curved range.
    x, bias = make_input(shape, dtype, seed=index + 2) * 3, make_input(shape[-1:], dtype, seed=index + 3)
    for name, tensor in (("grad", grad), ("y", y), ("x", x), ("bias", bias)):
        write(tmp_path, name, tensor)
    numel, row_len = grad.numel(), shape[-1]
    for op, bias_grad in ((op, bias_grad) for op in op_list[1] for bias_grad in (False, True)):
        for saved, has_bias in saved_cases(op, seed_tensor, offset, y, x, bias):
            expected_grad, _ = reference_op(op.name)(grad, *saved, p, bias_grad)
            for geometry in GEOMETRIES.values():
                report = run(emulator, tmp_path, kind="backward", op=op.name, saved=op.saved,
                             dtype=DTYPE_NAME[dtype], numel=numel, row_len=row_len, bias_grad=int(bias_grad),
                             has_bias=has_bias, seed=seed, offset=offset, threshold=spec.keep_threshold(p),
                             scale=repr(1 / (1 - p)), misalign=misalign, **geometry)
                vector_width = 16 // grad.element_size()
                by_rows = bias_grad or has_bias  # rows must start on a vector boundary
                expect_vector = misalign == 0 and (not by_rows or row_len % vector_width == 0)
                assert report["vector_path"] == int(expect_vector)
                grad_in = read(tmp_path, "grad_in", dtype, shape)
                assert torch.equal(grad_in, expected_grad), (op, bias_grad, geometry)
                if bias_grad:
                    grad_bias = read(tmp_path, "grad_bias", dtype, (row_len,))
                    assert_column_sum_close(grad_bias, grad_in.reshape(-1, row_len))


# Offsets that are multiples of 4 take the fast path: whole Philox groups per chunk
# under the hoisted key schedule, vector bias loads where rows hold whole chunks (row lengths 40 and 3072), the
# general path for rows that split chunks (12) and for the tail chunk (7 x 13).
FAST_PATH_SHAPES = [(6, 40), (5, 12), (7, 13), (3, 3072)]
FAST_PATH_OFFSETS = [8, 2**34 + 4]  # the second one's Philox group index has a nonzero high word


@pytest.mark.parametrize("offset", FAST_PATH_OFFSETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FAST_PATH_SHAPES)
def test_fast_path_at_aligned_offsets_follows_the_spec(emulator, op_list, tmp_path, shape, dtype, offset):
    index = FAST_PATH_SHAPES.index(shape) + DTYPES.index(dtype)
    seed, p = 2**40 + 7 * index, 0.3
    x, residual = make_input(shape, dtype, seed=index), make_input(shape, dtype, seed=index + 50)
    bias = make_input(shape[-1:], dtype, seed=index + 60)
    seed_tensor = torch.tensor([seed], dtype=torch.int64)
    numel, row_len = x.numel(), shape[-1]
    for name, tensor in (("x", x), ("residual", residual), ("bias", bias), ("grad", x), ("y", residual)):
        write(tmp_path, name, tensor)
    common = dict(dtype=DTYPE_NAME[dtype], numel=numel, row_len=row_len, seed=seed, offset=offset,
                  threshold=spec.keep_threshold(p), scale=repr(1 / (1 - p)), misalign=0)
    for geometry in GEOMETRIES.values():
        for op, has_bias in forward_cases(op_list[0]):
            args = [x] + ([residual] if op.residual else []) + ([bias if has_bias else None]
                                                               if op.optional_bias else [])
            expected = reference_op(op.name + "_fwd")(*args, seed_tensor, offset, p)
            report = run(emulator, tmp_path, kind="forward", op=op.name, has_bias=int(has_bias),
                         has_residual=int(op.residual), **common, **geometry)
            assert report["vector_path"] == 1
            assert torch.equal(read(tmp_path, "out", dtype, shape), expected), (op, has_bias, geometry)
        for op, bias_grad in ((op, bias_grad) for op in op_list[1] for bias_grad in (False, True)):
            for saved, has_bias in saved_cases(op, seed_tensor, offset, residual, x, bias):
                expected_grad, _ = reference_op(op.name)(x, *saved, p, bias_grad)
                run(emulator, tmp_path, kind="backward", op=op.name, saved=op.saved, bias_grad=int(bias_grad),
                    has_bias=has_bias, **common, **geometry)
                grad_in = read(tmp_path, "grad_in", dtype, shape)
                assert torch.equal(grad_in, expected_grad), (op, bias_grad, geometry)
                if bias_grad:
                    grad_bias = read(tmp_path, "grad_bias", dtype, (row_len,))
                    assert_column_sum_close(grad_bias, grad_in.reshape(-1, row_len))


def test_launcher_caps_the_grid_at_the_resident_blocks(emulator, tmp_path):
    """The launcher's grid-stride geometry: a small input gets one block; a large one is capped at a number of
    resident blocks proportional to the multiprocessor count (threads then loop over many chunks each)."""
    blocks = {}
    for numel, sms in ((8, H100_SMS), (10**7, H100_SMS), (10**7, H100_SMS // 2)):
        write(tmp_path, "x", make_input((numel,)))
        report = run(emulator, tmp_path, kind="forward", op="dropout", dtype="float32", numel=numel, row_len=numel,
                     has_bias=0, has_residual=0, seed=1, offset=0, threshold=0, scale="1.0", misalign=0,
                     geometry="launcher", sms=sms)
        blocks[numel, sms] = int(report["grid"].split()[0])
    assert blocks[8, H100_SMS] == 1
    assert blocks[10**7, H100_SMS] == 2 * blocks[10**7, H100_SMS // 2]


def test_keep_rule_boundary(emulator, tmp_path):
    """An element whose Philox word is w is kept at threshold w and dropped at w + 1. The word comes from
    tests/spec_impl.py, which shares no code with the kernels."""
    seed, offset, numel, element = 0x1234_5678_9ABC_DEF0, 5, 16, 6
    group, word_index = (offset + element) >> 2, (offset + element) & 3
    word = philox4x32_10((group & M32, group >> 32, 0, 0), (seed & M32, seed >> 32))[word_index]
    assert 0 < word < M32
    x = torch.full((numel,), 1.5)
    write(tmp_path, "x", x)
    for threshold, kept in ((word, True), (word + 1, False)):
        run(emulator, tmp_path, kind="forward", op="dropout", dtype="float32", numel=numel, row_len=numel,
            has_bias=0, has_residual=0, seed=seed, offset=offset, threshold=threshold, scale=repr(2.0),
            misalign=0, geometry="grid_stride")
        out = read(tmp_path, "out", torch.float32, (numel,))
        assert out[element].item() == (3.0 if kept else 0.0), (threshold, kept)


def test_emulator_detects_a_wrong_mask(emulator, tmp_path):
    """The comparison can fail: a different seed gives a different output."""
    x = make_input((64,))
    write(tmp_path, "x", x)
    run(emulator, tmp_path, kind="forward", op="dropout", dtype="float32", numel=64, row_len=64, has_bias=0,
        has_residual=0, seed=1, offset=0, threshold=spec.keep_threshold(0.5), scale=repr(2.0), misalign=0,
        geometry="grid_stride")
    other_seed = torch.tensor([2], dtype=torch.int64)
    assert not torch.equal(read(tmp_path, "out", torch.float32, (64,)),
                           reference_op("dropout_fwd")(x, other_seed, 0, 0.5))


def test_an_op_without_a_kernel_is_an_error(emulator, op_list, tmp_path):
    """No fall-through: a bias for an op that takes none, or a name outside the list, finds no kernel."""
    no_bias_op = next(op for op in op_list[0] if not op.optional_bias)
    write(tmp_path, "x", make_input((8,)))
    write(tmp_path, "bias", make_input((8,)))
    for op, has_bias in ((no_bias_op.name, 1), ("no_such_op", 0)):
        result = run(emulator, tmp_path, check=False, kind="forward", op=op, dtype="float32", numel=8, row_len=8,
                     has_bias=has_bias, has_residual=0, seed=1, offset=0, threshold=0, scale="1.0", misalign=0,
                     geometry="grid_stride")
        assert result.returncode != 0 and ("no kernel" in result.stderr or "not in csrc/op_list.h" in result.stderr)


# ---- mask geometry: the kernels of a mask with runs (csrc/mask_runs.h) ---------------------------------------
#
# The emulator takes the runs as the ops do: fused_dropout.geometry.mask_geometry's kernel_runs, its base folded into
# the offset. The keep mask comes from tests/spec_impl.py's reading of the spec's geometry rule (no package code),
# the values from the reference's element math under that mask.


@dataclass(frozen=True)
class GeometryCase:
    shape: tuple
    runs: tuple  # the kernel runs mask_geometry must make of it (what the case exercises)
    noise_shape: tuple = None
    global_shape: tuple = None
    shard_offsets: tuple = None

    def geometry(self):
        return mask_geometry(self.shape, self.noise_shape, self.global_shape, self.shard_offsets)


GEOMETRY_CASES = {
    # DropPath, one decision per sample: one Philox group per chunk, chunks never cross samples.
    "drop_path": GeometryCase((5, 3, 24), (5, 1, 72, 0), noise_shape=(5, 1, 1)),
    # DropPath whose samples end inside chunks (4099 elements), large enough that grid-stride threads loop.
    "drop_path_odd": GeometryCase((3, 4099), (3, 1, 4099, 0), noise_shape=(3, 1)),
    # Channel dropout (Dropout2d): one decision per (sample, channel) of 7 x 7 elements.
    "channel": GeometryCase((2, 6, 7, 7), (12, 1, 49, 0), noise_shape=(2, 6, 1, 1)),
    # Locked dropout over (T, B, H): the same (B, H) mask at every step.
    "locked": GeometryCase((4, 3, 20), (4, 0, 60, 1), noise_shape=(1, 3, 20)),
    # A column shard at column 13 (the base: not a multiple of 4), 19 columns wide.
    "column_shard": GeometryCase((9, 19), (9, 64, 19, 1), global_shape=(9, 64), shard_offsets=(0, 13)),
    # A 2-D shard of rows 3..35 and columns 101..229.
    "shard_2d": GeometryCase((33, 129), (33, 300, 129, 1), global_shape=(50, 300), shard_offsets=(3, 101)),
    # Broadcast and shard together: the mask (6, 1, 30) of (6, 8, 30), the local box at column 9.
    "broadcast_shard": GeometryCase((6, 8, 12), (6, 30, 8, 0, 12, 1), noise_shape=(6, 1, 30),
                                    global_shape=(6, 8, 30), shard_offsets=(0, 0, 9)),
    # A shard one column wide of the last dim: consecutive elements step their mask index by 2, and chunks cross
    # the runs of 20 elements.
    "strided": GeometryCase((3, 4, 5, 1), (3, 60, 20, 2), global_shape=(3, 6, 5, 2), shard_offsets=(0, 1, 0, 1)),
    # A row shard is contiguous: no runs (the flat kernels), only the base added to the offset.
    "row_shard": GeometryCase((4, 24), (), global_shape=(10, 24), shard_offsets=(3, 0)),
}
GEOMETRY_OFFSETS = [1, 2**32 + 3, 0, 6, 5, 2, 7, 4, 3]  # by case: offsets + bases that are and are not multiples of 4


@functools.lru_cache(maxsize=None)
def spec_keep(case_name, seed, offset, p):
    """The case's keep mask (x's shape) by tests/spec_impl.py."""
    case = GEOMETRY_CASES[case_name]
    flags = spec_impl.geometric_mask(case.shape, seed, offset, p, case.noise_shape, case.global_shape,
                                     case.shard_offsets)
    return torch.tensor(flags, dtype=torch.bool).reshape(case.shape)


def check_geometry_case(emulator, op_list, directory, case_name, dtype, p, offset, misalign, geometry_kind):
    """Every forward op (with and without bias) and every backward op (with and without the bias gradient, with and
    without a saved bias) on the case's geometry: bit-identical to the reference under the spec's mask."""
    case = GEOMETRY_CASES[case_name]
    geometry = case.geometry()
    assert geometry.kernel_runs == case.runs
    seed = 2**63 + 991 + len(case_name)
    keep = spec_keep(case_name, seed, offset, p)
    shape, index = case.shape, len(case_name)
    x, residual = make_input(shape, dtype, seed=index), make_input(shape, dtype, seed=index + 1)
    bias, grad = make_input(shape[-1:], dtype, seed=index + 2), make_input(shape, dtype, seed=index + 3)
    x = x * 3  # over the smooth activations' curved range
    # A saved output y: zeros where dropped, negative and positive values elsewhere.
    y = reference.forward_with_keep(OPS_BY_NAME["dropout"], make_input(shape, dtype, seed=index + 4), None, None,
                                    keep, p)
    for name, tensor in (("x", x), ("residual", residual), ("bias", bias), ("grad", grad), ("y", y)):
        write(directory, name, tensor)
    runs_kernel = int(bool(case.runs))
    common = dict(dtype=DTYPE_NAME[dtype], numel=x.numel(), row_len=shape[-1], seed=seed,
                  offset=offset + geometry.base, threshold=spec.keep_threshold(p),
                  scale=repr(spec.dropout_scale(p)), misalign=misalign,
                  runs=",".join(str(v) for v in case.runs) or "-", **GEOMETRIES[geometry_kind])
    for op, has_bias in forward_cases(op_list[0]):
        expected = reference.forward_with_keep(OPS_BY_NAME[op.name], x, residual if op.residual else None,
                                               bias if has_bias else None, keep, p)
        report = run(emulator, directory, kind="forward", op=op.name, has_bias=int(has_bias),
                     has_residual=int(op.residual), **common)
        assert report["mask_runs"] == runs_kernel
        assert torch.equal(read(directory, "out", dtype, shape), expected), (op, has_bias)
    for op in op_list[1]:
        kind = BACKWARDS[op.name.removesuffix("_bwd")]
        op_keep = keep if kind.keeps_from_mask else y > 0
        for bias_grad, has_bias in itertools.product((False, True), (False, True) if kind.saves_input else (False,)):
            if kind.saves_input:
                expected = reference.masked_grad_through(grad, op_keep, p, kind.activation, x,
                                                         bias if has_bias else None)
            else:
                expected = reference.masked_grad(grad, op_keep, p)
            report = run(emulator, directory, kind="backward", op=op.name, saved=op.saved, bias_grad=int(bias_grad),
                         has_bias=int(has_bias), **common)
            # relu_output_bwd's keep is y > 0: it has no runs kernel.
            assert report["mask_runs"] == (runs_kernel if kind.keeps_from_mask else 0)
            grad_in = read(directory, "grad_in", dtype, shape)
            assert torch.equal(grad_in, expected), (op, bias_grad, has_bias)
            if bias_grad:
                grad_bias = read(directory, "grad_bias", dtype, shape[-1:])
                assert_column_sum_close(grad_bias, grad_in.reshape(-1, shape[-1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_name", list(GEOMETRY_CASES))
def test_bodies_follow_the_mask_geometry(emulator, op_list, tmp_path, case_name, dtype):
    index = list(GEOMETRY_CASES).index(case_name) + DTYPES.index(dtype)
    offset = GEOMETRY_OFFSETS[list(GEOMETRY_CASES).index(case_name)]
    check_geometry_case(emulator, op_list, tmp_path, case_name, dtype, p=0.4, offset=offset, misalign=index % 2,
                        geometry_kind=list(GEOMETRIES)[index // 2 % 2])


@pytest.mark.parametrize("p", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("case_name", ["drop_path_odd", "column_shard"])
def test_mask_geometry_at_p_0_and_1(emulator, op_list, tmp_path, case_name, dtype, p):
    check_geometry_case(emulator, op_list, tmp_path, case_name, dtype, p=p, offset=3, misalign=0,
                        geometry_kind="grid_stride")


# ---- NaNs: every NaN the bodies write is the spec's canonical NaN (the CUDA conversions make 0x7FFF of any NaN) --

NAN_SHAPE = (40, 24)  # rows a multiple of the vector width: the bias-gradient tiles take the vector path too


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("misalign", [0, 1], ids=["vector", "scalar"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_bodies_write_the_canonical_nan(emulator, op_list, tmp_path, dtype, misalign):
    seed, p = 99, 0.3
    x = scatter_nans(make_input(NAN_SHAPE, dtype, seed=1), 3, 0, seed=0)
    residual = scatter_nans(make_input(NAN_SHAPE, dtype, seed=2), 7, 2, seed=2)
    bias = scatter_nans(make_input(NAN_SHAPE[-1:], dtype, seed=3), 5, 1, seed=1)
    x[:, 4], bias[4] = math.inf, -math.inf  # inf + -inf in the bias add
    x[:, 5], residual[:, 5] = math.inf, -math.inf  # inf + -inf in the residual add, where kept
    seed_tensor = torch.tensor([seed], dtype=torch.int64)
    for name, tensor in (("x", x), ("residual", residual), ("bias", bias)):
        write(tmp_path, name, tensor)
    for op, has_bias in forward_cases(op_list[0]):
        args = [x] + ([residual] if op.residual else []) + ([bias if has_bias else None] if op.optional_bias else [])
        expected = reference_op(op.name + "_fwd")(*args, seed_tensor, 0, p)
        report = run(emulator, tmp_path, kind="forward", op=op.name, dtype=DTYPE_NAME[dtype], numel=x.numel(),
                     row_len=NAN_SHAPE[-1], has_bias=int(has_bias), has_residual=int(op.residual), seed=seed,
                     offset=0, threshold=spec.keep_threshold(p), scale=repr(1 / (1 - p)), misalign=misalign,
                     geometry="grid_stride")
        assert report["vector_path"] == 1 - misalign
        out = read(tmp_path, "out", dtype, NAN_SHAPE)
        assert bool(out.isnan().any()), (op, has_bias)
        assert bool((nan_bits(out)[out.isnan()] == CANONICAL_NAN[dtype]).all()), (op, has_bias)
        assert torch.equal(nan_bits(out), nan_bits(expected)), (op, has_bias)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("misalign", [0, 1], ids=["vector", "scalar"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_bodies_write_the_canonical_nan(emulator, op_list, tmp_path, dtype, misalign):
    seed, p = 98, 0.3
    seed_tensor = torch.tensor([seed], dtype=torch.int64)
    keep = spec.keep_mask(math.prod(NAN_SHAPE), seed_tensor, 0, p).reshape(NAN_SHAPE)
    # Positive inputs: the saved output y is > 0 exactly where kept, so both backward kinds keep the same elements.
    y = reference_op("dropout_fwd")(make_input(NAN_SHAPE, dtype, seed=5).abs() + 1, seed_tensor, 0, p)
    # NaN gradients of every kind in the left half of the columns; +inf and -inf at two kept rows of each column of
    # the right half, so that column's bias gradient is inf + -inf.
    half = NAN_SHAPE[1] // 2
    grad = torch.ones(NAN_SHAPE, dtype=dtype)
    grad[:, :half] = scatter_nans(grad[:, :half], 2, 0, seed=4)
    for col in range(half, NAN_SHAPE[1]):
        rows = keep[:, col].nonzero().flatten()
        grad[rows[0], col], grad[rows[1], col] = math.inf, -math.inf
    nan_columns = (keep & grad.isnan()).any(0)
    nan_columns[half:] = True
    write(tmp_path, "grad", grad)
    write(tmp_path, "y", y)
    write(tmp_path, "x", y)  # the smooth activations' saved input: finite, so the NaNs are grad's
    for op in op_list[1]:
        saved = saved_cases(op, seed_tensor, 0, y, y, None)[0][0]
        expected_grad_in, _ = reference_op(op.name)(grad, *saved, p, True)
        report = run(emulator, tmp_path, kind="backward", op=op.name, saved=op.saved, has_bias=0,
                     dtype=DTYPE_NAME[dtype],
                     numel=grad.numel(), row_len=NAN_SHAPE[-1], bias_grad=1, seed=seed, offset=0,
                     threshold=spec.keep_threshold(p), scale=repr(1 / (1 - p)), misalign=misalign,
                     geometry="grid_stride")
        assert report["vector_path"] == 1 - misalign
        grad_in = read(tmp_path, "grad_in", dtype, NAN_SHAPE)
        assert bool((nan_bits(grad_in)[grad_in.isnan()] == CANONICAL_NAN[dtype]).all()), op
        assert torch.equal(nan_bits(grad_in), nan_bits(expected_grad_in)), op
        grad_bias = read(tmp_path, "grad_bias", dtype, NAN_SHAPE[-1:])
        assert bool((nan_bits(grad_bias)[nan_columns] == CANONICAL_NAN[dtype]).all()), op
        assert not bool(grad_bias[~nan_columns].isnan().any()), op
