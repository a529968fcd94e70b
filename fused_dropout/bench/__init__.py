"""Microbenchmarks of the fused ops against nn.Dropout, eager compositions, torch.compile and x.clone().

Run `python -m fused_dropout.bench --help`. Byte accounting: FusedOp.bytes_moved (fused_dropout/op_table.py), via cases.py.
"""
