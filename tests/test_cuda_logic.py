"""Proof of the CUDA kernels without a GPU: tests/cuda_emulator runs their per-thread bodies (the code the
__global__ kernels call) over every block and thread of real launch geometries on the CPU, with the launcher's
own choices (vector or scalar path, bias-gradient tiling). Outputs must match the spec bit for bit, and every
output element must be written (the emulator poisons its outputs with NaN)."""
import os
import shutil
import subprocess

import pytest
import torch

import fused_dropout as fd
from conftest import assert_column_sum_close, make_input
from fused_dropout import spec as reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_INCLUDE = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "include")
COMPILER = shutil.which(os.environ.get("CXX", "g++"))

pytestmark = pytest.mark.skipif(
    COMPILER is None or not os.path.exists(os.path.join(CUDA_INCLUDE, "cuda_bf16.h")),
    reason="needs a host C++ compiler and the CUDA headers",
)

H100_SMS, BLOCKS_PER_SM, FLAT_THREADS, TILE_THREADS = 132, 8, 256, 128
INT_VIEW = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
            torch.float64: torch.int64}
DTYPE_NAME = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32",
              torch.float64: "float64"}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    binary = str(tmp_path_factory.mktemp("emulator") / "emulator")
    subprocess.run([COMPILER, "-O2", "-std=c++17", "-ffp-contract=off", f"-I{ROOT}/csrc", f"-I{CUDA_INCLUDE}",
                    os.path.join(ROOT, "tests", "cuda_emulator", "emulator.cpp"), "-o", binary], check=True)
    return binary


def write(directory, name, tensor):
    with open(os.path.join(directory, name + ".bin"), "wb") as handle:
        handle.write(tensor.contiguous().view(INT_VIEW[tensor.dtype]).numpy().tobytes())


def read(directory, name, dtype, shape):
    with open(os.path.join(directory, name + ".bin"), "rb") as handle:
        data = bytearray(handle.read())
    return torch.frombuffer(data, dtype=INT_VIEW[dtype]).view(dtype).reshape(shape).clone()


def run(emulator, directory, **spec):
    with open(os.path.join(directory, "spec.txt"), "w") as handle:
        for key, value in spec.items():
            handle.write(f"{key} {value}\n")
    result = subprocess.run([emulator, str(directory)], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])  # 1 when the vector path ran


