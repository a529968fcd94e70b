"""Registers every op of the op table (op_table.py) for every backend family: schemas, kernels, fake kernels
and autograd, all generated from the table.

Families: "native" (fused_dropout::<op>: the C++ CPU and CUDA kernels of the extension, whose schemas the
extension defines from its own op list, csrc/op_list.h; tests/test_op_table.py holds the two lists equal), "triton"
(fused_dropout::triton_<op>) and "torch" (fused_dropout::torch_<op>, the reference, any device). Each family has
one forward op per table row (<name>_fwd) and one backward op per backward kind (<kind>_bwd). They share one
fake kernel per op, one autograd formula per op, and one argument check per op (_op_checks.py), so opcheck,
torch.compile and checkpointing behave the same whatever the backend.
"""
from __future__ import annotations

import importlib

import torch

from . import _autograd, _native
from ._op_checks import check_backward, check_forward
from .op_table import BACKWARDS, OPS, Backward, FusedOp
from .spec import row_len_of

NAMESPACE = "fused_dropout"
FAMILY_PREFIXES = {"native": "", "triton": "triton_", "torch": "torch_"}
# The extension owns the namespace (TORCH_LIBRARY); Python adds to it.
_LIBRARY = torch.library.Library(NAMESPACE, "FRAGMENT")  # noqa: TOR901 - lives as long as the module


def _all_schemas():
    return [(op.op_name, op.schema) for op in OPS] + [(b.op_name, b.schema) for b in BACKWARDS.values()]


class OpFamily:
    """The ops of one backend family: `forward[op name]`, `backward[kind]`, and each op as an attribute named
    like its schema (`dropout_fwd`, `mask_bwd`, ...)."""

    def __init__(self, family: str):
        self.family = family
        self.prefix = FAMILY_PREFIXES[family]
        namespace = getattr(torch.ops, NAMESPACE)
        for name, _ in _all_schemas():
            setattr(self, name, getattr(namespace, self.prefix + name).default)
        self.forward = {op.name: getattr(self, op.op_name) for op in OPS}
        self.backward = {kind: getattr(self, b.op_name) for kind, b in BACKWARDS.items()}

    def qualname(self, name: str) -> str:
        return f"{NAMESPACE}::{self.prefix}{name}"


# ---- layout: outputs and gradients keep their input's layout, as torch.empty_like gives it -------------------


