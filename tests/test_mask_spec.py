"""Every backend produces the mask of the specification, bit for bit, for any seed, offset, dtype, thread count
and CPU kernel variant; dropout_mask names that mask; the mask is statistically sound."""
import math

import pytest
import torch

import fused_dropout as fd
from conftest import CPU_BACKENDS, CPU_ISAS, DTYPES, OP_NAMES, OPS, call_op, make_input, op_inputs
from fused_dropout import backends
from spec_impl import mask as spec_mask
from spec_impl import word as spec_word

SEEDS = [0, 1, 12345, 2**32 - 1, 2**32 + 5, 2**63 + 11, 2**64 - 1, -1, -(2**63)]
OFFSETS = [0, 1, 2, 3, 5, 2**32 - 3, 2**34 + 1, 2**63 - 1000]


def kept(out):
    return out != 0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_mask_matches_independent_spec_for_seeds(backend, seed):
    numel = 203  # not a multiple of 4, so the last Philox group is partial
    x = torch.ones(numel)
    out = fd.dropout(x, 0.4, seed=seed, offset=6, backend=backend)
    assert kept(out).tolist() == spec_mask(numel, seed, 6, 0.4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("offset", OFFSETS)
def test_mask_matches_independent_spec_for_offsets(backend, offset):
    numel = 130
    out = fd.dropout(torch.ones(numel), 0.5, seed=99, offset=offset, backend=backend)
    assert kept(out).tolist() == spec_mask(numel, 99, offset, 0.5)


@pytest.mark.parametrize("seed", [3, 2**40 + 7])
@pytest.mark.parametrize("offset", [0, 7, 2**33 + 2])
def test_backends_and_dropout_mask_agree_on_large_tensors(seed, offset):
    x = make_input((37, 1001))
    seed_tensor = torch.tensor([seed], dtype=torch.int64)
    expected = fd.spec.keep_mask(x.numel(), seed_tensor, offset, 0.3).reshape(x.shape)  # the reference's rule
    assert torch.equal(fd.dropout_mask(x.shape, 0.3, seed, offset=offset), expected)
    for backend in CPU_BACKENDS:
        if backend == "triton":
            continue  # the interpreter is too slow for this size; tests/test_triton.py covers it
        assert torch.equal(kept(fd.dropout(x, 0.3, seed=seed, offset=offset, backend=backend)), expected), backend


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_mask_at_the_edges(p):
    """p = 0 keeps all, p = 1 none (the kernel's scale is 0 there, and a dropped element is 0 whatever the
    scale), an empty shape is empty, and an unaligned offset near 2^63 follows the spec."""
    offset = 2**63 - 5000
    seed_tensor = torch.tensor([11], dtype=torch.int64)
    for shape in [(0,), (3, 5), (1027,)]:
        expected = fd.spec.keep_mask(math.prod(shape), seed_tensor, offset, p).reshape(shape)
        assert torch.equal(fd.dropout_mask(shape, p, 11, offset=offset), expected)
    assert bool(fd.dropout_mask((64,), p, 11).all()) == (p == 0.0)
    assert bool(fd.dropout_mask((64,), p, 11).any()) == (p != 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_does_not_depend_on_dtype(dtype):
    x = make_input((64, 33), dtype=dtype).abs() + 1  # no zeros, so out == 0 means dropped
    expected = fd.dropout_mask(x.shape, 0.5, 2024)
    for backend in CPU_BACKENDS:
        out = fd.dropout(x, 0.5, seed=2024, backend=backend)
        assert out.dtype == dtype
        assert torch.equal(kept(out), expected), backend


def test_mask_does_not_depend_on_thread_count_or_cpu_variant():
    x = make_input((513, 257)).abs() + 1
    expected = fd.dropout_mask(x.shape, 0.25, 77, offset=3)
    for variant in CPU_ISAS:
        backends._C.set_cpu_isa(variant)
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = fd.dropout(x, 0.25, seed=77, offset=3, backend="cpu")
            assert torch.equal(kept(out), expected), (variant, threads)


def test_all_ops_apply_the_same_mask():
    x = make_input((40, 24)).abs() + 1
    bias = make_input((24,), seed=1).abs()
    residual = make_input((40, 24), seed=2)
    expected = fd.dropout_mask(x.shape, 0.5, 5, offset=9)
    for backend in CPU_BACKENDS:
        brd = fd.bias_relu_dropout(x, bias, 0.5, seed=5, offset=9, backend=backend)
        add = fd.dropout_add(x, residual, 0.5, bias=bias, seed=5, offset=9, backend=backend)
        assert torch.equal(brd != 0, expected), backend
        assert torch.equal(add != residual, expected), backend


def test_offset_gives_a_shard_its_slice_of_the_whole_mask():
    rows, cols, shards = 24, 50, 4
    whole = fd.dropout_mask((rows, cols), 0.5, 31)
    x = torch.ones(rows // shards, cols)
    for shard in range(shards):
        offset = shard * x.numel()
        for backend in CPU_BACKENDS:
            out = fd.dropout(x, 0.5, seed=31, offset=offset, backend=backend)
            assert torch.equal(kept(out), whole[shard * 6:(shard + 1) * 6]), (backend, shard)


def test_dropout_mask_follows_logical_index_not_strides():
    x = make_input((30, 40)).abs() + 1
    transposed = x.t()  # non-contiguous view; its logical row-major order differs from its storage order
    out = fd.dropout(transposed, 0.5, seed=8, backend="cpu")
    assert torch.equal(kept(out), fd.dropout_mask(transposed.shape, 0.5, 8))


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9, 0.99])
def test_keep_rate_within_five_sigma(p):
    n = 1 << 20
    keep = fd.dropout_mask((n,), p, 4242).double().mean().item()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(keep - (1 - p)) < 5 * sigma


def test_no_correlation_between_neighbouring_elements_or_rows():
    rows, cols = 512, 1024
    m = fd.dropout_mask((rows, cols), 0.5, 99).double() * 2 - 1  # +-1 with mean ~0
    bound = 5 / math.sqrt(rows * cols)
    for lag in (1, 2, 3, 4, 5, 8):  # within and across Philox groups
        corr = (m.flatten()[:-lag] * m.flatten()[lag:]).mean().item()
        assert abs(corr) < bound, lag
    row_corr = (m[:-1] * m[1:]).mean().item()
    assert abs(row_corr) < bound
    # The four words of one Philox group must be independent of each other too.
    groups = m.flatten().reshape(-1, 4)
    for a in range(4):
        for b in range(a + 1, 4):
            assert abs((groups[:, a] * groups[:, b]).mean().item()) < 5 / math.sqrt(groups.shape[0])


def test_neighbouring_seeds_give_unrelated_masks():
    a = fd.dropout_mask((1 << 16,), 0.5, 1000).double() * 2 - 1
    b = fd.dropout_mask((1 << 16,), 0.5, 1001).double() * 2 - 1
    assert abs((a * b).mean().item()) < 5 / math.sqrt(a.numel())


def test_drawn_seeds_differ_and_manual_seed_reproduces():
    x = torch.ones(4096)
    for backend in CPU_BACKENDS:
        torch.manual_seed(123)
        first, second = fd.dropout(x, 0.5, backend=backend), fd.dropout(x, 0.5, backend=backend)
        assert not torch.equal(first, second), backend
        torch.manual_seed(123)
        assert torch.equal(fd.dropout(x, 0.5, backend=backend), first), backend


def test_explicit_generator_is_used_and_default_generator_untouched():
    x = torch.ones(2048)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a = fd.dropout(x, 0.5, generator=torch.Generator().manual_seed(9))
    b = fd.dropout(x, 0.5, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op", OPS, ids=OP_NAMES)
def test_keep_rule_boundary_is_word_at_least_threshold(backend, op):
    """keep <=> word >= floor(p * 2^32): with p = w / 2^32 an element whose word is w is kept, with
    p = (w + 1) / 2^32 it is dropped, in the forward and in the backward (w / 2^32 is exact in float64)."""
    seed, offset, numel = 2**40 + 3, 5, 24
    for i in (0, 7, 22):  # words 1, 0 and 3 of their Philox groups
        w = spec_word(i, seed, offset)
        assert 0 < w < 2**32 - 1
        for p, kept in ((w / 2**32, True), ((w + 1) / 2**32, False)):
            x, residual, bias = op_inputs(op, (numel,), requires_grad=True, with_bias=False)
            with torch.no_grad():
                x.abs_().add_(1)  # positive, so ReLU is active and a kept element is never 0
            out = call_op(op, x, residual, bias, p, seed=seed, offset=offset, backend=backend)
            dropped_value = residual if residual is not None else torch.zeros_like(out)
            assert bool(out[i] != dropped_value[i]) == kept, (i, p)
            assert (out != dropped_value).tolist() == spec_mask(numel, seed, offset, p), p
            (grad_x,) = torch.autograd.grad(out.sum(), x)
            assert bool(grad_x[i] != 0) == kept, (i, p)
