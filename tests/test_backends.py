"""Backend discovery and selection: available_backends, auto choice, FUSED_DROPOUT_BACKEND."""
import torch

import fused_dropout as fd
from fused_dropout import backends


def test_available_backends_lists_cpu_and_torch_here():
    available = fd.available_backends()
    assert "torch" in available
    assert "cpu" in available  # the C++ extension is always built
    assert ("cuda" in available) == (backends.NATIVE_CUDA and torch.cuda.is_available())


def test_auto_picks_the_cpu_kernel_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv("FUSED_DROPOUT_BACKEND", raising=False)
    assert backends.resolve(None, torch.device("cpu")) == "cpu"
    assert backends.resolve("auto", torch.device("cpu")) == "cpu"
    assert backends.resolve(None, torch.device("meta")) == "torch"


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("FUSED_DROPOUT_BACKEND", "torch")
    assert backends.resolve(None, torch.device("cpu")) == "torch"
    assert backends.resolve("cpu", torch.device("cpu")) == "cpu"  # an explicit argument wins
    x = torch.ones(64)
    assert torch.equal(fd.dropout(x, 0.5, seed=3), fd.dropout(x, 0.5, seed=3, backend="cpu"))


def test_cpu_kernel_variant_is_reported():
    assert backends._C.cpu_isa() in ("avx512", "avx2", "generic")
