"""python -m benchmarks.cpu_floor [--variants avx2 avx512] [--quick] [--out DIR]

For each CPU kernel variant this machine runs: builds the Philox harness (philox_floor.cpp) with the extension's
flags, measures the clock and the vector pipes, counts the instructions of one Philox step in its disassembly, and
derives the Philox floor (model.py). Then times bias_relu_dropout forward and x.clone() on 1024x4096 float32 with
one thread and that variant (and the op at p = 0, which makes no Philox word, and the eager composition), and sets
the Philox floor against the variant's targets in x.clone() and eager (README). Prints a table; --out DIR also
writes summary.md and results.json there. Run it on a quiet machine: every number is a time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile

import torch
import torch.utils.benchmark as benchmark

import fused_dropout as fd
from fused_dropout.bench.cli import commit_id, device_description
from fused_dropout.op_table import OPS_BY_NAME

from . import disasm, harness, model

# The targets of the CPU kernels (README, "CPU kernels: variants, targets, results"): bias_relu_dropout forward on
# 1024x4096 float32 within this many times x.clone(), and at least EAGER_TARGET times faster than the eager
# composition.
CLONE_TARGET = {"avx512": 2.0, "avx2": 2.5}
EAGER_TARGET = 20.0
SHAPE = (1024, 4096)


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def runnable_variants() -> list[str]:
    flags = cpu_flags()
    variants = []
    if {"avx2", "fma", "f16c"} <= flags:
        variants.append("avx2")
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            variants.append("avx512")
    return variants


def time_op_and_clone(variant: str, quick: bool) -> dict | None:
    """Median ns per element of fd.bias_relu_dropout(x, b, p) at p = 0.1 and 0, of x.clone() and of the eager
    composition with one thread on `variant`, or None (and why, printed) when the native extension is not loaded."""
    native = fd.backends._C
    if native is None:
        print(f"  {variant}: no op timing: the native extension fused_dropout._C is not loaded", file=sys.stderr)
        return None
    previous_isa, previous_threads = native.cpu_isa(), torch.get_num_threads()
    native.set_cpu_isa(variant)
    torch.set_num_threads(1)
    try:
        x = torch.randn(*SHAPE)
        b = torch.randn(SHAPE[1])
        run_time = 0.2 if quick else 2.0
        timings = {}
        eager = OPS_BY_NAME["bias_relu_dropout"].eager  # the composition of the benchmark's "vs eager"
        # p = 0 keeps every element and makes no Philox word: the op's element work and memory traffic alone.
        for name, stmt in (("op", "fd.bias_relu_dropout(x, b, 0.1, seed=1)"),
                           ("op_p0", "fd.bias_relu_dropout(x, b, 0.0, seed=1)"), ("clone", "x.clone()"),
                           ("eager", "eager(x, None, b, 0.1)")):
            timer = benchmark.Timer(stmt=stmt, globals={"fd": fd, "x": x, "b": b, "eager": eager}, num_threads=1)
            timings[name] = timer.blocked_autorange(min_run_time=run_time).median * 1e9 / x.numel()
        return timings
    finally:
        native.set_cpu_isa(previous_isa)
        torch.set_num_threads(previous_threads)


def measure(variants: list[str], quick: bool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as build_dir:
        for variant in variants:
            exe = harness.build(variant, build_dir)
            measured = harness.run(exe, philox_steps=20000 if quick else 200000)
            floor = model.philox_floor(measured, disasm.instruction_classes(exe))
            rows.append({"floor": floor, "harness": measured, "timings": time_op_and_clone(variant, quick)})
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| variant | GHz | vector ALU instructions per word (multiply / shift / shuffle / logic) | memory per word "
        "| Philox floor ns/word (bound by) | Philox measured ns/word (floor/measured) | bias_relu_dropout ns/elt "
        "| the op at p = 0 (no Philox) ns/elt | x.clone() ns/elt | op / clone | floor / clone | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        f, t = row["floor"], row["timings"]
        classes = " / ".join(f"{f.per_word.get(name, 0.0):.2f}" for name in disasm.ALU_CLASSES)
        op = op_p0 = clone = ratio = floor_ratio = "not timed"
        if t is not None:
            op, op_p0, clone = f"{t['op']:.3f}", f"{t['op_p0']:.3f}", f"{t['clone']:.3f}"
            ratio = f"{t['op'] / t['clone']:.2f}x"
            floor_ratio = f"{f.floor_ns_per_word / t['clone']:.2f}x"
        lines.append(
            f"| {f.variant} | {f.ghz:.2f} | {classes} ({f.alu_per_word:.2f}) | {f.per_word.get('memory', 0.0):.2f} "
            f"| {f.floor_ns_per_word:.3f} ({f.bound_by}) | {f.measured_ns_per_word:.3f} ({f.efficiency:.2f}) "
            f"| {op} | {op_p0} | {clone} | {ratio} | {floor_ratio} | {CLONE_TARGET[f.variant]:.1f}x |")
    return "\n".join(lines)


def pipes(rows: list[dict]) -> list[str]:
    """Per variant: the measured throughput (instructions per cycle) and latency (cycles) of the Philox classes."""
    out = []
    for row in rows:
        f, latency = row["floor"], row["harness"]["latency_cycles"]
        per_cycle = f.ops_per_cycle
        out.append(f"{f.variant} pipes: multiply {per_cycle['multiply']:.2f} per cycle (latency "
                   f"{latency['multiply']:.1f}), shift {per_cycle['shift']:.2f} ({latency['shift']:.1f}), shuffle "
                   f"{per_cycle['shuffle']:.2f}, xor {per_cycle['xor']:.2f} ({latency['xor']:.1f}), the round's mix "
                   f"{per_cycle['round_mix']:.2f}")
    return out


def verdicts(rows: list[dict]) -> list[str]:
    """Per variant: what the target leaves for everything but Philox, once Philox runs at its floor."""
    out = []
    for row in rows:
        f, t = row["floor"], row["timings"]
        if t is None:
            continue
        budget = CLONE_TARGET[f.variant] * t["clone"]
        left = budget - f.floor_ns_per_word
        rest = (f"leaving {left:.3f} ns for the rest: the element's own vector work (bias, activation, keep test, "
                f"scale) and its loads and stores, which x.clone() alone does in {t['clone']:.3f} ns"
                if left > 0 else "more than all of it: the target is below the Philox floor on this machine")
        out.append(f"{f.variant}: the {CLONE_TARGET[f.variant]:.1f}x target is {budget:.3f} ns per element; Philox "
                   f"at its floor takes {f.floor_ns_per_word:.3f} ns, {rest}")
        eager_budget = t["eager"] / EAGER_TARGET
        out.append(f"{f.variant}: the eager composition takes {t['eager']:.3f} ns per element (the op is "
                   f"{t['eager'] / t['op']:.1f}x faster); {EAGER_TARGET:.0f}x eager is {eager_budget:.3f} ns per "
                   f"element, " + ("above" if eager_budget > f.floor_ns_per_word else "below") +
                   f" the Philox floor ({f.floor_ns_per_word:.3f})")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_floor", description=__doc__.split("\n\n")[1])
    parser.add_argument("--variants", nargs="+", choices=sorted(CLONE_TARGET), help="default: all this CPU runs")
    parser.add_argument("--quick", action="store_true", help="short measurements (for tests; noisier)")
    parser.add_argument("--out", help="also write summary.md and results.json into this folder")
    args = parser.parse_args(argv)
    available = runnable_variants()
    variants = args.variants or available
    missing = [v for v in variants if v not in available]
    if missing:
        sys.exit(f"--variants: this CPU cannot run {', '.join(missing)} (it runs: {', '.join(available) or 'neither'})")
    if not variants:
        sys.exit("this CPU runs neither the avx2 nor the avx512 variant: there is no vector Philox to measure")
    rows = measure(variants, args.quick)
    command = "python -m benchmarks.cpu_floor " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = device_description(torch.device("cpu"))
    header = (f"{machine}, commit {commit_id()}, {datetime.date.today().isoformat()}; one thread; "
              f"bias_relu_dropout(x, b, 0.1) and x.clone() on {SHAPE[0]}x{SHAPE[1]} float32.\n\n`{command.strip()}`")
    text = "\n\n".join([header, table(rows), "\n".join(f"- {line}" for line in pipes(rows) + verdicts(rows))]) + "\n"
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "summary.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump([{"floor": vars(row["floor"]), "harness": row["harness"], "timings": row["timings"]}
                       for row in rows], f, indent=1)


if __name__ == "__main__":
    main()
