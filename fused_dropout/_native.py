"""Loads the native extension fused_dropout._C (CPU kernels, and CUDA kernels when built with them).

A missing or broken build is never silent: importing fused_dropout then warns once, with the import error, that
CPU tensors run on the pure-PyTorch reference backend instead (hundreds of times slower).
"""
from __future__ import annotations

import warnings

try:
    from . import _C

    IMPORT_ERROR: ImportError | None = None
except ImportError as error:  # a source checkout that was never built, or a build against another torch
    _C = None
    IMPORT_ERROR = error
    warnings.warn(
        f"fused_dropout: the native extension fused_dropout._C failed to import ({error}). The 'cpu' and 'cuda' "
        "backends are unavailable and CPU tensors run on the pure-PyTorch 'torch' backend, which is hundreds of "
        "times slower. Rebuild with `pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )

LOADED = _C is not None
HAS_CUDA_KERNELS = LOADED and bool(_C.has_cuda_kernels())
