"""The ops on DTensors, in processes this test starts (torch.distributed with gloo on 127.0.0.1): 2 ranks on a
1-D mesh and 4 ranks on a 2x2 mesh, every placement, all three ops, with and without a broadcast mask, forward
and backward, against the single-process result (tests/distributed_worker.py)."""
import os
import socket
import subprocess
import sys

import pytest
import torch.distributed as dist

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the ranks import this checkout's package


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch without gloo")
@pytest.mark.parametrize("world_size", [2, 4])
def test_every_placement_gives_the_single_process_result(world_size):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(world_size),
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [CHECKOUT, os.environ.get("PYTHONPATH")])))
    procs = [subprocess.Popen([sys.executable, WORKER], env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(world_size)]
    failures = []
    for rank, proc in enumerate(procs):
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"rank {rank} of {world_size} timed out")
        if proc.returncode != 0:
            failures.append(f"rank {rank}:\n{err[-3000:]}")
    assert not failures, "\n".join(failures)
