"""SASS text (cuobjdump -sass) -> instructions, basic blocks and the control-flow graph of each function.

Only what the hot-path finder needs: an instruction's address, guard predicate, opcode and operands; branch
targets (cuobjdump prints them as absolute addresses); which instructions end a block (BRA, BRX, JMP, EXIT, RET);
CALL is kept inside its block (the callee's cost is added to the call by hot_path.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-fA-F]+)\*/\s+(.*?)\s*;")
_GUARD = re.compile(r"^(@!?U?P[T0-9])\s+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")

_ENDS_BLOCK = ("BRA", "BRX", "JMP", "JMX", "EXIT", "RET")
_BRANCHES = ("BRA", "JMP", "CALL")


@dataclass(frozen=True)
class Instruction:
    address: int
    opcode: str  # 'IMAD.WIDE.U32'
    operands: tuple  # ('R18', 'R13', '-0x2daee0ad', 'RZ')
    guard: str = ""  # '@P0', '@!P6' or '' (always)

    @property
    def base(self) -> str:
        return self.opcode.split(".", 1)[0]

    @property
    def conditional(self) -> bool:
        return self.guard not in ("", "@PT")

    @property
    def target(self) -> int | None:
        """The address a BRA / JMP / CALL jumps to (absolute in cuobjdump's listing)."""
        if self.base not in _BRANCHES or not self.operands:
            return None
        found = _HEX.findall(self.operands[-1])
        return int(found[-1], 16) if found else None


@dataclass
class Block:
    index: int
    instructions: list
    successors: list = field(default_factory=list)  # block indices
    exits: bool = False  # an EXIT (conditional or not) leaves the kernel from here
    returns: bool = False  # a RET: the end of a called subroutine


def parse_instruction(line: str) -> Instruction | None:
    match = _INSTRUCTION.match(line)
    if not match:
        return None
    text = match.group(2).strip()
    guard = ""
    found = _GUARD.match(text)
    if found:
        guard, text = found.group(1), text[found.end():]
    opcode, _, rest = text.partition(" ")
    operands = tuple(part.strip() for part in rest.split(",")) if rest.strip() else ()
    return Instruction(int(match.group(1), 16), opcode, operands, guard)


def parse_functions(listing: str) -> dict:
    """{function name: [Instruction]} of a cuobjdump -sass listing (one or many functions)."""
    functions, current = {}, None
    for line in listing.splitlines():
        found = _FUNCTION.match(line)
        if found:
            current = functions.setdefault(found.group(1), [])
            continue
        if current is not None:
            instruction = parse_instruction(line)
            if instruction is not None:
                current.append(instruction)
    return functions


def basic_blocks(instructions: list) -> list:
    """The basic blocks of one function, in address order, with their successor edges."""
    if not instructions:
        return []
    leaders = {instructions[0].address}
    for position, instruction in enumerate(instructions):
        if instruction.target is not None:
            leaders.add(instruction.target)
        if instruction.base in _ENDS_BLOCK and position + 1 < len(instructions):
            leaders.add(instructions[position + 1].address)
    blocks, block_of_address = [], {}
    for instruction in instructions:
        if instruction.address in leaders or not blocks:
            blocks.append(Block(len(blocks), []))
        blocks[-1].instructions.append(instruction)
        block_of_address[instruction.address] = blocks[-1].index
    for block in blocks:
        last = block.instructions[-1]
        falls_through = block.index + 1 < len(blocks)
        if last.base in ("BRA", "JMP") and last.target in block_of_address:
            block.successors.append(block_of_address[last.target])
            falls_through = falls_through and last.conditional
        elif last.base in ("BRX", "JMX"):
            falls_through = False  # indirect: no known successors (these kernels have none)
        elif last.base == "EXIT":
            block.exits = True
            falls_through = falls_through and last.conditional
        elif last.base == "RET":
            block.returns = True
            falls_through = falls_through and last.conditional
        if falls_through:
            block.successors.append(block.index + 1)
        block.successors = sorted(set(block.successors))
    return blocks


def reachable(blocks: list, start: int = 0) -> set:
    seen, todo = set(), [start]
    while todo:
        index = todo.pop()
        if index in seen:
            continue
        seen.add(index)
        todo.extend(blocks[index].successors)
    return seen
