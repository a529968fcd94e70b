"""How fused_dropout.patch() routes dropout, measured against the alternative: module-level patching (what patch()
does) and a TorchFunctionMode that routes the same calls to fused_dropout.dropout.

    python benchmarks/patch_mechanism.py

1. torch.compile(fullgraph=True, backend="aot_eager") of a small model in training mode (Linear, F.dropout,
   torch.dropout, nn.Dropout) under each mechanism: graphs and graph breaks (torch._dynamo.explain), and which
   dropout ops the AOT forward graph holds.
2. Eager per-call cost on an 8-element float32 tensor, one thread: dropout through each mechanism, and an add
   (what every other op of a model pays while the mechanism is active). Interleaved rounds, the minimum of each.
"""
from __future__ import annotations

import contextlib
import timeit

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import fused_dropout as fd

F = torch.nn.functional
TORCH_F_DROPOUT, TORCH_DROPOUT, TORCH_DROPOUT_ = F.dropout, torch.dropout, torch.dropout_


class RouteMode(TorchFunctionMode):
    """The alternative mechanism: every torch call of the thread passes through here while the mode is active."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is TORCH_F_DROPOUT:
            return fd.dropout(*args, **kwargs)
        if func is TORCH_DROPOUT or func is TORCH_DROPOUT_:
            input, p, train = args
            return fd.dropout(input, p, train, func is TORCH_DROPOUT_)
        return func(*args, **kwargs)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.drop = nn.Linear(16, 16), nn.Dropout(0.1)

    def forward(self, x):
        h = F.dropout(self.lin(x), 0.2, self.training)
        return self.drop(torch.dropout(h, 0.3, self.training))


MECHANISMS = {"torch (no routing)": contextlib.nullcontext, "fd.patch()": fd.patch, "TorchFunctionMode": RouteMode}


def dropout_ops_of_aot_forward_graph(model, x) -> list[str]:
    from functorch.compile import make_boxed_func
    from torch._functorch.aot_autograd import aot_module_simplified

    ops = []

    def backend(gm, example_inputs):
        def forward_compiler(graph, _):
            ops.extend(str(n.target) for n in graph.graph.nodes
                       if n.op == "call_function" and ("dropout" in str(n.target) or "bernoulli" in str(n.target)))
            return make_boxed_func(graph.forward)

        return aot_module_simplified(gm, example_inputs, fw_compiler=forward_compiler,
                                     bw_compiler=lambda graph, _: make_boxed_func(graph.forward))

    torch._dynamo.reset()
    torch.compile(model, fullgraph=True, backend=backend)(x).sum().backward()
    return ops


def compile_report() -> None:
    print("torch.compile(fullgraph=True, backend='aot_eager'), Linear + F.dropout + torch.dropout + nn.Dropout:")
    for name, mechanism in MECHANISMS.items():
        model, x = Small().train(), torch.randn(4, 16)
        with mechanism():
            torch._dynamo.reset()
            explained = torch._dynamo.explain(model)(x)
            try:
                ops = dropout_ops_of_aot_forward_graph(model, x)
            except Exception as error:  # noqa: BLE001 - a failure is the measurement
                ops = [f"fullgraph failed: {type(error).__name__}: {error}"]
        counts = {op: ops.count(op) for op in dict.fromkeys(ops)}
        print(f"  {name:20s} graphs {explained.graph_count}, breaks {explained.graph_break_count}; "
              f"AOT forward graph: {counts}")
    torch._dynamo.reset()


def overhead_report(rounds: int = 10, number: int = 10000) -> None:
    torch.set_num_threads(1)
    x, y, drop = torch.randn(8), torch.randn(8), nn.Dropout(0.1)
    cases = {
        "F.dropout": lambda: F.dropout(x, 0.1, True),
        "nn.Dropout": lambda: drop(x),
        "torch.dropout": lambda: torch.dropout(x, 0.1, True),
        "x + y": lambda: x + y,
    }
    best: dict = {}

    def keep_min(key, fn):
        best[key] = min(best.get(key, float("inf")), timeit.timeit(fn, number=number) / number * 1e6)

    for _ in range(rounds):
        for name, mechanism in MECHANISMS.items():
            with mechanism():
                for case, fn in cases.items():
                    keep_min((name, case), fn)
        keep_min("direct", lambda: fd.dropout(x, 0.1, True))
    print(f"\neager, 8-element float32 tensor, 1 thread, microseconds per call (min of {rounds} x {number}):")
    print(f"  {'':20s}" + "".join(f"{case:>15s}" for case in cases))
    for name in MECHANISMS:
        print(f"  {name:20s}" + "".join(f"{best[(name, case)]:15.2f}" for case in cases))
    print(f"  fused_dropout.dropout(x, 0.1, True) called directly: {best['direct']:.2f}")


if __name__ == "__main__":
    print(f"torch {torch.__version__}")
    compile_report()
    overhead_report()
