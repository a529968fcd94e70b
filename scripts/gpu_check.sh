#!/usr/bin/env bash
# On a fresh GPU machine: build the extension with the CUDA kernels, run the whole test suite on the GPU, run
# the benchmarks, and leave their results in benchmarks/results/<gpu name>/ (and under $OUT when it is set).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export FUSED_DROPOUT_BUILD_CUDA=1
export MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
bash scripts/install.sh
"$PYTHON" -c "import fused_dropout as fd; print('backends:', fd.available_backends())"
"$PYTHON" -m pytest -q -p no:cacheprovider tests 2>&1 | tee "${OUT:-/tmp}/gpu_tests.log"
"$PYTHON" -m fused_dropout.bench --no-progress "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_bench.log"
if [ -n "${OUT:-}" ]; then
  cp -r benchmarks/results "$OUT/results"
fi
