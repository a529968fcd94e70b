"""The vector instructions of the harness's philox_step, by the pipe class they need."""
from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter

# Mnemonic prefixes of each class. Register-to-register moves are left out (register renaming removes them); moves
# and broadcasts with a memory operand are loads and stores (spills among them), counted but not ALU work.
CLASSES = (
    ("multiply", ("vpmul",)),
    ("shift", ("vpsrl", "vpsll", "vpsra")),
    ("shuffle", ("vpshuf", "vpunpck", "vperm", "vpalignr", "vinserti", "vextracti")),
    ("logic", ("vpxor", "vpternlog", "vpand", "vpor", "vpadd", "vpsub", "vpblend")),
)
ALU_CLASSES = tuple(name for name, _ in CLASSES)


def classify(mnemonic: str, operands: str) -> str | None:
    for name, prefixes in CLASSES:
        if mnemonic.startswith(prefixes):
            return name
    if mnemonic.startswith(("vmov", "vpbroadcast")):
        if "(" in operands:
            return "memory"
        if "{%k" in operands:  # a masked register move is a blend
            return "logic"
        if mnemonic.startswith("vpbroadcast"):
            return "shuffle"
        return None  # a register move
    return None


def function_lines(exe: str, symbol: str) -> list[tuple[str, str]]:
    """(mnemonic, operands) of every instruction of `symbol` in exe."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise RuntimeError("benchmarks.cpu_floor needs objdump (binutils) to count the Philox instructions")
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", exe], capture_output=True, text=True,
                          check=True).stdout
    match = re.search(rf"^[0-9a-f]+ <{re.escape(symbol)}>:\n(.*?)(?:\n\n|\Z)", text, re.S | re.M)
    if match is None:
        raise RuntimeError(f"{symbol} not found in the disassembly of {exe}")
    lines = []
    for line in match.group(1).splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1].strip():
            fields = parts[1].split(None, 1)
            lines.append((fields[0], fields[1] if len(fields) > 1 else ""))
    return lines


def instruction_classes(exe: str, symbol: str = "philox_step") -> Counter:
    """How many instructions of each class (multiply, shift, shuffle, logic, memory) `symbol` executes; it must be
    straight-line code (a call or a jump would hide instructions from the count)."""
    counts: Counter = Counter()
    for mnemonic, operands in function_lines(exe, symbol):
        if mnemonic.startswith(("call", "j")):
            raise RuntimeError(f"{symbol} in {exe} branches or calls ({mnemonic} {operands}): not straight-line")
        kind = classify(mnemonic, operands)
        if kind is not None:
            counts[kind] += 1
    return counts
