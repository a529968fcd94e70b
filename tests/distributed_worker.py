"""One rank of tests/test_distributed.py: torch.distributed (gloo, 127.0.0.1) with the rank and world size of its
environment. Every op on DTensors of every placement is compared with the single-process result of the whole
tensors for the same seed: forward values and the gradients of x and residual bit for bit, the bias gradient
(a sum over rows that the shards reduce in another order) to float rounding. Exits non-zero on a failure."""
import itertools
import os
import sys
import warnings

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

import fused_dropout as fd

warnings.filterwarnings("ignore", message="fused_dropout: this mask geometry")
SEED, P = 2**63 + 5, 0.4
SHAPE = (5, 3, 7)  # uneven shards along dims 0 and 2 on two ranks


def whole_inputs():
    generator = torch.Generator().manual_seed(0)
    x, residual, weight = (torch.randn(SHAPE, generator=generator) for _ in range(3))
    return x, residual, torch.randn(SHAPE[-1], generator=generator), weight


def call(op: str, x, residual, bias, **kwargs):
    if op == "dropout":
        return fd.dropout(x, P, **kwargs)
    if op == "bias_relu_dropout":
        return fd.bias_relu_dropout(x, bias, P, **kwargs)
    return fd.dropout_add(x, residual, P, bias=bias, **kwargs)


def bias_placements(placements):
    return [Shard(0) if isinstance(p, Shard) and p.dim == len(SHAPE) - 1 else Replicate() for p in placements]


def check(mesh, placements, op: str, noise) -> None:
    x, residual, bias, weight = whole_inputs()
    leaves = [t.clone().requires_grad_() for t in (x, residual, bias)]
    expected = call(op, *leaves, seed=SEED, noise_shape=noise)
    expected_grads = torch.autograd.grad((expected * weight).sum(), leaves, allow_unused=True)

    d_leaves = [distribute_tensor(t, mesh, placements).requires_grad_() for t in (x, residual)]
    d_leaves.append(distribute_tensor(bias, mesh, bias_placements(placements)).requires_grad_())
    got = call(op, *d_leaves, seed=SEED, noise_shape=noise)
    assert isinstance(got, DTensor) and tuple(got.placements) == tuple(placements), (got.placements, placements)
    assert torch.equal(got.full_tensor(), expected), f"forward {op} {placements} {noise}"
    d_weight = distribute_tensor(weight, mesh, placements)
    grads = torch.autograd.grad((got * d_weight).sum(), d_leaves, allow_unused=True)
    for name, g, e in zip(("x", "residual", "bias"), grads, expected_grads):
        if e is None:
            assert g is None, name
            continue
        full = g.full_tensor()
        same = torch.equal(full, e) if name != "bias" else torch.allclose(full, e, rtol=1e-6, atol=1e-6)
        assert same, f"gradient of {name}: {op} {placements} {noise}"


def check_unscaled_drop_path(mesh, placements) -> None:
    """timm's drop_path with scale_by_keep=False (the composite's values, unscaled) on DTensors, forward and the
    gradient of x, with a given seed and with a drawn one (the first rank's)."""
    x, _, _, weight = whole_inputs()
    for seed in (SEED, None):
        leaf = x.clone().requires_grad_()
        torch.manual_seed(100)
        expected = fd.drop_path(leaf, P, True, False, seed=seed)
        (expected_grad,) = torch.autograd.grad((expected * weight).sum(), leaf)
        d_leaf = distribute_tensor(x, mesh, placements).requires_grad_()
        torch.manual_seed(100 + dist.get_rank())
        got = fd.drop_path(d_leaf, P, True, False, seed=seed)
        assert isinstance(got, DTensor) and tuple(got.placements) == tuple(placements)
        assert torch.equal(got.full_tensor(), expected), f"drop_path unscaled {placements} seed {seed}"
        (grad,) = torch.autograd.grad((got * distribute_tensor(weight, mesh, placements)).sum(), d_leaf)
        assert torch.equal(grad.full_tensor(), expected_grad), f"drop_path unscaled gradient {placements}"


def check_drawn_seed(mesh, placements) -> None:
    """seed=None: every rank draws from its own generator state, yet all use the first rank's draw."""
    x = whole_inputs()[0]
    torch.manual_seed(100 + dist.get_rank())
    got = fd.dropout(distribute_tensor(x, mesh, placements), P).full_tensor()
    torch.manual_seed(100)  # the first rank's generator state
    assert torch.equal(got, fd.dropout(x, P)), f"drawn seed {placements}"


def check_refusals(mesh) -> None:
    local = torch.ones(2, 3)
    partial = DTensor.from_local(local, mesh, [Partial()] + [Replicate()] * (mesh.ndim - 1), run_check=False)
    for fn in (lambda: fd.dropout(partial, P, seed=1),
               lambda: fd.dropout(distribute_tensor(torch.ones(4, 3), mesh, [Replicate()] * mesh.ndim), P, seed=1,
                                  global_shape=(8, 3), shard_offsets=(0, 0))):
        try:
            fn()
        except ValueError:
            continue
        raise AssertionError("accepted a DTensor it must refuse")


def main() -> None:
    dist.init_process_group("gloo")
    world = dist.get_world_size()
    if world == 2:
        mesh = init_device_mesh("cpu", (2,))
        layouts = [[Shard(0)], [Shard(1)], [Shard(2)], [Replicate()]]
    else:
        mesh = init_device_mesh("cpu", (2, 2))
        layouts = [[Shard(0), Shard(2)], [Shard(2), Replicate()], [Replicate(), Shard(1)], [Shard(0), Shard(0)],
                   [Replicate(), Replicate()]]
    noises = [None, (SHAPE[0], 1, 1), (1, SHAPE[1], SHAPE[2])]
    for placements, op, noise in itertools.product(layouts, ("dropout", "bias_relu_dropout", "dropout_add"), noises):
        check(mesh, placements, op, noise)
    for placements in layouts:
        check_drawn_seed(mesh, placements)
        check_unscaled_drop_path(mesh, placements)
    check_refusals(mesh)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - the test reads this rank's traceback from stderr
        import traceback

        traceback.print_exc()
        sys.exit(1)
