"""The CPU Philox floor (benchmarks/cpu_floor): unit tests of its disassembly classes and its bound, and one quick
end-to-end run per variant this CPU has (the harness is built with the extension's flags, checks its Philox words
against philox.h, and its disassembly is counted). A few seconds per variant."""
import json
import os
import shutil
import stat
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.cpu_floor import __main__ as cpu_floor_cli  # noqa: E402
from benchmarks.cpu_floor import disasm, harness, model  # noqa: E402

VARIANTS = cpu_floor_cli.runnable_variants()
LANES = {"avx2": 4, "avx512": 8}  # Philox groups per vpmuludq (one group per 64-bit lane)
needs_tools = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None or shutil.which("objdump") is None,
                                 reason="g++ or objdump missing")


def test_instruction_classes():
    assert disasm.classify("vpmuludq", "%ymm1,%ymm2,%ymm3") == "multiply"
    assert disasm.classify("vpsrlq", "$0x20,%ymm1,%ymm2") == "shift"
    assert disasm.classify("vpshufd", "$0xb1,%zmm1,%zmm2") == "shuffle"
    assert disasm.classify("vpermt2d", "%zmm1,%zmm2,%zmm3") == "shuffle"
    assert disasm.classify("vpternlogd", "$0x96,%zmm1,%zmm2,%zmm3") == "logic"
    assert disasm.classify("vpxor", "0x20(%rdi),%ymm1,%ymm2") == "logic"  # an ALU op with a memory source
    assert disasm.classify("vmovdqa32", "%zmm1,%zmm2{%k1}") == "logic"  # a masked move is a blend
    assert disasm.classify("vmovdqa", "%ymm1,0x40(%rsp)") == "memory"  # a spill
    assert disasm.classify("vpbroadcastd", "0x8(%rdi),%ymm1") == "memory"
    assert disasm.classify("vpbroadcastq", "%xmm1,%ymm1") == "shuffle"
    assert disasm.classify("vmovdqa", "%ymm1,%ymm2") is None  # renamed away
    assert disasm.classify("add", "$0x1,%rax") is None


def measured(**ns_per_op):
    ops = {"multiply": 0.125, "shift": 0.125, "shuffle": 0.0625, "xor": 0.0625, "round_mix": 0.0625}
    ops.update(ns_per_op)
    return {"variant": "avx2", "groups_per_call": 4, "ghz": 4.0, "ns_per_op": ops, "philox_ns_per_word": 0.5}


def test_floor_is_the_largest_bound():
    # 16 words; per word 2 multiplies (2 per cycle: 1 cycle), 1 shift, 1 logic: 4 ALU ops at 4 per cycle is 1 cycle
    # too, so with multiplies at 1 per cycle they bind: 2 cycles per word at 4 GHz.
    counts = {"multiply": 32, "shift": 16, "logic": 16, "memory": 100}
    floor = model.philox_floor(measured(multiply=0.25), counts)
    assert floor.bound_by == "multiply"
    assert floor.floor_ns_per_word == pytest.approx(0.5)
    assert floor.efficiency == pytest.approx(1.0)
    assert floor.alu_per_word == pytest.approx(4.0)
    # Cheap multiplies: now the round mix (4 ALU ops per word at 4 per cycle) binds, and memory never does.
    floor = model.philox_floor(measured(multiply=0.0625), counts)
    assert floor.bound_by == "round_mix"
    assert floor.floor_ns_per_word == pytest.approx(0.25)


def test_harness_reports_words_that_differ_from_philox_h(tmp_path):
    fake = tmp_path / "fake_harness"
    result = dict(measured(), words_checked=64, mismatches=3)
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(result)}'\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(RuntimeError, match="differs from philox.h in 3 of 64 words"):
        harness.run(str(fake), philox_steps=1)


def test_unknown_variant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="variant must be one of"):
        harness.build("sse2", str(tmp_path))


@needs_tools
@pytest.mark.parametrize("variant", ["avx2", "avx512"])
def test_harness_measures_the_extension_philox(variant, tmp_path):
    if variant not in VARIANTS:
        pytest.skip(f"this CPU cannot run the {variant} variant")
    exe = harness.build(variant, str(tmp_path))
    result = harness.run(exe, philox_steps=2000)  # raises unless every checked word equals philox.h's
    assert result["variant"] == variant and result["words_checked"] >= 4096
    counts = disasm.instruction_classes(exe)
    floor = model.philox_floor(result, counts)
    # Rounds 3 to 10 need two products per group that no shortcut removes: at least 16 per group, one per 64-bit lane
    # of a vpmuludq, so per word (4 per group) at least 4 / LANES multiplies. A miscounted disassembly fails here.
    assert floor.per_word["multiply"] >= 4 / LANES[variant]
    assert floor.floor_ns_per_word > 0 and floor.measured_ns_per_word > 0


@needs_tools
def test_command_line_writes_its_summary(tmp_path):
    if not VARIANTS:
        pytest.skip("this CPU runs neither vector variant")
    cpu_floor_cli.main(["--quick", "--variants", VARIANTS[0], "--out", str(tmp_path)])
    summary = (tmp_path / "summary.md").read_text()
    assert "python -m benchmarks.cpu_floor --quick" in summary
    assert f"| {VARIANTS[0]} |" in summary
    rows = json.loads((tmp_path / "results.json").read_text())
    assert rows[0]["floor"]["variant"] == VARIANTS[0] and rows[0]["harness"]["mismatches"] == 0
