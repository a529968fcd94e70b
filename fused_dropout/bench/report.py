"""Writing results: CSV rows, PNG plots and the markdown summary the README shows."""
from __future__ import annotations

import csv
import math
import os
import textwrap
from collections import defaultdict
from dataclasses import asdict, dataclass, fields

CSV_COLUMNS = ("op", "provider", "mode", "metric", "unit", "x", "y50", "y20", "y80", "dtype", "device", "commit",
               "sweep", "shape", "samples", "page_fault_dominated", "threads", "cpu_isa", "torch", "triton",
               "huge_pages")


@dataclass
class Row:
    op: str
    provider: str
    mode: str
    metric: str
    unit: str
    x: int
    y50: float
    y20: float
    y80: float
    dtype: str
    device: str  # the machine: CPU model or GPU name
    commit: str
    sweep: str
    shape: str
    samples: int | None = None  # timings behind the row (1: a single sample); empty for saved bytes
    page_fault_dominated: bool | None = None  # see benchmarks/README.md; empty when clone was not timed
    threads: int | None = None  # torch's intra-op threads
    cpu_isa: str = ""  # fused_dropout._C.cpu_isa(): the CPU kernels' vector ISA ("none" without the extension)
    torch: str = ""
    triton: str = ""  # "none" when not installed
    huge_pages: str = ""  # CPU: how torch's allocations get huge pages (cli.huge_pages); empty on a GPU


assert tuple(f.name for f in fields(Row)) == CSV_COLUMNS


def write_csv(rows: list[Row], path: str) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))


def read_csv(path: str) -> list[Row]:
    """The rows of a results CSV, also one written before the later columns existed (they stay empty)."""

    def optional(value, convert):
        return None if value in (None, "") else convert(value)

    with open(path, newline="") as handle:
        return [Row(**{**{k: v for k, v in r.items() if k in CSV_COLUMNS and v is not None},
                       "x": int(r["x"]), "y50": float(r["y50"]), "y20": float(r["y20"]), "y80": float(r["y80"]),
                       "samples": optional(r.get("samples"), int), "threads": optional(r.get("threads"), int),
                       "page_fault_dominated": optional(r.get("page_fault_dominated"), lambda v: v == "True")})
                for r in csv.DictReader(handle)]


