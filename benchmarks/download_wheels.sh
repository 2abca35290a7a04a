#!/usr/bin/env bash
# Where pip reaches the package index: fetch the wheels that benchmarks/gpu_check.sh installs on a GPU
# machine without internet (its torch, torchvision, lightning, torchmetrics, triton and pytest-xdist are
# preinstalled), at the versions this environment resolved (run it in the project's environment), and check
# that they install there beside the machine's own packages (benchmarks/check_wheels.py; .ci/run does this).
#   benchmarks/download_wheels.sh            # for Python 3.12 on x86-64 Linux (the default GPU image)
#   PYTHON_VERSION=3.11 benchmarks/download_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
PY=${PYTHON:-python3}
PINS=$($PY - <<'PYTHON'
import importlib.metadata as metadata
import sys

try:
    print(" ".join(f"{name}=={metadata.version(name)}" for name in ("hydra-core", "omegaconf", "torchdata")))
except metadata.PackageNotFoundError as missing:
    sys.exit(f"error: {missing} is not installed here: run this in the project's environment (pip install -e .)")
PYTHON
)
rm -rf .whl && mkdir -p .whl
# Hydra 1.4 carries its parser's antlr4 runtime: all three are pure-Python wheels.
# shellcheck disable=SC2086  # PINS: one word per requirement
$PY -m pip download --dest .whl --only-binary=:all: --no-deps --pre \
    --python-version "$PYTHON_VERSION" --platform manylinux2014_x86_64 $PINS
$PY benchmarks/check_wheels.py --wheels .whl --python-version "$PYTHON_VERSION"
