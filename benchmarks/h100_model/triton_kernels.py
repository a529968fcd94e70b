"""The Triton kernels: the specializations the launcher picks for the op table's ops (every dtype; flat views,
and the tiles _tile chooses at the row lengths ROW_LENGTHS for bias ops), each compiled for a real GPU through
Triton's own compile path (triton.compile of an ASTSource with a GPUTarget: no GPU needed).

The launch is modeled as the JIT specialises a typical large call: integer scalars as i32 (16-divisible ones
marked so), a scalar equal to 1 as a constexpr (rows of a flat view), pointers 16-byte aligned; p = 0.1; a scalar
with a type annotation (offset, threshold, scale bits) as that type, unspecialised.

The test suite sets TRITON_INTERPRET=1, which turns @triton.jit into the interpreter at import time, so the
compiles run in a child process without it (this module is that child's script). Compiles go through Triton's
on-disk cache (TRITON_CACHE_DIR or ~/.triton/cache), so a second run only disassembles.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .kernel_id import KernelId

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROW_LENGTHS = (4096, 3072, 5120)  # bias ops: a power of two and two that are not (issue 9)
FLAT_NUMEL = 1 << 24  # a flat view's row_len
BIAS_ROWS = 4096  # rows of a biased view
MODEL_P = 0.1
MODEL_OFFSET = 0  # the mask offset of a call with seed=None (an int argument the JIT does not specialise)
_DTYPE_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}
_TRITON_TYPES = {"fp16": "fp16", "bf16": "bf16", "fp32": "fp32", "fp64": "fp64"}


def _dtype_name(dtype) -> str:
    return _DTYPE_NAMES[str(dtype).replace("torch.", "")]


def jobs() -> dict:
    """{job name: (KernelId, Specialization, scalars {name: value})} for every kernel the model reports."""
    import torch

    from fused_dropout.op_table import BACKWARDS, OPS, SMOOTH_ACTIVATIONS
    from fused_dropout.triton_backend import launch

    found = {}

    def add(kind, op, bias, dtype, variant, scalars, row_len, residual=False, from_rng=True, saved_input=False,
            smooth=False):
        tile = variant.constexprs.get("BR", 1), variant.constexprs["BC"], variant.num_warps
        name = f"{variant.kernel.__name__}[{op},{'bias' if bias else 'nobias'},{_dtype_name(dtype)}," \
               f"{tile[0]}x{tile[1]}/w{tile[2]}]"
        threads = 32 * variant.num_warps
        if name in found:  # the same tile at another row length
            kernel_id, variant, scalars = found[name]
            lengths = f"{kernel_id.row_lengths}/{row_len}" if row_len else kernel_id.row_lengths
            found[name] = (KernelId(**{**kernel_id.__dict__, "row_lengths": lengths}), variant, scalars)
            return
        kernel_id = KernelId("triton", kind, op, bias, _dtype_name(dtype), name, residual=residual,
                             keep_from_rng=from_rng, reads_saved_input=saved_input, smooth_activation=smooth,
                             tile=f"{tile[0]}x{tile[1]}/w{tile[2]}",
                             row_lengths=str(row_len) if row_len else "", threads=threads,
                             elements_per_thread=max(1, tile[0] * tile[1] // threads), launched_blocks_per_sm="grid")
        found[name] = (kernel_id, variant, scalars)

    for dtype in launch.DTYPES:
        size = dtype.itemsize
        threshold, scale_bits = launch._threshold(MODEL_P), launch._scale_bits(MODEL_P, dtype)
        for op in OPS:
            for bias in (False, True) if op.bias else (False,):
                for row_len in ROW_LENGTHS if bias else (0,):
                    tile = launch._tile(row_len or FLAT_NUMEL, bias, size, op.activation in SMOOTH_ACTIVATIONS)
                    variant = launch._forward_specialization(op.activation, bias, op.residual, dtype, tile)
                    rows = BIAS_ROWS if bias else 1
                    scalars = dict(rows=rows, row_len=row_len or FLAT_NUMEL, threshold=threshold,
                                   scale_bits=scale_bits, offset=MODEL_OFFSET)
                    add("forward", op.name, bias, dtype, variant, scalars, row_len, residual=op.residual,
                        smooth=op.activation in SMOOTH_ACTIVATIONS)
        for kind in sorted({op.backward for op in OPS}):
            saves_input = BACKWARDS[kind].saves_input
            for bias_grad in (False, True):
                # The smooth activations' backward reads a saved bias exactly when it computes the bias's gradient
                # (a trained bias): the case modeled.
                has_bias = bias_grad and saves_input
                for row_len in ROW_LENGTHS if bias_grad else (0,):
                    tile = launch._tile(row_len or FLAT_NUMEL, bias_grad, size, saves_input)
                    variant = launch._backward_specialization(kind, has_bias, bias_grad, dtype, tile)
                    rows = BIAS_ROWS if bias_grad else 1
                    scalars = dict(rows=rows, row_len=row_len or FLAT_NUMEL, threshold=threshold,
                                   scale_bits=scale_bits, offset=MODEL_OFFSET)
                    add("backward", BACKWARDS[kind].op_name, bias_grad, dtype, variant, scalars, row_len,
                        from_rng=BACKWARDS[kind].keeps_from_mask, saved_input=saves_input, smooth=saves_input)
        for row_len in ROW_LENGTHS:
            block = launch._column_sum_block(row_len)
            variant = launch._column_sum_specialization(dtype, block)
            add("column_sum", "column_sum", False, dtype, variant, dict(row_blocks=BIAS_ROWS, row_len=row_len),
                row_len, from_rng=False)
    return found


def _source(variant, dtype_name: str, scalars: dict):
    """The ASTSource the JIT builds for this launch (see the module docstring)."""
    from triton.compiler import ASTSource

    signature, constexprs, attrs = {}, dict(variant.constexprs), {}
    element = _TRITON_TYPES[dtype_name]
    for index, name in enumerate(variant.kernel.arg_names):
        if name in constexprs or variant.kernel.params[index].is_constexpr:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            if name == "seed_ptr":
                signature[name] = "*i64"
            elif name == "partial_ptr":
                signature[name] = "*fp64" if dtype_name == "fp64" else "*fp32"
            else:
                signature[name] = "*" + element
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif variant.kernel.params[index].annotation_type:  # a typed scalar: passed as that type, whatever its value
            signature[name] = variant.kernel.params[index].annotation_type
        elif variant.kernel.params[index].do_not_specialize:  # typed by value, never specialised
            signature[name] = "i32" if -2**31 <= scalars[name] < 2**31 else "i64"
        else:
            value = scalars[name]
            if value == 1:
                signature[name], constexprs[name] = "constexpr", 1
                continue
            signature[name] = "i32" if -2**31 <= value < 2**31 else "i64"
            if value % 16 == 0:
                attrs[(index,)] = [["tt.divisibility", 16]]
    return ASTSource(fn=variant.kernel, signature=signature, constexprs=constexprs, attrs=attrs)


def compile_jobs(arch: int, names: list, out_dir: str) -> dict:
    """Compiles the named jobs for one arch (in this process: TRITON_INTERPRET must be unset). Writes each cubin
    to out_dir and returns {name: {"cubin", "shared", "num_warps", "error"}}. (A CompiledKernel learns its
    register count only when loaded on a GPU: registers come from the cubin, see run.py.)"""
    import triton
    from triton.backends.compiler import GPUTarget

    from fused_dropout.triton_backend import launch

    target = GPUTarget("cuda", arch, 32)
    selected = jobs()
    results = {}
    for position, name in enumerate(names):
        kernel_id, variant, scalars = selected[name]
        try:
            compiled = triton.compile(_source(variant, kernel_id.dtype, scalars), target=target,
                                      options={"num_warps": variant.num_warps, **launch.COMPILE_OPTIONS})
            path = os.path.join(out_dir, f"triton_{position}.sm_{arch}.cubin")
            with open(path, "wb") as file:
                file.write(compiled.asm["cubin"])
            results[name] = dict(cubin=path, shared=compiled.metadata.shared, num_warps=variant.num_warps,
                                 error=None)
        except Exception as exc:  # noqa: BLE001 - a compile error is a result to report
            results[name] = dict(error=f"{type(exc).__name__}: {exc}"[-3000:])
    return results


def compiled_kernels(archs, names: list, out_dir: str) -> dict:
    """{arch: {name: result}}, one child process per arch, side by side, without TRITON_INTERPRET."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    children = {}
    for arch in archs:  # outputs go to files: two children writing into pipes nobody reads yet could block
        logs = [open(os.path.join(out_dir, f"triton.sm_{arch}.{part}"), "w+") for part in ("out", "err")]
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.h100_model.triton_kernels", str(arch), out_dir],
                                 env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=logs[0], stderr=logs[1], text=True)
        child.stdin.write(json.dumps(names))
        child.stdin.close()
        children[arch] = (child, logs)
    results = {}
    for arch, (child, (stdout, stderr)) in children.items():
        child.wait()
        stdout.seek(0)
        stderr.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"the Triton compile child for sm_{arch} failed:\n{stderr.read()[-4000:]}")
        results[arch] = json.loads(stdout.read().splitlines()[-1])
        stdout.close()
        stderr.close()
    return results


if __name__ == "__main__":  # the child: compile the job names read from stdin for one arch, print JSON
    requested = json.loads(sys.stdin.read())
    sys.stdout = sys.stderr  # compiler chatter must not mix with the JSON line
    outcome = json.dumps(compile_jobs(int(sys.argv[1]), requested, sys.argv[2]))
    sys.stdout = sys.__stdout__
    print(outcome)
