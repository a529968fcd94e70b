"""The table of fused ops: every op is declared once here, and every Python layer is driven from the
declaration: the schemas and their registration for each backend family (ops.py), fake kernels and autograd,
the reference and Triton kernels, the functional API's argument handling, the benchmark's cases and byte
accounting, and the tests' parametrisation. The C++ side has its own one-line-per-op list (csrc/op_list.h).

An op is `residual + dropout(activation(x + bias))`, each part optional:
  - `bias`: the op takes an optional bias of shape [x.shape[-1]] (the schema's `Tensor? bias`);
  - `residual`: the op takes a residual of x's shape, added after dropout;
  - `activation`: a name in fused_dropout.activations.ACTIVATIONS;
  - `backward`: where the backward's keep decision comes from (a key of BACKWARDS).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .activations import ACTIVATIONS


@dataclass(frozen=True)
class Backward:
    """A backward op: grad_in = keep ? (grad * scale) * activation'(x + bias) : 0 (and the column sums of grad_in
    when bias_grad); the activation factor only for the kinds that save the input (`activation` not "identity").

    The op is linear in grad, so its backward in grad is itself (applied to the incoming second-order gradient);
    the kinds that save the input also depend on x + bias, through activation''."""

    kind: str
    saved: tuple  # the names of what the forward saves for it, in schema order (after grad)
    saved_schema: str  # their schema
    reads_saved_per_element: bool  # whether the saved tensor is per element (counts towards bytes moved)
    doc: str
    activation: str = "identity"  # whose derivative grad_in is multiplied by (kinds that save the input)

    @property
    def keeps_from_mask(self) -> bool:
        """Whether the keep decision is the recomputed mask (seed and offset saved), not y > 0."""
        return "seed" in self.saved

    @property
    def saves_input(self) -> bool:
        """Whether the forward's input x (and bias) is saved: the smooth activations' derivative needs it."""
        return "x" in self.saved

    @property
    def op_name(self) -> str:
        return f"{self.kind}_bwd"

    @property
    def schema(self) -> str:
        return f"(Tensor grad, {self.saved_schema}, float p, bool bias_grad) -> (Tensor, Tensor)"


def _input_backward(activation: str) -> Backward:
    """The backward of a smooth activation: it saves x (the bytes of one tensor), the bias (a parameter, held
    anyway) and the 16-byte RNG state, and recomputes x + bias and the mask."""
    return Backward(f"{activation}_input", ("x", "bias", "seed", "offset", "mask_runs"),
                    f"Tensor x, Tensor? bias, {_RNG_STATE_SCHEMA}", True,
                    f"keep from the recomputed mask, times {activation}'(x + bias) from the saved input",
                    activation)


# The saved RNG state of the kinds that recompute the mask: the seed, the offset and the mask geometry (the
# forward's mask_runs; fused_dropout/geometry.py).
_RNG_STATE_SCHEMA = "Tensor? seed, int offset, int[] mask_runs"
SMOOTH_ACTIVATIONS = ("gelu", "gelu_tanh", "silu")  # the activations whose backward needs the input
BACKWARDS = {
    "mask": Backward("mask", ("seed", "offset", "mask_runs"), _RNG_STATE_SCHEMA, False,
                     "keep from the mask of the seed and offset, recomputed (an 8-byte seed tensor saved)"),
    "relu_output": Backward("relu_output", ("y",), "Tensor y", True,
                            "keep where the saved output y > 0 (kept and ReLU active)"),
    **{f"{a}_input": _input_backward(a) for a in SMOOTH_ACTIVATIONS},
}


class ForwardArgs(NamedTuple):
    x: torch.Tensor
    residual: torch.Tensor | None
    bias: torch.Tensor | None
    seed: torch.Tensor | None  # one int64 element on x's device; None when p = 0
    offset: int
    p: float
    mask_runs: tuple = ()  # the mask geometry as the kernels take it (geometry.MaskGeometry.kernel_runs)


@dataclass(frozen=True)
class FusedOp:
    name: str
    activation: str
    bias: bool
    residual: bool
    backward: str

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"op {self.name}: unknown activation {self.activation!r}")
        if self.backward not in BACKWARDS:
            raise ValueError(f"op {self.name}: unknown backward {self.backward!r}")
        if self.backward == "relu_output" and (self.activation != "relu" or self.residual):
            raise ValueError(f"op {self.name}: y > 0 marks the kept elements only for ReLU without a residual")
        derivative = BACKWARDS[self.backward].activation
        if derivative != "identity" and derivative != self.activation:
            raise ValueError(f"op {self.name}: its backward applies {derivative}'s derivative, not {self.activation}'s")
        if self.activation in SMOOTH_ACTIVATIONS and derivative != self.activation:
            raise ValueError(f"op {self.name}: {self.activation}'s gradient needs the backward that saves the input")

    # ---- schema and argument order ------------------------------------------------------------------------

    @property
    def op_name(self) -> str:
        return f"{self.name}_fwd"

    @property
    def schema(self) -> str:
        residual = ", Tensor residual" if self.residual else ""
        bias = ", Tensor? bias" if self.bias else ""
        return f"(Tensor x{residual}{bias}, Tensor? seed, int offset, float p, int[] mask_runs=[]) -> Tensor"

    def pack(self, x, residual, bias, seed, offset, p, mask_runs=()) -> tuple:
        """The op's positional arguments in schema order; the mask runs only when there are some (the common call
        leaves the schema's default, the flat mask)."""
        args = (x,) + ((residual,) if self.residual else ()) + ((bias,) if self.bias else ()) + (seed, offset, p)
        return args + (tuple(mask_runs),) if len(mask_runs) else args

    def unpack(self, args) -> ForwardArgs:
        """The inverse of pack: named arguments (None for the parts the op does not take)."""
        args = list(args)
        x = args.pop(0)
        residual = args.pop(0) if self.residual else None
        bias = args.pop(0) if self.bias else None
        seed, offset, p, *mask_runs = args
        runs = mask_runs[0] if mask_runs else None  # None as well among tangents (an int list has none)
        return ForwardArgs(x, residual, bias, seed, offset, p, () if runs is None else tuple(runs))

    def input_grad_index(self, part: str) -> int:
        """Position of x / residual / bias among the op's inputs (for ctx.needs_input_grad)."""
        return self.pack("x", "residual", "bias", "seed", "offset", "p", ("mask_runs",)).index(part)

    @property
    def backward_op(self) -> Backward:
        return BACKWARDS[self.backward]

    def call(self, x, residual, bias, p, **kwargs) -> torch.Tensor:
        """The op through its public function, whose signature follows the flags: fused_dropout.<name> as (x, p),
        (x, bias, p) or (x, residual, p, bias=bias); an op with a bias and no function of its own through
        bias_act_dropout(x, bias, p, activation=...). Then the keyword arguments."""
        from . import functional  # functional imports this module

        fn = getattr(functional, self.name, None)
        if fn is None:
            return functional.bias_act_dropout(x, bias, p, activation=self.activation, **kwargs)
        if self.residual:
            return fn(x, residual, p, bias=bias, **kwargs)
        return fn(x, bias, p, **kwargs) if self.bias else fn(x, p, **kwargs)

    # ---- benchmark accounting ---------------------------------------------------------------------------

    def bytes_moved(self, mode: str, numel: int, row_len: int, element_size: int) -> int:
        """Bytes one call must move (fwd: x, residual, bias read, out written; bwd: grad and the saved
        per-element tensor read, grad_x written, bias gradient written). The residual's gradient is grad itself."""
        s = element_size
        per_call = row_len * s if self.bias else 0
        forward = (2 + self.residual) * s * numel + per_call
        backward = (2 + self.backward_op.reads_saved_per_element) * s * numel + per_call
        return {"fwd": forward, "bwd": backward, "fwd+bwd": forward + backward}[mode]

    # ---- the unfused composition a user would write ------------------------------------------------------

    def eager(self, x, residual, bias, p: float, training: bool = True) -> torch.Tensor:
        """residual + F.dropout(activation(x + bias)) with torch's own ops (nn.Dropout's mask and semantics,
        torch's activation functions)."""
        v = x if bias is None else x + bias
        v = torch.nn.functional.dropout(EAGER_ACTIVATIONS[self.activation](v), p, training)
        return v if residual is None else residual + v


