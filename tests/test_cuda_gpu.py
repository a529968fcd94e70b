"""GPU tests of the CUDA and Triton backends (skipped without a GPU): the same masks as the CPU, values and
gradients against the reference, CUDA-graph capture, a tensor over 2^31 elements, misaligned inputs, and the
kernels clean under compute-sanitizer."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import fused_dropout as fd
from conftest import DTYPES, assert_column_sum_close, make_input

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU_BACKENDS = [b for b in ("cuda", "triton") if b in fd.available_backends()]


def on_gpu(t):
    return t.cuda().requires_grad_(t.requires_grad)


def test_auto_backend_is_a_gpu_kernel():
    assert fd.backends.resolve(None, torch.device("cuda")) in ("cuda", "triton")
    assert GPU_BACKENDS, "neither the CUDA extension nor Triton is available on this GPU machine"


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, offset", [((1000, 777), 0), ((3, 4099), 3), ((64, 1024), 2**32 + 1), ((5,), 2)])
def test_gpu_equals_cpu_bit_for_bit(backend, dtype, shape, offset):
    x, residual = make_input(shape, dtype), make_input(shape, dtype, seed=1)
    bias = make_input(shape[-1:], dtype, seed=2)
    for fn in (lambda t, r, b, be: fd.dropout(t, 0.3, seed=9, offset=offset, backend=be),
               lambda t, r, b, be: fd.bias_relu_dropout(t, b, 0.3, seed=9, offset=offset, backend=be),
               lambda t, r, b, be: fd.dropout_add(t, r, 0.3, bias=b, seed=9, offset=offset, backend=be)):
        expected = fn(x, residual, bias, "cpu")
        assert torch.equal(fn(x.cuda(), residual.cuda(), bias.cuda(), backend).cpu(), expected)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_equal_cpu(backend, dtype):
    x = make_input((300, 96), dtype, requires_grad=True)
    bias = make_input((96,), dtype, seed=1, requires_grad=True)
    grad = make_input((300, 96), dtype, seed=2)
    results = {}
    for device, be in (("cpu", "cpu"), ("cuda", backend)):
        xs, bs = x.detach().to(device).requires_grad_(), bias.detach().to(device).requires_grad_()
        y = fd.bias_relu_dropout(xs, bs, 0.3, seed=4, backend=be)
        y2 = fd.dropout_add(xs, xs.detach(), 0.3, bias=bs, seed=4, backend=be)
        results[device] = [g.cpu() for g in torch.autograd.grad(y, (xs, bs), grad.to(device))]
        results[device] += [g.cpu() for g in torch.autograd.grad(y2, (xs, bs), grad.to(device))]
    assert torch.equal(results["cuda"][0], results["cpu"][0])
    assert torch.equal(results["cuda"][2], results["cpu"][2])
    assert_column_sum_close(results["cuda"][1], results["cuda"][0])
    assert_column_sum_close(results["cuda"][3], results["cuda"][2])


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gradcheck_on_gpu(backend):
    x = make_input((8, 12), torch.float64, requires_grad=True).cuda().detach().requires_grad_()
    with torch.no_grad():
        x.add_(torch.sign(x) * 0.1)
    bias = torch.zeros(12, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, b: fd.bias_relu_dropout(t, b, 0.3, seed=3, backend=backend), (x, bias))
    assert torch.autograd.gradcheck(lambda t, b: fd.dropout_add(t, t, 0.3, bias=b, seed=3, backend=backend),
                                    (x, bias))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_cuda_graph_replays_draw_fresh_masks_like_eager(backend):
    x = torch.ones(4096, device="cuda")
    fn = lambda: fd.dropout(x, 0.5, backend=backend)  # noqa: E731
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.manual_seed(2024)
    eager = [fn().clone() for _ in range(3)]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = fn()
    torch.cuda.manual_seed(2024)
    replays = []
    for _ in range(3):
        graph.replay()
        replays.append(captured.clone())
    assert not torch.equal(replays[0], replays[1])
    for a, b in zip(replays, eager):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_over_two_to_the_31_elements(backend):
    numel = 2**31 + 1000
    x = torch.ones(numel, dtype=torch.bfloat16, device="cuda")
    y = fd.dropout(x, 0.5, seed=77, backend=backend)
    for start in (0, 2**31 - 500, numel - 700):
        expected = fd.dropout_mask((600,), 0.5, 77, offset=start, device="cuda")
        assert torch.equal(y[start:start + 600] != 0, expected)
    del x, y
    torch.cuda.empty_cache()


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_misaligned_and_non_contiguous_inputs(backend, dtype):
    storage = make_input((4097 * 3 + 1,), dtype).cuda()
    misaligned = storage[1:].view(3, 4097)  # contiguous, one element past the allocation's alignment
    transposed = make_input((40, 70), dtype).cuda().t()
    for x in (misaligned, transposed, storage[3:100:3]):
        bias = make_input(x.shape[-1:], dtype, seed=5).cuda()
        expected = fd.bias_relu_dropout(x.cpu(), bias.cpu(), 0.3, seed=1, offset=1, backend="cpu")
        assert torch.equal(fd.bias_relu_dropout(x, bias, 0.3, seed=1, offset=1, backend=backend).cpu(), expected)
        expected = fd.dropout_add(x.cpu(), x.cpu(), 0.3, seed=1, backend="cpu")
        assert torch.equal(fd.dropout_add(x, x, 0.3, seed=1, backend=backend).cpu(), expected)


def test_compile_fullgraph_on_gpu():
    torch._dynamo.reset()
    x = make_input((64, 256)).cuda().requires_grad_()
    bias = make_input((256,), seed=1).cuda().requires_grad_()
    fn = torch.compile(lambda t, b: fd.bias_relu_dropout(t, b, 0.2).sum(), fullgraph=True)
    fn(x, bias).backward()
    assert bias.grad is not None


SANITIZED_SCRIPT = """
import torch, fused_dropout as fd
for backend in {backends!r}:
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = torch.randn(37, 1031, dtype=dtype, device="cuda", requires_grad=True)
        b = torch.randn(1031, dtype=dtype, device="cuda", requires_grad=True)
        y = fd.bias_relu_dropout(x[1:], b, 0.3, backend=backend) + fd.dropout_add(x[1:], x[1:], 0.3, bias=b, backend=backend)
        y.sum().backward()
        fd.dropout(x.detach()[:, 1:], 0.5, backend=backend)
torch.cuda.synchronize()
print("sanitized run done")
"""


@pytest.mark.skipif(shutil.which("compute-sanitizer") is None, reason="compute-sanitizer not found")
def test_kernels_clean_under_compute_sanitizer(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SANITIZED_SCRIPT.format(backends=[b for b in GPU_BACKENDS if b == "cuda"] or GPU_BACKENDS))
    result = subprocess.run(["compute-sanitizer", "--tool", "memcheck", "--error-exitcode", "1", sys.executable,
                             str(script)], capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTORCH_NO_CUDA_MEMORY_CACHING": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "ERROR SUMMARY: 0 errors" in result.stdout