def real_grid(work_items, threads):
    return max(1, min((work_items + threads - 1) // threads, H100_SMS * BLOCKS_PER_SM))


SHAPES = [(1,), (7,), (3, 8), (5, 9), (33, 129), (64, 1024), (3, 4099), (700, 24)]
DTYPES = list(DTYPE_NAME)
# (block, grid): the launcher's geometry on an H100, and a tiny grid that makes every thread loop (grid stride).
GEOMETRIES = ["launcher", "grid_stride"]


def geometry(kind, numel, dtype):
    chunk = 4 if dtype == torch.float64 else 8
    if kind == "launcher":
        return FLAT_THREADS, real_grid((numel + chunk - 1) // chunk, FLAT_THREADS)
    return 32, 3


@pytest.mark.parametrize("geometry_kind", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_bodies_follow_the_spec(emulator, tmp_path, shape, dtype, geometry_kind):
    index = SHAPES.index(shape) + DTYPES.index(dtype)
    offset = [0, 1, 2, 3, 2**32 + 1][index % 5]
    misalign = index % 2  # odd cases start one element past a 16-byte boundary: the scalar path
    seed, p = 2**63 + 12345 + index, 0.35
    x, residual = make_input(shape, dtype, seed=index), make_input(shape, dtype, seed=index + 100)
    bias = make_input(shape[-1:], dtype, seed=index + 200)
    numel, row_len = x.numel(), shape[-1]
    block, grid = geometry(geometry_kind, numel, dtype)
    for name, tensor in (("x", x), ("residual", residual), ("bias", bias)):
        write(tmp_path, name, tensor)
    cases = [("dropout", False, lambda: fd.dropout(x, p, seed=seed, offset=offset, backend="cpu")),
             ("bias_relu_dropout", True, lambda: fd.bias_relu_dropout(x, bias, p, seed=seed, offset=offset,
                                                                      backend="cpu")),
             ("bias_relu_dropout", False, lambda: fd.bias_relu_dropout(x, None, p, seed=seed, offset=offset,
                                                                       backend="cpu")),
             ("dropout_add", True, lambda: fd.dropout_add(x, residual, p, bias=bias, seed=seed, offset=offset,
                                                          backend="cpu")),
             ("dropout_add", False, lambda: fd.dropout_add(x, residual, p, seed=seed, offset=offset, backend="cpu"))]
    for op, has_bias, expected in cases:
        vector_path = run(emulator, tmp_path, kind="forward", op=op, dtype=DTYPE_NAME[dtype], numel=numel,
                          row_len=row_len, has_bias=int(has_bias), seed=seed, offset=offset,
                          threshold=reference.keep_threshold(p), scale=repr(1 / (1 - p)), block=block, grid=grid,
                          misalign=misalign)
        assert vector_path == (1 if misalign == 0 else 0)
        out = read(tmp_path, "out", dtype, shape)
        assert torch.equal(out, expected()), (op, has_bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_bodies_follow_the_spec(emulator, tmp_path, shape, dtype):
    index = SHAPES.index(shape) * 3 + DTYPES.index(dtype)
    offset = [0, 3, 2**33 + 2][index % 3]
    misalign = index % 2
    seed, p = 77 + index, 0.4
    grad = make_input(shape, dtype, seed=index)
    x = make_input(shape, dtype, seed=index + 1, requires_grad=True)
    bias = make_input(shape[-1:], dtype, seed=index + 2, requires_grad=True)
    y = fd.bias_relu_dropout(x, bias, p, seed=seed, offset=offset, backend="cpu")
    write(tmp_path, "grad", grad)
    write(tmp_path, "y", y.detach())
    numel, row_len = grad.numel(), shape[-1]
    ops = fd.backends.FAMILIES["native"]
    state = torch.tensor([seed, offset], dtype=torch.int64)
    for op, expected_fn in (("mask", lambda b: ops.mask_bwd(grad, state, p, b)),
                            ("positive_output", lambda b: ops.relu_output_bwd(grad, y.detach(), p, b))):
        for bias_grad in (False, True):
            for block, grid in ((FLAT_THREADS, real_grid(numel, FLAT_THREADS)), (32, 3)):
                if bias_grad and block == FLAT_THREADS:
                    block = TILE_THREADS  # the tiled kernel's block size
                vector_path = run(emulator, tmp_path, kind="backward", op=op, dtype=DTYPE_NAME[dtype], numel=numel,
                                  row_len=row_len, has_bias=0, bias_grad=int(bias_grad), seed=seed, offset=offset,
                                  threshold=reference.keep_threshold(p), scale=repr(1 / (1 - p)), block=block,
                                  grid=grid, misalign=misalign)
                vector_width = 16 // grad.element_size()
                expect_vector = misalign == 0 and (not bias_grad or row_len % vector_width == 0)
                assert vector_path == int(expect_vector)
                expected_grad, _ = expected_fn(bias_grad)
                grad_in = read(tmp_path, "grad_in", dtype, shape)
                assert torch.equal(grad_in, expected_grad), (op, bias_grad, block)
                if bias_grad:
                    grad_bias = read(tmp_path, "grad_bias", dtype, (row_len,))
                    assert_column_sum_close(grad_bias, grad_in.reshape(-1, row_len))


def test_emulator_detects_a_wrong_mask(emulator, tmp_path):
    """The comparison can fail: a different seed gives a different output."""
    x = make_input((64,))
    write(tmp_path, "x", x)
    run(emulator, tmp_path, kind="forward", op="dropout", dtype="float32", numel=64, row_len=64, has_bias=0,
        seed=1, offset=0, threshold=reference.keep_threshold(0.5), scale=repr(2.0), block=32, grid=1, misalign=0)
    assert not torch.equal(read(tmp_path, "out", torch.float32, (64,)), fd.dropout(x, 0.5, seed=2, backend="cpu"))
