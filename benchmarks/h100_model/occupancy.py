"""Blocks of a kernel that fit on one H100 SM, from its registers, shared memory and block size."""
from __future__ import annotations

from . import hardware as hw


def blocks_per_sm(registers: int, shared_bytes: int, threads: int) -> int:
    """Resident blocks per SM: the least of the block limit, the warp limit, the register file (allocated per warp
    in units of 256 registers) and shared memory (plus 1 KB reserved per block)."""
    warps = -(-threads // 32)
    per_warp = -(-max(registers, 1) * 32 // hw.REGISTER_ALLOCATION_UNIT) * hw.REGISTER_ALLOCATION_UNIT
    limits = [hw.MAX_BLOCKS_PER_SM, hw.MAX_WARPS_PER_SM // warps, (hw.REGISTERS_PER_SM // per_warp) // warps]
    if shared_bytes:
        limits.append(hw.SHARED_BYTES_PER_SM // (shared_bytes + hw.SHARED_RESERVED_PER_BLOCK))
    return max(0, min(limits))
