"""Smoke test of the benchmark (the README's main job): a --quick tiny sweep writes CSV, plots and summary."""
import csv
import os
import subprocess
import sys

import pytest
import torch

from fused_dropout.bench import cases, cli, report, timing


@pytest.fixture(autouse=True)
def no_triton_interpreter(monkeypatch):
    # The benchmark times real kernels; the interpreter would time numpy.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_quick_tiny_sweep_writes_csv_plots_and_summary(tmp_path):
    cli.main(["--quick", "--modes", "fwd", "bwd", "fwd+bwd", "--sizes", "13", "--ops", "dropout", "bias_relu_dropout", "--hidden", "512",
              "--hidden-numel-log2", "13", "--providers", "cpu", "eager", "compile", "clone", "--no-progress",
              "--out", str(tmp_path)])
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == report.CSV_COLUMNS
    providers = {r["provider"] for r in rows}
    assert providers == {"cpu", "eager", "compile", "clone"}
    assert {r["sweep"] for r in rows} == {"size", "hidden"}
    assert {r["mode"] for r in rows if r["provider"] == "compile"} == {"fwd", "bwd", "fwd+bwd"}
    assert {r["metric"] for r in rows} >= {"time", "bandwidth", "clone_fraction", "speedup_vs_eager",
                                          "saved_bytes_per_element"}
    for r in rows:
        if r["metric"] == "time":
            assert 0 < float(r["y20"]) <= float(r["y50"]) <= float(r["y80"])
    for r in rows:
        assert (r["torch"], r["threads"]) == (torch.__version__, str(torch.get_num_threads()))
        assert r["triton"] and r["cpu_isa"] and r["device"] and r["page_fault_dominated"] in ("True", "False")
        assert r["samples"] == "" if r["metric"] == "saved_bytes_per_element" else int(r["samples"]) >= 1
    saved = {(r["op"], r["provider"]): float(r["y50"]) for r in rows if r["metric"] == "saved_bytes_per_element"}
    assert saved[("dropout", "cpu")] < 0.01  # 16 bytes of RNG state over 8192 elements
    assert saved[("dropout", "eager")] >= 1.0  # nn.Dropout keeps a mask
    for name in ("bandwidth.png", "speedup.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    summary = (tmp_path / "summary.md").read_text()
    assert "| dropout | fwd | float32 | cpu |" in summary


def test_threads_and_cpu_variant_are_chosen_and_recorded(tmp_path):
    argv = ["--quick", "--modes", "fwd", "--sizes", "12", "--ops", "dropout", "--hidden", "--providers", "cpu",
            "clone", "--threads", "1", "--cpu-isa", "generic", "--no-progress", "--out", str(tmp_path)]
    cli.main(argv)
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all((r["threads"], r["cpu_isa"]) == ("1", "generic") for r in rows)
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("Command: `python -m fused_dropout.bench " + " ".join(argv) + "`")
    assert "1 threads, CPU kernels generic" in summary
    # Whether torch's allocations asked for huge pages decides what page faults cost: recorded per row.
    asked = os.environ.get("THP_MEM_ALLOC_ENABLE") or "unset"
    assert all(r["huge_pages"].startswith(f"THP_MEM_ALLOC_ENABLE={asked}, transparent_hugepage=") for r in rows)
    assert f"huge pages: THP_MEM_ALLOC_ENABLE={asked}" in summary
    with pytest.raises(SystemExit, match="--cpu-isa"):
        cli.main(argv[:-2] + ["--cpu-isa", "avx1024", "--out", str(tmp_path / "refused")])


def run_without(modules, argv, **kwargs):
    """The CLI in a fresh interpreter where `modules` cannot be imported (sys.modules[name] = None)."""
    code = (f"import sys; sys.modules.update(dict.fromkeys({list(modules)!r})); "
            f"from fused_dropout.bench.cli import main; main({list(argv)!r})")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_runs_with_only_the_required_dependencies(tmp_path):
    result = run_without(["matplotlib", "tqdm", "numpy"],
                         ["--quick", "--modes", "fwd", "--sizes", "12", "--ops", "dropout", "--hidden",
                          "--providers", "cpu", "eager", "clone", "--out", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Told before measuring: the messages come before the first progress line.
    assert "pip install matplotlib" in out and "pip install tqdm" in out
    assert out.index("pip install matplotlib") < out.index("[1/1] dropout float32 fwd size 4096")
    assert (tmp_path / "results.csv").stat().st_size > 0
    assert "| dropout | fwd | float32 | cpu |" in (tmp_path / "summary.md").read_text()
    assert not list(tmp_path.glob("*.png"))


def test_a_compile_row_that_ran_uncompiled_fails_the_run(tmp_path, monkeypatch):
    # At its recompile limit dynamo runs the function eagerly; a limit of 0 forces that on the first call.
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 0)
    with pytest.raises(SystemExit) as failure:
        cli.main(["--quick", "--modes", "fwd", "--sizes", "12", "--ops", "dropout", "--hidden", "--providers",
                  "eager", "compile", "--no-progress", "--out", str(tmp_path)])
    assert failure.value.code not in (0, None)
    assert "did not run compiled code" in str(failure.value.code)
    assert "dropout float32 fwd size 4096" in str(failure.value.code)
    with open(tmp_path / "results.csv") as handle:
        providers = {r["provider"] for r in csv.DictReader(handle)}
    assert providers == {"eager"}  # the eager-timed "compile" rows are left out


def test_each_compile_case_compiles_afresh(tmp_path, monkeypatch):
    # Two (op, dtype, mode) cases of one shape each: with a recompile limit of 1 the second case only runs
    # compiled if it does not share dynamo's cache with the first (one shared function would fall back to eager).
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    cli.main(["--quick", "--modes", "fwd", "--sizes", "13", "--ops", "dropout", "dropout_add", "--hidden",
              "--providers", "compile", "--no-progress", "--out", str(tmp_path)])
    with open(tmp_path / "results.csv") as handle:
        assert {r["op"] for r in csv.DictReader(handle) if r["provider"] == "compile"} == {"dropout", "dropout_add"}


def test_single_samples_and_page_faults_are_flagged_and_results_never_overwritten(tmp_path, monkeypatch, capsys):
    # Every timing takes 1 ms in one sample: clone's time per byte at 2^12 elements is 256x that at 2^20.
    def one_sample_of_1ms(fn, device, quick=False):
        fn()
        return timing.Timing(1.0, 1.0, 1.0, 1)

    monkeypatch.setattr(cli, "time_ms", one_sample_of_1ms)
    monkeypatch.chdir(tmp_path)
    argv = ["--quick", "--modes", "fwd", "--sizes", "12", "20", "--ops", "dropout", "--hidden", "--providers",
            "cpu", "clone", "--no-progress"]
    cli.main(argv)
    cli.main(argv)
    out = capsys.readouterr().out
    assert "estimated duration" in out and "the run took" in out
    folders = sorted((tmp_path / "benchmarks" / "results").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("cpu-") for f in folders)  # a new folder per run
    with open(folders[0] / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["page_fault_dominated"] for r in rows if r["x"] == str(2**12)} == {"True"}
    assert {r["page_fault_dominated"] for r in rows if r["x"] == str(2**20)} == {"False"}
    assert {r["samples"] for r in rows if r["metric"] == "time"} == {"1"}
    summary = (folders[0] / "summary.md").read_text()
    assert "| dropout | fwd | float32 | cpu |" in summary and "1 sample" in summary


def test_percentiles_match_numpy_and_count_samples():
    assert timing.summarize([3.0, 1.0, 2.0, 4.0, 5.0]) == (3.0, 1.8, 4.2, 5)
    assert timing.summarize([2.5]) == (2.5, 2.5, 2.5, 1)


def test_plots_colour_per_provider_style_per_dtype_hidden_panel_and_title():
    rows = [report.Row(op, provider, mode, metric, "u", x, 1.0 + i, 1.0, 2.0 + i, dtype, "Some CPU", "c", sweep,
                       f"{x}x{x}" if sweep == "hidden" else f"1x{x}", 3, False, 2)
            for i, (op, provider, mode, metric, x, dtype, sweep) in enumerate(
                (op, provider, mode, metric, x, dtype, sweep)
                for op in ("dropout", "dropout_add") for dtype in ("float32", "bfloat16")
                for metric in ("bandwidth", "speedup_vs_eager") for sweep, xs in (("size", (64, 128)), ("hidden", (8, 16)))
                for x in xs for provider in ("cpu", "eager", "compile", "clone")
                for mode in (("fwd",) if provider == "clone" else ("fwd", "fwd+bwd")))]
    for metric in ("bandwidth", "speedup_vs_eager"):
        figure = report.draw(rows, metric, "effective GB/s", log_y=True)
        axes = figure.axes
        assert len(axes) == 2 * 3  # per op: fwd, fwd+bwd and the hidden sweep
        assert any("hidden" in axis.get_title() for axis in axes)
        for axis in axes:
            drawn = [line.get_label() for line in axis.get_lines() if not line.get_label().startswith("eager =")]
            assert len(drawn) == len(set(drawn))  # no provider and dtype drawn twice in a panel
            for line in axis.get_lines():
                provider, dtype = line.get_label().split(" ", 1)
                if provider == "eager" and dtype == "= 1":
                    assert metric == "speedup_vs_eager"
                    continue
                assert line.get_color() == report.PROVIDER_COLORS[provider]
                assert line.get_linestyle() == report.DTYPE_STYLES[dtype]
                assert not (metric == "speedup_vs_eager" and provider == "eager")  # the baseline is the line at 1
            if metric == "bandwidth":
                assert {line.get_label() for line in axis.get_lines()} >= {"clone float32", "clone bfloat16"}
        title = figure._suptitle.get_text()
        assert "Some CPU" in title and "float32" in title and "bfloat16" in title
        if metric == "bandwidth":
            assert "bytes the op must move" in title
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_byte_accounting():
    # dropout forward: read x and write y, 4 bytes each in float32; nn.Dropout also writes a 1-byte mask.
    assert cases.bytes_moved("dropout", "fwd", "cpu", 1000, 1000, 4) == 8000
    assert cases.bytes_moved("dropout", "fwd", "eager", 1000, 1000, 4) == 9000
    # bias_relu_dropout forward+backward in bfloat16: 2s + 3s per element plus the bias read and its gradient.
    assert cases.bytes_moved("bias_relu_dropout", "fwd+bwd", "cuda", 1000, 10, 2) == 5 * 2 * 1000 + 2 * 10 * 2
    assert cases.bytes_moved("dropout_add", "bwd", "triton", 100, 10, 4) == 2 * 4 * 100 + 10 * 4
    assert cases.bytes_moved("dropout", "fwd", "clone", 100, 100, 2) == 400


def test_plan_defaults():
    args = cli.parse_args([])
    modes, dtypes, providers, points = cli.build_plan(args, torch.device("cpu"))
    assert modes == ["fwd", "bwd", "fwd+bwd"] and dtypes == ["float32", "bfloat16"]
    assert {"cpu", "eager", "compile", "clone"} <= set(providers) and "torch" not in providers
    sizes = [x for sweep, x, _ in points if sweep == "size"]
    assert sizes[0] == 2**16 and sizes[-1] == 2**26
    assert [x for sweep, x, _ in points if sweep == "hidden"] == [768, 1024, 2048, 4096, 8192]


def test_the_structured_benchmark_runs_every_case():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-m", "benchmarks.structured", "--repeats", "1"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines()[2:] if line.strip()]
    assert len(rows) == 5 and all(len(row.split()) >= 3 for row in rows), result.stdout
