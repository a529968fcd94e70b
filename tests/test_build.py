"""setup.py's choice of kernels: one clear line saying which, and FUSED_DROPOUT_BUILD_CUDA to force it.
(`setup.py --version` decides the extension without compiling anything.)"""
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_setup(**env):
    return subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_forced_cpu_only_build_says_so():
    result = run_setup(FUSED_DROPOUT_BUILD_CUDA="0")
    assert result.returncode == 0, result.stderr
    assert "fused_dropout: building the CPU kernels only (FUSED_DROPOUT_BUILD_CUDA=0)" in result.stdout


def test_default_build_names_its_reason():
    result = run_setup()
    assert result.returncode == 0, result.stderr
    if torch.version.cuda is None:
        assert "building the CPU kernels only" in result.stdout and "is a CPU build" in result.stdout
    else:
        assert "building the CPU and CUDA kernels" in result.stdout or "nvcc was not found" in result.stdout


@pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build of torch can build the CUDA kernels")
def test_forcing_cuda_without_cuda_torch_fails_clearly():
    result = run_setup(FUSED_DROPOUT_BUILD_CUDA="1")
    assert result.returncode != 0
    assert "FUSED_DROPOUT_BUILD_CUDA=1 but torch is not a CUDA build" in result.stderr
