"""p = 0, 1, 0.999, 1e-6; empty and 0-d tensors; non-contiguous inputs; inf and NaN."""
import math

import pytest
import torch

import fused_dropout as fd
from conftest import CPU_BACKENDS, DTYPES, make_input


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_p_one_drops_everything(backend, dtype):
    x = make_input((10, 13), dtype, requires_grad=True)
    residual = make_input((10, 13), dtype, seed=1)
    y = fd.dropout(x, 1.0, seed=1, backend=backend)
    assert torch.equal(y, torch.zeros_like(x))
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, torch.zeros_like(x))
    assert torch.equal(fd.bias_relu_dropout(x, None, 1.0, seed=1, backend=backend), torch.zeros_like(x))
    assert torch.equal(fd.dropout_add(x, residual, 1.0, seed=1, backend=backend), residual)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("p", [0.999, 1e-6])
def test_extreme_probabilities_follow_the_spec(backend, p):
    x = make_input((64, 64)).abs() + 1
    out = fd.dropout(x, p, seed=3, backend=backend)
    keep = fd.dropout_mask(x.shape, p, 3)
    assert torch.equal(out != 0, keep)
    scale = torch.tensor(1 / (1 - p), dtype=torch.float32)
    assert torch.equal(out[keep], (x[keep] * scale))


def test_keep_threshold_is_floor_of_p_times_two_to_the_32():
    # (test_mask_spec.py checks the kernels' side of the boundary: a word equal to T is kept, T - 1 dropped.)
    from fused_dropout import spec
    assert spec.keep_threshold(0.5) == 2**31
    assert spec.keep_threshold(1.0) == 2**32
    assert spec.keep_threshold(2**-32) == 1
    assert spec.keep_threshold(math.nextafter(1.0, 0.0)) == 2**32 - 1
    assert spec.keep_threshold(math.nextafter(2**-32, 0.0)) == 0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(0,), (0, 16), (16, 0), (3, 0, 4)])
