"""What a modeled kernel is: backend, kind (forward / backward / column_sum), op, bias flag, dtype, tile, and the
facts about its work the hot-path search and the byte count need."""
from __future__ import annotations

from dataclasses import dataclass

ELEMENT_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}
ACC_BYTES = {"fp16": 4, "bf16": 4, "fp32": 4, "fp64": 8}  # compute type of the column-sum partials


@dataclass(frozen=True)
class KernelId:
    backend: str  # "cuda" | "triton"
    kind: str  # "forward" | "backward" | "column_sum"
    op: str  # forward: op name (op_table); backward: its backward op's name ("mask_bwd", ...); column_sum: "column_sum"
    bias: bool  # forward: takes a bias; backward: computes the bias gradient
    dtype: str  # "bf16", "fp16", "fp32", "fp64"
    name: str  # mangled CUDA name, or the Triton kernel name with its constexprs
    residual: bool = False  # forward: reads a residual
    keep_from_rng: bool = True  # the mask is recomputed with Philox (else read from y)
    reads_saved_input: bool = False  # backward: also reads the saved input x (the smooth activations)
    smooth_activation: bool = False  # computes gelu, gelu_tanh or silu (or its derivative)
    tile: str = ""  # Triton: "BRxBC/Ww"; CUDA: "grid-stride" / "row tiles"
    row_lengths: str = ""  # Triton bias tiles: the row lengths that choose this tile
    threads: int = 0  # threads per block / program
    elements_per_thread: int = 0  # Triton: elements a thread handles in its one pass (0: from the hot path)
    launched_blocks_per_sm: str = ""  # what the launcher launches per SM ("8") or "grid" (one block per tile)

    @property
    def label(self) -> str:
        bias = {"forward": "bias", "backward": "bias_grad", "column_sum": ""}[self.kind] if self.bias else ""
        parts = [self.backend, self.op, self.kind if self.kind != "column_sum" else "", bias, self.dtype, self.tile]
        return " ".join(part for part in parts if part)

    @property
    def streamed_inputs(self) -> int:
        """Per-element tensors the kernel reads (x [+ residual]; grad [+ y]); it writes one."""
        if self.kind == "forward":
            return 1 + self.residual
        if self.kind == "backward":
            return 1 + (not self.keep_from_rng) + self.reads_saved_input
        return 1

    @property
    def bytes_per_element(self) -> int:
        """Bytes moved per element, as fused_dropout.op_table's bytes_moved counts them (the per-call bias and
        bias-gradient bytes are left out: they are a row, not a tensor). Column sums read their fp32/fp64 partial."""
        if self.kind == "column_sum":
            return ACC_BYTES[self.dtype]
        return (self.streamed_inputs + 1) * ELEMENT_BYTES[self.dtype]

    @property
    def plain_dropout(self) -> bool:
        """Plain dropout's forward and backward (the tighter 24 issue/element budget)."""
        if self.bias or self.residual:
            return False
        return (self.kind == "forward" and self.op == "dropout") or (self.kind == "backward" and self.op == "mask_bwd")

    @property
    def budgeted(self) -> bool:
        return self.dtype in ("bf16", "fp16")

    @property
    def known_compute_bound(self) -> bool:
        """The smooth activations' kernels (gelu, gelu_tanh, silu and their derivatives): their math, written with
        multiplies, adds and divides each rounded once so every backend gives the same bits, costs 50-90
        instructions per element, so they are compute-bound on an H100 (a known gap: the model reports them over
        the budget; CI holds them to no spills and no overfull launch, and to their modeled speed not dropping)."""
        return self.smooth_activation
