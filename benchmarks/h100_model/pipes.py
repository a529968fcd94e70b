"""Which execution pipe a SASS instruction occupies, and each pipe's H100 rate in thread-instructions per clock
per SM.

Sources: the arithmetic-instruction throughput table of the CUDA C Programming Guide (compute capability 9.0:
64 results/clock/SM for 32-bit integer add/logic/shift/compare and for 32-bit integer multiply, 128 for FP32
add/mul/fma, 64 for FP64, 16 for conversions and special functions), the "Pipelines" section of NVIDIA's Nsight
Compute Kernel Profiling Guide (alu: logic, shifts, integer add/compare, min/max, FP32 compare/select and, since
Ampere, fast FP32-to-FP16/BF16 conversion; fmaheavy: IMAD/IMUL/IDP and FP32; fmalite: FP32; xu: conversions,
MUFU, population count; lsu: loads, stores, shuffles, special registers; cbu/adu: branches, convergence barriers,
constants; uniform: the U* datapath), and NVIDIA's statement that on GH100 FP16x2 is dual-issued to fmaheavy and
fmalite and FP64 has its own pipe. Issue: 4 schedulers x 32 lanes.

Modeling choices (stated here and in benchmarks/README.md):
  - FP32 arithmetic is charged to fma_lite only, at 64 lanes/clock. In hardware it may also go to fmaheavy
    (128 combined); charging lite keeps fma_heavy the integer multiplier's pipe and gives an upper bound for lite.
  - IMAD.WIDE counts as one fma_heavy instruction (like every other IMAD form, including IMAD.MOV / IMAD.SHL
    / IMAD.IADD, which the compiler uses to move work off the ALU).
  - VIADD (new in sm_90; the same code for sm_80 has IADD3 in its place) is charged to fma_heavy: sm_90's
    compiler emits it to move integer adds off the ALU, as IMAD.IADD did before. NVIDIA does not document its
    pipe; the CSV reports VIADD per element separately so the other reading (ALU) can be checked at a glance.
  - Branches, convergence barriers, NOPs, constant loads (LDC) and uniform-datapath instructions take an issue
    slot and are charged to no other modeled pipe (their units are not the limit of a streaming kernel).
"""
from __future__ import annotations

# Pipe name -> thread-instructions per clock per SM on an H100 SXM.
PIPE_RATES = {
    "issue": 128,
    "alu": 64,
    "fma_heavy": 64,
    "fma_lite": 64,
    "fp64": 64,
    "xu": 16,
    "lsu": 32,  # one warp-wide memory instruction per clock per SM
}
# Pipes charged only to issue (reported, never a throughput limit of their own in this model).
ISSUE_ONLY = ("uniform", "branch", "other")
REPORTED_PIPES = tuple(PIPE_RATES) + ISSUE_ONLY

# Base opcode (before the first '.') -> pipe. Prefix rules below catch families.
_BASE = {
    # ALU
    **dict.fromkeys(["LOP3", "LOP", "ISETP", "SEL", "IADD3", "IADD", "SHF", "SHL", "SHR", "LEA", "PRMT", "IABS",
                     "IMNMX", "VIMNMX", "VIADDMNMX", "FSEL", "FSETP", "FMNMX", "PLOP3", "P2R", "R2P",
                     "CS2R", "MOV", "MOV32I", "F2FP", "ICMP", "FCHK", "BMSK", "SGXT", "VOTE", "LOP32I",
                     "IADD32I", "ISCADD", "HSETP2", "HSET2", "FSET", "ISET"], "alu"),
    # FMA-heavy (integer multiplies)
    **dict.fromkeys(["IMAD", "IMUL", "IMUL32I", "IMAD32I", "IDP", "IDP4A", "IMADSP", "VIADD"], "fma_heavy"),
    # FP32 and packed FP16 arithmetic
    **dict.fromkeys(["FADD", "FMUL", "FFMA", "FADD32I", "FMUL32I", "FFMA32I", "HADD2", "HMUL2", "HFMA2",
                     "HMNMX2", "FSWZADD"], "fma_lite"),
    # FP64
    **dict.fromkeys(["DADD", "DMUL", "DFMA", "DSETP", "DMNMX", "DSET"], "fp64"),
    # Conversions and special functions
    **dict.fromkeys(["MUFU", "F2F", "F2I", "I2F", "I2I", "FRND", "POPC", "FLO", "BREV", "I2FP", "F2IP"], "xu"),
    # Loads, stores and the other MIO instructions
    **dict.fromkeys(["LDG", "STG", "LD", "ST", "LDS", "STS", "LDL", "STL", "ATOM", "ATOMG", "ATOMS", "RED", "SHFL",
                     "S2R", "LDSM", "MEMBAR", "CCTL", "LDGSTS", "LDGDEPBAR", "MATCH", "REDUX"], "lsu"),
    # Control flow, barriers, constants, no-ops
    **dict.fromkeys(["BRA", "BRX", "JMP", "JMX", "CALL", "RET", "EXIT", "BSSY", "BSYNC", "WARPSYNC", "BAR",
                     "NOP", "YIELD", "DEPBAR", "LDC", "BMOV", "BPT", "KILL", "NANOSLEEP", "ERRBAR", "B2R",
                     "ELECT", "ENDCOLLECTIVE", "ACQBULK", "FENCE", "SYNCS", "ARRIVES"], "branch"),
}


def pipe_of(opcode: str) -> str:
    """The pipe of a full opcode such as 'IMAD.WIDE.U32' or 'F2FP.BF16.F32.PACK_AB'."""
    base = opcode.split(".", 1)[0]
    if base in _BASE:
        return _BASE[base]
    if base.startswith("U") or base in ("R2UR", "S2UR"):
        return "uniform"  # uniform datapath: ULDC, UIADD3, UMOV, USHF, ... and the register moves into it
    return "other"
