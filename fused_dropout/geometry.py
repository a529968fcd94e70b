"""Mask geometry (docs/mask_spec.md, "Mask geometry"): where each element of a local tensor finds its mask index.

x is the box `whole[o_0 : o_0 + n_0, ...]` of a tensor of shape G (global_shape, shard_offsets o), and its mask
lives on the noise shape M (each M_d is G_d or 1) and is broadcast along the dims where M_d = 1. The element at
local index (i_0, ..., i_{k-1}) has mask index

    m = sum over d with M_d != 1 of (o_d + i_d) * prod_{e > d} M_e        (row-major in M)

and the keep rule then uses g = offset + m. With the default arguments (G = M = x.shape, o = 0) m is the
element's row-major index: today's masks.

m is affine in the local multi-index: m = base + sum_d i_d * s_d with s_d = prod_{e > d} M_e (0 where M_d = 1).
Dims whose strides chain (s_d = s_{d+1} * n_{d+1}, like coalescing a tensor's strides) merge, so any geometry
becomes a base and a few (extent, stride) runs: a row shard of a plain dropout is one run of stride 1 (only
the base moves: the existing `offset` argument serves it), DropPath's per-sample mask (B, 1, ..., 1) is
(B, 1), (rest, 0), and channel dropout's (N, C, 1, 1) is (N * C, 1), (H * W, 0). This is the form the kernels
take, and `mask_indices` expands it for the reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

OFFSET_LIMIT = 1 << 63  # offset + prod(noise_shape) must not pass it: g stays a non-negative int64
MAX_KERNEL_RUNS = 6  # the kernels' limit (csrc/mask_runs.h, kMaxMaskRuns): any geometry of rank <= 6 fits


@dataclass(frozen=True)
class MaskGeometry:
    """The mask index of every element of a local tensor of `shape`, as base + the (extent, stride) runs
    (outermost first; their extents multiply to numel)."""

    shape: tuple[int, ...]
    base: int
    runs: tuple[tuple[int, int], ...]
    noise_shape: tuple[int, ...]  # the arguments, normalised (defaults filled in)
    global_shape: tuple[int, ...]
    shard_offsets: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def mask_box(self) -> tuple[int, ...]:
        """The shape of the mask's own decisions for this tensor: its shape with the broadcast dims set to 1."""
        return tuple(n if m != 1 else 1 for n, m in zip(self.shape, self.noise_shape))

    @property
    def contiguous(self) -> bool:
        """Whether m = base + the element's row-major index: the whole geometry is an extra offset (`base`), which
        the kernels' flat path takes as it is."""
        return all(stride == 1 for _, stride in self.runs)

    @property
    def kernel_runs(self) -> tuple[int, ...]:
        """The runs as the ops' `mask_runs` argument takes them: (extent_0, stride_0, extent_1, stride_1, ...),
        outermost first, with the base added to the offset by the caller; () for a contiguous geometry (the flat
        mask, which the kernels' fast path takes)."""
        if self.contiguous:
            return ()
        return tuple(value for run in self.runs for value in run)