def in_layout_of(like: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """`out` (row-major) in the layout torch.empty_like(like) has: a dense permuted input (channels_last, a
    transposed matrix) gets an output with its strides, as nn.Dropout's does; any other input a row-major one.
    The kernels write logical row-major order (the mask follows the logical index), so such inputs pay one copy.
    The C++ ops do the same (csrc/ops_over_launcher.h); the fake kernels promise it."""
    if like.is_contiguous():
        return out
    target = torch.empty_like(like)
    if target.is_contiguous():
        return out.contiguous()
    return target.copy_(out)


# ---- fake kernels --------------------------------------------------------------------------------------------


def _fake_forward(op: FusedOp):
    def fake(*args):
        named = op.unpack(args)
        check_forward(op, named)
        return torch.empty_like(named.x)

    return fake


def _fake_backward(backward: Backward):
    def fake(grad, *args):
        *saved, p, bias_grad = args
        check_backward(backward, grad, tuple(saved), p)
        bias_len = row_len_of(grad) if bias_grad else 0
        return torch.empty_like(grad), grad.new_empty((bias_len,))

    return fake


# ---- autograd: one formula per op, the same for every family --------------------------------------------


def _tangent_input(x_t, bias_t):
    """x's tangent plus the bias tangent broadcast along the rows (zeros stand for missing tangents)."""
    return x_t if bias_t is None else (x_t + bias_t).reshape(x_t.shape)  # a 0-d x has a bias of shape [1]


def _autograd_installer(ops: OpFamily, name: str):
    """Where the Python Autograd kernel of op `name` goes: the native ops have their Autograd kernel in C++
    (csrc/op_autograd.cpp: a call costs what an ATen op's does), which runs the Python one only under forward-mode
    AD and torch.func transforms; the Python families register it as their Autograd kernel."""
    if ops.family == "native":
        return lambda kernel: _native._C.set_python_autograd_kernel(ops.qualname(name), kernel)
    return lambda kernel: _LIBRARY.impl(ops.prefix + name, kernel, "Autograd")


def _saved_args(ctx, saves_seed: bool) -> tuple:
    """The backward op's saved arguments from a context: (seed, offset) or (y,)."""
    (saved,) = ctx.saved_tensors
    return (saved, ctx.offset) if saves_seed else (saved,)


def _register_forward_autograd(ops: OpFamily, op: FusedOp) -> None:
    backward_op = ops.backward[op.backward]
    saves_seed = op.backward == "mask"
    order = op.pack("x", "residual", "bias", "seed", "offset", "p")

    def setup_context(ctx, inputs, output):
        args = op.unpack(inputs)
        # The mask is never stored: either the seed (8 bytes; the backward recomputes the mask) or the output y,
        # which the next layer holds anyway (y > 0 exactly where kept and ReLU active).
        saved = args.seed if saves_seed else output
        ctx.save_for_backward(saved)
        ctx.save_for_forward(saved)
        ctx.offset = args.offset
        ctx.p = args.p
        ctx.has_bias = args.bias is not None

    def backward(ctx, grad):
        if grad.layout != torch.strided:  # autograd lets a sparse COO gradient in; the kernels read dense rows
            grad = grad.to_dense()
        want_bias = ctx.has_bias and ctx.needs_input_grad[order.index("bias")]
        grad_x, grad_bias = backward_op(grad, *_saved_args(ctx, saves_seed), ctx.p, want_bias)
        grads = {"x": grad_x, "residual": grad, "bias": grad_bias if want_bias else None}
        return tuple(grads.get(name) for name in order)

    def jvp(ctx, *tangents):
        # The op's Jacobian in x is the backward op's diagonal D (keep * scale * activation'); the bias enters
        # like x, the residual with identity: dy = D (dx + dbias) + dresidual. autograd.Function materialises the
        # tangent of a tensor input that has none as zeros, so only the absent optional bias is None here.
        named = op.unpack(tangents)
        dy = backward_op(_tangent_input(named.x, named.bias), *_saved_args(ctx, saves_seed), ctx.p, False)[0]
        return dy if named.residual is None else dy + named.residual

    _autograd.register(_autograd_installer(ops, op.op_name), ops.prefix + op.op_name, getattr(ops, op.op_name),
                       setup_context=setup_context, backward=backward, jvp=jvp)


def _register_backward_autograd(ops: OpFamily, kind: str) -> None:
    """The backward ops are linear in grad: (grad_x, grad_bias) = (D grad, column sums of D grad) with D
    diagonal (keep * scale), so their own backward is D applied to gg_x plus gg_bias broadcast along the rows,
    and their jvp is themselves applied to the tangent of grad. The saved tensor (mask state or y) gets no
    gradient: the keep decision is piecewise constant in it."""
    backward_op = ops.backward[kind]
    saves_seed = kind == "mask"

    def setup_context(ctx, inputs, output):
        _, *saved, p, bias_grad = inputs
        ctx.save_for_backward(saved[0])  # the seed or y; an offset is an int
        ctx.save_for_forward(saved[0])
        ctx.offset = saved[1] if saves_seed else None
        ctx.p = p
        ctx.bias_grad = bias_grad

    def backward(ctx, gg_x, gg_bias):
        gg_in = _tangent_input(gg_x, gg_bias if ctx.bias_grad else None)
        gg = backward_op(gg_in, *_saved_args(ctx, saves_seed), ctx.p, False)[0]
        return (gg,) + (None,) * (len(BACKWARDS[kind].saved) + 2)

    def jvp(ctx, grad_t, *other_tangents):
        return backward_op(grad_t, *_saved_args(ctx, saves_seed), ctx.p, ctx.bias_grad)

    name = BACKWARDS[kind].op_name
    _autograd.register(_autograd_installer(ops, name), ops.prefix + name, getattr(ops, name),
                       setup_context=setup_context, backward=backward, jvp=jvp)


# ---- kernels of the Python families ---------------------------------------------------------------------


def _register_python_kernels(ops: OpFamily, module_name: str, dispatch_keys) -> None:
    """Registers module.forward(op, ...) and module.backward(kind, ...) as the family's kernels for the given
    dispatch keys, behind the shared argument checks. The module is imported on the first call, so importing
    fused_dropout never imports triton."""
    loaded = []  # the module, once imported: op calls are a hot path

    def module():
        if not loaded:
            loaded.append(importlib.import_module(module_name, __package__))
        return loaded[0]

    def forward_kernel(op: FusedOp):
        def kernel(*args):
            named = op.unpack(args)
            check_forward(op, named)
            return in_layout_of(named.x, module().forward(op, *named))

        return kernel

    def backward_kernel(backward: Backward):
        def kernel(grad, *args):
            *saved, p, bias_grad = args
            check_backward(backward, grad, tuple(saved), p)
            grad_in, grad_bias = module().backward(backward.kind, grad, tuple(saved), p, bias_grad)
            return in_layout_of(grad, grad_in), grad_bias

        return kernel

    kernels = [(op.op_name, forward_kernel(op)) for op in OPS]
    kernels += [(b.op_name, backward_kernel(b)) for b in BACKWARDS.values()]
    for name, kernel in kernels:
        for key in dispatch_keys:
            _LIBRARY.impl(ops.prefix + name, kernel, key)


def _register_family(family: str, define_schemas: bool) -> OpFamily:
    """Fake kernels and autograd for one family; its schemas too unless the C++ library defines them."""
    if define_schemas:
        for name, schema in _all_schemas():
            _LIBRARY.define(FAMILY_PREFIXES[family] + name + schema)
    ops = OpFamily(family)
    for op in OPS:
        torch.library.register_fake(ops.qualname(op.op_name), _fake_forward(op))
        _register_forward_autograd(ops, op)
        _autograd.register_vmap_by_loop(getattr(ops, op.op_name))
    for kind, backward in BACKWARDS.items():
        torch.library.register_fake(ops.qualname(backward.op_name), _fake_backward(backward))
        _register_backward_autograd(ops, kind)
        _autograd.register_vmap_by_loop(getattr(ops, backward.op_name))
    return ops


FAMILIES = {"torch": _register_family("torch", True), "triton": _register_family("triton", True)}
if _native.LOADED:  # the extension's TORCH_LIBRARY block (csrc/op_schemas.cpp) defined the native schemas
    FAMILIES["native"] = _register_family("native", False)

_register_python_kernels(FAMILIES["torch"], ".reference", ("CompositeExplicitAutograd",))
# CPU only runs under TRITON_INTERPRET=1; the launcher says so otherwise.
_register_python_kernels(FAMILIES["triton"], ".triton_backend.launch", ("CUDA", "CPU"))
