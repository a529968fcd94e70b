"""Compile, disassemble and model every selected kernel: the rows of the report."""
from __future__ import annotations

import os

from . import cuda_kernels, tools, triton_kernels
from .hot_path import ControlFlow
from .model import model_row
from .sass import parse_functions

ARCHS = (80, 90)
BACKENDS = ("cuda", "triton")


def matches(label: str, words: list) -> bool:
    """Every filter word is a word of the kernel's label ('cuda dropout forward bf16 grid-stride'); a word may
    offer alternatives: 'bf16|fp16'."""
    return all(set(word.split("|")) & set(label.split()) for word in words)


def cuda_rows(archs, words: list, work_dir: str, compiled: dict | None = None) -> tuple:
    """(rows, notes) for the CUDA kernels; `compiled` is cuda_kernels.compiled_kernels' result if it has run."""
    rows, notes = [], []
    launches = cuda_kernels.launch_geometry(work_dir)
    compiled = compiled if compiled is not None else cuda_kernels.compiled_kernels(archs, work_dir)
    for arch in archs:
        result = compiled[arch]
        if result["error"]:
            rows.append(dict(backend="cuda", arch=f"sm_{arch}", kernel=os.path.basename(cuda_kernels.SOURCE),
                             error=result["error"], within_budget=False, budget_failures="does not compile"))
            continue
        functions = parse_functions(tools.sass_of(result["cubin"]))
        usage = tools.resource_usage(result["cubin"])
        for name, instructions in functions.items():
            kernel = cuda_kernels.identify(name, launches)
            if kernel is None:
                if not cuda_kernels.recognised(name):
                    notes.append(f"sm_{arch}: not modeled (unknown kernel): {name}")
                continue
            if not matches(kernel.label, words):
                continue
            resources = usage.get(name, {})
            rows.append(model_row(kernel, arch, ControlFlow(instructions), resources.get("REG", 0),
                                  result["spills"].get(name, 0), resources.get("SHARED", 0)))
    return rows, notes


def triton_rows(archs, words: list, work_dir: str) -> tuple:
    """(rows, notes) for the Triton kernels: compiled in child processes, modeled here."""
    jobs = triton_kernels.jobs()
    names = [name for name, (kernel, _, _) in jobs.items() if matches(kernel.label, words)]
    rows = []
    if not names:
        return rows, []
    for arch, results in triton_kernels.compiled_kernels(archs, names, work_dir).items():
        for name in names:
            kernel, result = jobs[name][0], results[name]
            lengths = [int(length) for length in kernel.row_lengths.split("/") if length] or [0]
            flow, usage = None, {}
            if result["error"] is None:
                functions = parse_functions(tools.sass_of(result["cubin"]))
                flow = ControlFlow(next(iter(functions.values())))
                usage = next(iter(tools.resource_usage(result["cubin"]).values()), {})
            # Spilled registers live in local memory: the cubin's per-thread stack frame and local bytes.
            spills = usage.get("STACK", 0) + usage.get("LOCAL", 0)
            for row_len in lengths:
                rows.append(model_row(kernel, arch, flow, usage.get("REG", 0), spills,
                                      result.get("shared", 0), row_len=row_len, error=result["error"]))
    return rows, []


_ORDER = {name: index for index, name in enumerate(
    ["cuda", "triton", "sm_90", "sm_80", "bf16", "fp16", "fp32", "fp64", "forward", "backward", "column_sum",
     "dropout", "bias_relu_dropout", "dropout_add", "mask_bwd", "relu_output_bwd"])}


def _sort_key(row: dict) -> tuple:
    """Backend, arch, dtype, kind, op, bias, row length: the order of the report's tables."""
    return tuple(_ORDER.get(row.get(key), 99) for key in ("backend", "arch", "dtype", "kind", "op")) + (
        bool(row.get("bias")), row.get("row_len") or 0)


def model_rows(backends=BACKENDS, archs=ARCHS, words=(), work_dir: str = "",
               cuda_compiled: dict | None = None) -> tuple:
    """(rows, notes) of every selected kernel, in report order. `cuda_compiled`: the CUDA compile
    (cuda_kernels.compiled_kernels) if it has run already; otherwise it runs here."""
    rows, notes = [], []
    if "cuda" in backends:
        found, said = cuda_rows(archs, list(words), work_dir, cuda_compiled)
        rows += found
        notes += said
    if "triton" in backends:
        found, said = triton_rows(archs, list(words), work_dir)
        rows += found
        notes += said
    return sorted(rows, key=_sort_key), notes
