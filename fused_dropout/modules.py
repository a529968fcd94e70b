"""nn.Module wrappers of the fused ops: FusedDropout (a drop-in nn.Dropout), FusedBiasReLUDropout,
FusedBiasActDropout, FusedDropoutAdd, and replace_dropout, which swaps FusedDropout into an existing model."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from . import _native
from . import functional as F

# ---- TorchScript ---------------------------------------------------------------------------------------------
# torch.jit.script cannot compile the functional API (keyword-only arguments, validation in Python), so under
# scripting each forward takes the path below instead: it draws the seed with the same torch op as
# fused_dropout._rng.make_seed (so a scripted module drops the same elements as the eager one after the same
# torch.manual_seed) and calls the native op (fused_dropout::<name>_fwd), which a scripted module saved with
# torch.jit.save can still call after loading wherever the extension is loaded. Module-level int constants
# cannot be read from TorchScript: the bounds are spelled out (-2**63 and 2**63 - 1, as in _rng.py).
_SCRIPTABLE_BACKENDS = (None, "auto", "cpu", "cuda")


def _script_seed(x: torch.Tensor, training: bool, p: float) -> Optional[torch.Tensor]:
    """make_seed(x.device, None) when something is dropped, else None (nothing is drawn)."""
    if not training or p == 0.0:
        return None
    return torch.randint(-9223372036854775807 - 1, 9223372036854775807, (1,), dtype=torch.int64, device=x.device)


def _script_check_floating(t: torch.Tensor, name: str) -> None:
    """The functional API's dtype check (an integer tensor would otherwise be promoted to the bias's dtype)."""
    if t.dtype not in [torch.float16, torch.bfloat16, torch.float32, torch.float64]:
        raise TypeError(f"{name} must be a float16, bfloat16, float32 or float64 tensor")


def _script_p(training: bool, p: float) -> float:
    return p if training else 0.0


def _script_promoted(x: torch.Tensor, bias: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """x and bias checked and cast to their promoted dtype, as the functional API does (torch's type promotion)."""
    _script_check_floating(x, "x")
    if bias.dtype != x.dtype:
        dtype = torch.promote_types(x.dtype, bias.dtype)
        x, bias = x.to(dtype), bias.to(dtype)
    return x, bias


def _zero_bias(num_features: int, device, dtype) -> nn.Parameter:
    """The learnable bias of the bias modules, zeros of shape (num_features,)."""
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"num_features must be a positive int, got {num_features!r}")
    return nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))


def _check_scriptable(module: nn.Module) -> None:
    """Called by torch.jit.script (through __prepare_scriptable__) before it compiles `module`."""
    if not _native.LOADED:
        raise RuntimeError(
            f"torch.jit.script of {type(module).__name__} needs the native extension fused_dropout._C, which failed "
            f"to import ({_native.IMPORT_ERROR}): a scripted module calls the native ops "
            "(torch.ops.fused_dropout.*_fwd). Rebuild it with `pip install --no-build-isolation -e .`, or keep the "
            "module in eager mode (torch.compile and torch.export work with every backend).")
    if module.backend not in _SCRIPTABLE_BACKENDS:
        raise RuntimeError(
            f"torch.jit.script of {type(module).__name__} with backend={module.backend!r}: a scripted module runs "
            "the native kernels (the 'cpu' and 'cuda' backends; the mask is the same on every backend). Set "
            "backend=None to script it.")

# ---- ONNX export ---------------------------------------------------------------------------------------------
# _onnx_note: ONNX has no counterpart of the fused ops. When nothing is dropped (eval mode, p = 0) an op is
# activation(x + bias) + residual, so during torch.onnx.export (either exporter) the modules compute that with
# standard torch ops, which export as Add / Relu (FusedDropout in eval mode is already the identity). Outside an
# ONNX export the fused op runs as before (torch.export keeps it too); the check costs about a microsecond per
# eval-mode call and nothing in training mode. Training-mode graphs keep the fused op and do not export to ONNX.


