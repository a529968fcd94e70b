"""Where the CUDA tools are: nvcc from CUDA_HOME (or PATH); cuobjdump from CUDA_HOME, PATH or Triton's wheel."""
from __future__ import annotations

import os
import shutil
import subprocess

CUDA_HOME = os.environ.get("CUDA_HOME", "/usr/local/cuda")


def _find(name: str) -> str | None:
    candidate = os.path.join(CUDA_HOME, "bin", name)
    if os.path.exists(candidate):
        return candidate
    found = shutil.which(name)
    if found:
        return found
    try:
        import triton
    except ImportError:
        return None
    candidate = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    return candidate if os.path.exists(candidate) else None


def host_compiler() -> str | None:
    """The host C++ compiler of the launch probe: $CXX or g++."""
    return shutil.which(os.environ.get("CXX", "g++"))


def nvcc() -> str | None:
    return _find("nvcc")


def cuobjdump() -> str | None:
    return _find("cuobjdump")


def sass_of(cubin_path: str) -> str:
    """cuobjdump -sass of a cubin (every function in it)."""
    return subprocess.run([cuobjdump(), "-sass", cubin_path], check=True, capture_output=True, text=True).stdout


def resource_usage(cubin_path: str) -> dict:
    """{function: {"REG": .., "STACK": .., "SHARED": .., "LOCAL": ..}} from cuobjdump -res-usage."""
    text = subprocess.run([cuobjdump(), "-res-usage", cubin_path], check=True, capture_output=True,
                          text=True).stdout
    usage, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Function "):
            current = line[len("Function "):].rstrip(":")
        elif current is not None and line.startswith("REG:"):
            usage[current] = {key: int(value) for key, value in
                              (item.split(":") for item in line.split() if item.split(":")[1].isdigit())}
            current = None
    return usage


def cuda_include() -> str:
    """The CUDA headers (cuda_bf16.h, ...) the host-compiled launch probe includes."""
    return os.path.join(CUDA_HOME, "include")
