"""Structured dropout: dropout1d/2d/3d and their modules (torch's semantics and rank rules), drop_path / DropPath
(timm's), LockedDropout, dropout_mask under a geometry, and replace_dropout's new swaps."""
import warnings

import pytest
import torch
from torch import nn

import fused_dropout as fd
import spec_impl
from conftest import CPU_BACKENDS, make_input

pytestmark = pytest.mark.filterwarnings("ignore:fused_dropout. this mask geometry:UserWarning")

SEED, P = 123, 0.5


def decisions(out: torch.Tensor, kept_dims: int) -> list:
    """Per group of the first kept_dims dims: True if kept (all non-zero), False if dropped (all zero); asserts
    that every group is one or the other."""
    groups = (out != 0).reshape(*out.shape[:kept_dims], -1)
    assert torch.equal(groups.all(-1), groups.any(-1)), "a channel is partly dropped"
    return groups.all(-1).reshape(-1).tolist()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("fn, shape", [(fd.dropout1d, (3, 4, 5)), (fd.dropout2d, (2, 3, 4, 2)),
                                       (fd.dropout3d, (2, 2, 2, 3, 2))])
def test_channel_dropout_decides_per_sample_and_channel_by_the_spec(backend, fn, shape):
    x = make_input(shape) + 10  # no zero of its own
    out = fn(x, P, seed=SEED, backend=backend)
    noise = shape[:2] + (1,) * (len(shape) - 2)
    assert decisions(out, 2) == spec_impl.geometric_mask(shape[:2], SEED, 0, P)
    assert torch.equal(out, fd.dropout(x, P, seed=SEED, backend=backend, noise_shape=noise))


@pytest.mark.parametrize("fn, batched", [(fd.dropout1d, (2, 3, 5)), (fd.dropout3d, (2, 3, 2, 2, 2))])
def test_an_unbatched_input_is_one_sample(fn, batched):
    x = make_input(batched[1:]) + 10
    assert torch.equal(fn(x, P, seed=SEED), fn(x.unsqueeze(0), P, seed=SEED)[0])


def test_torch_rank_rules():
    with pytest.raises(RuntimeError, match="dropout1d: Expected 2D or 3D input"):
        fd.dropout1d(make_input((2, 3, 4, 5)), P)
    with pytest.warns(UserWarning, match="interpreted as shape \\(N, C, L\\)"):
        out = fd.dropout2d(make_input((2, 3, 4)) + 10, P, seed=SEED)
    assert len(decisions(out, 2)) == 6
    with pytest.warns(UserWarning, match="deprecated"):
        fd.dropout2d(make_input((2, 3, 4, 5, 6)), P, seed=SEED)
    with pytest.warns(UserWarning, match="deprecated"):
        fd.dropout3d(make_input((2, 3, 4)), P, seed=SEED)
    with pytest.raises(RuntimeError, match="channel dimension"):
        fd.dropout3d(make_input((5,)), P)


@pytest.mark.parametrize("fn, shape", [(fd.dropout1d, (2, 3, 4)), (fd.dropout2d, (2, 3, 2, 2)),
                                       (fd.dropout3d, (2, 3, 2, 2, 2))])
def test_channel_dropout_eval_inplace_and_p(fn, shape):
    x = make_input(shape)
    assert fn(x, P, training=False) is x and fn(x, 0.0) is x
    expected = fn(x, P, seed=SEED)
    y = x.clone()
    assert fn(y, P, inplace=True, seed=SEED) is y and torch.equal(y, expected)
    with pytest.raises(ValueError, match="p"):
        fn(x, 1.5)


@pytest.mark.parametrize("module, torch_module, shape", [(fd.FusedDropout1d, nn.Dropout1d, (2, 3, 4)),
                                                         (fd.FusedDropout2d, nn.Dropout2d, (2, 3, 2, 2)),
                                                         (fd.FusedDropout3d, nn.Dropout3d, (2, 3, 2, 2, 2))])
def test_channel_modules_are_drop_ins(module, torch_module, shape):
    fused, reference = module(0.3, inplace=False), torch_module(0.3, inplace=False)
    assert isinstance(fused, torch_module) and repr(fused).split("(")[1] == repr(reference).split("(")[1]
    x = make_input(shape)
    assert fused.eval()(x) is x
    fused.train()
    torch.manual_seed(3)
    out = fused(x + 10)
    torch.manual_seed(3)
    assert torch.equal(out, fd.dropout(x + 10, 0.3, noise_shape=shape[:2] + (1,) * (len(shape) - 2)))
    with pytest.raises(RuntimeError, match="torch.jit.script of " + module.__name__):
        torch.jit.script(fused)


def test_drop_path_follows_timm():
    x = make_input((6, 3, 4)) + 10
    assert fd.drop_path(x, 0.5) is x  # training=False by default, as timm's
    assert fd.drop_path(x, 0.0, True) is x
    out = fd.drop_path(x, P, True, seed=SEED)
    kept = decisions(out, 1)
    assert kept == spec_impl.geometric_mask((6,), SEED, 0, P)
    assert torch.equal(out[torch.tensor(kept)], fd.dropout(x, P, seed=SEED, noise_shape=(6, 1, 1))[torch.tensor(kept)])
    unscaled = fd.drop_path(x, P, True, scale_by_keep=False, seed=SEED)
    assert decisions(unscaled, 1) == kept
    assert torch.equal(unscaled[torch.tensor(kept)], x[torch.tensor(kept)])  # kept samples are x itself
    assert not fd.drop_path(x, 1.0, True, seed=SEED).any()
    with pytest.raises(ValueError, match="batch dimension"):
        fd.drop_path(torch.tensor(1.0), 0.5, True)
    with pytest.raises(TypeError, match="scale_by_keep"):
        fd.drop_path(x, 0.5, True, scale_by_keep="yes")


