"""Autograd for the registered ops, in every mode: reverse (backward, and double backward through the backward
ops), forward (jvp, torch.autograd.forward_ad), torch.func transforms (grad, jvp, vjp: the Function has a
setup_context) and vmap (a batching rule per op).

torch.library.register_autograd covers reverse mode only: under forward-mode AD it drops the tangent (a silent
zero) and torch.func refuses it. So each op gets its own Autograd kernel here, which runs an autograd.Function
with backward and jvp formulas whenever autograd is needed, and dispatches straight to the kernels otherwise.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.autograd.forward_ad as forward_ad
from torch._functorch.utils import enable_single_level_autograd_function


def _autograd_needed(args) -> bool:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return True
    # Forward-mode AD (a dual level is open) and torch.func transforms carry tangents the kernels cannot see.
    return forward_ad._current_level >= 0 or torch._C._functorch.maybe_current_level() is not None


def register(install: Callable, name: str, op, *, setup_context: Callable, backward: Callable,
             jvp: Callable) -> None:
    """Builds the Autograd kernel of `op` (the OpOverload of library op `name`) and hands it to install(kernel),
    which registers it (or, for the native ops, hands it to their C++ Autograd kernel, csrc/op_autograd.cpp, which
    runs it under forward-mode AD and torch.func transforms only). setup_context(ctx, inputs, output),
    backward(ctx, *grads) and jvp(ctx, *tangents) follow torch.autograd.Function's conventions."""

    def run_below_autograd(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    function = type(f"{name}_autograd", (torch.autograd.Function,), {
        "forward": staticmethod(run_below_autograd),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
    })

    # Function.apply would hand the call to torch.func's custom_function_call when a transform is active, but
    # this kernel already runs inside the transform's own processing of the op (as any ATen op's autograd kernel
    # does), on its wrapped tensors: the plain, single-level apply records the node at the right level.
    single_level_apply = super(torch.autograd.Function, function).apply

    def autograd_kernel(*args):
        if not _autograd_needed(args):
            return run_below_autograd(*args)
        if torch._C._functorch.maybe_current_level() is None:
            return single_level_apply(*args)
        with enable_single_level_autograd_function():
            return single_level_apply(*args)

    install(autograd_kernel)


def register_vmap_by_loop(op) -> None:
    """vmap of `op` by running it once per sample and stacking. A sample's mask is the op's mask for that
    sample's own seed: with a batched seed (drawn under randomness="different") every sample gets
    its own mask; with an unbatched one (an explicit seed, or randomness="same") every sample gets the same mask.
    Under randomness="error" (vmap's default) drawing a seed raises in torch.randint, before the op runs."""

    def rule(info, in_dims, *args):
        def sample(b):
            return [a.select(d, b) if d is not None else a for a, d in zip(args, in_dims)]

        results = [op(*sample(b)) for b in range(info.batch_size)]
        if isinstance(results[0], tuple):
            outputs = tuple(torch.stack(parts) for parts in zip(*results))
            return outputs, (0,) * len(outputs)
        return torch.stack(results), 0

    torch.library.register_vmap(op, rule)
