#!/usr/bin/env bash
# The GPU check in one call (for the device tool, or any machine with one CUDA GPU):
#   bash tools/gpu_check.sh [--steps 10 --seq-len 4096 --batch 4]
# Installs torchao from .whl/ when the machine lacks it (no network there), then runs
# tools/gpu_check.py, which writes $OUT/gpu_check.json (or runs/gpu_check.json).
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import torchao" 2>/dev/null && ls .whl/torchao-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/bltx_site .whl/torchao-*.whl && export PYTHONPATH="/tmp/bltx_site:${PYTHONPATH:-}"
fi
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec python3 tools/gpu_check.py --out "${OUT:-runs}/gpu_check.json" "$@"
