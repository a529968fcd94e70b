"""`python -m fused_dropout.info`: one fact per line, and for every missing backend the reason."""
import importlib.metadata
import os
import subprocess
import sys

import pytest
import torch

import fused_dropout
from fused_dropout import _native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_info(prelude="", **env):
    """The report, from a fresh process in which `prelude` ran first; {key: value} of its lines."""
    code = f"import sys, runpy\n{prelude}\nrunpy.run_module('fused_dropout.info', run_name='__main__')\n"
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TRITON_INTERPRET", "FUSED_DROPOUT_BACKEND")}
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**environment, **env})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(": " in line for line in lines), lines  # one "fact: value" per line
    facts = dict(line.split(": ", 1) for line in lines)
    assert len(facts) == len(lines), "a fact was printed twice"
    return facts


def test_versions_and_the_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "fused_dropout.info"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    facts = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert facts["fused_dropout version"] == fused_dropout.__version__
    assert facts["torch running"].startswith(torch.__version__ + " ")
    assert facts["torch built with"] == (_native.BUILT_WITH_TORCH or facts["torch built with"])
    try:
        triton_version = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton_version = "not installed"
    assert facts["triton"] == triton_version
    assert facts["available backends"] == ", ".join(fused_dropout.available_backends())


@pytest.mark.skipif(not _native.LOADED, reason="needs a built, loadable _C")
def test_native_build_cpu_isa_and_no_gpu_reasons():
    facts = run_info()
    assert facts["native extension"].startswith("loaded from ")
    assert facts["torch built with"] == _native.BUILT_WITH_TORCH
    assert facts["backend cpu"] == "available for cpu tensors"
    assert facts["CPU ISA in use"] == _native._C.cpu_isa()
    assert facts["CPU ISA in use"] in facts["CPU ISAs available"].split(", ")
    assert "generic" in facts["CPU ISAs available"].split(", ")
    assert facts["backend torch"].startswith("available")
    if not torch.cuda.is_available():
        assert facts["CUDA device"] == "none"
        if not _native.HAS_CUDA_KERNELS:
            assert "built without the CUDA kernels" in facts["backend cuda"]
        else:
            assert "no CUDA device" in facts["backend cuda"]


def test_a_sabotaged_native_import_names_its_error():
    facts = run_info("sys.modules['fused_dropout._C'] = None")  # `from . import _C` raises ImportError
    reason = "import of fused_dropout._C halted; None in sys.modules"
    assert facts["native extension"] == "not loaded"
    assert facts["native import error"] == reason
    assert facts["backend cpu"].startswith("unavailable:") and reason in facts["backend cpu"]
    assert facts["backend cuda"].startswith("unavailable:") and reason in facts["backend cuda"]
    assert facts["CPU ISA in use"].startswith("none")
    assert "cpu" not in facts["available backends"].split(", ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the reasons below are those of a machine without a GPU")
def test_triton_reasons_without_a_gpu():
    facts = run_info("sys.modules['triton'] = None")  # as if triton were not installed
    assert facts["triton"] == "not installed"
    assert facts["backend triton"] == "unavailable: triton is not installed (pip install triton)"
    if fused_dropout.backends.TRITON_INSTALLED:
        facts = run_info()
        assert facts["TRITON_INTERPRET"] == "unset"
        assert facts["backend triton"].startswith("unavailable: no CUDA device")
        assert "TRITON_INTERPRET is unset" in facts["backend triton"]
        facts = run_info(TRITON_INTERPRET="1")
        assert facts["backend triton"] == "available for cpu tensors (through the interpreter, TRITON_INTERPRET=1)"
        assert "triton" in facts["available backends"].split(", ")
