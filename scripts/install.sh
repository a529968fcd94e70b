#!/usr/bin/env bash
# Installs fused_dropout and what its tests and benchmarks need, on a fresh machine or an existing one.
# Torch: the one already installed is kept (a CUDA build on a GPU machine); otherwise the pinned CPU build.
# The package is built with --no-build-isolation so pip never downloads another torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" -m pip install -q torch==2.13.0
fi
# Each name is installed only when missing, so a machine without a registry can still run this.
# onnx and onnxscript are for the ONNX export tests (tests/test_export.py skips them when absent).
# triton is pinned to the version whose interpreter the CI tests were written against (a GPU machine keeps the
# triton its torch ships with).
for module_package in triton:triton==3.9.0 pytest:pytest expecttest:expecttest matplotlib:matplotlib tqdm:tqdm \
                      numpy:numpy ninja:ninja setuptools:setuptools onnx:onnx onnxscript:onnxscript; do
  module=${module_package%%:*}
  package=${module_package##*:}
  "$PYTHON" -c "import $module" 2>/dev/null || "$PYTHON" -m pip install -q "$package"
done
"$PYTHON" -m pip install -q --no-build-isolation --no-deps -e .
