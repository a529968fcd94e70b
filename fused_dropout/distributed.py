"""DTensor inputs: each rank runs the op on its local shard with the mask geometry of that shard (global_shape =
the DTensor's shape, shard_offsets = where the shard starts), so the result's full_tensor() is, bit for bit, the
single-process result for the same seed, whatever the mesh and placements. No communication is needed for the
mask; with seed=None, one seed drawn on the mesh's first rank is broadcast to the others (one 8-byte broadcast
per call over the mesh's ranks), so every rank uses the same seed.

Placements: Shard(d) on any dim (uneven shards included) and Replicate, on meshes of any rank. A Partial
placement (the values are partial sums, not a box of the tensor) and strided shards (not a box) are refused.
"""
from __future__ import annotations

import torch

_dtensor_types = None  # (DTensor, Shard, Replicate, Partial), imported on first use


def _types():
    global _dtensor_types
    if _dtensor_types is None:
        try:
            from torch.distributed.tensor import DTensor, Partial, Replicate, Shard
        except ImportError:  # a torch built without distributed
            _dtensor_types = ()
        else:
            _dtensor_types = (DTensor, Shard, Replicate, Partial)
    return _dtensor_types


def is_dtensor(t) -> bool:
    types = _types()
    return bool(types) and isinstance(t, types[0])


def _check_box_placements(t, name: str) -> None:
    _, shard, replicate, _ = _types()
    for placement in t.placements:
        if type(placement) not in (shard, replicate):
            raise ValueError(f"{name}: a DTensor placement {placement} is not a box of the tensor (only Shard(d) and "
                             "Replicate are): redistribute it to Shard or Replicate first")


def _shard_offsets(t) -> tuple[int, ...]:
    """The global offsets of this rank's shard of t (where its box starts in the whole tensor)."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    return compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)[1]


def shared_seed(x, seed_tensor: torch.Tensor) -> torch.Tensor:
    """seed_tensor as drawn on the mesh's first rank, on every rank of x's mesh (a broadcast over the mesh)."""
    import torch.distributed as dist

    mesh = x.device_mesh
    ranks = mesh.mesh.flatten().tolist()
    group = None if len(ranks) == dist.get_world_size() else _group_of(tuple(ranks))
    dist.broadcast(seed_tensor, src=ranks[0], group=group)
    return seed_tensor


_groups: dict = {}


def _group_of(ranks: tuple[int, ...]):
    """A process group of exactly these ranks, made once (new_group is collective: every rank makes it in the
    same order, the first time a mesh of these ranks draws a seed)."""
    import torch.distributed as dist

    if ranks not in _groups:
        _groups[ranks] = dist.new_group(list(ranks))
    return _groups[ranks]


def run(call, x, residual, bias, seed_tensor_or_none, noise_shape, global_shape, shard_offsets):
    """The op on DTensors: `call(local_x, local_residual, local_bias, seed_tensor, global_shape, shard_offsets,
    noise_shape)` runs it on this rank's shards; the result is a DTensor placed as x."""
    dtensor = _types()[0]
    if global_shape is not None or shard_offsets is not None:
        raise ValueError("global_shape and shard_offsets are taken from a DTensor x itself: leave them None")
    _check_box_placements(x, "x")
    mesh, placements = x.device_mesh, x.placements
    if residual is not None:
        if not is_dtensor(residual) or residual.device_mesh != mesh or tuple(residual.placements) != tuple(placements):
            raise ValueError("residual: with a DTensor x, residual must be a DTensor on x's mesh with x's placements "
                             f"({placements})")
    local_residual = None if residual is None else residual.to_local()
    local_bias = None
    if bias is not None:
        local_bias = _local_bias(x, bias)
    out = call(x.to_local(), local_residual, local_bias, seed_tensor_or_none, tuple(x.shape), tuple(_shard_offsets(x)),
               noise_shape)
    return dtensor.from_local(out, mesh, placements, run_check=False, shape=x.shape, stride=x.stride())


def _local_bias(x, bias) -> torch.Tensor:
    """bias's local part, checked against x's placements: along each mesh dim, Shard(0) where x is sharded along
    its last dim, else Replicate. Where x is sharded along another dim and the bias replicated, each rank's bias
    gradient is a partial sum (Partial), which DTensor reduces."""
    _, shard, replicate, partial = _types()
    if not is_dtensor(bias) or bias.device_mesh != x.device_mesh:
        raise ValueError("bias: with a DTensor x, bias must be a DTensor on x's mesh")
    last = x.dim() - 1
    grad_placements = []
    for mesh_dim, (x_placement, b_placement) in enumerate(zip(x.placements, bias.placements)):
        x_on_last = isinstance(x_placement, shard) and x_placement.dim % max(x.dim(), 1) == last
        wanted = shard(0) if x_on_last else replicate()
        if b_placement != wanted:
            raise ValueError(f"bias: placement {b_placement} on mesh dim {mesh_dim} does not match x's {x_placement} "
                             f"(a bias runs along x's last dim: it must be {wanted} there)")
        grad_placements.append(partial() if isinstance(x_placement, shard) and not x_on_last else b_placement)
    return bias.to_local(grad_placements=grad_placements)