def test_the_fused_residual_branch_is_dropout_add():
    """x + drop_path(f(x)) is dropout_add(f(x), x, p, noise_shape=(B, 1, ..., 1)), bit for bit in float32."""
    x, f_x = make_input((4, 5, 8)), make_input((4, 5, 8), seed=1)
    expected = x + fd.drop_path(f_x, P, True, seed=SEED)
    assert torch.equal(fd.dropout_add(f_x, x, P, seed=SEED, noise_shape=(4, 1, 1)), expected)


@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_drop_path_gradients_to_the_second_derivative(scale_by_keep):
    x = make_input((4, 3), torch.float64, requires_grad=True)
    fn = lambda t: fd.drop_path(t, 0.5, True, scale_by_keep, seed=SEED)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,)) and torch.autograd.gradgradcheck(fn, (x,))


def test_drop_path_module_is_timms():
    m = fd.DropPath(0.25)
    assert repr(m) == "DropPath(drop_prob=0.250)" and m.scale_by_keep is True
    x = make_input((4, 3)) + 10
    assert m.eval()(x) is x
    torch.manual_seed(5)
    out = m.train()(x)
    torch.manual_seed(5)
    assert torch.equal(out, fd.drop_path(x, 0.25, True))


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_shares_the_mask_over_time(batch_first):
    m = fd.LockedDropout(P, batch_first=batch_first).train()
    x = make_input((5, 3, 4)) + 10
    out = m(x)
    time_dim = 1 if batch_first else 0
    first = out.select(time_dim, 0).unsqueeze(time_dim)
    assert torch.equal(out != 0, (first != 0).expand_as(out))
    assert m.eval()(x) is x
    with pytest.raises(ValueError, match="time and a batch"):
        m.train()(make_input((4,)))
    assert repr(m) == f"LockedDropout(p={P}, batch_first={batch_first})"


@pytest.mark.parametrize("noise, sizes, starts", [((4, 1), None, None), (None, (4, 9), (0, 3)),
                                                  ((1, 9), (8, 9), (2, 3))])
def test_dropout_mask_under_a_geometry(noise, sizes, starts):
    shape = (4, 5)
    mask = fd.dropout_mask(shape, P, SEED, offset=3, noise_shape=noise, global_shape=sizes, shard_offsets=starts)
    assert mask.reshape(-1).tolist() == spec_impl.geometric_mask(shape, SEED, 3, P, noise, sizes, starts)
    out = fd.dropout(torch.ones(shape), P, seed=SEED, offset=3, noise_shape=noise, global_shape=sizes,
                     shard_offsets=starts)
    assert torch.equal(mask, out != 0)


class DropPath(nn.Module):
    """timm's DropPath as a model holds it (duck-typed by replace_dropout)."""

    def __init__(self, drop_prob=0.0, scale_by_keep=True):
        super().__init__()
        self.drop_prob, self.scale_by_keep = drop_prob, scale_by_keep

    def forward(self, x):
        return x  # eval behaviour is all this test runs


class Dropout2dSubclass(nn.Dropout2d):
    pass


def make_structured_model():
    shared = nn.Dropout2d(0.2)
    return nn.Sequential(nn.Conv2d(3, 3, 1), shared, nn.Dropout1d(0.1), nn.Dropout3d(0.3, inplace=True),
                         DropPath(0.4, scale_by_keep=False), nn.Dropout(0.5), Dropout2dSubclass(0.6), shared)


def test_replace_dropout_swaps_channel_dropouts_and_drop_path_unless_told_not_to():
    kept = fd.replace_dropout(make_structured_model(), structured=False)
    assert [type(m).__name__ for m in kept][1:5] == ["Dropout2d", "Dropout1d", "Dropout3d", "DropPath"]
    assert type(kept[5]).__name__ == "FusedDropout"  # with structured=False only nn.Dropout is swapped
    model = make_structured_model()
    model.eval()
    x = make_input((2, 3, 4, 4))
    before = model[0](x)
    assert fd.replace_dropout(model) is model
    assert [type(m).__name__ for m in model] == ["Conv2d", "FusedDropout2d", "FusedDropout1d", "FusedDropout3d",
                                                 "DropPath", "FusedDropout", "Dropout2dSubclass", "FusedDropout2d"]
    assert model[1] is model[7] and model[3].inplace and model[4].scale_by_keep is False
    assert model[4].drop_prob == 0.4 and isinstance(model[4], fd.DropPath)
    assert not any(m.training for m in model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(model[1](before), before)
    assert isinstance(fd.replace_dropout(nn.Dropout2d(0.1)), fd.FusedDropout2d)
    assert type(fd.replace_dropout(nn.Dropout2d(0.1), structured=False)) is nn.Dropout2d
