"""python -m benchmarks.h100_model [--only cuda|triton] [--filter WORDS] [--arch 90] [--opcodes] [--out DIR] [--check]

Compiles, disassembles and models the kernels (a MODEL of an H100, not a measurement). A full run writes
benchmarks/results/h100-model/{results.csv,summary.md}; a run narrowed by --only / --filter / --arch prints its
table and writes only when --out is given. --check exits 1 when a kernel does not compile or a bf16/fp16 kernel is
over its budget on sm_90.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
import tempfile

from . import report
from .pipes import pipe_of
from .run import ARCHS, BACKENDS, model_rows

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "results", "h100-model")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.h100_model", description=__doc__.split("\n\n")[1])
    parser.add_argument("--only", choices=BACKENDS, help="model one backend")
    parser.add_argument("--filter", default="", help="words every kernel label must contain, e.g. 'bf16 forward'"
                        " (labels: 'cuda dropout forward bf16 grid-stride', 'triton mask_bwd backward bias_grad ...')")
    parser.add_argument("--arch", type=int, choices=ARCHS, action="append", help="sm arch (default: 80 and 90)")
    parser.add_argument("--opcodes", action="store_true", help="print each kernel's hot-path opcodes per element")
    parser.add_argument("--out", help=f"write results.csv and summary.md here (default for a full run: {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="exit 1 on a compile failure or an sm_90 budget overrun")
    args = parser.parse_args(argv)
    narrowed = bool(args.only or args.filter or args.arch)
    archs = tuple(sorted(set(args.arch))) if args.arch else ARCHS
    backends = (args.only,) if args.only else BACKENDS
    with tempfile.TemporaryDirectory() as work_dir:
        rows, notes = model_rows(backends, archs, args.filter.split(), work_dir)
    for arch in archs:
        print(f"\nsm_{arch}:\n{report.table(rows, f'sm_{arch}')}")
    if args.opcodes:
        for row in rows:
            if "hot_path_opcodes" in row:
                print(f"\n{row['backend']} {row['arch']} {row['op']} {row['kind']} bias={row['bias']} {row['dtype']} "
                      f"{row['tile']} {row['row_len']}: {row['issue_per_element']:.2f} issue per element")
                for opcode, count in row["hot_path_opcodes"].items():
                    print(f"  {opcode:32s} {pipe_of(opcode):10s} {count:6.2f}")
    for note in notes:
        print(note)
    out = args.out or (None if narrowed else DEFAULT_OUT)
    if out:
        os.makedirs(out, exist_ok=True)
        command = "python -m benchmarks.h100_model" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip() or "unknown"
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        report.write_csv(rows, os.path.join(out, "results.csv"))
        report.write_summary(rows, os.path.join(out, "summary.md"), command, when, commit, notes)
        print(f"\nwrote {out}/results.csv and summary.md")
    # The budget is an H100 budget: sm_80 code is compiled and counted, but only sm_90 rows are held to it. The
    # known compute-bound kernels (kernel_id.KernelId.known_compute_bound) are reported, not counted.
    failed = [row for row in rows if row.get("error") or (
        row.get("arch") == "sm_90" and row.get("budgeted") and not row.get("within_budget")
        and not row.get("known_compute_bound"))]
    known = [row for row in rows if row.get("arch") == "sm_90" and row.get("known_compute_bound")
             and not row.get("within_budget")]
    print(f"\n{len(rows)} rows; {len(failed)} not compiling or over budget on sm_90; {len(known)} known "
          "compute-bound (smooth activations) over budget")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
