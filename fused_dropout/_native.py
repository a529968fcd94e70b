"""Loads the native extension fused_dropout._C (CPU kernels, and CUDA kernels when built with them).

_C is bound to the C++ ABI of the torch it was compiled against, which setup.py records beside it in
fused_dropout/_build_info.py. _C is loaded only when the running torch has that torch's major.minor; a different
torch (or a _C with no record, built by an older setup.py) is not loaded at all, since it could crash or
misbehave rather than fail to import.

A missing, broken or mismatched build is never silent: importing fused_dropout then warns once, with the reason
(kept in IMPORT_ERROR), that CPU tensors run on the pure-PyTorch reference backend instead (hundreds of times
slower).
"""
from __future__ import annotations

import glob
import importlib
import importlib.machinery
import os
import warnings

import torch

REBUILD_COMMAND = "pip install --no-build-isolation -e ."


def major_minor(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(version).split("+")[0].split(".")[:2])


def _built_with_torch() -> str | None:
    """The torch version _C was compiled against (from fused_dropout/_build_info.py), None without a record."""
    try:
        from ._build_info import TORCH_VERSION
    except ImportError:
        return None
    return TORCH_VERSION


def _binary_present() -> bool:
    here = os.path.dirname(os.path.abspath(__file__))
    return any(glob.glob(os.path.join(here, "_C" + suffix)) for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _load():
    """(_C or None, the ImportError that kept it from loading or None)."""
    built_with = _built_with_torch()
    if built_with is not None and major_minor(built_with) != major_minor(torch.__version__):
        return None, ImportError(
            f"fused_dropout._C was built with torch {built_with} but torch {torch.__version__} is running; a "
            f"compiled extension only works with the torch {'.'.join(map(str, major_minor(built_with)))}.x it "
            f"was built against, so it was not loaded. Rebuild it against this torch: `{REBUILD_COMMAND}`"
        )
    if built_with is None and _binary_present():
        return None, ImportError(
            "fused_dropout._C has no record of the torch it was built with (fused_dropout/_build_info.py is "
            "missing: a build by an older setup.py), so it was not loaded. Rebuild it against this torch: "
            f"`{REBUILD_COMMAND}`"
        )
    try:
        return importlib.import_module(f"{__package__}._C"), None
    except ImportError as error:  # a source checkout that was never built, or a broken build
        return None, error


_C, IMPORT_ERROR = _load()
BUILT_WITH_TORCH = _built_with_torch()

if IMPORT_ERROR is not None:
    warnings.warn(
        f"fused_dropout: the native extension fused_dropout._C failed to import ({IMPORT_ERROR}). The 'cpu' and "
        "'cuda' backends are unavailable and CPU tensors run on the pure-PyTorch 'torch' backend, which is "
        f"hundreds of times slower. Rebuild with `{REBUILD_COMMAND}`.",
        RuntimeWarning,
        stacklevel=2,
    )

LOADED = _C is not None
HAS_CUDA_KERNELS = LOADED and bool(_C.has_cuda_kernels())
