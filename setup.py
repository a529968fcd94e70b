"""Builds the native extension fused_dropout._C; the package metadata is in pyproject.toml.

The CPU kernels are always built. The CUDA kernels join when torch is a CUDA build and nvcc is found; set
FUSED_DROPOUT_BUILD_CUDA=1 to require them or =0 to skip them. TORCH_CUDA_ARCH_LIST is respected (default:
8.0 and 9.0). Release builds carry no debug info; FUSED_DROPOUT_DEBUG=1 keeps it.

The extension is bound to the torch it is compiled against, so install with
`pip install --no-build-isolation .` (the torch you run is the one it builds with).
"""
import glob
import os
import sys

from setuptools import setup

NO_BUILD_ISOLATION_FIX = "build with: pip install --no-build-isolation ."


def _in_isolated_build_env():
    """True inside pip's (or `python -m build`'s) isolated build environment, which holds no torch."""
    return any("pip-build-env-" in path or "build-env-" in path for path in sys.path)


try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as error:  # pragma: no cover - a plain message beats a traceback from inside pip
    if _in_isolated_build_env():
        sys.exit(
            "fused_dropout compiles against the torch you run it with, but pip is building it in an isolated "
            "environment that has no torch (torch is deliberately not a build requirement: pip would download "
            f"another, multi-GB one). Use your environment's torch; {NO_BUILD_ISOLATION_FIX}"
        )
    sys.exit(f"fused_dropout compiles against torch, which {sys.executable} cannot import ({error}). Install "
             f"torch first (pip install torch), then {NO_BUILD_ISOLATION_FIX}")

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0"
DEBUG = os.environ.get("FUSED_DROPOUT_DEBUG") == "1"


def cuda_build_decision():
    """(build_cuda, reason) from the environment, torch and nvcc."""
    forced = os.environ.get("FUSED_DROPOUT_BUILD_CUDA")
    torch_has_cuda = torch.version.cuda is not None
    nvcc_found = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    if forced == "0":
        return False, "FUSED_DROPOUT_BUILD_CUDA=0"
    if forced == "1":
        if not (torch_has_cuda and nvcc_found):
            sys.exit("FUSED_DROPOUT_BUILD_CUDA=1 but torch is not a CUDA build or nvcc was not found")
        return True, "FUSED_DROPOUT_BUILD_CUDA=1"
    if not torch_has_cuda:
        return False, f"torch {torch.__version__} is a CPU build"
    if not nvcc_found:
        return False, "nvcc was not found (set CUDA_HOME)"
    return True, f"torch {torch.__version__} has CUDA {torch.version.cuda} and nvcc is at {CUDA_HOME}"


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def make_extension():
    build_cuda, reason = cuda_build_decision()
    # No fast-math: contraction off keeps results identical across backends; no trapping/errno lets the compiler
    # vectorise the branch-free selects without changing any result.
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno"]
    # Python's own CFLAGS carry -g; a release build drops the debug info (-g0 last wins) and strips at link.
    cxx_flags += ["-g"] if DEBUG else ["-g0"]
    link_flags = ["-fopenmp"] + ([] if DEBUG else ["-s"])
    cpu_sources = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    if not build_cuda:
        print(f"fused_dropout: building the CPU kernels only ({reason})", flush=True)
        return CppExtension(
            "fused_dropout._C", cpu_sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags
        )
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    print(
        f"fused_dropout: building the CPU and CUDA kernels for arch {os.environ['TORCH_CUDA_ARCH_LIST']} ({reason})",
        flush=True,
    )
    # No --use_fast_math: it flushes float32 denormals to zero, and the kernels must round exactly as the spec
    # (and the CPU) does. Multiplies and adds use explicit _rn intrinsics, so nothing is contracted either.
    nvcc_flags = ["-O3", "-std=c++17", "-lineinfo", "-DFD_WITH_CUDA"]
    return CUDAExtension(
        "fused_dropout._C",
        cpu_sources + sources("csrc/cuda/*.cpp") + sources("csrc/cuda/*.cu"),
        extra_compile_args={"cxx": cxx_flags + ["-DFD_WITH_CUDA"], "nvcc": nvcc_flags},
        extra_link_args=link_flags,
    )


setup(
    install_requires=["torch>=2.4"],
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