# The torch function a user writes for each activation (the eager compositions of the benchmark).
EAGER_ACTIVATIONS = {
    "identity": lambda v: v,
    "relu": torch.relu,
    "gelu": torch.nn.functional.gelu,
    "gelu_tanh": lambda v: torch.nn.functional.gelu(v, approximate="tanh"),
    "silu": torch.nn.functional.silu,
}
assert set(EAGER_ACTIVATIONS) == set(ACTIVATIONS)

OPS = (
    FusedOp("dropout", activation="identity", bias=False, residual=False, backward="mask"),
    FusedOp("bias_relu_dropout", activation="relu", bias=True, residual=False, backward="relu_output"),
    FusedOp("dropout_add", activation="identity", bias=True, residual=True, backward="mask"),
    FusedOp("bias_dropout", activation="identity", bias=True, residual=False, backward="mask"),
    FusedOp("bias_gelu_dropout", activation="gelu", bias=True, residual=False, backward="gelu_input"),
    FusedOp("bias_gelu_tanh_dropout", activation="gelu_tanh", bias=True, residual=False, backward="gelu_tanh_input"),
    FusedOp("bias_silu_dropout", activation="silu", bias=True, residual=False, backward="silu_input"),
)
OPS_BY_NAME = {op.name: op for op in OPS}
# bias_act_dropout's activation -> its op (the ops with a bias and no residual).
BIAS_ACT_OPS = {op.activation: op for op in OPS if op.bias and not op.residual}
