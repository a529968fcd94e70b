"""The CPU kernel variants (generic, AVX2, AVX-512; see csrc/cpu/cpu_kernels.cpp) give the same bits: every op,
with and without its bias, forward and backward (bias gradients included), every dtype, NaN, infinities,
denormals and values that round to infinity, offsets that start inside a Philox group and near a 2^32 carry of the
group counter, shapes that end inside a vector and a tile, and any thread count. A variant this CPU cannot run is
skipped, by name."""
import pytest
import torch

from conftest import CPU_ISAS, DEFAULT_CPU_ISA, DTYPES, OP_VARIANTS, call_op, op_inputs
from fused_dropout import backends

pytestmark = pytest.mark.skipif(not backends.NATIVE_CPU, reason="needs the native CPU kernels")

VECTOR_VARIANTS = ["avx2", "avx512"]
# (shape, offset): a tile and a half with a row break inside it, a row of one vector plus a tail, a tiny tensor
# starting at word 3 of a group, and groups whose counter carries into its high word.
CASES = [((3, 1500), 0), ((2, 4096 + 17), 5), ((1, 7), 3), ((5, 333), 4 * (2**32) - 8)]


# NaNs whose bits are not the canonical NaN (sign set, payloads, signalling), per element width: each must come
# out as the canonical NaN from every variant.
ODD_NANS = {2: {torch.float16: [0xFE00, 0x7C01, 0xFFFF], torch.bfloat16: [0xFFC0, 0x7F81, 0xFFFF]},
            4: [0xFFC00000, 0x7F800001, 0x7FC12345], 8: [0xFFF8000000000000, 0x7FF0000000000001]}
INT_OF_WIDTH = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def special_values(x):
    """x with NaNs (canonical and not), +-inf, float32 and 16-bit denormals, and values beyond float16's range
    written into it."""
    flat = x.view(-1)
    specials = [float("nan"), float("inf"), -float("inf"), 1e-40, -3e-39, 6e-8, 7e4, -1e5, 65520.0, 0.0, -0.0]
    for index, value in enumerate(specials):
        flat[index * 7 % flat.numel()] = value
    width = x.element_size()
    nans = ODD_NANS[width][x.dtype] if width == 2 else ODD_NANS[width]
    for index, bits in enumerate(nans):
        signed = bits - (1 << (8 * width)) if bits >= 1 << (8 * width - 1) else bits
        flat.view(INT_OF_WIDTH[width])[(index * 11 + 5) % flat.numel()] = signed
    return x


def run(op, with_bias, dtype, shape, offset, variant, threads, p=0.3, backend="cpu"):
    if backend == "cpu":
        backends._C.set_cpu_isa(variant)
    torch.set_num_threads(threads)
    x, residual, bias = op_inputs(op, shape, dtype, seed=3, with_bias=with_bias)
    with torch.no_grad():
        special_values(x)
    leaves = [t.requires_grad_() for t in (x, residual, bias) if t is not None]
    out = call_op(op, x, residual, bias, p, seed=12345, offset=offset, backend=backend)
    grad = special_values(torch.randn(shape, generator=torch.Generator().manual_seed(9)).to(dtype))
    grads = torch.autograd.grad(out, leaves, grad)
    return [t.detach().contiguous().view(-1).view(torch.uint8) for t in (out, *grads)]


def available(variant):
    if variant not in CPU_ISAS:
        pytest.skip(f"this CPU or build cannot run the {variant} kernels")


@pytest.mark.parametrize("variant", VECTOR_VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op, with_bias", OP_VARIANTS)
def test_variant_gives_the_generic_bits(variant, dtype, op, with_bias):
    available(variant)
    for shape, offset in CASES:
        expected = run(op, with_bias, dtype, shape, offset, "generic", 1)
        for threads in (1, 2):
            actual = run(op, with_bias, dtype, shape, offset, variant, threads)
            for index, (a, e) in enumerate(zip(actual, expected)):
                assert torch.equal(a, e), (shape, offset, threads, "output" if index == 0 else f"gradient {index}")


@pytest.mark.parametrize("variant", VECTOR_VARIANTS)
def test_variant_is_bit_identical_on_a_large_tensor_with_bias_gradient(variant):
    """Many tiles and row blocks on several threads: the bias gradient's column sums and the Philox steps."""
    available(variant)
    op, with_bias = next((p.values for p in OP_VARIANTS if p.values[0].name == "bias_relu_dropout"))
    for dtype in (torch.float32, torch.bfloat16):
        expected = run(op, with_bias, dtype, (300, 2049), 6, "generic", 1)
        actual = run(op, with_bias, dtype, (300, 2049), 6, variant, 2)
        assert all(torch.equal(a, e) for a, e in zip(actual, expected)), dtype


@pytest.mark.parametrize("variant", VECTOR_VARIANTS)
def test_variant_gives_the_generic_bits_with_denormals_flushed(variant):
    """torch.set_flush_denormal(True) sets MXCSR's flush-to-zero and denormals-are-zero, which change how vector
    instructions read a denormal (the AVX-512 forward's vfixupimmps classifies one as zero): every variant still
    gives the generic kernel's bits. One thread: the flag is the calling thread's."""
    available(variant)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        for op, with_bias in (p.values for p in OP_VARIANTS):
            expected = run(op, with_bias, torch.float32, (3, 1500), 5, "generic", 1)
            actual = run(op, with_bias, torch.float32, (3, 1500), 5, variant, 1)
            for index, (a, e) in enumerate(zip(actual, expected)):
                assert torch.equal(a, e), (op.name, with_bias, "output" if index == 0 else f"gradient {index}")
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("variant", ["generic", *VECTOR_VARIANTS])
@pytest.mark.parametrize("p", [0.0, 2.0**-34])
def test_a_rule_that_keeps_every_word_gives_the_torch_backend_bits(variant, p):
    """p = 0 (and eval mode, which calls the kernels with p = 0) and any p below 2^-32, whose keep threshold is 0:
    the kernels make no Philox words then (csrc/cpu/cpu_kernels_impl.h, keeps_every_word), and must still give the
    bits of the spec's rule, here the torch backend's: every element kept, times the scale (not exactly 1 in float64
    at p = 2^-34)."""
    available(variant)
    for op, with_bias in (p.values for p in OP_VARIANTS):
        for dtype in DTYPES:
            shape, offset = CASES[1]
            expected = run(op, with_bias, dtype, shape, offset, None, 1, p=p, backend="torch")
            actual = run(op, with_bias, dtype, shape, offset, variant, 2, p=p)
            for index, (a, e) in enumerate(zip(actual, expected)):
                assert torch.equal(a, e), (op.name, with_bias, dtype, "output" if index == 0 else f"gradient {index}")


def test_the_widest_variant_runs_by_default():
    assert DEFAULT_CPU_ISA == CPU_ISAS[0]
    assert "generic" in CPU_ISAS


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="not available"):
        backends._C.set_cpu_isa("avx1024")
    assert backends._C.cpu_isa() == DEFAULT_CPU_ISA
