"""Shared test helpers: the dtype tolerance table, the backends that run CPU tensors here, input makers."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.h100_model

import fused_dropout  # noqa: E402
import fused_dropout.op_table  # noqa: E402
from fused_dropout import backends  # noqa: E402
from fused_dropout.info import _available_isas  # noqa: E402

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

# Fused results round once from the compute type; the unfused composition rounds after every step in the tensor's
# dtype. These bounds cover that difference (a few ulps of each dtype) and nothing more.
TOLERANCES = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=2e-6, atol=2e-6),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
}


def cpu_backends():
    """The backends that can run CPU tensors in this process (triton only under TRITON_INTERPRET=1)."""
    return [name for name in ("cpu", "torch", "triton") if name in backends.available_backends() and
            backends._runs_on(name, "cpu")]


CPU_BACKENDS = cpu_backends()
FUSED_CPU_BACKENDS = [name for name in CPU_BACKENDS if name != "torch"]

# A launch of Triton's interpreter costs ~0.1 s, and a float64 gradgradcheck that compares every Jacobian entry
# launches hundreds of kernels (~90 s per case). Interpreted Triton cases therefore take gradcheck's fast mode: it
# compares one random projection u^T J v with its finite difference, which a wrong Jacobian entry changes with
# probability 1. The cpu and torch cases compare every entry, and the Triton gradients are also checked value by
# value against the derivative formulas (test_bias_act_dropout, test_autograd, test_geometry_ops).
TRITON_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def gradcheck_mode(backend) -> dict:
    """Extra gradcheck / gradgradcheck arguments for `backend`: fast mode for interpreted Triton (see above)."""
    return {"fast_mode": True} if backend == "triton" and TRITON_INTERPRETED else {}


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def make_input(shape, dtype=torch.float32, device="cpu", seed=0, requires_grad=False):
    """Random values (never zeros, which hide unwritten outputs) from a private generator."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    return x.requires_grad_(requires_grad)


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, expected, **TOLERANCES[dtype], equal_nan=True)


def assert_column_sum_close(actual, terms):
    """actual must be the column sums of `terms` ([rows, N], the stored per-element gradients) up to the error
    bound of summing in the compute type in any order (rows * eps * sum|terms|) plus one rounding to the dtype."""
    exact = terms.double().sum(0)
    compute_eps = torch.finfo(torch.float64 if terms.dtype == torch.float64 else torch.float32).eps
    bound = terms.shape[0] * compute_eps * terms.double().abs().sum(0) + torch.finfo(terms.dtype).eps * exact.abs()
    error = (actual.double() - exact).abs()
    assert bool((error <= bound + 1e-300).all()), f"max excess {(error - bound).max().item()}"


# The CPU kernel variant chosen at load (the widest this CPU runs), and every variant this CPU and build run.
DEFAULT_CPU_ISA = backends._C.cpu_isa() if backends.NATIVE_CPU else None
CPU_ISAS = _available_isas() if backends.NATIVE_CPU else []


@pytest.fixture(autouse=True)
def _restore_cpu_isa_and_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    if backends.NATIVE_CPU:
        backends._C.set_cpu_isa(DEFAULT_CPU_ISA)


@pytest.fixture(scope="session")
def cuda_kernels_compiled(tmp_path_factory):
    """csrc/cuda/dropout_kernels.cu compiled by nvcc for sm_80 and sm_90 side by side, once per session (about
    80 s of wall time on 2 cores): {arch: {"error", "cubin", "ptx", "log" (ptxas -v), "spills"}}. Shared by
    test_cuda_compile (errors, warnings, spills, the PTX's Philox) and test_h100_model (the SASS model)."""
    from benchmarks.h100_model import cuda_kernels, tools

    if tools.nvcc() is None:
        pytest.skip("nvcc not found")
    return cuda_kernels.compiled_kernels((80, 90), str(tmp_path_factory.mktemp("cuda_kernels")))


__all__ = ["fused_dropout"]


# ---- the op table, for tests that run every op ----------------------------------------------------------

OPS = list(fused_dropout.op_table.OPS)
OP_NAMES = [op.name for op in OPS]
# (op, with_bias): every op, and for ops that take an optional bias, both with and without it.
OP_VARIANTS = [pytest.param(op, with_bias, id=f"{op.name}-{'bias' if with_bias else 'nobias'}")
               for op in OPS for with_bias in ([True, False] if op.bias else [False])]


def op_inputs(op, shape, dtype=torch.float32, seed=0, requires_grad=False, with_bias=True):
    """(x, residual, bias) for `op`: None for the parts the op does not take (bias also when with_bias=False)."""
    x = make_input(shape, dtype, seed=seed, requires_grad=requires_grad)
    residual = make_input(shape, dtype, seed=seed + 1, requires_grad=requires_grad) if op.residual else None
    bias_shape = (shape[-1] if len(shape) else 1,)
    bias = make_input(bias_shape, dtype, seed=seed + 2, requires_grad=requires_grad) if op.bias and with_bias else None
    return x, residual, bias


def call_op(op, x, residual, bias, p, **kwargs):
    """The op through its public function (fused_dropout.<op.name>), whatever its signature."""
    return op.call(x, residual, bias, p, **kwargs)
