"""`python -m fused_dropout.info`: what this installation is and which backends run here, one fact per line.

For a missing backend the line says why: the native extension's import error, no CUDA device, triton not
installed, or TRITON_INTERPRET unset (Triton runs CPU tensors only through its interpreter).
"""
from __future__ import annotations

import importlib.metadata
import os
import sys

import torch

from . import __version__, _native, backends

CPU_ISAS = ("avx512", "avx2", "generic")  # the CPU kernel variants, widest first (the default where it runs)


def _triton_version() -> str | None:
    if not backends.TRITON_INSTALLED:
        return None
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:  # importable without distribution metadata
        return "installed (version unknown)"


def _available_isas() -> list[str]:
    """The CPU kernel variants this machine and build can run (each selected once, then the original restored)."""
    current = _native._C.cpu_isa()
    available = []
    for name in CPU_ISAS:
        try:
            _native._C.set_cpu_isa(name)
        except ValueError:
            continue
        available.append(name)
    _native._C.set_cpu_isa(current)
    return available


def _backend_line(name: str) -> str:
    cuda_device = torch.cuda.is_available()
    native_reason = f"the native extension fused_dropout._C did not load: {_native.IMPORT_ERROR}"
    no_device = "no CUDA device (torch.cuda.is_available() is False)"
    if name == "cpu":
        return "available for cpu tensors" if _native.LOADED else f"unavailable: {native_reason}"
    if name == "cuda":
        if not _native.LOADED:
            return f"unavailable: {native_reason}"
        if not _native.HAS_CUDA_KERNELS:
            return ("unavailable: fused_dropout._C was built without the CUDA kernels (needs a CUDA build of torch "
                    "and nvcc at install; FUSED_DROPOUT_BUILD_CUDA=1 forces them)")
        return "available for cuda tensors" if cuda_device else f"unavailable: {no_device}"
    if name == "triton":
        if not backends.TRITON_INSTALLED:
            return "unavailable: triton is not installed (pip install triton)"
        devices = backends._backend_devices("triton")
        if not devices:
            return f"unavailable: {no_device}, and TRITON_INTERPRET is unset (TRITON_INTERPRET=1 runs CPU tensors)"
        line = "available for " + " and ".join(f"{device} tensors" for device in devices)
        if "cpu" in devices:
            line += " (through the interpreter, TRITON_INTERPRET=1)"
        else:
            line += "; cpu tensors need TRITON_INTERPRET=1"
        return line
    return "available for tensors on any device (pure-PyTorch reference)"


def lines() -> list[str]:
    triton_version = _triton_version()
    facts = [
        f"fused_dropout version: {__version__}",
        f"fused_dropout location: {os.path.dirname(os.path.abspath(__file__))}",
        f"python: {sys.version.split()[0]} ({sys.executable})",
        f"torch running: {torch.__version__} (CUDA {torch.version.cuda or 'none: a CPU build'})",
        f"torch built with: {_native.BUILT_WITH_TORCH or 'unknown (no fused_dropout/_build_info.py: not built here)'}",
        f"triton: {triton_version or 'not installed'}",
        f"TRITON_INTERPRET: {os.environ.get('TRITON_INTERPRET', 'unset')}",
        f"{backends.ENV_VAR}: {os.environ.get(backends.ENV_VAR, 'unset')}",
        f"native extension: {'loaded from ' + _native._C.__file__ if _native.LOADED else 'not loaded'}",
        f"native import error: {_native.IMPORT_ERROR}" if _native.IMPORT_ERROR is not None else None,
        f"native CUDA kernels: {'built' if _native.HAS_CUDA_KERNELS else 'not built'}" if _native.LOADED else None,
        "CUDA device: " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "none"),
    ]
    facts += [f"backend {name}: {_backend_line(name)}" for name in backends.KNOWN_BACKENDS]
    facts.append(f"available backends: {', '.join(backends.available_backends())}")
    if _native.LOADED:
        facts.append(f"CPU ISA in use: {_native._C.cpu_isa()}")
        facts.append(f"CPU ISAs available: {', '.join(_available_isas())}")
    else:
        facts.append("CPU ISA in use: none (the native extension did not load)")
    return [fact for fact in facts if fact is not None]


def main() -> None:
    print("\n".join(lines()))


if __name__ == "__main__":
    main()
