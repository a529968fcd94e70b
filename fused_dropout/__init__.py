"""fused_dropout: fused dropout kernels for PyTorch with one bit-exact mask specification.

    import fused_dropout
    y = fused_dropout.bias_relu_dropout(x, bias, p=0.1)            # dropout(relu(x + bias))
    y = fused_dropout.bias_act_dropout(x, bias, 0.1, activation="gelu")  # dropout(gelu(x + bias))
    y = fused_dropout.dropout_add(x, residual, p=0.1, bias=b)      # residual + dropout(x + b)
    model = fused_dropout.replace_dropout(model)                   # nn.Dropout -> FusedDropout

The mask is a pure function of (seed, offset, element index, p): every backend, device, dtype and launch
geometry produces the same bits. See docs/mask_spec.md.
"""
from . import ops  # noqa: F401 - defines the ops before the kernels register
from .backends import available_backends
from .functional import bias_act_dropout, bias_relu_dropout, dropout, dropout_add, dropout_mask
from .modules import FusedBiasActDropout, FusedBiasReLUDropout, FusedDropout, FusedDropoutAdd, replace_dropout
from .patching import patch, unpatch
from .structured import drop_path, dropout1d, dropout2d, dropout3d
from .structured_modules import DropPath, FusedDropout1d, FusedDropout2d, FusedDropout3d, LockedDropout

__all__ = [
    "DropPath",
    "FusedBiasActDropout",
    "FusedBiasReLUDropout",
    "FusedDropout",
    "FusedDropout1d",
    "FusedDropout2d",
    "FusedDropout3d",
    "FusedDropoutAdd",
    "LockedDropout",
    "available_backends",
    "bias_act_dropout",
    "bias_relu_dropout",
    "drop_path",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "dropout_add",
    "dropout_mask",
    "patch",
    "replace_dropout",
    "unpatch",
]
from ._version import __version__  # noqa: E402 - the single source, read by pyproject.toml too
