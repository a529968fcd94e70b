"""The structured dropouts (masks shared along some dims) against what users run today: timm's drop_path,
torch.nn.functional.dropout2d, and locked dropout as torch's mask-then-multiply.

    python benchmarks/structured.py [--threads N] [--repeats R]

Prints, per case, the best of R calls by the calling thread's CPU time (other processes' load does not count;
the best is the call least disturbed by them), on the CPU, float32.
"""
from __future__ import annotations

import argparse
import time

import torch

import fused_dropout as fd

P = 0.1


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return min(times) * 1e3


def timm_drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """timm's drop_path in training mode with scale_by_keep (timm.layers.drop.drop_path)."""
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    return x * random_tensor.div_(keep_prob)


def forward_backward(fn, leaf: torch.Tensor):
    def run():
        out = fn(leaf)
        out.backward(torch.ones_like(out))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = torch.randn(64, 197, 384)
    images = torch.randn(32, 64, 28, 28)
    sequence = torch.randn(50, 32, 1024)  # (time, batch, hidden), the mask shared over time
    leaf = tokens.clone().requires_grad_()
    cases = [
        ("drop_path 64x197x384", lambda: fd.drop_path(tokens, P, True), lambda: timm_drop_path(tokens, P)),
        ("drop_path 64x197x384 fwd+bwd", forward_backward(lambda t: fd.drop_path(t, P, True), leaf),
         forward_backward(lambda t: timm_drop_path(t, P), leaf)),
        ("dropout2d 32x64x28x28", lambda: fd.dropout2d(images, P),
         lambda: torch.nn.functional.dropout2d(images, P)),
        ("locked dropout 50x32x1024", lambda: fd.dropout(sequence, P, noise_shape=(1, 32, 1024)),
         lambda: sequence * torch.nn.functional.dropout(sequence.new_ones(1, 32, 1024), P)),
        ("plain dropout 64x197x384 (reference)", lambda: fd.dropout(tokens, P),
         lambda: torch.nn.functional.dropout(tokens, P)),
    ]
    print(f"{args.threads} thread(s), float32, best of {args.repeats} by thread CPU time; fused_dropout's CPU "
          f"kernels: {fd.backends._C.cpu_isa() if fd.backends.NATIVE_CPU else 'none (torch backend)'}")
    print(f"{'case':40s} {'fused ms':>9s} {'torch ms':>9s}")
    for name, fused, baseline in cases:
        print(f"{name:40s} {best_ms(fused, args.repeats):9.2f} {best_ms(baseline, args.repeats):9.2f}")


if __name__ == "__main__":
    main()
