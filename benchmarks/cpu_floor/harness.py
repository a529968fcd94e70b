"""Builds and runs philox_floor.cpp, the Philox harness of one CPU kernel variant, with the extension's own flags."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "benchmarks", "cpu_floor", "philox_floor.cpp")
FLAGS_FILE = os.path.join(ROOT, "csrc", "cpu", "cxx_flags.txt")
VARIANT_DEFINES = {"avx2": [], "avx512": ["-DFLOOR_AVX512"]}  # the target itself: csrc/cpu/isa_targets.h


def extension_flags() -> list[str]:
    """The flags setup.py builds the extension with (csrc/cpu/cxx_flags.txt)."""
    with open(FLAGS_FILE) as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line]


def compiler() -> str:
    found = shutil.which(os.environ.get("CXX", "g++"))
    if found is None:
        raise RuntimeError("benchmarks.cpu_floor needs a C++ compiler: g++ (or $CXX) was not found")
    return found


def build(variant: str, out_dir: str) -> str:
    """Compiles the harness of `variant` into out_dir; returns the executable's path."""
    if variant not in VARIANT_DEFINES:
        raise ValueError(f"variant must be one of {sorted(VARIANT_DEFINES)}, got {variant!r}")
    exe = os.path.join(out_dir, f"philox_floor_{variant}")
    command = [compiler(), *extension_flags(), "-I", os.path.join(ROOT, "csrc"), *VARIANT_DEFINES[variant],
               SOURCE, "-o", exe]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the {variant} harness failed:\n{' '.join(command)}\n{result.stderr}")
    return exe


def run(exe: str, philox_steps: int) -> dict:
    """Runs a built harness: its JSON (clock, pipe throughputs, Philox ns per word, words checked)."""
    result = subprocess.run([exe, str(philox_steps)], capture_output=True, text=True)
    if not result.stdout.strip():
        raise RuntimeError(f"{exe} printed nothing (exit {result.returncode}): {result.stderr}")
    measured = json.loads(result.stdout)
    if result.returncode != 0 or measured["mismatches"]:
        raise RuntimeError(f"{exe}: the vector Philox differs from philox.h in {measured['mismatches']} of "
                           f"{measured['words_checked']} words")
    return measured
