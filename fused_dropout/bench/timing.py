"""Timing with maintained tools: triton.testing.do_bench (CUDA events, cache flushed) on a GPU and
torch.utils.benchmark on the CPU (using every intra-op thread torch has). Both return milliseconds as
(median, 20th percentile, 80th percentile) and the number of samples behind them. Only torch is needed:
no numpy."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch


class Timing(NamedTuple):
    q50: float
    q20: float
    q80: float
    samples: int  # 1: the three percentiles are that one sample


def percentile(values: list[float], q: float) -> float:
    """numpy.percentile's default (linear interpolation between the closest ranks)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(times_ms: list[float]) -> Timing:
    return Timing(percentile(times_ms, 50), percentile(times_ms, 20), percentile(times_ms, 80), len(times_ms))


def time_ms(fn: Callable[[], object], device: torch.device, quick: bool = False) -> Timing:
    if device.type == "cuda":
        from triton.testing import do_bench

        times = do_bench(fn, warmup=10 if quick else 25, rep=30 if quick else 100, return_mode="all")
        return summarize([float(t) for t in times])
    from torch.utils import benchmark

    fn()  # warm-up: first-call costs (allocation, lazy init) stay out of the numbers
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=0.05 if quick else 0.5)
    return summarize([t * 1e3 for t in measurement.times])
