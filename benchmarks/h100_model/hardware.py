"""The H100 SXM numbers the model uses, and the budget rule of the project (issue 9)."""

SMS = 132
CLOCK_HZ = 1.98e9
COPY_BYTES_PER_SECOND = 2.9e12
# Copy bandwidth in bytes per SM per clock: 2.9e12 / (132 * 1.98e9) = 11.1.
COPY_BYTES_PER_SM_CLOCK = COPY_BYTES_PER_SECOND / (SMS * CLOCK_HZ)

# Per-SM occupancy limits of compute capability 9.0 (CUDA C Programming Guide, "Technical Specifications per
# Compute Capability"): 64K 32-bit registers, 64 resident warps, 32 resident blocks, 228 KB shared memory of
# which a block may use 227 KB, and 1 KB reserved per block. Registers are allocated per warp in units of 256.
REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = 64
MAX_BLOCKS_PER_SM = 32
SHARED_BYTES_PER_SM = 228 * 1024
SHARED_RESERVED_PER_BLOCK = 1024
REGISTER_ALLOCATION_UNIT = 256

# A kernel stays memory-bound with margin when its busiest pipe is at most this busy at copy bandwidth.
BUDGET_UTILISATION = 0.7
# Plain dropout forward and backward additionally issue at most this many instructions per element.
PLAIN_DROPOUT_ISSUE_BUDGET = 24.0


def pipe_budget(lanes_per_clock: float, bytes_per_element: float) -> float:
    """Thread-instructions per element a pipe of this rate may take for the kernel to stay within the budget:
    0.7 * rate * B / 11.1 (32 issue, 16 ALU, 16 IMAD at B = 4)."""
    return BUDGET_UTILISATION * lanes_per_clock * bytes_per_element / COPY_BYTES_PER_SM_CLOCK
