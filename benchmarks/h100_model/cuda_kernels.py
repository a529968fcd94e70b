"""The CUDA kernels: csrc/cuda/dropout_kernels.cu compiled per arch with nvcc (also the compile that
tests/test_cuda_compile.py checks), and each mangled kernel name mapped to what it is (op_list.h gives the op order) and
how the launcher launches it (threads per block, blocks per multiprocessor: launch_probe.cpp asks the launcher).

Only the vector-path instantiations (kVec = true, the last template flag) are modeled: the aligned hot path lives
there. The scalar ones compile in the same cubin (a compile failure of either fails the run) and are not modeled,
nor are the kernels of a mask with runs (forward_runs_kernel, backward_runs_kernel, backward_bias_runs_kernel: the
mask geometry's path, which the budgets of the flat path do not cover).
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
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch_probe.cpp")
FLAGS = ["-std=c++17", "-O3", "-Werror", "all-warnings", "-Xptxas", "-v"]

_TYPES = {"13__nv_bfloat16": "bf16", "6__half": "fp16", "f": "fp32", "d": "fp64"}
_TYPE = r"(13__nv_bfloat16|6__half|f|d)"
_FORWARD = re.compile(r"forward_kernelI" + _TYPE + r"NS_14ForwardElementILNS_9ForwardOpE(\d+)ELb([01])EEELb([01])E")
_BACKWARD = re.compile(r"(backward_bias_kernel|backward_kernel)I" + _TYPE + r"LNS_10BackwardOpE(\d+)ELb([01])E")
_COLUMN_SUM = re.compile(r"column_sum_kernelI" + _TYPE + r"E")
_MASK_RUNS = re.compile(r"(forward_runs_kernel|backward_runs_kernel|backward_bias_runs_kernel)I" + _TYPE)


def _op_lists() -> tuple:
    """(forward ops as (name, has residual, smooth activation), backward ops as (name, keep from rng_state, saves
    the input)) in op_list.h order."""
    text = open(os.path.join(CSRC, "op_list.h")).read()

    def entries(macro):
        body = text.split(f"#define {macro}(X)", 1)[1].split("\n\n", 1)[0]
        return [[part.strip() for part in args.split(",")] for args in re.findall(r"X\(([^)]*)\)", body)]

    smooth = ("Gelu", "GeluTanh", "Silu")
    forward = [(args[0], args[3] == "true", args[1] in smooth) for args in entries("FD_FORWARD_OPS")]
    backward = [(args[0], args[1] != "y", args[1] == "input") for args in entries("FD_BACKWARD_OPS")]
    return forward, backward


def launch_geometry(work_dir: str) -> dict:
    """{(kind, op, bias, dtype): (grid x, grid y, threads)} of every kernel as the launcher computes it
    (launch_probe.cpp runs csrc/cuda/launch_plan.h on a one-multiprocessor device: a grid-stride kernel's grid x is
    its launched blocks per multiprocessor). kind: forward, backward, backward_tiles, column_sum; op: the forward
    op, or the backward op for the backward kernels and the column sums they launch. Only vector-path launches
    are listed (the probe's pointers are aligned)."""
    binary = os.path.join(work_dir, "launch_probe")
    if not os.path.exists(binary):
        built = subprocess.run([tools.host_compiler() or "g++", "-std=c++17", "-O0", f"-I{CSRC}",
                                f"-I{tools.cuda_include()}", PROBE, "-o", binary], capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"the launch probe does not compile against csrc/cuda/launch_plan.h:\n"
                               f"{built.stderr[-4000:]}")
    found = {}
    for line in subprocess.run([binary], check=True, capture_output=True, text=True).stdout.splitlines():
        kind, op, bias, dtype, _, vec, _, x, y, _, threads = line.split()
        if vec == "1":
            found[(kind, op, bias == "1", dtype)] = (int(x), int(y), int(threads))
    return found


def identify(name: str, launches: dict) -> KernelId | None:
    """The KernelId of a mangled vector-path kernel name; None for scalar-path instantiations and unknown names.
    launches: launch_geometry()'s table, which gives threads and launched blocks per SM."""
    forward_ops, backward_ops = _op_lists()

    def launched(kind, op, bias, dtype):
        x, _, threads = launches[(kind, op, bias, dtype)]
        return dict(threads=threads, launched_blocks_per_sm="grid" if kind == "backward_tiles" else str(x),
                    tile="row tiles" if kind == "backward_tiles" else "grid-stride")

    found = _FORWARD.search(name)
    if found:
        dtype, op_index, bias, vec = found.groups()
        if vec != "1":
            return None
        op, residual, smooth = forward_ops[int(op_index)]
        dtype, bias = _TYPES[dtype], bias == "1"
        return KernelId("cuda", "forward", op, bias, dtype, name, residual=residual, smooth_activation=smooth,
                        **launched("forward", op, bias, dtype))
    found = _BACKWARD.search(name)
    if found:
        kernel, dtype, op_index, vec = found.groups()
        if vec != "1":
            return None
        op, from_rng, saves_input = backward_ops[int(op_index)]
        dtype, tiles = _TYPES[dtype], kernel == "backward_bias_kernel"
        return KernelId("cuda", "backward", op, tiles, dtype, name, keep_from_rng=from_rng,
                        reads_saved_input=saves_input, smooth_activation=saves_input,
                        **launched("backward_tiles" if tiles else "backward", op, tiles, dtype))
    found = _COLUMN_SUM.search(name)
    if found:
        # Launched after either backward's tiles, with the same geometry (the probe shows both).
        dtype = _TYPES[found.group(1)]
        op = next(op for kind, op, _, kind_dtype in launches if kind == "column_sum" and kind_dtype == dtype)
        return KernelId("cuda", "column_sum", "column_sum", False, dtype, name, keep_from_rng=False,
                        **launched("column_sum", op, True, dtype))
    return None


def recognised(name: str) -> bool:
    """Whether a function name is one of the kernels identify() knows (vector or scalar path) or a kernel of a mask
    with runs (known, not modeled)."""
    return any(pattern.search(name) for pattern in (_FORWARD, _BACKWARD, _COLUMN_SUM, _MASK_RUNS))


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
    """Starts nvcc for one arch (returns the process). It compiles an object file, host code included as the
    extension's build compiles it, and keeps its intermediate files (cubin_path, ptx_path) in a directory of the
    arch's own, so one compile serves the model and tests/test_cuda_compile.py."""
    keep_dir = os.path.join(out_dir, f"sm_{arch}")
    os.makedirs(keep_dir, exist_ok=True)
    return subprocess.Popen(
        [tools.nvcc(), *FLAGS, "-c", "-gencode", f"arch=compute_{arch},code=sm_{arch}", f"-I{CSRC}", SOURCE,
         "-o", os.path.join(keep_dir, "dropout_kernels.o"), "-keep", "-keep-dir", keep_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cubin_path(arch: int, out_dir: str) -> str:
    return os.path.join(out_dir, f"sm_{arch}", "dropout_kernels.cubin")


def ptx_path(arch: int, out_dir: str) -> str:
    return os.path.join(out_dir, f"sm_{arch}", "dropout_kernels.ptx")


def compiled_kernels(archs, out_dir: str) -> dict:
    """{arch: {"error": message or None, "cubin": path, "ptx": path, "log": ptxas -v output, "spills": {function:
    bytes}}}, nvcc run side by side."""
    started = {arch: compile_cubin(arch, out_dir) for arch in archs}
    results = {}
    for arch, process in started.items():
        _, log = process.communicate()
        error = None if process.returncode == 0 else log[-4000:]
        results[arch] = {"error": error, "cubin": cubin_path(arch, out_dir), "ptx": ptx_path(arch, out_dir),
                         "log": log, "spills": _spills(log)}
    return results
