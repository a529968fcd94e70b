"""The compute floor of the CPU kernels: how fast this machine's vector pipes can run the mask's Philox, against
how fast the kernels' Philox and x.clone() run. `python -m benchmarks.cpu_floor` (see __main__.py)."""
