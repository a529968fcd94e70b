"""The nn.Module wrappers: FusedDropout is a drop-in nn.Dropout; replace_dropout swaps them in a real model."""
import pytest
import torch
from torch import nn

import fused_dropout as fd
from conftest import make_input


def test_fused_dropout_is_a_drop_in_for_nn_dropout():
    ref, fused = nn.Dropout(0.3, inplace=True), fd.FusedDropout(0.3, inplace=True)
    assert isinstance(fused, nn.Dropout)
    assert (fused.p, fused.inplace) == (ref.p, ref.inplace)
    assert repr(fused) == repr(ref).replace("Dropout", "FusedDropout")
    assert repr(fd.FusedDropout()) == "FusedDropout(p=0.5, inplace=False)"
    with pytest.raises(ValueError):
        fd.FusedDropout(1.5)
    x = make_input((32, 32))
    fused.eval()
    assert fused(x) is x
    fused.train()
    torch.manual_seed(0)
    y = fd.FusedDropout(0.3)(x)
    kept = y != 0
    assert 0.5 < kept.float().mean() < 0.9
    torch.testing.assert_close(y[kept], x[kept] / 0.7)


def test_fused_bias_relu_dropout_module():
    m = fd.FusedBiasReLUDropout(8, 0.25, dtype=torch.float64)
    assert m.bias.shape == (8,) and m.bias.dtype == torch.float64
    assert "num_features=8, p=0.25" in repr(m)
    x = make_input((4, 8), torch.float64, requires_grad=True)
    m.eval()
    assert torch.equal(m(x), torch.relu(x + m.bias))
    m.train()
    m(x).sum().backward()
    assert m.bias.grad is not None
    with pytest.raises(ValueError, match="num_features"):
        fd.FusedBiasReLUDropout(0)
    with pytest.raises(ValueError, match="p"):
        fd.FusedBiasReLUDropout(4, p=-1)


def test_fused_dropout_add_module():
    m = fd.FusedDropoutAdd(0.4)
    x, r, b = make_input((4, 8)), make_input((4, 8), seed=1), make_input((8,), seed=2)
    m.eval()
    assert torch.equal(m(x, r, b), r + (x + b))
    assert torch.equal(m(x, r), r + x)
    m.train()
    assert m(x, r).shape == x.shape


def test_replace_dropout_on_transformer_encoder_layer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
    x = make_input((2, 5, 32))
    layer.eval()
    with torch.no_grad():
        before = layer(x)
    dropouts = [name for name, m in layer.named_modules() if type(m) is nn.Dropout]
    assert len(dropouts) == 3
    replaced = fd.replace_dropout(layer)
    assert replaced is layer
    for name in dropouts:
        module = layer.get_submodule(name)
        assert isinstance(module, fd.FusedDropout) and module.p == 0.1 and not module.training
    with torch.no_grad():
        assert torch.equal(layer(x), before)

    layer.train()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.05)
    target = make_input((2, 5, 32), seed=9)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(layer(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_replace_dropout_keeps_mode_and_inplace_and_handles_a_bare_dropout():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2, inplace=True), nn.Sequential(nn.Dropout(0.7)))
    model[2].eval()
    fd.replace_dropout(model)
    assert isinstance(model[1], fd.FusedDropout) and model[1].inplace and model[1].training
    assert isinstance(model[2][0], fd.FusedDropout) and model[2][0].p == 0.7 and not model[2][0].training
    bare = fd.replace_dropout(nn.Dropout(0.4))
    assert isinstance(bare, fd.FusedDropout) and bare.p == 0.4
    with pytest.raises(TypeError, match="module"):
        fd.replace_dropout("not a module")


def test_docstring_examples_run():
    """The Examples sections of modules.py's public docstrings are doctests: they must run and print what they say."""
    import doctest

    import fused_dropout.modules

    result = doctest.testmod(fused_dropout.modules, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0
