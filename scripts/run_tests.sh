#!/usr/bin/env bash
# The test command: installs, then runs the whole suite. Triton runs through its interpreter on the CPU
# (TRITON_INTERPRET=1) unless a GPU is present; GPU-only tests skip cleanly without one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  export TRITON_INTERPRET=1
fi
exec "$PYTHON" -m pytest -q -p no:cacheprovider --durations=25 tests "$@"  # the slowest tests listed: where CI time goes
