"""results.csv and summary.md of a model run."""
from __future__ import annotations

import csv
import os

from . import hardware as hw

COLUMNS = ["backend", "arch", "kind", "op", "bias", "dtype", "tile", "row_len", "lane_use", "kernel", "error",
           "registers", "spills", "shared_bytes", "threads", "blocks_per_sm_fit", "blocks_per_sm_launched",
           "elements_per_pass", "instructions_per_pass", "issue_per_element", "alu_per_element",
           "fma_heavy_per_element", "fma_lite_per_element", "fp64_per_element", "xu_per_element", "lsu_per_element",
           "uniform_per_element", "branch_per_element", "other_per_element", "viadd_per_element",
           "bytes_per_element", "busiest_pipe", "busiest_utilisation", "modeled_fraction_of_copy_bandwidth",
           "budget_issue", "budget_alu", "budget_fma_heavy", "budgeted", "within_budget", "budget_failures"]

HEADER = """# H100 performance MODEL of the kernels (not a measurement)

Made by `{command}` on a machine without a GPU ({when}, commit {commit}). Every number below comes from the
compiled SASS (nvcc / Triton for sm_90 and sm_80), not from running a kernel: thread-instructions per element on
the steady-state aligned hot path, split by pipe, against an H100 SXM (132 SMs at 1.98 GHz, copy bandwidth
2.9 TB/s = {bw:.1f} bytes per SM-clock). Method and limits: `benchmarks/README.md`.

Budget (bf16/fp16 kernels; float32/float64 are reported, not budgeted): busiest pipe at most {util:.0%} busy at
copy bandwidth, i.e. per element issue <= 0.7*128*B/11.1, ALU and FMA-heavy (IMAD) <= 0.7*64*B/11.1 (32 / 16 / 16
at B = 4 bytes per element), no spills, no more blocks launched per SM than fit; plain dropout forward and
backward also <= {plain:.0f} issue per element.
`util` is the busiest pipe's utilisation at copy bandwidth, `of BW` the modeled fraction of copy bandwidth
(time = max(bytes / bandwidth, instructions / rate of each pipe)).
"""


# The kernels issue 9 measured by running their SASS on aligned inputs: its issue / ALU per element then, and
# this model's before the lean CUDA kernels and the seed-pointer kernel arguments (results at commit 289e869).
ISSUE_9_REFERENCE = [
    (("cuda", "forward", "dropout", False, "bf16", ""), "38 / 18.5", "41.2 / 21.0"),
    (("cuda", "forward", "bias_relu_dropout", True, "bf16", ""), "53.5 / 28.0", "56.2 / 30.8"),
    (("cuda", "forward", "dropout_add", True, "bf16", ""), "54.8 / 26.8", "57.1 / 29.1"),
    (("triton", "forward", "dropout", False, "bf16", ""), "41 / 21", "42.3 / 22.7"),
    (("triton", "forward", "bias_relu_dropout", True, "bf16", 4096), "47 / 24.5", "47.8 / 26.1"),
]


def reference_table(rows: list) -> str:
    lines = ["| kernel (sm_90, bf16) | issue / ALU per element (this model) | this model at 289e869 | issue 9 |",
             "|---|---|---|---|"]
    for key, quoted, before in ISSUE_9_REFERENCE:
        for row in rows:
            if (row.get("arch") == "sm_90" and "issue_per_element" in row and
                    (row["backend"], row["kind"], row["op"], row["bias"], row["dtype"], row["row_len"]) == key):
                label = f"{key[0]} {key[2]} {key[1]}{' with bias' if key[3] else ''}"
                label += f" (row {key[5]})" if key[5] else ""
                lines.append(f"| {label} | {row['issue_per_element']:.1f} / {row['alu_per_element']:.1f} | {before} "
                             f"| {quoted} |")
    return "\n".join(lines)


def write_csv(rows: list, path: str) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in COLUMNS})


def _number(value, digits=1) -> str:
    return "" if value in ("", None) else f"{value:.{digits}f}"


def table(rows: list, arch: str = "sm_90") -> str:
    """The markdown table of one arch's rows."""
    lines = ["| backend | op | kind | bias | dtype | tile | row len | regs | spills | blocks/SM fit (launched) | "
             "issue/elt | ALU/elt | IMAD/elt | FP32/elt | B/elt | busiest (util) | of BW | budget |",
             "|" + "---|" * 18]
    for row in rows:
        if row.get("arch") != arch:
            continue
        if row.get("error"):
            lines.append(f"| {row['backend']} | {row.get('op', '')} | {row.get('kind', '')} | {row.get('bias', '')} | "
                         f"{row.get('dtype', '')} | {row.get('tile', '')} | | | | | | | | | | | | DOES NOT COMPILE |")
            continue
        verdict = "ok" if row["within_budget"] and row["budgeted"] else (
            "not budgeted" if not row["budgeted"] else
            ("**over (known: compute-bound activation): " if row.get("known_compute_bound") else "**over: ")
            + row["budget_failures"] + "**")
        util = f"{row.get('busiest_pipe', '')} ({row['busiest_utilisation']:.0%})" if "busiest_utilisation" in row \
            else row.get("budget_failures", "")
        lines.append(
            f"| {row['backend']} | {row['op']} | {row['kind']} | {'yes' if row['bias'] else 'no'} | {row['dtype']} | "
            f"{row['tile']} | {row['row_len']} | {row['registers']} | {row['spills']} | "
            f"{row.get('blocks_per_sm_fit', '')} ({row.get('blocks_per_sm_launched', '')}) | "
            f"{_number(row.get('issue_per_element'))} | {_number(row.get('alu_per_element'))} | "
            f"{_number(row.get('fma_heavy_per_element'))} | {_number(row.get('fma_lite_per_element'))} | "
            f"{row['bytes_per_element']} | {util} | {_number(row.get('modeled_fraction_of_copy_bandwidth'), 2)} | "
            f"{verdict} |")
    return "\n".join(lines)


def write_summary(rows: list, path: str, command: str, when: str, commit: str, notes: list) -> None:
    budgeted = [row for row in rows if row.get("budgeted") and row.get("arch") == "sm_90"]
    failing = [row for row in budgeted if not row.get("within_budget")]
    compile_errors = [row for row in rows if row.get("error")]
    text = HEADER.format(command=command, when=when, commit=commit, bw=hw.COPY_BYTES_PER_SM_CLOCK,
                         util=hw.BUDGET_UTILISATION, plain=hw.PLAIN_DROPOUT_ISSUE_BUDGET)
    known = [row for row in failing if row.get("known_compute_bound")]
    text += (f"\n**Verdict:** {len(budgeted) - len(failing)} of {len(budgeted)} budgeted sm_90 kernel rows within "
             f"budget; {len(known)} of the rows over it are the smooth activations' kernels (gelu, gelu_tanh, silu: "
             f"compute-bound by their bit-reproducible math, a known gap); {len(compile_errors)} compile failures "
             f"(sm_80 and sm_90).\n")
    text += "\n## The kernels issue 9 quotes\n\n" + reference_table(rows) + "\n"
    for arch in ("sm_90", "sm_80"):
        arch_rows = [row for row in rows if row.get("arch") == arch]
        if arch_rows:
            title = "sm_90 (the modeled H100)" if arch == "sm_90" else \
                "sm_80 (compiled and counted with the same H100 rates: a compile and register check)"
            text += f"\n## {title}\n\n{table(rows, arch)}\n"
    if notes:
        text += "\n## Notes\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    with open(path, "w") as file:
        file.write(text)