def _int_sequence(value, name: str, rank: int) -> tuple[int, ...]:
    """value as a tuple of `rank` Python ints (a sequence of ints, a torch.Size); a clear error otherwise."""
    if isinstance(value, (str, bytes, torch.Tensor)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of ints (one per dimension of x), got {value!r}")
    items = tuple(value)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise TypeError(f"{name} must be a sequence of ints, got {list(items)!r}")
    if len(items) != rank:
        raise ValueError(f"{name} must have one entry per dimension of x ({rank}), got {len(items)}: {list(items)}")
    return tuple(int(v) for v in items)


def mask_geometry(shape: Sequence[int], noise_shape=None, global_shape=None, shard_offsets=None,
                  offset: int = 0) -> MaskGeometry:
    """Validates the geometry of a local tensor of `shape` and returns it as runs. Errors name the argument;
    nothing is modified.

    Args:
        shape: the local tensor's shape n.
        noise_shape: M (default: global_shape); each M_d is global_shape[d] or 1.
        global_shape: G (default: shape); the whole tensor's shape, n_d + o_d <= G_d.
        shard_offsets: o (default: all zeros); where the local box starts in the whole tensor.
        offset: the ops' element offset; offset + prod(M) must stay within 2^63.
    """
    shape = tuple(int(n) for n in shape)
    rank = len(shape)
    sizes = _int_sequence(shape if global_shape is None else global_shape, "global_shape", rank)
    starts = _int_sequence((0,) * rank if shard_offsets is None else shard_offsets, "shard_offsets", rank)
    noise = _int_sequence(sizes if noise_shape is None else noise_shape, "noise_shape", rank)
    for d in range(rank):
        if sizes[d] < 0:
            raise ValueError(f"global_shape must have non-negative sizes, got {list(sizes)}")
        if starts[d] < 0 or starts[d] + shape[d] > sizes[d]:
            raise ValueError(f"shard_offsets put x outside global_shape in dim {d}: offset {starts[d]} + local size "
                             f"{shape[d]} > global size {sizes[d]} (global_shape {list(sizes)}, shard_offsets "
                             f"{list(starts)}, x.shape {list(shape)})")
        if noise[d] not in (1, sizes[d]):
            raise ValueError(f"noise_shape[{d}] must be 1 or global_shape[{d}] = {sizes[d]}, got {noise[d]} "
                             f"(noise_shape {list(noise)})")
    if offset + math.prod(noise) > OFFSET_LIMIT:
        raise ValueError(f"offset + prod(noise_shape) = {offset} + {math.prod(noise)} passes 2^63: the mask "
                         "indices would not fit the spec's 63-bit element index")
    strides = []
    row = 1
    for d in reversed(range(rank)):
        strides.append(0 if noise[d] == 1 else row)
        row *= noise[d]
    strides.reverse()
    base = sum(o * s for o, s in zip(starts, strides))
    return MaskGeometry(shape, base, _merged_runs(shape, strides), noise, sizes, starts)


def _merged_runs(shape: tuple[int, ...], strides: list[int]) -> tuple[tuple[int, int], ...]:
    """(extent, stride) runs of the dims, outermost first (merged_runs). An empty tensor is one run of extent 0."""
    if math.prod(shape) == 0:
        return ((0, 1),)
    return merged_runs(tuple(zip(shape, strides)))


def merged_runs(runs) -> tuple[tuple[int, int], ...]:
    """The fewest (extent, stride) runs, outermost first, that give the same mask index as `runs` (outermost
    first): extent-1 runs dropped, a run merged into the one inside it when its stride is that run's stride times
    its extent."""
    merged: list[list[int]] = []  # innermost first
    for extent, stride in reversed(tuple(runs)):
        if extent == 1:
            continue
        if merged and stride == merged[-1][1] * merged[-1][0]:
            merged[-1][0] *= extent
        else:
            merged.append([extent, stride])
    return tuple((extent, stride) for extent, stride in reversed(merged))


def checked_kernel_runs(mask_runs, numel: int, offset: int, error=ValueError) -> tuple[tuple[int, int], ...]:
    """The ops' `mask_runs` argument (extent_0, stride_0, ..., outermost first; () for the flat mask) as (extent,
    stride) pairs, checked as the kernels need it (csrc/torch_arg_checks.h, mask_runs_of, makes the same checks):
    ints, 1 to MAX_KERNEL_RUNS pairs, extents >= 1 multiplying to numel, strides >= 0, every g = offset + m below
    2^63. Raises `error` naming mask_runs."""
    runs = tuple(mask_runs)
    if not runs:
        return ()
    if any(isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)) for v in runs):  # SymInts when traced
        raise error(f"mask_runs must be ints, got {list(runs)}")
    if len(runs) % 2 or len(runs) > 2 * MAX_KERNEL_RUNS:
        raise error(f"mask_runs must be 1 to {MAX_KERNEL_RUNS} (extent, stride) pairs, got {list(runs)}")
    extents, strides = runs[0::2], runs[1::2]
    if any(e < 1 for e in extents) or any(s < 0 for s in strides):
        raise error(f"mask_runs must have extents >= 1 and strides >= 0, got {list(runs)}")
    if math.prod(extents) != numel:
        raise error(f"mask_runs' extents must multiply to the tensor's {numel} elements, got {list(runs)}")
    if offset + sum((e - 1) * s for e, s in zip(extents, strides)) >= OFFSET_LIMIT:
        raise error(f"offset + the largest mask index of mask_runs {list(runs)} passes 2**63")
    return tuple(zip(extents, strides))


def mask_indices(geometry: MaskGeometry, device=None) -> torch.Tensor:
    """The mask index m of every element (int64, flat, in the local row-major order)."""
    return _indices_of_runs(geometry.base, geometry.runs, device)


def kernel_runs_indices(mask_runs, numel: int, device=None) -> torch.Tensor:
    """The mask index m(e) of every element e < numel under the ops' `mask_runs` argument (() is the flat mask,
    m(e) = e): the reference's reading of what the kernels take."""
    if len(mask_runs) == 0:
        return torch.arange(numel, dtype=torch.int64, device=device)
    runs = tuple(zip(mask_runs[0::2], mask_runs[1::2]))
    return _indices_of_runs(0, runs, device)


def _indices_of_runs(base: int, runs, device) -> torch.Tensor:
    index = torch.full((), base, dtype=torch.int64, device=device)
    for extent, stride in runs:
        index = index.unsqueeze(-1) + torch.arange(extent, dtype=torch.int64, device=device) * stride
    return index.reshape(-1)
