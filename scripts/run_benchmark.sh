#!/usr/bin/env bash
# The main job: installs, then benchmarks the fused ops against nn.Dropout, the eager compositions,
# torch.compile and x.clone() on whatever device is present. Arguments go to `python -m fused_dropout.bench`
# (try --quick, or --help). Results land in a new folder benchmarks/results/<device>-<date>-<time>/ (or --out).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh
exec "$PYTHON" -m fused_dropout.bench "$@"
