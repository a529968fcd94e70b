"""Thin wrapper: `python benchmarks/run.py [args]` is `python -m fused_dropout.bench [args]`."""
from fused_dropout.bench.cli import main

if __name__ == "__main__":
    main()