class FusedDropout(nn.Dropout):
    r"""Drop-in replacement for :class:`torch.nn.Dropout`, running the fused kernels.

    In training mode, zeroes each element of the input with probability :attr:`p` and scales the others by
    :math:`\frac{1}{1-p}`; in eval mode (or with ``p=0``) it returns the input itself. The mask is the
    project's Philox mask (docs/mask_spec.md), seeded from torch's default generator, so ``torch.manual_seed``
    reproduces it; the backward recomputes it instead of storing it.

    It is an :class:`~torch.nn.Dropout` subclass with the same arguments, attributes, repr and train/eval
    behaviour, so code that looks for ``nn.Dropout`` still finds it. It works under ``torch.compile``,
    ``torch.export``, ``torch.jit.trace`` and ``torch.jit.script`` (a scripted module calls the native ops,
    which needs the built extension fused_dropout._C and ``backend`` None, ``"auto"``, ``"cpu"`` or ``"cuda"``),
    and exports to ONNX in eval mode as the identity.

    Args:
        p: probability of an element to be zeroed, in [0, 1]. Default: 0.5
        inplace: if ``True``, writes the result into the input in training mode. Default: ``False``
        backend: the backend that runs the op (``"cpu"``, ``"cuda"``, ``"triton"`` or ``"torch"``, see
            :func:`fused_dropout.available_backends`); ``None`` or ``"auto"`` picks the fastest one for the
            input's device. Keyword only. Default: ``None``

    Shape:
        - Input: :math:`(*)`, any shape; float16, bfloat16, float32 or float64.
        - Output: :math:`(*)`, same shape, dtype and layout as the input.

    Examples::

        >>> m = FusedDropout(p=0.2)
        >>> input = torch.randn(20, 16)
        >>> output = m(input)
        >>> output.shape
        torch.Size([20, 16])
        >>> torch.equal(m.eval()(input), input)
        True
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, backend: str | None = None):
        # nn.Dropout's own check names no argument and lets through a p that forward would reject (NaN, a tensor
        # requiring grad): check here, so the error names p and comes at construction. p is kept as given, like
        # nn.Dropout does (a tensor p is read at every forward).
        F.check.probability(p)
        super().__init__(p, inplace)
        self.backend = backend

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            _script_check_floating(input, "x")
            p = float(self.p)
            if not self.training or p == 0.0:
                return input
            out = torch.ops.fused_dropout.dropout_fwd(input, _script_seed(input, self.training, p), 0, p)
            return input.copy_(out) if self.inplace else out
        return F.dropout(input, self.p, self.training, self.inplace, backend=self.backend)

    def __prepare_scriptable__(self) -> FusedDropout:
        _check_scriptable(self)
        return self


class FusedBiasReLUDropout(nn.Module):
    r"""Applies :math:`\text{dropout}(\text{ReLU}(x + \text{bias}))` in one pass, with a learnable bias.

    A replacement for ``nn.Dropout(p)(nn.functional.relu(x + bias))``, such as the bias, activation and dropout
    after a bias-free ``nn.Linear``. In eval mode (or with ``p=0``) it computes :math:`\text{ReLU}(x + \text{bias})`.
    The backward uses the saved output (no mask is stored). Mixed dtypes follow torch's type promotion: a
    bfloat16 input with a float32 bias gives a float32 output. It works under ``torch.compile``,
    ``torch.export``, ``torch.jit.trace`` and ``torch.jit.script`` (see :class:`FusedDropout`) and exports to ONNX
    in eval mode as ``Relu(Add(x, bias))``.

    Args:
        num_features: the size of the input's last dimension (the length of the bias).
        p: probability of an element to be zeroed, in [0, 1]. Default: 0.5
        device: the device of the bias. Keyword only. Default: ``None`` (the default device)
        dtype: the dtype of the bias. Keyword only. Default: ``None`` (the default dtype)
        backend: the backend that runs the op, as in :class:`FusedDropout`. Keyword only. Default: ``None``

    Attributes:
        bias: the learnable bias of shape :math:`(\text{num\_features})`, initialised to zeros.

    Shape:
        - Input: :math:`(*, H)` where :math:`H = \text{num\_features}`.
        - Output: :math:`(*, H)`, same shape as the input.

    Examples::

        >>> m = FusedBiasReLUDropout(16, p=0.1)
        >>> x = torch.randn(8, 16)
        >>> y = m(x)
        >>> y.shape
        torch.Size([8, 16])
        >>> bool((y >= 0).all())
        True
    """

    def __init__(self, num_features: int, p: float = 0.5, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, backend: str | None = None):
        super().__init__()
        self.num_features = num_features
        self.p = F.check.probability(p)
        self.backend = backend
        self.bias = _zero_bias(num_features, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            x, bias = _script_promoted(x, self.bias)
            seed = _script_seed(x, self.training, self.p)
            return torch.ops.fused_dropout.bias_relu_dropout_fwd(x, bias, seed, 0, _script_p(self.training, self.p))
        if (not self.training or self.p == 0.0) and torch.onnx.is_in_onnx_export():
            return torch.relu(x + self.bias)  # see _onnx_note
        return F.bias_relu_dropout(x, self.bias, self.p, self.training, backend=self.backend)

    def __prepare_scriptable__(self) -> FusedBiasReLUDropout:
        _check_scriptable(self)
        return self

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, p={self.p}"


class FusedBiasActDropout(nn.Module):
    r"""Applies :math:`\text{dropout}(\text{activation}(x + \text{bias}))` in one pass, with a learnable bias.

    A replacement for the bias, activation and dropout after a bias-free ``nn.Linear`` in a transformer MLP, such
    as ``nn.Dropout(p)(nn.functional.gelu(x + bias))``. The activation is one of ``"relu"``, ``"gelu"`` (torch's
    exact gelu), ``"gelu_tanh"`` (``approximate="tanh"``), ``"silu"`` and ``"identity"``; see
    :func:`fused_dropout.bias_act_dropout` for the values and what the backward saves. Mixed dtypes follow
    torch's type promotion. It works under ``torch.compile`` and ``torch.jit.script`` (see :class:`FusedDropout`).

    Args:
        num_features: the size of the input's last dimension (the length of the bias).
        p: probability of an element to be zeroed, in [0, 1]. Default: 0.5
        activation: the activation's name. Default: ``"relu"``
        device: the device of the bias. Keyword only. Default: ``None`` (the default device)
        dtype: the dtype of the bias. Keyword only. Default: ``None`` (the default dtype)
        backend: the backend that runs the op, as in :class:`FusedDropout`. Keyword only. Default: ``None``

    Attributes:
        bias: the learnable bias of shape :math:`(\text{num\_features})`, initialised to zeros.

    Shape:
        - Input: :math:`(*, H)` where :math:`H = \text{num\_features}`.
        - Output: :math:`(*, H)`, same shape as the input.

    Examples::

        >>> m = FusedBiasActDropout(16, p=0.1, activation="gelu")
        >>> y = m(torch.randn(8, 16))
        >>> y.shape
        torch.Size([8, 16])
    """

    __constants__ = ["activation"]

    def __init__(self, num_features: int, p: float = 0.5, activation: str = "relu", *,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 backend: str | None = None):
        super().__init__()
        F._bias_act_op(activation)  # a clear error for an unknown activation
        self.num_features = num_features
        self.p = F.check.probability(p)
        self.activation = activation
        self.backend = backend
        self.bias = _zero_bias(num_features, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            x, bias = _script_promoted(x, self.bias)
            seed = _script_seed(x, self.training, self.p)
            p = _script_p(self.training, self.p)
            # One native op per activation (op_table.BIAS_ACT_OPS); TorchScript calls ops by name only.
            if self.activation == "gelu":
                return torch.ops.fused_dropout.bias_gelu_dropout_fwd(x, bias, seed, 0, p)
            if self.activation == "gelu_tanh":
                return torch.ops.fused_dropout.bias_gelu_tanh_dropout_fwd(x, bias, seed, 0, p)
            if self.activation == "silu":
                return torch.ops.fused_dropout.bias_silu_dropout_fwd(x, bias, seed, 0, p)
            if self.activation == "identity":
                return torch.ops.fused_dropout.bias_dropout_fwd(x, bias, seed, 0, p)
            return torch.ops.fused_dropout.bias_relu_dropout_fwd(x, bias, seed, 0, p)
        return F.bias_act_dropout(x, self.bias, self.p, self.training, activation=self.activation,
                                  backend=self.backend)

    def __prepare_scriptable__(self) -> FusedBiasActDropout:
        _check_scriptable(self)
        return self

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, p={self.p}, activation={self.activation!r}"


class FusedDropoutAdd(nn.Module):
    r"""Applies :math:`\text{residual} + \text{dropout}(x + \text{bias})` in one pass, for residual connections.

    A replacement for ``residual + nn.Dropout(p)(x + bias)``; the bias is an optional argument of
    :meth:`forward` (for instance the bias of the ``nn.Linear`` before it, applied here instead). In eval mode
    (or with ``p=0``) it computes :math:`\text{residual} + (x + \text{bias})`. The backward recomputes the mask
    (no mask is stored). Mixed dtypes follow torch's type promotion. It works under ``torch.compile``,
    ``torch.export``, ``torch.jit.trace`` and ``torch.jit.script`` (see :class:`FusedDropout`) and exports to ONNX
    in eval mode as ``Add`` nodes.

    Args:
        p: probability of an element of :math:`x + \text{bias}` to be zeroed, in [0, 1]. Default: 0.5
        backend: the backend that runs the op, as in :class:`FusedDropout`. Keyword only. Default: ``None``

    Shape:
        - x: :math:`(*, H)`, any shape.
        - residual: :math:`(*, H)`, the shape of x.
        - bias (optional): :math:`(H)`, the size of x's last dimension.
        - Output: :math:`(*, H)`, the shape of x.

    Examples::

        >>> m = FusedDropoutAdd(p=0.1)
        >>> x, residual, bias = torch.randn(4, 10, 32), torch.randn(4, 10, 32), torch.randn(32)
        >>> m(x, residual, bias).shape
        torch.Size([4, 10, 32])
        >>> torch.equal(m.eval()(x, residual), residual + x)
        True
    """

    def __init__(self, p: float = 0.5, *, backend: str | None = None):
        super().__init__()
        self.p = F.check.probability(p)
        self.backend = backend

    def forward(self, x: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            _script_check_floating(x, "x")
            _script_check_floating(residual, "residual")
            dtype = torch.promote_types(x.dtype, residual.dtype)  # torch's type promotion, as in the functional API
            if bias is not None:
                _script_check_floating(bias, "bias")
                dtype = torch.promote_types(dtype, bias.dtype)
                bias = bias.to(dtype)
            x, residual = x.to(dtype), residual.to(dtype)
            seed = _script_seed(x, self.training, self.p)
            return torch.ops.fused_dropout.dropout_add_fwd(x, residual, bias, seed, 0,
                                                           _script_p(self.training, self.p))
        if (not self.training or self.p == 0.0) and torch.onnx.is_in_onnx_export():
            return residual + (x if bias is None else x + bias)  # see _onnx_note
        return F.dropout_add(x, residual, self.p, self.training, bias=bias, backend=self.backend)

    def __prepare_scriptable__(self) -> FusedDropoutAdd:
        _check_scriptable(self)
        return self

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _fused_counterpart(child: nn.Module, structured: bool) -> nn.Module | None:
    """A new fused module doing what `child` does (same arguments and train/eval mode), or None when `child` is
    not one replace_dropout swaps: exactly nn.Dropout, and with `structured` nn.Dropout1d / 2d / 3d (a subclass
    may override forward) or a timm-style DropPath (a class named DropPath with a drop_prob; scale_by_keep kept)."""
    kind = type(child)
    if kind is nn.Dropout:
        fused = FusedDropout(child.p, child.inplace)
    elif not structured:
        return None
    elif kind in _CHANNEL_DROPOUTS:
        fused = _CHANNEL_DROPOUTS[kind](child.p, child.inplace)
    elif kind.__name__ == "DropPath" and kind is not DropPath and hasattr(child, "drop_prob"):
        fused = DropPath(float(child.drop_prob), getattr(child, "scale_by_keep", True))
    else:
        return None
    return fused.train(child.training)


def replace_dropout(module: nn.Module, *, structured: bool = True) -> nn.Module:
    r"""Swaps the dropout modules inside a model for fused ones, in place: every plain :class:`torch.nn.Dropout`
    for a :class:`FusedDropout`, every :class:`torch.nn.Dropout1d` / ``2d`` / ``3d`` for
    :class:`FusedDropout1d` / ``2d`` / ``3d``, and timm's ``DropPath`` (any class named DropPath with a
    ``drop_prob``) for :class:`fused_dropout.DropPath` (``structured=False`` leaves the last two kinds alone).

    Each replacement has the replaced module's ``p`` (``drop_prob``), ``inplace`` (``scale_by_keep``) and
    train/eval mode, and the default backend; in eval mode every output is bit-identical. A module held at
    several places (a shared instance) is replaced at all of them by one fused module, so the sharing survives.
    Subclasses of the torch modules are left alone (they may override ``forward``), and so are the functional
    dropouts a model calls in its own ``forward`` (see :func:`fused_dropout.patch`).

    Args:
        module: the model to change; it may itself be one of the swapped modules.
        structured: also swap channel dropouts and DropPath. Keyword only. Default: ``True``

    Returns:
        ``module`` itself, changed in place; a new fused module when ``module`` is one of the swapped modules.

    Raises:
        TypeError: if ``module`` is not an ``nn.Module``.

    Examples::

        >>> model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.1))
        >>> model = replace_dropout(model)
        >>> model[2]
        FusedDropout(p=0.1, inplace=False)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")

    replacements: dict[int, nn.Module | None] = {}  # id of a visited module -> its fused counterpart (or None)

    structured = F.check.flag(structured, "structured")

    def fused_from(child: nn.Module) -> nn.Module | None:
        if id(child) not in replacements:
            replacements[id(child)] = _fused_counterpart(child, structured)
        return replacements[id(child)]

    top = fused_from(module)
    if top is not None:
        return top
    # modules() visits each distinct module once, and named_children() names a child held under two names only
    # once: read every parent's _modules instead, so that every place a dropout is held gets replaced. The list is
    # taken first so the walk never descends into the fused modules it inserts; it also keeps every replaced
    # module alive until the walk ends, so no id in `replacements` can be reused by a new object.
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            fused = fused_from(child) if child is not None else None
            if fused is not None:
                setattr(parent, name, fused)
    return module


from .structured_modules import DropPath, FusedDropout1d, FusedDropout2d, FusedDropout3d  # noqa: E402

_CHANNEL_DROPOUTS = {nn.Dropout1d: FusedDropout1d, nn.Dropout2d: FusedDropout2d, nn.Dropout3d: FusedDropout3d}
