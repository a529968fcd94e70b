#!/usr/bin/env bash
# Installs fused_dropout and what its tests and benchmarks need, on a fresh machine or an existing one.
# Torch: the one already installed is kept (a CUDA build on a GPU machine); otherwise the pinned CPU build.
# The package is built with --no-build-isolation so pip never downloads another torch. The build (a minute or
# more) is skipped when this checkout is already installed editable and its _C is up to date.
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
                      numpy:numpy ninja:ninja onnx:onnx onnxscript:onnxscript; do
  module=${module_package%%:*}
  package=${module_package##*:}
  "$PYTHON" -c "import $module" 2>/dev/null || "$PYTHON" -m pip install -q "$package"
done
# pyproject.toml's SPDX license needs setuptools >= 77 (a venv may bring an older one, or none).
"$PYTHON" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" 2>/dev/null ||
  "$PYTHON" -m pip install -q "setuptools>=77"

# Up to date: installed editable from this checkout, _C and its build record present, built against this torch's
# major.minor, and newer than every C++ source and build file. Otherwise (re)build.
UP_TO_DATE_CHECK='
import importlib.machinery, importlib.metadata, json, pathlib, runpy, sys
import torch

root = pathlib.Path.cwd()


def rebuild(why):
    print(f"install.sh: building fused_dropout ({why})", flush=True)
    sys.exit(1)


# The installed distribution, not a fused_dropout.egg-info a build left in the checkout (which is on sys.path).
site = [path for path in sys.path if path and pathlib.Path(path).resolve() != root]
installed = list(importlib.metadata.distributions(name="fused_dropout", path=site))
if not installed:
    rebuild("it is not installed")
direct_url = json.loads(installed[0].read_text("direct_url.json") or "{}")
url = direct_url.get("url", "an index")
if not direct_url.get("dir_info", {}).get("editable") or url != root.as_uri():
    rebuild(f"it is installed from {url}, not editable from {root.as_uri()}")
binaries = [path for suffix in importlib.machinery.EXTENSION_SUFFIXES for path in root.glob(f"fused_dropout/_C{suffix}")]
record = root / "fused_dropout" / "_build_info.py"
if not binaries or not record.exists():
    rebuild("fused_dropout/_C or its build record fused_dropout/_build_info.py is missing")
built_with = runpy.run_path(str(record))["TORCH_VERSION"]
if built_with.split("+")[0].split(".")[:2] != torch.__version__.split("+")[0].split(".")[:2]:
    rebuild(f"_C was built with torch {built_with}, torch {torch.__version__} is installed")
inputs = [*root.glob("csrc/**/*"), root / "setup.py", root / "pyproject.toml", root / "fused_dropout" / "_version.py"]
newest = max(inputs, key=lambda path: path.stat().st_mtime)
if newest.stat().st_mtime > min(path.stat().st_mtime for path in binaries):
    rebuild(f"{newest.relative_to(root)} is newer than _C")
print("install.sh: fused_dropout is installed editable from this checkout and _C is up to date; not rebuilding")
'
if ! "$PYTHON" -c "$UP_TO_DATE_CHECK"; then
  "$PYTHON" -m pip install -q --no-build-isolation --no-deps -e .
fi
