"""The CUDA kernels compile with nvcc for sm_80 and sm_90 (object files, host code included), without warnings
and without spills over their limits, and the device Philox makes one wide multiply per product; the torch glue
compiles against torch's headers. The nvcc compile is conftest's cuda_kernels_compiled, which the H100 model
(test_h100_model) reads too. Skips where nvcc is absent."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_HOME = os.environ.get("CUDA_HOME", "/usr/local/cuda")
NVCC = shutil.which("nvcc") or (os.path.join(CUDA_HOME, "bin", "nvcc")
                                if os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")) else None)
SOURCES = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found")


def test_there_are_cuda_sources():
    assert SOURCES, "csrc/cuda/*.cu is empty"


def test_sources_are_the_kernels_file():
    # The shared compile (conftest.cuda_kernels_compiled) is of dropout_kernels.cu: a new .cu needs its own.
    assert [os.path.basename(path) for path in SOURCES] == ["dropout_kernels.cu"]


@pytest.mark.parametrize("arch", [80, 90], ids=lambda arch: f"sm_{arch}")
def test_compiles_for_sm80_and_sm90(cuda_kernels_compiled, arch):
    """nvcc -c (host code too) with -Werror all-warnings and ptxas -v: the flags of
    benchmarks/h100_model/cuda_kernels.py, one compile per arch for this test and the H100 model."""
    result = cuda_kernels_compiled[arch]
    assert result["error"] is None, result["error"]
    assert os.path.getsize(result["cubin"]) > 0
    # The kernels must keep their per-thread arrays in registers under their __launch_bounds__ register caps
    # (launch_geometry.h): the vector-path kernels (the hot path; kVec, the last template argument, is true) and
    # the column sums spill nothing; a scalar fallback (misaligned pointers) may spill up to 16 bytes (the float
    # mask_bwd bias-gradient tile for sm_80 spills 16 outside its row loop's hot part).
    spills = kernel_spills(result["log"])
    assert spills, result["log"][-4000:]
    assert {kernel_arch for _, kernel_arch in spills} == {f"sm_{arch}"}
    for (kernel, _), spilled in spills.items():
        limit = SCALAR_FALLBACK_SPILL_LIMIT if kernel.endswith("Lb0EEEv") or "Lb0EEEvNS" in kernel else 0
        assert spilled <= limit, (kernel, arch, spilled)


SCALAR_FALLBACK_SPILL_LIMIT = 16


def kernel_spills(ptxas_log: str) -> dict:
    """{(mangled kernel name, arch): bytes of spill stores} from ptxas -v output."""
    spills, current = {}, None
    for line in ptxas_log.splitlines():
        if "Compiling entry function" in line:
            name, arch = line.split("'")[1], line.split("'")[3]
            current = (name, arch)
        elif "bytes spill stores" in line and current is not None:
            spills[current] = int(line.split("bytes spill stores")[0].split(",")[-1])
    return spills


@pytest.mark.skipif(shutil.which("g++") is None or not os.path.exists(os.path.join(CUDA_HOME, "include")),
                    reason="needs g++ and the CUDA headers")
def test_cuda_glue_compiles_against_torch_headers(tmp_path):
    """cuda_ops.cpp (the torch glue) with the real torch and CUDA runtime headers; only the two torch CUDA headers
    a CPU build of torch lacks are replaced by stubs declaring what the glue uses. Syntax and types only."""
    from torch.utils.cpp_extension import include_paths

    stubs = os.path.join(ROOT, "tests", "cuda_glue_stubs")
    includes = [f"-I{stubs}"] + [f"-I{p}" for p in include_paths()] + [f"-I{os.path.join(CUDA_HOME, 'include')}"]
    result = subprocess.run(["g++", "-std=c++20", "-fsyntax-only", "-DFD_WITH_CUDA", *includes,
                             os.path.join(ROOT, "csrc", "cuda", "cuda_ops.cpp")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]


def test_kernel_sources_include_no_torch_headers():
    kernel_headers = ["host_device.h", "philox.h", "activations.h", "op_list.h", "op_traits.h", "op_dispatch.h",
                      "dropout_math.h", "kernel_args.h"]
    for path in SOURCES + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.h")) + [
            os.path.join(ROOT, "csrc", name) for name in kernel_headers]:
        for line in open(path):
            if line.startswith("#include"):
                assert "ATen" not in line and "torch/" not in line and "c10/" not in line, (path, line)


# The Philox multipliers (csrc/philox.h) as they can appear in PTX immediates.
PHILOX_MULTIPLIERS = [0xD2511F53, 0xCD9E8D57]
PHILOX_IMMEDIATES = {str(m) for m in PHILOX_MULTIPLIERS} | {str(m - 2**32) for m in PHILOX_MULTIPLIERS} | {
    f"0x{m:08x}" for m in PHILOX_MULTIPLIERS} | {f"0x{m:08X}" for m in PHILOX_MULTIPLIERS}


def test_device_philox_makes_one_wide_multiply_per_product(cuda_kernels_compiled):
    """The GPU side of philox_mul (csrc/philox.h), which the CPU emulator of the kernels never runs: each Philox
    product is one mul.wide.u32 whose register pair holds both halves, never a wide multiply for the high half plus
    a mul.lo by the same multiplier for the low half (twice the multiplies in SASS). Read in the sm_90 compile's
    PTX."""
    result = cuda_kernels_compiled[90]
    assert result["error"] is None, result["error"]
    with open(result["ptx"]) as ptx:
        lines = ptx.read().splitlines()
    assert any("mul.wide.u32" in line for line in lines)
    split_products = [line for line in lines if ("mul.lo" in line or "mul.hi" in line)
                      and set(line.replace(",", " ").replace(";", " ").split()) & PHILOX_IMMEDIATES]
    assert not split_products, split_products[:4]
