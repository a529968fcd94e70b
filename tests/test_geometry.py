"""The mask geometry (fused_dropout.geometry): mask indices as base + (extent, stride) runs, checked against the
independent implementation of the spec's text (spec_impl), the masks it gives, and the validation of its
arguments."""
import math
import random
import re

import pytest
import torch

import spec_impl
from fused_dropout import spec
from fused_dropout.geometry import OFFSET_LIMIT, mask_geometry, mask_indices


def random_geometry(rng: random.Random):
    """(shape, noise_shape, global_shape, shard_offsets) of a random box of a random whole tensor, its mask
    broadcast along a random set of dims (size-1 dims and empty boxes included)."""
    rank = rng.randint(0, 4)
    sizes = tuple(rng.choice([1, 2, 3, 5, 8]) for _ in range(rank))
    shape = tuple(rng.randint(0 if rng.random() < 0.05 else 1, g) for g in sizes)
    starts = tuple(rng.randint(0, g - n) for g, n in zip(sizes, shape))
    noise = tuple(1 if rng.random() < 0.4 else g for g in sizes)
    return shape, noise, sizes, starts


def spec_indices(shape, noise, sizes, starts):
    return [spec_impl.mask_index(i, sizes, starts, noise) for i in spec_impl.local_indices(shape)]


def test_mask_indices_follow_the_spec_for_random_geometries():
    rng = random.Random(0)
    for _ in range(400):
        shape, noise, sizes, starts = random_geometry(rng)
        geometry = mask_geometry(shape, noise, sizes, starts)
        assert mask_indices(geometry).tolist() == spec_indices(shape, noise, sizes, starts), (shape, noise, sizes,
                                                                                               starts)
        assert math.prod(extent for extent, _ in geometry.runs) == math.prod(shape)


def test_the_masks_follow_the_spec():
    rng = random.Random(1)
    seed_bits = 2**64 - 12345
    seed = torch.tensor([seed_bits - 2**64], dtype=torch.int64)
    for _ in range(40):
        shape, noise, sizes, starts = random_geometry(rng)
        offset, p = rng.choice([0, 1, 2, 3, 2**40 + 7]), rng.choice([0.0, 0.3, 0.5, 1.0])
        geometry = mask_geometry(shape, noise, sizes, starts, offset=offset)
        got = spec.keep_mask_at(mask_indices(geometry), seed, offset, p).tolist()
        assert got == spec_impl.geometric_mask(shape, seed_bits, offset, p, noise, sizes, starts)


def test_the_default_geometry_is_the_row_major_index():
    for shape in [(), (0,), (7,), (3, 5), (2, 1, 4), (1, 1)]:
        geometry = mask_geometry(shape)
        assert geometry.base == 0 and geometry.contiguous
        assert mask_indices(geometry).tolist() == list(range(math.prod(shape)))


def test_a_shard_gets_its_slice_of_the_whole_mask():
    """Cut a (6, 10) tensor into boxes along either dim (uneven), or both: every box's indices are the whole
    tensor's indices at its box, with and without a broadcast dim."""
    whole_shape = (6, 10)
    for noise in [(6, 10), (6, 1), (1, 10)]:
        whole = mask_indices(mask_geometry(whole_shape, noise)).reshape(whole_shape)
        for rows in [(0, 6), (0, 4), (4, 6), (1, 3)]:
            for cols in [(0, 10), (0, 3), (3, 10), (7, 9)]:
                shape = (rows[1] - rows[0], cols[1] - cols[0])
                box = mask_geometry(shape, noise, whole_shape, (rows[0], cols[0]))
                assert torch.equal(mask_indices(box).reshape(shape), whole[rows[0]:rows[1], cols[0]:cols[1]])


def test_runs_of_the_common_geometries():
    # A shard along dim 0 only moves the base: the flat path with a larger offset serves it.
    rows = mask_geometry((2, 6), None, (8, 6), (4, 0))
    assert (rows.base, rows.runs, rows.contiguous) == (24, ((12, 1),), True)
    # DropPath: one decision per sample; channel dropout: one per (sample, channel); locked dropout: one per
    # (batch, feature), shared over time.
    assert mask_geometry((8, 3, 5, 5), (8, 1, 1, 1)).runs == ((8, 1), (75, 0))
    assert mask_geometry((8, 3, 5, 5), (8, 3, 1, 1)).runs == ((24, 1), (25, 0))
    assert mask_geometry((7, 4, 16), (1, 4, 16)).runs == ((7, 0), (64, 1))
    # A column shard: rows of the whole tensor's width.
    cols = mask_geometry((4, 6), None, (4, 12), (0, 6))
    assert (cols.base, cols.runs, cols.contiguous) == (6, ((4, 12), (6, 1)), False)


def test_a_broadcast_mask_is_constant_along_its_broadcast_dims():
    shape, noise = (4, 3, 5), (4, 1, 5)
    index = mask_indices(mask_geometry(shape, noise)).reshape(shape)
    assert torch.equal(index, index[:, :1, :].expand(shape))
    assert index[:, 0, :].unique().numel() == 20


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(noise_shape=(4,)), ValueError, "noise_shape must have one entry per dimension"),
    (dict(noise_shape=(4, 2)), ValueError, "noise_shape[1] must be 1 or global_shape[1]"),
    (dict(noise_shape=(4, 0)), ValueError, "noise_shape[1]"),
    (dict(global_shape=(4, 6, 1)), ValueError, "global_shape must have one entry per dimension"),
    (dict(global_shape=(3, 6)), ValueError, "shard_offsets put x outside global_shape in dim 0"),
    (dict(global_shape=(8, 6), shard_offsets=(5, 0)), ValueError, "outside global_shape in dim 0"),
    (dict(global_shape=(8, 6), shard_offsets=(-1, 0)), ValueError, "outside global_shape"),
    (dict(shard_offsets=(0,)), ValueError, "shard_offsets must have one entry per dimension"),
    (dict(noise_shape=4), TypeError, "noise_shape must be a sequence of ints"),
    (dict(noise_shape="46"), TypeError, "noise_shape must be a sequence of ints"),
    (dict(noise_shape=torch.tensor([4, 6])), TypeError, "noise_shape must be a sequence of ints"),
    (dict(global_shape=(4.0, 6)), TypeError, "global_shape must be a sequence of ints"),
    (dict(shard_offsets=(False, 0)), TypeError, "shard_offsets must be a sequence of ints"),
    (dict(offset=OFFSET_LIMIT - 23), ValueError, "offset + prod(noise_shape)"),
])
def test_bad_geometry_is_refused_naming_the_argument(kwargs, error, words):
    with pytest.raises(error, match=re.escape(words)):
        mask_geometry((4, 6), **kwargs)


def test_the_offset_bound_is_exact():
    assert mask_geometry((4, 6), offset=OFFSET_LIMIT - 24).base == 0
    # A broadcast mask has fewer indices: its bound is prod(noise_shape), not numel.
    assert mask_geometry((4, 6), (4, 1), offset=OFFSET_LIMIT - 4).runs == ((4, 1), (6, 0))


def test_the_arguments_are_not_modified():
    noise, sizes, starts = [8, 1], [8, 6], [2, 0]
    mask_geometry((4, 6), noise, sizes, starts)
    assert (noise, sizes, starts) == ([8, 1], [8, 6], [2, 0])
