"""Defines the fused_dropout ops for every backend family: schemas, fake kernels and autograd.

The native family ("fused_dropout::dropout_fwd", ...) gets its CPU and CUDA kernels from the C++ extension;
the "torch" family runs fused_dropout.reference on any device; the "triton" family runs the Triton kernels. All
three share the schemas of _schema.py, one fake kernel per schema and one autograd formula per op, so that
opcheck, torch.compile and checkpointing behave the same whatever the backend.
"""
from __future__ import annotations

import importlib

import torch

from ._schema import FAMILY_PREFIXES, SCHEMAS
from .reference import row_length

NAMESPACE = "fused_dropout"
_LIBRARY = torch.library.Library(NAMESPACE, "DEF")  # noqa: TOR901 - the library lives as long as the module

for _prefix in FAMILY_PREFIXES.values():
    for _name, _schema in SCHEMAS.items():
        _LIBRARY.define(_prefix + _name + _schema)


class OpFamily:
    """The five ops of one backend family, as callables."""

    def __init__(self, family: str):
        self.family = family
        self.prefix = FAMILY_PREFIXES[family]
        namespace = getattr(torch.ops, NAMESPACE)
        for name in SCHEMAS:
            setattr(self, name, getattr(namespace, self.prefix + name).default)

    def qualname(self, name: str) -> str:
        return f"{NAMESPACE}::{self.prefix}{name}"


# ---- fake kernels: outputs are contiguous tensors of the input's shape, as every real kernel returns --------


def _fake_forward(x, *args):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _fake_backward(grad, keep_source, p, bias_grad):
    bias_len = row_length(grad) if bias_grad else 0
    return torch.empty(grad.shape, dtype=grad.dtype, device=grad.device), grad.new_empty((bias_len,))


# ---- autograd: the same formulas for every family -----------------------------------------------------------


def _register_autograd(ops: OpFamily) -> None:
    def dropout_setup(ctx, inputs, output):
        _, rng_state, p = inputs
        ctx.save_for_backward(rng_state)  # 16 bytes: the mask is recomputed, never stored
        ctx.p = p

    def dropout_backward(ctx, grad):
        (rng_state,) = ctx.saved_tensors
        # The backward is dropout itself with the same mask, so double backward works too.
        return ops.dropout_fwd(grad, rng_state, ctx.p), None, None

    def bias_relu_setup(ctx, inputs, output):
        _, bias, _, p = inputs
        ctx.save_for_backward(output)  # y > 0 exactly where the element was kept and relu was active
        ctx.p = p
        ctx.has_bias = bias is not None

    def bias_relu_backward(ctx, grad):
        (y,) = ctx.saved_tensors
        want_bias = ctx.has_bias and ctx.needs_input_grad[1]
        grad_x, grad_bias = ops.bias_relu_dropout_bwd(grad, y, ctx.p, want_bias)
        return grad_x, (grad_bias if want_bias else None), None, None

    def dropout_add_setup(ctx, inputs, output):
        _, _, bias, rng_state, p = inputs
        ctx.save_for_backward(rng_state)
        ctx.p = p
        ctx.has_bias = bias is not None

    def dropout_add_backward(ctx, grad):
        (rng_state,) = ctx.saved_tensors
        want_bias = ctx.has_bias and ctx.needs_input_grad[2]
        grad_x, grad_bias = ops.dropout_bwd(grad, rng_state, ctx.p, want_bias)
        return grad_x, grad, (grad_bias if want_bias else None), None, None

    torch.library.register_autograd(ops.qualname("dropout_fwd"), dropout_backward, setup_context=dropout_setup)
    torch.library.register_autograd(
        ops.qualname("bias_relu_dropout_fwd"), bias_relu_backward, setup_context=bias_relu_setup
    )
    torch.library.register_autograd(
        ops.qualname("dropout_add_fwd"), dropout_add_backward, setup_context=dropout_add_setup
    )


def _register_python_kernels(ops: OpFamily, module_name: str, dispatch_keys) -> None:
    """Registers <module>.<op name> as the kernel of every op of the family for the given dispatch keys. The
    module is imported on the first call, so importing fused_dropout never imports triton."""

    loaded = []  # the module, once imported: op calls are a hot path

    def lazy(name):
        def kernel(*args):
            if not loaded:
                loaded.append(importlib.import_module(module_name, __package__))
            return getattr(loaded[0], name)(*args)

        kernel.__name__ = name
        return kernel

    for name in SCHEMAS:
        kernel = lazy(name)
        for key in dispatch_keys:
            _LIBRARY.impl(ops.prefix + name, kernel, key)


FAMILIES = {family: OpFamily(family) for family in FAMILY_PREFIXES}

for _ops in FAMILIES.values():
    for _name in SCHEMAS:
        torch.library.register_fake(_ops.qualname(_name), _fake_backward if _name.endswith("_bwd") else _fake_forward)
    _register_autograd(_ops)

_register_python_kernels(FAMILIES["torch"], ".reference", ("CompositeExplicitAutograd",))


# ---- Triton adapter, until the op table lands: today's five op names onto launch.forward / launch.backward ---


def _triton_five_op_adapter(launch):
    from types import SimpleNamespace as Op

    dropout = Op(name="dropout", activation="identity", bias=False, residual=False)
    bias_relu = Op(name="bias_relu_dropout", activation="relu", bias=True, residual=False)
    dropout_add = Op(name="dropout_add", activation="identity", bias=True, residual=True)
    return {
        "dropout_fwd": lambda x, state, p: launch.forward(dropout, x, None, None, state, p),
        "bias_relu_dropout_fwd": lambda x, bias, state, p: launch.forward(bias_relu, x, None, bias, state, p),
        "dropout_add_fwd": lambda x, res, bias, state, p: launch.forward(dropout_add, x, res, bias, state, p),
        "dropout_bwd": lambda grad, state, p, bias_grad: launch.backward("mask", grad, state, p, bias_grad),
        "bias_relu_dropout_bwd": lambda grad, y, p, bias_grad: launch.backward("relu_output", grad, y, p, bias_grad),
    }


def _register_triton_adapter() -> None:
    adapted = []

    def lazy(name):
        def kernel(*args):
            if not adapted:
                adapted.append(_triton_five_op_adapter(importlib.import_module(".triton_backend.launch", __package__)))
            return adapted[0][name](*args)

        kernel.__name__ = name
        return kernel

    for name in SCHEMAS:
        for key in ("CUDA", "CPU"):
            _LIBRARY.impl(FAMILIES["triton"].prefix + name, lazy(name), key)


# CPU only runs under TRITON_INTERPRET=1; the launcher says so otherwise.
_register_triton_adapter()