def test_empty_tensors(backend, shape):
    x = torch.empty(shape, requires_grad=True)
    bias_len = shape[-1]
    bias = torch.zeros(bias_len, requires_grad=True)
    for y in (fd.dropout(x, 0.5, backend=backend), fd.bias_relu_dropout(x, bias, 0.5, backend=backend),
              fd.dropout_add(x, torch.empty(shape), 0.5, bias=bias, backend=backend)):
        assert y.shape == x.shape
        y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(bias.grad, torch.zeros(bias_len))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_zero_dim_tensors(backend):
    x = torch.tensor(2.5, requires_grad=True)
    bias = torch.tensor([0.5], requires_grad=True)
    keep = bool(fd.dropout_mask((), 0.5, 4))
    y = fd.dropout(x, 0.5, seed=4, backend=backend)
    assert y.shape == () and y.item() == (5.0 if keep else 0.0)
    y = fd.bias_relu_dropout(x, bias, 0.5, seed=4, backend=backend)
    assert y.shape == () and y.item() == (6.0 if keep else 0.0)
    y.backward()
    assert float(bias.grad[0]) == (2.0 if keep else 0.0)
    y = fd.dropout_add(x, torch.tensor(1.0), 0.5, bias=bias.detach(), seed=4, backend=backend)
    assert y.item() == (7.0 if keep else 1.0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_inputs_use_the_logical_index(backend):
    storage = make_input((40, 70))
    views = {
        "transposed": storage.t(),
        "sliced_with_storage_offset": storage[3:31, 5:50],
        "strided": storage[::2, ::3],
        "expanded": make_input((1, 70)).expand(9, 70),
    }
    for name, x in views.items():
        before = storage.clone()
        bias = make_input((x.shape[-1],), seed=1)[None].expand(2, -1)[0]  # a non-contiguous-origin bias view
        residual = make_input(tuple(x.shape[::-1])).t()  # non-contiguous residual
        keep = fd.dropout_mask(x.shape, 0.3, 8)
        s = torch.tensor(1 / 0.7, dtype=torch.float32)
        expected = torch.where(keep, x * s, 0.0)
        assert torch.equal(fd.dropout(x, 0.3, seed=8, backend=backend), expected), name
        expected = torch.where(keep, torch.relu(x + bias) * s, 0.0)
        assert torch.equal(fd.bias_relu_dropout(x, bias, 0.3, seed=8, backend=backend), expected), name
        expected = residual + torch.where(keep, (x + bias) * s, 0.0)
        assert torch.equal(fd.dropout_add(x, residual, 0.3, bias=bias, seed=8, backend=backend), expected), name
        assert torch.equal(storage, before), name  # views are read, never written


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_incoming_gradient(backend):
    x = make_input((20, 30), requires_grad=True)
    bias = make_input((30,), seed=1, requires_grad=True)
    grad = make_input((30, 20), seed=2).t()
    y = fd.bias_relu_dropout(x, bias, 0.3, seed=2, backend=backend)
    gx, gb = torch.autograd.grad(y, (x, bias), grad)
    active = y > 0
    expected = torch.where(active, grad * torch.tensor(1 / 0.7), 0.0)
    assert torch.equal(gx, expected)
    torch.testing.assert_close(gb, expected.sum(0))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_inf_and_nan_are_zero_when_dropped(backend, dtype):
    x = torch.tensor([math.inf, -math.inf, math.nan] * 40, dtype=dtype)
    keep = fd.dropout_mask(x.shape, 0.5, 10)
    assert 0 < int(keep.sum()) < x.numel()
    y = fd.dropout(x, 0.5, seed=10, backend=backend)
    assert torch.equal(y[~keep], torch.zeros_like(y[~keep]))
    assert torch.equal(y[keep].isnan(), x[keep].isnan())
    assert torch.equal(y[keep].isinf(), x[keep].isinf())
    b = fd.bias_relu_dropout(x, None, 0.5, seed=10, backend=backend)
    assert torch.equal(b[~keep], torch.zeros_like(b[~keep]))
    assert torch.equal(b[keep & x.isnan()].isnan(), torch.ones_like(b[keep & x.isnan()], dtype=torch.bool))
    assert torch.equal(b[keep & (x == -math.inf)], torch.zeros_like(b[keep & (x == -math.inf)]))
    residual = torch.ones_like(x)
    a = fd.dropout_add(x, residual, 0.5, seed=10, backend=backend)
    assert torch.equal(a[~keep], residual[~keep])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_nan_incoming_gradient_is_zero_where_dropped(backend):
    x = make_input((64,), requires_grad=True)
    y = fd.dropout(x, 0.5, seed=1, backend=backend)
    (g,) = torch.autograd.grad(y, x, torch.full_like(x, math.nan))
    keep = fd.dropout_mask(x.shape, 0.5, 1)
    assert torch.equal(g[~keep], torch.zeros_like(g[~keep]))
    assert bool(g[keep].isnan().all())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_denormals_are_not_flushed(backend):
    # A kept denormal must come out as the exactly rounded product, not as zero (no flush-to-zero anywhere).
    x = torch.full((64,), 1e-40, dtype=torch.float32)
    keep = fd.dropout_mask(x.shape, 0.5, 12)
    out = fd.dropout(x, 0.5, seed=12, backend=backend)
    assert torch.equal(out[keep], x[keep] * torch.tensor(2.0))
    assert bool((out[keep] != 0).all())


def _available_memory_bytes():
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.mark.skipif(_available_memory_bytes() < 14 * 2**30, reason="needs ~10 GiB of free memory")
def test_huge_tensor_over_two_to_the_31_elements_on_cpu():
    # 64-bit indexing: elements past 2^31 get the spec's mask (checked against slices of dropout_mask).
    numel = 2**31 + 1000
    x = torch.ones(numel, dtype=torch.float16)
    y = fd.dropout(x, 0.5, seed=77, backend="cpu")
    for start in (0, 2**31 - 500, numel - 700):
        expected = fd.dropout_mask((600,), 0.5, 77, offset=start)
        assert torch.equal(y[start:start + 600] != 0, expected), start
        assert torch.equal(y[start:start + 600][expected], torch.full((int(expected.sum()),), 2.0,
                                                                      dtype=torch.float16))
