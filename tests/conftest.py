"""Shared test helpers: the dtype tolerance table, the backends that run CPU tensors here, input makers."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import fused_dropout  # noqa: E402
from fused_dropout import backends  # noqa: E402

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


@pytest.fixture(autouse=True)
def _restore_cpu_isa_and_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    if backends.NATIVE_CPU:
        backends._C.set_cpu_isa("avx2" if _avx2_available() else "generic")


def _avx2_available():
    try:
        backends._C.set_cpu_isa("avx2")
        return True
    except ValueError:
        return False


__all__ = ["fused_dropout"]
