"""The CUDA kernels: csrc/cuda/dropout_kernels.cu compiled to a cubin per arch with nvcc (the flags of
tests/test_cuda_compile.py), and each mangled kernel name mapped to what it is (op_list.h gives the op order).

Only the vector-path instantiations (kVec = true, the last template flag) are modeled: the aligned hot path lives
there. The scalar ones compile in the same cubin (a compile failure of either fails the run) and are not modeled.
"""
from __future__ import annotations

import os
import re
import subprocess

from . import tools
from .kernel_id import KernelId

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "csrc")
SOURCE = os.path.join(CSRC, "cuda", "dropout_kernels.cu")
FLAGS = ["-std=c++17", "-O3", "-Werror", "all-warnings", "-Xptxas", "-v"]

_TYPES = {"13__nv_bfloat16": "bf16", "6__half": "fp16", "f": "fp32", "d": "fp64"}
_TYPE = r"(13__nv_bfloat16|6__half|f|d)"
_FORWARD = re.compile(r"forward_kernelI" + _TYPE + r"NS_14ForwardElementILNS_9ForwardOpE(\d+)ELb([01])EEELb([01])E")
_BACKWARD = re.compile(r"(backward_bias_kernel|backward_kernel)I" + _TYPE + r"LNS_10BackwardOpE(\d+)ELb([01])E")
_COLUMN_SUM = re.compile(r"column_sum_kernelI" + _TYPE + r"E")


def _op_lists() -> tuple:
    """(forward ops as (name, has residual), backward ops as (name, keep from rng_state)) in op_list.h order."""
    text = open(os.path.join(CSRC, "op_list.h")).read()

    def entries(macro):
        body = text.split(f"#define {macro}(X)", 1)[1].split("\n\n", 1)[0]
        return [[part.strip() for part in args.split(",")] for args in re.findall(r"X\(([^)]*)\)", body)]

    forward = [(args[0], args[3] == "true") for args in entries("FD_FORWARD_OPS")]
    backward = [(args[0], args[1] == "rng_state") for args in entries("FD_BACKWARD_OPS")]
    return forward, backward


def _launch_geometry() -> dict:
    """kFlatThreads, kTileThreads, kBlocksPerSm from csrc/cuda/launch_geometry.h."""
    text = open(os.path.join(CSRC, "cuda", "launch_geometry.h")).read()
    return {name: int(value) for name, value in re.findall(r"constexpr int (k\w+) = (\d+);", text)}


def identify(name: str) -> KernelId | None:
    """The KernelId of a mangled vector-path kernel name; None for scalar-path instantiations and unknown names."""
    forward_ops, backward_ops = _op_lists()
    geometry = _launch_geometry()
    flat = dict(threads=geometry["kFlatThreads"], launched_blocks_per_sm=str(geometry["kBlocksPerSm"]),
                tile="grid-stride")
    found = _FORWARD.search(name)
    if found:
        dtype, op_index, bias, vec = found.groups()
        if vec != "1":
            return None
        op, residual = forward_ops[int(op_index)]
        return KernelId("cuda", "forward", op, bias == "1", _TYPES[dtype], name, residual=residual, **flat)
    found = _BACKWARD.search(name)
    if found:
        kernel, dtype, op_index, vec = found.groups()
        if vec != "1":
            return None
        op, from_rng = backward_ops[int(op_index)]
        if kernel == "backward_bias_kernel":
            return KernelId("cuda", "backward", op, True, _TYPES[dtype], name, keep_from_rng=from_rng,
                            threads=geometry["kTileThreads"], launched_blocks_per_sm="grid", tile="row tiles")
        return KernelId("cuda", "backward", op, False, _TYPES[dtype], name, keep_from_rng=from_rng, **flat)
    found = _COLUMN_SUM.search(name)
    if found:
        return KernelId("cuda", "column_sum", "column_sum", False, _TYPES[found.group(1)], name,
                        keep_from_rng=False, **flat)
    return None


def recognised(name: str) -> bool:
    """Whether a function name is one of the kernels identify() knows (vector or scalar path)."""
    return any(pattern.search(name) for pattern in (_FORWARD, _BACKWARD, _COLUMN_SUM))


def _spills(ptxas_log: str) -> dict:
    """{function: spill store + load bytes} from ptxas -v."""
    spills, current = {}, None
    for line in ptxas_log.splitlines():
        entry = re.search(r"Compiling entry function '([^']+)'", line)
        if entry:
            current = entry.group(1)
        found = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if found and current is not None:
            spills[current] = int(found.group(1)) + int(found.group(2))
    return spills


def compile_cubin(arch: int, out_dir: str) -> subprocess.Popen:
    """Starts nvcc -cubin for one arch (returns the process; cubin_path() names its output)."""
    return subprocess.Popen(
        [tools.nvcc(), *FLAGS, "-cubin", "-gencode", f"arch=compute_{arch},code=sm_{arch}", f"-I{CSRC}", SOURCE,
         "-o", cubin_path(arch, out_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cubin_path(arch: int, out_dir: str) -> str:
    return os.path.join(out_dir, f"dropout_kernels.sm_{arch}.cubin")


def compiled_kernels(archs, out_dir: str) -> dict:
    """{arch: {"error": message or None, "cubin": path, "spills": {function: bytes}}}, nvcc run side by side."""
    started = {arch: compile_cubin(arch, out_dir) for arch in archs}
    results = {}
    for arch, process in started.items():
        _, log = process.communicate()
        error = None if process.returncode == 0 else log[-4000:]
        results[arch] = {"error": error, "cubin": cubin_path(arch, out_dir), "spills": _spills(log)}
    return results
