"""The steady-state aligned hot path of a kernel: the cheapest path through its control-flow graph that does the
work the aligned case must do.

Shortest paths alone are not enough: the compiler guards each Philox call of a chunk with a branch (the call is
skipped when the chunk's elements need fewer groups, e.g. at a tensor's end), so the plain shortest cycle would skip
every Philox call. The search therefore carries counters of what a path has done (wide multiplies of Philox rounds,
128-bit loads and stores, stores, loads) and looks for the cheapest path meeting required counts: a resource-
constrained shortest path (Dijkstra over (block, counters capped at the requirement)). Cost = instructions issued.

  - cycle(): the cheapest cycle through a block holding an anchor instruction (a 128-bit store; a load for
    column sums) that meets the requirements: one iteration of a grid-stride or row loop.
  - path(): the cheapest entry -> EXIT path meeting the requirements: one Triton program (one tile).

A CALL costs its own slot plus the cheapest path from its target to a RET (the 64-bit division subroutines).
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

from .pipes import pipe_of
from .sass import Instruction, basic_blocks

# Philox4x32's two round multipliers as cuobjdump prints immediates (unsigned or as a negative 32-bit value).
PHILOX_MULTIPLIERS = {"0xd2511f53", "-0x2daee0ad", "0xcd9e8d57", "-0x326172a9"}
# Wide (high-half) multiplies per Philox4x32-10 call: two per round, ten rounds.
PHILOX_WIDE_MULTIPLIES_PER_CALL = 20

def philox_requirement(elements: int) -> int:
    """Wide multiplies a path must hold to have made the Philox calls of `elements` aligned elements (one call
    per 4): more than the previous number of calls could hold, so the count holds whatever a call compiles to."""
    calls = -(-elements // 4)
    return 0 if calls == 0 else (calls - 1) * PHILOX_WIDE_MULTIPLIES_PER_CALL + 1


_ACCESS_BYTES = {"U8": 1, "S8": 1, "U16": 2, "S16": 2, "64": 8, "128": 16}


def access_bytes(instruction: Instruction) -> int:
    """Bytes per thread of a global load or store: .U16 -> 2, none -> 4, .64 -> 8, .128 -> 16."""
    for part in instruction.opcode.split(".")[1:]:
        if part in _ACCESS_BYTES:
            return _ACCESS_BYTES[part]
    return 4


def _is_register(operand: str) -> bool:
    operand = operand.split(".")[0].lstrip("-|!")
    return operand in ("RZ", "URZ") or (operand[:1] == "R" and operand[1:].isdigit()) or (
        operand[:2] == "UR" and operand[2:].isdigit())


def is_philox_multiply(instruction: Instruction) -> bool:
    """A 32x32 -> high-half multiply of a Philox round: IMAD/IMUL .WIDE or .HI by a Philox multiplier (or by a
    register, where the multiplier was moved into one)."""
    parts = instruction.opcode.split(".")
    if parts[0] not in ("IMAD", "IMUL") or not ({"WIDE", "HI"} & set(parts)):
        return False
    sources = instruction.operands[1:]
    return bool(PHILOX_MULTIPLIERS & {s.lower() for s in sources}) or all(_is_register(s) for s in sources)


def resources_of(instruction: Instruction) -> Counter:
    """The counters a hot-path requirement can name."""
    found = Counter()
    if is_philox_multiply(instruction):
        found["philox_multiply"] += 1
    if instruction.base in ("LDG", "STG"):
        kind = "load" if instruction.base == "LDG" else "store"
        found[kind] += 1
        found[f"{kind}_bytes"] += access_bytes(instruction)
        if access_bytes(instruction) == 16:
            found[f"vector_{kind}"] += 1
    return found


@dataclass
class HotPath:
    blocks: list  # block indices in path order
    instructions: int  # thread-instructions issued along the path (one pass)
    pipes: Counter  # pipe -> instructions
    resources: Counter  # resource -> count along the path
    opcodes: Counter  # opcode -> count (for reading a path's make-up)


class ControlFlow:
    """One function's blocks with per-block costs (callees included), ready for hot-path searches."""

    def __init__(self, instructions: list):
        self.blocks = basic_blocks(instructions)
        self._index_of_address = {b.instructions[0].address: b.index for b in self.blocks}
        self._callee_cache = {}
        self.cost, self.pipes, self.resources, self.opcodes = [], [], [], []
        for block in self.blocks:
            pipes, resources, opcodes = Counter(), Counter(), Counter()
            for instruction in block.instructions:
                pipes[pipe_of(instruction.opcode)] += 1
                resources += resources_of(instruction)
                opcodes[instruction.opcode] += 1
                if instruction.base == "CALL" and instruction.target in self._index_of_address:
                    callee = self._callee(self._index_of_address[instruction.target])
                    if callee is not None:
                        pipes += callee.pipes
                        resources += callee.resources
                        opcodes += callee.opcodes
            self.pipes.append(pipes)
            self.resources.append(resources)
            self.opcodes.append(opcodes)
            self.cost.append(sum(pipes.values()))

    def _callee(self, start: int) -> HotPath | None:
        """The cheapest path from a called block to a RET, without the calls inside it (no nesting seen)."""
        if start not in self._callee_cache:
            self._callee_cache[start] = None  # guards recursion
            best, queue, previous = {start: len(self.blocks[start].instructions)}, [], {}
            heapq.heappush(queue, (best[start], start))
            found = None
            while queue:
                cost, index = heapq.heappop(queue)
                if cost > best.get(index, float("inf")):
                    continue
                if self.blocks[index].returns:
                    found = index
                    break
                for successor in self.blocks[index].successors:
                    new = cost + len(self.blocks[successor].instructions)
                    if new < best.get(successor, float("inf")):
                        best[successor], previous[successor] = new, index
                        heapq.heappush(queue, (new, successor))
            if found is not None:
                path = [found]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                pipes, opcodes = Counter(), Counter()
                for index in path:
                    for instruction in self.blocks[index].instructions:
                        pipes[pipe_of(instruction.opcode)] += 1
                        opcodes[instruction.opcode] += 1
                self._callee_cache[start] = HotPath(path[::-1], sum(pipes.values()), pipes, Counter(), opcodes)
        return self._callee_cache[start]

    def total(self, resource: str) -> int:
        return sum(r[resource] for r in self.resources)

    def _capped(self, counts: tuple, block: int, required: tuple) -> tuple:
        return tuple(min(need, have + self.resources[block][name])
                     for (name, need), have in zip(required, counts, strict=True))

    def _search(self, start: int, required: dict, is_goal) -> list | None:
        """Dijkstra over (block, capped counters) from `start`; is_goal(state, successor or None) says whether the
        path may end (see cycle / path). Returns the block indices of the cheapest path, or None."""
        need = tuple(sorted(required.items()))
        zero = tuple(0 for _ in need)
        first = (start, self._capped(zero, start, need))
        best, previous = {first: self.cost[start]}, {}
        queue = [(self.cost[start], 0, first)]
        tie = 0
        while queue:
            cost, _, state = heapq.heappop(queue)
            if cost > best.get(state, float("inf")):
                continue
            satisfied = all(have >= wanted for have, (_, wanted) in zip(state[1], need, strict=True))
            if is_goal(state[0], None, satisfied):
                return self._unwind(previous, state)
            for successor in self.blocks[state[0]].successors:
                if is_goal(state[0], successor, satisfied):
                    return self._unwind(previous, state)
                if successor == start:
                    continue
                nxt = (successor, self._capped(state[1], successor, need))
                new = cost + self.cost[successor]
                if new < best.get(nxt, float("inf")):
                    best[nxt], previous[nxt] = new, state
                    tie += 1
                    heapq.heappush(queue, (new, tie, nxt))
        return None

    @staticmethod
    def _unwind(previous: dict, state) -> list:
        path = [state]
        while path[-1] in previous:
            path.append(previous[path[-1]])
        return [s[0] for s in reversed(path)]

    def summarise(self, path: list) -> HotPath:
        pipes, resources, opcodes = Counter(), Counter(), Counter()
        for index in path:
            pipes += self.pipes[index]
            resources += self.resources[index]
            opcodes += self.opcodes[index]
        return HotPath(path, sum(pipes.values()), pipes, resources, opcodes)

    def cycle(self, anchor_resource: str, required: dict) -> HotPath | None:
        """The cheapest cycle through a block holding `anchor_resource` with at least `required` counts."""
        best = None
        for block in self.blocks:
            if not self.resources[block.index][anchor_resource]:
                continue
            start = block.index
            found = self._search(start, required,
                                 lambda at, successor, ok, start=start: ok and successor == start)
            if found is not None:
                candidate = self.summarise(found)
                if best is None or candidate.instructions < best.instructions:
                    best = candidate
        return best

    def path(self, required: dict) -> HotPath | None:
        """The cheapest path from the entry to an EXIT with at least `required` counts."""
        found = self._search(0, required, lambda at, successor, ok: ok and successor is None
                             and self.blocks[at].exits)
        return None if found is None else self.summarise(found)
