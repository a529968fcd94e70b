"""`python -m fused_dropout.bench`: the fused ops against nn.Dropout / the eager compositions, torch.compile of
them and x.clone(), on whatever device is present. Prints a summary table and writes CSV, plots and markdown."""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import torch

import fused_dropout as fd

from . import cases, overhead, report
from .timing import time_ms

DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
HIDDEN_SIZES = (768, 1024, 2048, 4096, 8192)
SIZE_SWEEP_HIDDEN = 4096


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m fused_dropout.bench", description=__doc__)
    parser.add_argument("--ops", nargs="+", choices=cases.OPS, default=list(cases.OPS))
    parser.add_argument("--modes", nargs="+", choices=cases.MODES, default=None)
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPE_NAMES), default=None,
                        help="default: float32 bfloat16 float16 on a GPU, float32 bfloat16 on the CPU")
    parser.add_argument("--providers", nargs="+", default=None,
                        help="fused backends (cpu, cuda, triton, torch) and eager, compile, clone; "
                             "default: every available fused backend but torch, and eager, compile, clone")
    parser.add_argument("--sizes", nargs="+", type=int, default=None, metavar="LOG2",
                        help="log2 element counts of the size sweep (default 16..26)")
    parser.add_argument("--hidden", nargs="*", type=int, default=None,
                        help=f"hidden sizes of the hidden sweep (default {' '.join(map(str, HIDDEN_SIZES))}); "
                             "give none to skip it")
    parser.add_argument("--hidden-numel-log2", type=int, default=None,
                        help="elements of the hidden sweep (default 2^24 on a GPU, 2^22 on the CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's intra-op threads for the run (default: torch's own, all cores)")
    parser.add_argument("--cpu-isa", default=None, metavar="VARIANT",
                        help="the CPU kernel variant to run: avx512, avx2 or generic (default: the widest this CPU "
                             "runs); recorded in the CSV and summary either way")
    parser.add_argument("--quick", action="store_true", help="a small sweep that ends in under a minute on a CPU")
    parser.add_argument("--out", default=None,
                        help="results folder (default: a new benchmarks/results/<device>-<date>-<time>)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--overhead", action="store_true",
                        help="measure only the per-call cost on a tiny tensor (host path, dispatched ops) against the "
                             "eager compositions; writes overhead.csv and overhead.md")
    parser.add_argument("--from-csv", metavar="DIR", default=None,
                        help="measure nothing: redraw the plots and summary of DIR/results.csv (into --out if given)")
    return parser.parse_args(argv)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return model


def huge_pages(device: torch.device) -> str:
    """How the CPU allocations of this run get huge pages, which decides what a fresh output's page faults cost
    (at 2^24 float32 elements they take most of x.clone()'s time with 4 KiB pages): torch's allocator asks for
    them (madvise, 2 MiB aligned) when THP_MEM_ALLOC_ENABLE=1 was set before the process started; the kernel's
    transparent_hugepage mode says whether that request, or any allocation, gets them. "" on a GPU."""
    if device.type != "cpu":
        return ""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
            mode = next((word.strip("[]") for word in handle.read().split() if word.startswith("[")), "unknown")
    except OSError:
        mode = "unknown"
    asked = os.environ.get("THP_MEM_ALLOC_ENABLE", "")
    return f"THP_MEM_ALLOC_ENABLE={asked or 'unset'}, transparent_hugepage={mode}"


def environment(device: torch.device) -> dict:
    """The CSV's record of what ran: torch, triton ("none" when missing), the CPU kernels' ISA variant,
    torch's thread count and how the CPU allocations get huge pages."""
    import importlib.metadata

    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = "none"
    native = fd.backends._C
    return {"torch": torch.__version__, "triton": triton, "threads": torch.get_num_threads(),
            "cpu_isa": native.cpu_isa() if native is not None and hasattr(native, "cpu_isa") else "none",
            "huge_pages": huge_pages(device)}


