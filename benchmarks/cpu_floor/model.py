"""The Philox floor of a variant from the harness's measurements and instruction counts.

Per word, each class of vector instruction needs at least count / throughput cycles, and all of them together at
least (their sum) / (the throughput of a Philox round's own mix of instructions): the largest of these bounds is
the floor, the fastest this Philox could run on this machine with these instructions. Memory instructions (spills,
stores of the words) are left out: the load and store ports are not what binds here."""
from __future__ import annotations

from dataclasses import dataclass

from .disasm import ALU_CLASSES

# The throughput each class is held to (a harness measurement): shifts and multiplies alone, shuffles as vpshufd,
# the rest (XOR, three-way XOR, adds, blends) as the XOR.
THROUGHPUT_OF_CLASS = {"multiply": "multiply", "shift": "shift", "shuffle": "shuffle", "logic": "xor"}


@dataclass
class PhiloxFloor:
    variant: str
    ghz: float
    ops_per_cycle: dict[str, float]  # measured: multiply, shift, shuffle, xor, round_mix
    per_word: dict[str, float]  # instructions per word by class, and "memory"
    bound_by: str  # the class (or "round_mix") whose bound is the floor
    floor_ns_per_word: float
    measured_ns_per_word: float

    @property
    def alu_per_word(self) -> float:
        return sum(self.per_word.get(name, 0.0) for name in ALU_CLASSES)

    @property
    def efficiency(self) -> float:
        """The floor over the measured time: 1.0 is the floor reached."""
        return self.floor_ns_per_word / self.measured_ns_per_word


def philox_floor(measured: dict, counts: dict) -> PhiloxFloor:
    ghz = measured["ghz"]
    ops_per_cycle = {name: 1.0 / (ns * ghz) for name, ns in measured["ns_per_op"].items()}
    words_per_call = 4 * measured["groups_per_call"]
    per_word = {name: count / words_per_call for name, count in counts.items()}
    bounds = {name: per_word.get(name, 0.0) / ops_per_cycle[THROUGHPUT_OF_CLASS[name]] for name in ALU_CLASSES}
    bounds["round_mix"] = sum(per_word.get(name, 0.0) for name in ALU_CLASSES) / ops_per_cycle["round_mix"]
    bound_by = max(bounds, key=bounds.get)
    return PhiloxFloor(variant=measured["variant"], ghz=ghz, ops_per_cycle=ops_per_cycle, per_word=per_word,
                       bound_by=bound_by, floor_ns_per_word=bounds[bound_by] / ghz,
                       measured_ns_per_word=measured["philox_ns_per_word"])
