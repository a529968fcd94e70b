"""Builds fused_dropout and its native extension fused_dropout._C.

The CPU kernels are always built. The CUDA kernels join when torch is a CUDA build and nvcc is found; set
FUSED_DROPOUT_BUILD_CUDA=1 to require them or =0 to skip them. TORCH_CUDA_ARCH_LIST is respected (default:
8.0 and 9.0). Install with `pip install --no-build-isolation .` so pip never fetches another torch.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pragma: no cover - a plain message beats a traceback from inside pip
    sys.exit("fused_dropout needs torch installed first; build with `pip install --no-build-isolation .`")

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0"


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
    cpu_sources = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    if not build_cuda:
        print(f"fused_dropout: building the CPU kernels only ({reason})", flush=True)
        return CppExtension(
            "fused_dropout._C", cpu_sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"]
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
        extra_link_args=["-fopenmp"],
    )


setup(
    name="fused_dropout",
    version="0.1.0",
    description="Fused dropout kernels for PyTorch (CPU, CUDA, Triton) with one bit-exact mask specification",
    packages=find_packages(include=["fused_dropout", "fused_dropout.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4"],
    extras_require={"triton": ["triton"], "bench": ["matplotlib", "tqdm"], "test": ["pytest", "expecttest"]},
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
