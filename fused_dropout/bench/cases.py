"""What is benchmarked: every op of the op table, its providers, and the bytes each op must move.

Bytes per element (s = element size; N = bias length, counted once per call, not per element), from
FusedOp.bytes_moved:

    op                   forward              backward                          forward+backward
    dropout              2s  (x, y)           2s  (grad, grad_x)                4s
    bias_relu_dropout    2s + N*s/numel       3s  (grad, saved y, grad_x)       5s + 2N*s/numel
    dropout_add          3s  (x, residual, y) 2s  (grad, grad_x; grad_residual  5s + 2N*s/numel (with bias)
                                                   is grad itself, no copy)
    bias_dropout         2s + N*s/numel       2s  (grad, grad_x)                4s + 2N*s/numel
    bias_gelu_dropout,   2s + N*s/numel       3s  (grad, saved x, grad_x)       5s + 2N*s/numel
    bias_gelu_tanh_dropout, bias_silu_dropout: as bias_gelu_dropout

A provider that stores a mask for its backward (nn.Dropout and compositions built on it, torch.compile of
them) also moves that mask: +1 byte per element written in the forward and +1 read in the backward. The fused
ops store none. x.clone() (2s per element) is the memory floor: fraction of clone = achieved bandwidth / clone's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from fused_dropout.op_table import OPS_BY_NAME

OPS = tuple(OPS_BY_NAME)
MODES = ("fwd", "bwd", "fwd+bwd")
P = 0.1


@dataclass(frozen=True)
class Inputs:
    x: torch.Tensor
    bias: torch.Tensor | None
    residual: torch.Tensor | None

    def grad_targets(self) -> tuple[torch.Tensor, ...]:
        return tuple(t for t in (self.x, self.bias, self.residual) if t is not None)


def make_inputs(op: str, shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> Inputs:
    """x, and a bias and a residual where the op takes them (ops with an optional bias get one)."""
    spec = OPS_BY_NAME[op]
    generator = torch.Generator(device=device).manual_seed(0)

    def randn(*size):
        return torch.randn(size, dtype=dtype, device=device, generator=generator).requires_grad_()

    x = randn(*shape)
    bias = randn(shape[-1]) if spec.bias else None
    residual = randn(*shape) if spec.residual else None
    return Inputs(x, bias, residual)


def eager_fn(op: str) -> Callable[[Inputs], torch.Tensor]:
    """The unfused composition a user would write (nn.Dropout semantics)."""
    spec = OPS_BY_NAME[op]
    return lambda i: spec.eager(i.x, i.residual, i.bias, P)


def fused_fn(op: str, backend: str) -> Callable[[Inputs], torch.Tensor]:
    spec = OPS_BY_NAME[op]
    return lambda i: spec.call(i.x, i.residual, i.bias, P, backend=backend)


class CompiledCase:
    """torch.compile of the eager composition for one (op, dtype, mode) case, and proof that it ran compiled.

    Dynamo keeps its compiled code per code object, and stops compiling a code object after
    torch._dynamo.config.recompile_limit (8) variants: past that it runs the Python code eagerly, silently. One
    function shared by every case would hit that part-way through a run and time eager code under the name
    "compile". So each case resets dynamo and compiles afresh (cases run one after the other), fullgraph=True
    makes a graph break an error, and the inductor backend is wrapped to count the calls that ran a compiled
    graph: `problem()` after a timing tells whether every call since `mark()` did."""

    def __init__(self, op: str, dtype: str, mode: str):
        # The "bwd" mode replays one backward graph (retain_graph=True), which compiled backwards with donated
        # buffers refuse; donation only saves memory, so it is turned off for the benchmark.
        import torch._dynamo
        import torch._functorch.config

        torch._functorch.config.donated_buffer = False
        torch._dynamo.reset()
        self.case = (op, dtype, mode)
        self.graphs = 0  # graphs the backend compiled
        self.calls = 0  # calls of this case's function
        self.compiled_calls = 0  # calls that ran a compiled graph
        inductor = torch._dynamo.lookup_backend("inductor")

        def backend(graph_module, example_inputs):
            self.graphs += 1
            compiled = inductor(graph_module, example_inputs)

            def run_compiled(*args):
                self.compiled_calls += 1
                return compiled(*args)

            return run_compiled

        eager = eager_fn(op)
        # dynamic=True: one compile for every size of the sweep, not one per size.
        self._fn = torch.compile(lambda x, bias, residual: eager(Inputs(x, bias, residual)), backend=backend,
                                 dynamic=True, fullgraph=True)
        self.mark()

    def __call__(self, i: Inputs) -> torch.Tensor:
        self.calls += 1
        return self._fn(i.x, i.bias, i.residual)

    def mark(self) -> None:
        self._marked = (self.calls, self.compiled_calls)

    def problem(self) -> str | None:
        """None when every call since mark() ran a compiled graph (fullgraph: one graph per call)."""
        calls, compiled = self.calls - self._marked[0], self.compiled_calls - self._marked[1]
        if self.graphs == 0:
            return "torch.compile never compiled a graph (dynamo skipped the function, e.g. at its recompile limit)"
        if compiled < calls:
            return f"{calls - compiled} of {calls} calls ran uncompiled (dynamo fell back to eager)"
        return None


def clone_fn(op: str) -> Callable[[Inputs], torch.Tensor]:
    return lambda i: i.x.clone()


def stores_mask(provider: str) -> bool:
    return provider in ("eager", "compile")


def bytes_moved(op: str, mode: str, provider: str, numel: int, row_len: int, element_size: int) -> float:
    """Bytes the op must move for one call in this mode (see the module docstring), plus the mask a
    mask-storing provider writes (fwd) and reads (bwd)."""
    if provider == "clone":
        return 2 * element_size * numel
    mask = numel * ({"fwd": 1, "bwd": 1, "fwd+bwd": 2}[mode] if stores_mask(provider) else 0)
    return OPS_BY_NAME[op].bytes_moved(mode, numel, row_len, element_size) + mask


def saved_bytes_per_element(fn: Callable[[Inputs], torch.Tensor], inputs: Inputs) -> float:
    """Bytes the autograd graph keeps for the backward, per element (measured with saved_tensors_hooks). The
    op's inputs count too when the graph keeps them (the smooth activations' fused backward keeps x): a layer's
    output is not otherwise kept for the backward, so keeping it costs its bytes."""
    total = 0
    seen = set()

    def pack(t):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(inputs)
    return total / inputs.x.numel()
