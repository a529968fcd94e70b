"""`python -m fused_dropout.bench --overhead`: what a call costs apart from moving memory. On a tiny tensor (64
elements) the kernel's work is nothing, so the time is the host path: argument handling, dispatch, autograd. Each
op (default backend, seed drawn) is timed against its eager composition (nn.Dropout's F.dropout for dropout) in
eval mode, forward, and forward+backward, and the ops each call dispatches are counted (a TorchDispatchMode sees
every op that reaches the dispatcher from Python or from autograd: the seed draw, the kernels, and anything else).
"""
from __future__ import annotations

import csv
import os
import time
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fused_dropout as fd
from fused_dropout.op_table import OPS_BY_NAME

NUMEL = 64
P = 0.1
MODES = ("eval", "fwd", "fwd+bwd")


class DispatchedOps(TorchDispatchMode):
    """Records the name of every op dispatched while it is active (ops called inside a kernel are not seen)."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket.__name__) if hasattr(func, "overloadpacket") else str(func))
        return func(*args, **(kwargs or {}))


def _inputs(op_name: str, device: torch.device, requires_grad: bool):
    op = OPS_BY_NAME[op_name]
    generator = torch.Generator(device=device).manual_seed(0)
    row_len = 16

    def randn(*shape):
        return torch.randn(shape, device=device, generator=generator).requires_grad_(requires_grad)

    x = randn(NUMEL // row_len, row_len)
    return x, randn(*x.shape) if op.residual else None, randn(row_len) if op.bias else None


def _call(op_name: str, provider: str, training: bool) -> Callable:
    """The call as a user writes it: the public function (default backend) or the eager composition."""
    op = OPS_BY_NAME[op_name]
    if provider == "eager":
        return lambda x, residual, bias: op.eager(x, residual, bias, P, training)
    fn = getattr(fd, op_name)
    if op.residual:
        return lambda x, residual, bias: fn(x, residual, P, training, bias=bias)
    if op.bias:
        return lambda x, residual, bias: fn(x, bias, P, training)
    return lambda x, residual, bias: fn(x, P, training)


def _workload(op_name: str, provider: str, mode: str, device: torch.device) -> Callable[[], object]:
    x, residual, bias = _inputs(op_name, device, requires_grad=mode == "fwd+bwd")
    call = _call(op_name, provider, training=mode != "eval")
    if mode != "fwd+bwd":
        return lambda: call(x, residual, bias)
    targets = tuple(t for t in (x, residual, bias) if t is not None)
    grad = torch.ones(x.shape, device=device)
    return lambda: torch.autograd.grad(call(x, residual, bias), targets, grad)


def _best_us(fn: Callable[[], object], device: torch.device, rounds: int, calls: int) -> float:
    """The fastest of `rounds` timings of `calls` back-to-back calls, per call: the floor of the host path, little
    disturbed by other load (a median would measure the load too). On a CPU device the clock is the calling
    thread's CPU time: a 64-element op runs entirely on that thread (below the intra-op grain, and the CPU autograd
    engine runs the backward on the caller), so time the thread spent descheduled by other processes is not
    counted. On a GPU it is wall time up to a synchronize."""
    if device.type == "cuda":
        sync, clock = torch.cuda.synchronize, time.perf_counter
    else:
        sync, clock = (lambda: None), time.thread_time
    fn()
    sync()
    best = float("inf")
    for _ in range(rounds):
        start = clock()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (clock() - start) / calls)
    return best * 1e6


def count_ops(op_name: str, provider: str, mode: str, device: torch.device) -> tuple[int, int]:
    """(ops dispatched by the forward, ops dispatched by the backward) of one call."""
    x, residual, bias = _inputs(op_name, device, requires_grad=mode == "fwd+bwd")
    call = _call(op_name, provider, training=mode != "eval")
    with DispatchedOps() as forward:
        out = call(x, residual, bias)
    if mode != "fwd+bwd":
        return len(forward.names), 0
    targets = tuple(t for t in (x, residual, bias) if t is not None)
    grad = torch.ones(x.shape, device=device)
    with DispatchedOps() as backward:
        torch.autograd.grad(out, targets, grad)
    return len(forward.names), len(backward.names)


def run(device: torch.device, out_dir: str, quick: bool = False) -> str:
    """Measures every op and mode, prints the table, writes overhead.csv and overhead.md into out_dir."""
    rounds, calls = (3, 200) if quick else (15, 2000)
    rows = []
    for op_name in OPS_BY_NAME:
        for mode in MODES:
            # Alternate the providers so that a change in the machine's load hits both alike.
            times = {"fused": float("inf"), "eager": float("inf")}
            for _ in range(3):
                for provider in times:
                    times[provider] = min(times[provider],
                                          _best_us(_workload(op_name, provider, mode, device), device, rounds, calls))
            fwd_ops, bwd_ops = count_ops(op_name, "fused", mode, device)
            eager_fwd_ops, eager_bwd_ops = count_ops(op_name, "eager", mode, device)
            rows.append({"op": op_name, "mode": mode, "fused_us": round(times["fused"], 2),
                         "eager_us": round(times["eager"], 2), "ratio": round(times["fused"] / times["eager"], 3),
                         "fused_ops_fwd": fwd_ops, "fused_ops_bwd": bwd_ops, "eager_ops_fwd": eager_fwd_ops,
                         "eager_ops_bwd": eager_bwd_ops})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "overhead.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Per-call time on a {NUMEL}-element float32 {device.type} tensor (best of repeated runs; on a CPU, "
             f"of the calling thread's CPU time; {torch.get_num_threads()} threads; fused = default backend, seed "
             "drawn; eager = the composition with F.dropout). Ops: dispatched ops per call, forward / backward; an "
             "op that saves its output for the backward (bias_relu_dropout, and relu in the eager composition) "
             "also shows autograd's own detach of it in the forward and in the backward, as torch.relu does.", "",
             "| op | mode | fused µs | eager µs | fused / eager | fused ops | eager ops |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['mode']} | {r['fused_us']:.2f} | {r['eager_us']:.2f} | {r['ratio']:.2f} | "
                     f"{r['fused_ops_fwd']} / {r['fused_ops_bwd']} | {r['eager_ops_fwd']} / {r['eager_ops_bwd']} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "overhead.md"), "w") as handle:
        handle.write(text)
    print(text)
    return text
