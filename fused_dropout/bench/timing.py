"""Timing with maintained tools: triton.testing.do_bench (CUDA events, cache flushed) on a GPU and
torch.utils.benchmark on the CPU (using every intra-op thread torch has). Both return milliseconds as
(median, 20th percentile, 80th percentile)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def time_ms(fn: Callable[[], object], device: torch.device, quick: bool = False) -> tuple[float, float, float]:
    if device.type == "cuda":
        from triton.testing import do_bench

        q50, q20, q80 = do_bench(fn, warmup=10 if quick else 25, rep=30 if quick else 100,
                                 quantiles=[0.5, 0.2, 0.8])
        return float(q50), float(q20), float(q80)
    from torch.utils import benchmark

    fn()  # warm-up: first-call costs (allocation, lazy init) stay out of the numbers
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=0.05 if quick else 0.5)
    times = np.asarray(measurement.times) * 1e3
    q50, q20, q80 = np.percentile(times, [50, 20, 80])
    return float(q50), float(q20), float(q80)