def commit_id() -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=here, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def default_results_dir(device: torch.device) -> str:
    """A new folder benchmarks/results/<device>-<date>-<time>: a run never overwrites earlier (committed) results."""
    slug = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device).lower().replace(" ", "-")
    base = os.path.join("benchmarks", "results", f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, suffix = base, 1
    while os.path.exists(path):
        path, suffix = f"{base}-{suffix}", suffix + 1
    return path


def build_plan(args, device: torch.device):
    """(modes, dtypes, providers, [(sweep, x, shape)])."""
    gpu = device.type == "cuda"
    modes = args.modes or (["fwd", "fwd+bwd"] if args.quick else list(cases.MODES))
    dtypes = args.dtypes or (["float32"] if args.quick else
                             ["float32", "bfloat16", "float16"] if gpu else ["float32", "bfloat16"])
    fused = [b for b in fd.available_backends() if b != "torch" and fd.backends._runs_on(b, device.type)]
    providers = args.providers or fused + ["eager", "compile", "clone"]
    unknown = set(providers) - set(fd.backends.KNOWN_BACKENDS) - {"eager", "compile", "clone"}
    if unknown:
        sys.exit(f"unknown providers: {sorted(unknown)}")
    sizes = args.sizes or ([16, 18] if args.quick else list(range(16, 27)) if gpu else list(range(16, 27, 2)))
    points = []
    for log2 in sizes:
        numel = 1 << log2
        hidden = min(SIZE_SWEEP_HIDDEN, numel)
        points.append(("size", numel, (numel // hidden, hidden)))
    hidden_sizes = args.hidden if args.hidden is not None else ([] if args.quick else list(HIDDEN_SIZES))
    hidden_numel = 1 << (args.hidden_numel_log2 or (24 if gpu else 22))
    points += [("hidden", h, (max(1, hidden_numel // h), h)) for h in hidden_sizes]
    return modes, dtypes, providers, points


def provider_fn(op: str, provider: str):
    if provider == "eager":
        return cases.eager_fn(op)
    if provider == "clone":
        return cases.clone_fn(op)
    return cases.fused_fn(op, provider)


def mode_fn(fn, inputs: cases.Inputs, mode: str):
    targets = inputs.grad_targets()
    if mode == "fwd":
        return lambda: fn(inputs)
    out = fn(inputs)
    grad = torch.randn_like(out)
    if mode == "bwd":
        return lambda: torch.autograd.grad(out, targets, grad, retain_graph=True)
    return lambda: torch.autograd.grad(fn(inputs), targets, grad)


def tqdm_or_none():
    """tqdm's progress bar class, or None when it is not installed (it is optional: the `bench` extra)."""
    try:
        from tqdm import tqdm
    except Exception:  # ImportError, or a broken install
        return None
    return tqdm


def progress(tasks: list, quiet: bool, label):
    """tasks, with a tqdm bar, or a plain line per task when tqdm is missing, or nothing when quiet."""
    bar = tqdm_or_none()
    if quiet:
        yield from tasks
    elif bar is not None:
        yield from bar(tasks, desc="benchmark", unit="case")
    else:
        for index, task in enumerate(tasks, 1):
            print(f"[{index}/{len(tasks)}] {label(task)}", flush=True)
            yield task


def dependency_messages(args) -> list[str]:
    """What is missing of the optional dependencies and what that costs: printed before measuring. numpy is not
    needed at all; matplotlib only for the plots; tqdm only for the progress bar."""
    messages = []
    plot_problem = report.missing_plot_dependency()
    if plot_problem:
        messages.append(plot_problem)
    if not args.no_progress and tqdm_or_none() is None:
        messages.append("no progress bar: tqdm is not installed (`pip install tqdm`); printing plain progress lines")
    return messages


PAGE_FAULT_REFERENCE_NUMEL = 1 << 20  # clone's time per byte here is the reference of page_fault_dominated
PAGE_FAULT_RATIO = 2.0


def estimate_seconds(args, modes, dtypes, providers, points, device) -> float:
    """A rough duration: each timing runs for its min_run_time (CPU) or do_bench's warm-up and repetitions (GPU)
    plus about as much again for set-up and the first call, and each torch.compile case about 5 s (more when
    inductor's cache is cold)."""
    per_timing = (0.05 if args.quick else 0.5) if device.type == "cpu" else (0.04 if args.quick else 0.125)
    timed = [p for p in providers if p != "clone"]
    timings = len(dtypes) * len(args.ops) * len(points) * (len(modes) * len(timed) + ("clone" in providers))
    compile_cases = len(dtypes) * len(args.ops) * len(modes) * ("compile" in providers)
    return timings * per_timing * 2 + compile_cases * 5


def run(args) -> tuple[list[report.Row], list[str]]:
    """The rows, and the torch.compile measurements left out because they did not run compiled code.

    Order: dtype, op, mode, then the points of the sweeps, so that each (op, dtype, mode) torch.compile case
    runs start to end on its own fresh compile."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes, dtypes, providers, points = build_plan(args, device)
    device_name, commit, env = device_description(device), commit_id(), environment(device)
    estimate = estimate_seconds(args, modes, dtypes, providers, points, device)
    print(f"{device_name}, {env['threads']} threads, CPU kernels {env['cpu_isa']}, torch {env['torch']}, "
          f"triton {env['triton']}" + (f", huge pages: {env['huge_pages']}" if env["huge_pages"] else "")
          + "; estimated duration: about "
          + (f"{estimate:.0f} s" if estimate < 120 else f"{estimate / 60:.0f} min"), flush=True)
    rows: list[report.Row] = []
    uncompiled: list[str] = []
    measured = {}  # (op, dtype, point index) -> {(provider, mode): (t50, t20, t80, bytes moved, samples)}
    tasks = [(op, dtype, mode, index) for dtype in dtypes for op in args.ops for mode in modes
             for index in range(len(points))]
    compiled = None
    # clone's time per byte at 2^20 elements, per dtype: the reference of the page-fault flag.
    clone_reference = {}
    if "clone" in providers:
        for dtype_name in dtypes:
            x = torch.randn(PAGE_FAULT_REFERENCE_NUMEL // SIZE_SWEEP_HIDDEN, SIZE_SWEEP_HIDDEN,
                            dtype=DTYPE_NAMES[dtype_name], device=device)
            clone = cases.clone_fn(args.ops[0])
            clone_reference[dtype_name] = time_ms(lambda: clone(cases.Inputs(x, None, None)), device,
                                                  quick=args.quick).q50 / (2 * x.numel() * x.element_size())

    def label(task):
        op, dtype, mode, index = task
        sweep, x, _ = points[index]
        return f"{op} {dtype} {mode} {sweep} {x}"

    def add(op, dtype_name, index, provider, mode, metric, unit, y50, y20, y80, samples):
        sweep, x, shape = points[index]
        rows.append(report.Row(op, provider, mode, metric, unit, x, y50, y20, y80, dtype_name, device_name,
                               commit, sweep, "x".join(map(str, shape)), samples, None, env["threads"],
                               env["cpu_isa"], env["torch"], env["triton"], env["huge_pages"]))

    for op, dtype_name, mode, index in progress(tasks, args.no_progress, label):
        sweep, x, shape = points[index]
        if "compile" in providers and (compiled is None or compiled.case != (op, dtype_name, mode)):
            compiled = cases.CompiledCase(op, dtype_name, mode)
        inputs = cases.make_inputs(op, shape, DTYPE_NAMES[dtype_name], device)
        numel, element_size = inputs.x.numel(), inputs.x.element_size()
        times = measured.setdefault((op, dtype_name, index), {})
        for provider in providers:
            provider_mode = "fwd" if provider == "clone" else mode
            if provider == "clone" and mode != modes[0]:
                continue  # x.clone() has no modes: timed once per point
            fn = compiled if provider == "compile" else provider_fn(op, provider)
            if provider == "compile":
                compiled.mark()
                try:
                    timing = time_ms(mode_fn(fn, inputs, mode), device, quick=args.quick)
                    problem = compiled.problem()
                except Exception as error:  # fullgraph=True: a graph break or the recompile limit raises
                    problem = f"torch.compile failed: {type(error).__name__}: {str(error).splitlines()[0]}"
                if problem:
                    uncompiled.append(f"{op} {dtype_name} {mode} {sweep} {x}: {problem}")
                    continue
            else:
                timing = time_ms(mode_fn(fn, inputs, provider_mode), device, quick=args.quick)
            t50, t20, t80, samples = timing
            moved = cases.bytes_moved(op, provider_mode, provider, numel, shape[-1], element_size)
            times[(provider, provider_mode)] = (t50, t20, t80, moved, samples)
            add(op, dtype_name, index, provider, provider_mode, "time", "ms", t50, t20, t80, samples)
            # Bandwidth is inversely proportional to time: the 20th percentile of time gives the 80th of GB/s.
            add(op, dtype_name, index, provider, provider_mode, "bandwidth", "GB/s", moved / t50 / 1e6,
                moved / t80 / 1e6, moved / t20 / 1e6, samples)
            if index == 0 and sweep == "size" and mode == modes[0] and provider not in ("compile", "clone"):
                # Memory kept for the backward does not depend on the size: measured once, at the first size.
                saved = cases.saved_bytes_per_element(fn, inputs)
                add(op, dtype_name, index, provider, "fwd+bwd", "saved_bytes_per_element", "B", saved, saved, saved,
                    None)
        del inputs
    page_faults = {}
    for (op, dtype_name, index), times in measured.items():
        clone = times.get(("clone", "fwd"))
        clone_bw = clone[3] / clone[0] if clone is not None else None
        if clone is not None:
            sweep, x, _ = points[index]
            page_faults[(op, dtype_name, sweep, x)] = (
                clone[0] / clone[3] > PAGE_FAULT_RATIO * clone_reference[dtype_name])
        for (provider, mode), (t50, t20, t80, moved, samples) in times.items():
            if provider == "clone":
                continue
            if clone_bw is not None:
                add(op, dtype_name, index, provider, mode, "clone_fraction", "ratio", moved / t50 / clone_bw,
                    moved / t80 / clone_bw, moved / t20 / clone_bw, min(samples, clone[4]))
            eager = times.get(("eager", mode))
            if eager is not None:
                add(op, dtype_name, index, provider, mode, "speedup_vs_eager", "x", eager[0] / t50, eager[0] / t80,
                    eager[0] / t20, min(samples, eager[4]))
    for row in rows:
        row.page_fault_dominated = page_faults.get((row.op, row.dtype, row.sweep, row.x))
    return rows, uncompiled


def main(argv=None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.time()
    messages = dependency_messages(args)
    for message in messages:
        print(message, flush=True)
    plots = report.missing_plot_dependency() is None
    if args.from_csv:
        # Into --out when given (the CSV copied along), else back into DIR.
        out = args.out or args.from_csv
        paths = report.write_all(report.read_csv(os.path.join(args.from_csv, "results.csv")), out,
                                 write_rows=os.path.abspath(out) != os.path.abspath(args.from_csv), plots=plots)
        print(open(paths["summary"]).read())
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.cpu_isa is not None:
        if fd.backends._C is None:
            sys.exit("--cpu-isa: the native extension is not loaded")
        try:
            fd.backends._C.set_cpu_isa(args.cpu_isa)
        except ValueError as error:
            sys.exit(f"--cpu-isa: {error}")
    if args.overhead:
        out = args.out or default_results_dir(device)
        overhead.run(device, out, quick=args.quick)
        print(f"wrote {out}/overhead.csv and overhead.md; the run took {time.time() - started:.0f} s")
        return
    rows, uncompiled = run(args)
    command = "python -m fused_dropout.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    paths = report.write_all(rows, args.out or default_results_dir(device), plots=plots, command=command)
    with open(paths["summary"]) as handle:
        print(handle.read())
    print(f"wrote {', '.join(paths.values())}; the run took {time.time() - started:.0f} s")
    if uncompiled:
        sys.exit(f"error: {len(uncompiled)} torch.compile measurement(s) did not run compiled code, so their rows "
                 "were left out and the run fails:\n  " + "\n  ".join(uncompiled))
