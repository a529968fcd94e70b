"""Hostile inputs found by property fuzzing: shared modules, tensor and numpy scalars where Python numbers are
expected, and tensors of a layout the kernels cannot read. Every failure must name the argument."""
import pytest
import torch
from torch import nn

import fused_dropout as fd


def plain_dropouts(model):
    """Every place (not every distinct module) that holds a plain nn.Dropout."""
    return [name for name, m in model.named_modules(remove_duplicate=False) if type(m) is nn.Dropout]


# ---- 1. replace_dropout and shared modules ---------------------------------------------------------------------


def test_replace_dropout_replaces_every_place_of_a_shared_dropout():
    shared = nn.Dropout(0.3, inplace=True)
    shared.eval()
    model = nn.Sequential(shared, nn.Linear(4, 4), shared, nn.Sequential(nn.ReLU(), shared))
    fd.replace_dropout(model)
    assert plain_dropouts(model) == []
    fused = model[0]
    assert isinstance(fused, fd.FusedDropout)
    assert model[2] is fused and model[3][1] is fused  # sharing is preserved: one module, three places
    assert (fused.p, fused.inplace, fused.training) == (0.3, True, False)


def test_replace_dropout_shares_across_parents_and_leaves_subclasses_alone():
    class MyDropout(nn.Dropout):
        pass

    shared, custom = nn.Dropout(0.2), MyDropout(0.4)
    first, second = nn.Sequential(shared, custom), nn.Sequential(nn.Identity(), shared)
    model = nn.ModuleDict({"a": first, "b": second, "c": first})  # `first` itself is also shared
    fd.replace_dropout(model)
    assert plain_dropouts(model) == []
    assert isinstance(model["a"][0], fd.FusedDropout) and model["a"][0] is model["b"][1]
    assert model["a"][1] is custom and type(custom) is MyDropout
    assert model["c"] is first


def test_replace_dropout_on_a_module_list_holding_one_dropout_twice():
    shared = nn.Dropout(0.1)
    model = nn.ModuleList([shared, shared])
    fd.replace_dropout(model)
    assert isinstance(model[0], fd.FusedDropout) and model[1] is model[0]