def missing_plot_dependency() -> str | None:
    """None when the plots can be drawn, else a one-line message naming what to install (matplotlib is an
    optional dependency: the `bench` extra). Checked before measuring, so a run never ends in an ImportError."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except Exception as error:  # ImportError, or a broken install
        return f"plots skipped: matplotlib is unavailable ({error}); `pip install matplotlib` to draw them"
    return None


PROVIDER_ORDER = ("cpu", "cuda", "triton", "torch", "eager", "compile", "clone")
PROVIDER_COLORS = {"cpu": "tab:blue", "cuda": "tab:green", "triton": "tab:purple", "torch": "tab:olive",
                   "eager": "tab:red", "compile": "tab:orange", "clone": "black"}
DTYPE_STYLES = {"float32": "-", "bfloat16": "--", "float16": ":"}
MODE_ORDER = ("fwd", "bwd", "fwd+bwd")
METRIC_NOTES = {
    "bandwidth": "effective GB/s = bytes the op must move (each input read once, each output written once, plus a "
                 "1-byte-per-element mask for eager and compile) / median time; x.clone() (black) is the memory floor",
    "speedup_vs_eager": "speedup = eager median time / provider median time (the dash-dotted line at 1 is eager)",
}


def _order(values, order):
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), v))


def plot(rows: list[Row], metric: str, ylabel: str, path: str, log_y: bool = False) -> None:
    """draw() into a PNG at path (nothing when there is nothing to draw)."""
    figure = draw(rows, metric, ylabel, log_y)
    if figure is not None:
        import matplotlib.pyplot as plt

        figure.savefig(path, dpi=110)
        plt.close(figure)


def draw(rows: list[Row], metric: str, ylabel: str, log_y: bool = False):
    """A row of panels per op: one per mode of the size sweep (metric against elements) and, when there is a
    hidden sweep, one for it (metric against the hidden size, in fwd+bwd or the last mode measured). One colour
    per provider and one line style per dtype in every panel, one legend for the figure. x.clone() is drawn in
    every panel of a mode as the floor (it is timed once per size, without modes); eager's speedup over itself
    is the line at 1, not a provider."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    selected = [r for r in rows if r.metric == metric]
    if metric == "speedup_vs_eager":
        selected = [r for r in selected if r.provider != "eager"]
    if not selected:
        return None
    ops = _order({r.op for r in selected}, tuple(r.op for r in rows))
    modes = _order({r.mode for r in selected if r.provider != "clone"} or {"fwd"}, MODE_ORDER)
    hidden_mode = "fwd+bwd" if "fwd+bwd" in modes else modes[-1]
    has_hidden = any(r.sweep == "hidden" for r in selected)
    panels = [(mode, "size") for mode in modes] + ([(hidden_mode, "hidden")] if has_hidden else [])
    providers = _order({r.provider for r in selected}, PROVIDER_ORDER)
    dtypes = _order({r.dtype for r in selected}, tuple(DTYPE_STYLES))
    figure, axes = plt.subplots(len(ops), len(panels), figsize=(4.8 * len(panels), 3.4 * len(ops) + 1.6),
                                squeeze=False)
    for row_axes, op in zip(axes, ops):
        for axis, (mode, sweep) in zip(row_axes, panels):
            for provider in providers:
                for dtype in dtypes:
                    points = sorted((r for r in selected if (r.op, r.provider, r.dtype, r.sweep) == (op, provider, dtype, sweep)
                                     and (r.mode == mode or r.provider == "clone")), key=lambda r: r.x)
                    if points:
                        axis.plot([p.x for p in points], [p.y50 for p in points], color=PROVIDER_COLORS.get(provider),
                                  linestyle=DTYPE_STYLES.get(dtype, "-."), marker="o", markersize=3,
                                  linewidth=1.2 if provider == "clone" else 1.6, label=f"{provider} {dtype}")
            if metric == "speedup_vs_eager":
                axis.axhline(1.0, color=PROVIDER_COLORS["eager"], linestyle="-.", linewidth=1, label="eager = 1")
            axis.set_xscale("log", base=2)
            if log_y:
                axis.set_yscale("log")
                # Plain numbers at 1, 2, 5 x 10^k: narrow ranges get labels too, and no 6x10^-1 clutter.
                axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.yaxis.set_minor_formatter(NullFormatter())
            if sweep == "hidden":
                hidden = sorted({r.x for r in selected if r.sweep == "hidden"})
                axis.set_xticks(hidden, [str(h) for h in hidden], fontsize=8)
                axis.minorticks_off()
                rows_count, hidden_size = map(int, next(r.shape for r in selected if r.sweep == "hidden").split("x"))
                log2 = round(math.log2(rows_count * hidden_size))  # the sweep's element count, rounded
                axis.set_title(f"{op} {mode}, hidden (~2^{log2} elements)", fontsize=10)
                axis.set_xlabel("hidden size (last dimension)")
            else:
                axis.set_title(f"{op} {mode}", fontsize=10)
                axis.set_xlabel("elements")
            axis.set_ylabel(ylabel)
            axis.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=PROVIDER_COLORS.get(p), linewidth=2,
                      label="x.clone() (floor)" if p == "clone" else p) for p in providers]
    if metric == "speedup_vs_eager":
        handles.append(Line2D([], [], color=PROVIDER_COLORS["eager"], linestyle="-.", label="eager (= 1)"))
    handles += [Line2D([], [], color="grey", linestyle=DTYPE_STYLES.get(d, "-."), label=d) for d in dtypes]
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=10, frameon=False)
    first = selected[0]
    threads = f", {first.threads} threads" if first.threads else ""
    note = textwrap.fill(METRIC_NOTES.get(metric, ""), width=int(figure.get_figwidth() * 10))
    figure.suptitle(f"{ylabel} on {first.device}{threads}, {' and '.join(dtypes)}\n{note}", fontsize=11)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    return figure


