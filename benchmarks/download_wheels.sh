#!/usr/bin/env bash
# Where pip reaches the package index: fetch the wheels that benchmarks/gpu_check.sh installs on a GPU
# machine without internet (its torch, torchvision, lightning, torchmetrics, triton and pytest-xdist are preinstalled).
#   benchmarks/download_wheels.sh            # for Python 3.12 on x86-64 Linux (the default GPU image)
#   PYTHON_VERSION=3.11 benchmarks/download_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
mkdir -p .whl
# Hydra and OmegaConf are pure Python; antlr4's runtime (Hydra's parser) is published as source only,
# so it is built into a wheel here, where the build tools are.
python3 -m pip download --dest .whl --only-binary=:all: --no-deps \
    --python-version "$PYTHON_VERSION" --platform manylinux2014_x86_64 \
    "hydra-core>=1.3.2" "omegaconf>=2.3" "torchdata>=0.10"
python3 -m pip wheel --wheel-dir .whl --no-deps "antlr4-python3-runtime==4.9.3"
ls -1 .whl
