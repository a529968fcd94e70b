"""Microbenchmarks of the fused ops against nn.Dropout, eager compositions, torch.compile and x.clone().

Run `python -m fused_dropout.bench --help`. Byte accounting is in cases.py (BYTES_PER_ELEMENT).
"""
