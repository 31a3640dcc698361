#!/usr/bin/env bash
# Create .venv (if missing) and install hpcnn with its test extras into it. Idempotent.
#   bash scripts/setup.sh            # uses python3 from PATH
#   PYTHON=python3.11 bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
# torch/torchvision first, from the pinned pair known to work together (a CUDA build; it runs on CPU too).
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    echo "[setup] installing torch and torchvision (a few minutes the first time)"
    "$VENV/bin/pip" install -q "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
fi
echo "[setup] installing hpcnn (editable) with the dev extras"
"$VENV/bin/pip" install -q -e ".[dev]"
echo "[setup] ready: $VENV/bin/hpcnn"
