"""Which backends exist in this process, and which one runs a call.

"cpu"    the C++ kernels (always built)                      CPU tensors
"cuda"   the CUDA C++ kernels (built when torch has CUDA)     CUDA tensors
"triton" the Triton kernels                                  CUDA tensors; CPU tensors under TRITON_INTERPRET=1
"torch"  the pure-PyTorch reference (fused_dropout.reference) any device

When the native extension fused_dropout._C fails to import, "cpu" and "cuda" are not available: importing
fused_dropout warns once with the import error, and CPU tensors run on "torch" (hundreds of times slower).

backend=None or "auto" takes FUSED_DROPOUT_BACKEND when it is set, else the first available backend for the
tensor's device in the order cuda, triton, torch (CUDA) or cpu, torch (CPU).
"""
from __future__ import annotations

import importlib.util
import os

import torch

from . import _native
from .ops import FAMILIES, OpFamily

KNOWN_BACKENDS = ("cpu", "cuda", "triton", "torch")
ENV_VAR = "FUSED_DROPOUT_BACKEND"
_PREFERENCE = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpu", "torch")}
_FAMILY_OF_BACKEND = {"cpu": "native", "cuda": "native", "triton": "triton", "torch": "torch"}

_C = _native._C
NATIVE_CPU = _native.LOADED
NATIVE_CUDA = _native.HAS_CUDA_KERNELS

TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _backend_devices(name: str) -> tuple[str, ...]:
    """Device types a backend can run on in this process (empty when it is not available)."""
    cuda = torch.cuda.is_available()
    if name == "cpu":
        return ("cpu",) if NATIVE_CPU else ()
    if name == "cuda":
        return ("cuda",) if NATIVE_CUDA and cuda else ()
    if name == "triton":
        if not TRITON_INSTALLED:
            return ()
        return (("cuda",) if cuda else ()) + (("cpu",) if triton_interpreting() else ())
    return ("*",)


def available_backends() -> list[str]:
    """The backends usable in this process, fastest first.

    "cpu" (and "cuda") are missing when the native extension failed to import; fused_dropout then warned once
    at import, with the import error (fused_dropout._native.IMPORT_ERROR), and CPU tensors run on "torch"."""
    return [name for name in ("cuda", "triton", "cpu", "torch") if _backend_devices(name)]


def _runs_on(name: str, device_type: str) -> bool:
    devices = _backend_devices(name)
    return "*" in devices or device_type in devices


def resolve(backend, device: torch.device) -> str:
    """The backend that runs a call on `device`; a clear error when the request cannot be met."""
    if backend is None or backend == "auto":
        backend = os.environ.get(ENV_VAR) or "auto"
        source = f"{ENV_VAR}={backend}" if backend != "auto" else None
    else:
        source = f"backend={backend!r}"
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str or None, got {type(backend).__name__}")
    if backend == "auto":
        for name in _PREFERENCE.get(device.type, ("torch",)):
            if _runs_on(name, device.type):
                return name
        return "torch"
    if backend not in KNOWN_BACKENDS:
        raise ValueError(f"unknown backend {source}: choose from {['auto', *KNOWN_BACKENDS]}")
    if not _runs_on(backend, device.type):
        usable = [name for name in available_backends() if _runs_on(name, device.type)]
        raise RuntimeError(
            f"backend {backend!r} is not available for {device.type} tensors ({source}); "
            f"available here: {usable}; available in this process: {available_backends()}"
        )
    return backend


def ops_for(backend, device: torch.device) -> OpFamily:
    return FAMILIES[_FAMILY_OF_BACKEND[resolve(backend, device)]]