def summary_markdown(rows: list[Row], command: str | None = None) -> str:
    """Tables at 2^22 and 2^24 elements (when swept) and at the largest size of the size sweep: time, bandwidth,
    fraction of clone, speedup and the memory kept for the backward. `command` (the run's command line) heads it
    when known."""
    size_rows = [r for r in rows if r.sweep == "size"]
    if not size_rows:
        return ""
    sizes = sorted({r.x for r in size_rows})
    shown = [x for x in (1 << 22, 1 << 24) if x in sizes and x != sizes[-1]] + [sizes[-1]]
    saved = {(r.op, r.dtype, r.provider): r.y50 for r in rows if r.metric == "saved_bytes_per_element"}
    first = size_rows[0]
    lines = ([f"Command: `{command}`", ""] if command else []) + [f"Device: {first.device}" + (f", {first.threads} threads" if first.threads else "")
             + (f", CPU kernels {first.cpu_isa}" if first.cpu_isa else "")
             + (f"; torch {first.torch}, triton {first.triton}" if first.torch else "")
             + (f"; huge pages: {first.huge_pages}" if first.huge_pages else "")
             + f"; commit {first.commit}; p = 0.1; time is the median (20th-80th percentile).",
             "Notes: `1 sample` = a single timing (its percentiles are that sample); `page faults` = x.clone() "
             "takes over 2x its time per byte at 2^20 elements here, so allocation page faults dominate.", ""]
    for size in shown:
        by_key = defaultdict(dict)
        for r in size_rows:
            if r.x == size:
                by_key[(r.op, r.mode, r.dtype, r.provider)][r.metric] = r
        shape = next(r.shape for r in size_rows if r.x == size)
        lines += [
            f"**{size} elements ({shape})**",
            "",
            "| op | mode | dtype | provider | time ms (p20-p80) | GB/s | of clone | vs eager | saved B/elt | notes |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for (op, mode, dtype, provider), metrics in sorted(by_key.items()):
            def cell(metric, fmt):
                row = metrics.get(metric)
                return "-" if row is None or row.y50 != row.y50 else fmt(row)

            memory = saved.get((op, dtype, provider))
            timing = metrics.get("time")
            notes = [note for note, flagged in (
                ("1 sample", timing is not None and timing.samples == 1),
                ("page faults", timing is not None and timing.page_fault_dominated)) if flagged]
            lines.append("| " + " | ".join([
                op, mode, dtype, provider,
                cell("time", lambda r: f"{r.y50:.3f} ({r.y20:.3f}-{r.y80:.3f})"),
                cell("bandwidth", lambda r: f"{r.y50:.1f}"),
                cell("clone_fraction", lambda r: f"{r.y50:.0%}"),
                cell("speedup_vs_eager", lambda r: f"{r.y50:.2f}x"),
                "-" if memory is None else f"{memory:.2f}",
                ", ".join(notes) or "-",
            ]) + " |")
        lines.append("")
    return "\n".join(lines)


def write_all(rows: list[Row], directory: str, write_rows: bool = True, plots: bool = True,
              command: str | None = None) -> dict[str, str]:
    """Writes the CSV (unless re-rendering from it), the markdown summary (headed by `command` when given) and,
    when `plots` (matplotlib is there), the two plots. Returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    paths = {"csv": os.path.join(directory, "results.csv")}
    if write_rows:
        write_csv(rows, paths["csv"])
    if plots:
        paths["bandwidth"] = os.path.join(directory, "bandwidth.png")
        paths["speedup"] = os.path.join(directory, "speedup.png")
        plot(rows, "bandwidth", "effective GB/s", paths["bandwidth"], log_y=True)
        plot(rows, "speedup_vs_eager", "speedup vs eager", paths["speedup"], log_y=True)
    paths["summary"] = os.path.join(directory, "summary.md")
    with open(paths["summary"], "w") as handle:
        handle.write(summary_markdown(rows, command))
    return paths
