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

from . import _autograd, _native, reference
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


_NOT_TENSORS = ("offset", "mask_runs")  # saved arguments kept on ctx as Python values


def _save(ctx, names: tuple, values: tuple) -> None:
    """Keeps named values on ctx: the tensors (the seed, y, x, the bias, grad; None where absent) for reverse and
    forward mode, the offset and the mask runs as Python values."""
    tensors = tuple(value for name, value in zip(names, values) if name not in _NOT_TENSORS)
    ctx.save_for_backward(*tensors)
    ctx.save_for_forward(*tensors)
    ctx.values = {name: value for name, value in zip(names, values) if name in _NOT_TENSORS}


def _saved(ctx, names: tuple) -> tuple:
    """The values _save kept, in the order of `names`."""
    tensors = iter(ctx.saved_tensors)
    return tuple(ctx.values[name] if name in _NOT_TENSORS else next(tensors) for name in names)


def _register_forward_autograd(ops: OpFamily, op: FusedOp) -> None:
    backward = op.backward_op
    backward_op = ops.backward[op.backward]
    order = op.pack("x", "residual", "bias", "seed", "offset", "p", ("mask_runs",))

    def setup_context(ctx, inputs, output):
        args = op.unpack(inputs)
        # The mask is never stored: the seed (8 bytes; the backward recomputes the mask), the output y, which the
        # next layer holds anyway (y > 0 exactly where kept and ReLU active), or for the smooth activations the
        # input x and the bias with the seed (the derivative at x + bias).
        named = {"seed": args.seed, "offset": args.offset, "mask_runs": args.mask_runs, "y": output,
                 "x": args.x, "bias": args.bias}
        _save(ctx, backward.saved, tuple(named[name] for name in backward.saved))
        ctx.p = args.p
        ctx.has_bias = args.bias is not None

    def backward_formula(ctx, grad):
        if grad.layout != torch.strided:  # autograd lets a sparse COO gradient in; the kernels read dense rows
            grad = grad.to_dense()
        want_bias = ctx.has_bias and ctx.needs_input_grad[order.index("bias")]
        grad_x, grad_bias = backward_op(grad, *_saved(ctx, backward.saved), ctx.p, want_bias)
        grads = {"x": grad_x, "residual": grad, "bias": grad_bias if want_bias else None}
        return tuple(grads.get(name) for name in order)

    def jvp(ctx, *tangents):
        # The op's Jacobian in x is the backward op's diagonal D (keep * scale * activation'); the bias enters
        # like x, the residual with identity: dy = D (dx + dbias) + dresidual. autograd.Function materialises the
        # tangent of a tensor input that has none as zeros, so only the absent optional bias is None here.
        named = op.unpack(tangents)
        dy = backward_op(_tangent_input(named.x, named.bias), *_saved(ctx, backward.saved), ctx.p, False)[0]
        return dy if named.residual is None else dy + named.residual

    _autograd.register(_autograd_installer(ops, op.op_name), ops.prefix + op.op_name, getattr(ops, op.op_name),
                       setup_context=setup_context, backward=backward_formula, jvp=jvp)


def _curvature_term(backward: Backward, mask_op, grad, direction, x, bias, seed, offset, mask_runs, p):
    """keep * scale * activation''(x + bias) * grad * direction: how grad_in = keep * scale * activation'(x + bias)
    * grad moves when x + bias moves along `direction` (x's shape). activation'' in the compute type from the torch
    formulas (fused_dropout/activations.py); the mask and scale from the mask backward op."""
    return mask_op(reference.curvature(grad, direction, backward.activation, x, bias), seed, offset, mask_runs, p,
                   False)[0]


def _register_backward_autograd(ops: OpFamily, kind: str) -> None:
    """The backward ops are linear in grad: (grad_x, grad_bias) = (D grad, column sums of D grad) with D
    diagonal (keep * scale [* activation'(x + bias)]), so their backward in grad is D applied to gg_x plus gg_bias
    broadcast along the rows, and their jvp in grad is themselves applied to the tangent of grad. The kinds that
    save the input also move with x + bias, through keep * scale * activation'' * grad (_curvature_term). The seed
    and y get no gradient: the keep decision is piecewise constant in them."""
    backward = BACKWARDS[kind]
    backward_op = ops.backward[kind]
    mask_op = ops.backward["mask"]
    saved_order = ("grad",) + backward.saved
    # What the double backward needs: the saved arguments, and grad itself when the curvature term needs it.
    kept = saved_order if backward.saves_input else backward.saved

    def setup_context(ctx, inputs, output):
        _save(ctx, kept, tuple(inputs[saved_order.index(name)] for name in kept))
        ctx.p, ctx.bias_grad = inputs[-2], inputs[-1]

    def saved_of(ctx) -> tuple:
        return _saved(ctx, kept)[len(kept) - len(backward.saved):]

    def backward_formula(ctx, gg_x, gg_bias):
        gg_in = _tangent_input(gg_x, gg_bias if ctx.bias_grad else None)
        saved = saved_of(ctx)
        gg = backward_op(gg_in, *saved, ctx.p, False)[0] if ctx.needs_input_grad[0] else None
        grads = {"grad": gg}
        if backward.saves_input and any(ctx.needs_input_grad[1:3]):
            named = dict(zip(backward.saved, saved))
            grad_x = _curvature_term(backward, mask_op, ctx.saved_tensors[0], gg_in, named["x"], named["bias"],
                                     named["seed"], named["offset"], named["mask_runs"], ctx.p)
            grads["x"] = grad_x
            if named["bias"] is not None and ctx.needs_input_grad[2]:
                grads["bias"] = reference.column_sums(grad_x)
        return tuple(grads.get(name) for name in saved_order) + (None, None)

    def jvp(ctx, grad_t, *other_tangents):
        saved = saved_of(ctx)
        if not backward.saves_input:
            return backward_op(grad_t, *saved, ctx.p, ctx.bias_grad)
        named = dict(zip(backward.saved, saved))
        x_t, bias_t = other_tangents[0], other_tangents[1]
        grad_in_t = backward_op(grad_t, *saved, ctx.p, False)[0] + _curvature_term(
            backward, mask_op, ctx.saved_tensors[0], _tangent_input(x_t, bias_t), named["x"], named["bias"],
            named["seed"], named["offset"], named["mask_runs"], ctx.p)
        grad_bias_t = reference.column_sums(grad_in_t) if ctx.bias_grad else grad_in_t.new_zeros((0,))
        return grad_in_t, grad_bias_t

    name = backward.op_name
    _autograd.register(_autograd_installer(ops, name), ops.prefix + name, getattr(ops, name),
                       setup_context=setup_context, backward=backward_formula, jvp=jvp)


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
