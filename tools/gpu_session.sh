#!/usr/bin/env bash
# Everything a lent GPU should check, in one call that fits the device budget (~8 min):
#   bash tools/gpu_session.sh
# 1. tools/gpu_check.py: BLT-1B through `python -m bltx.run` (eager SDPA vs compiled flex,
#    per-block compile with the patch axis at the real patch count).
# 2. tools/bench_train.py --shape small on the GPU: eager vs compiled vs HF, bf16.
# 3. recipes/learned_tiny.toml for a few steps on CUDA (learned chunking runs there).
# Each part has its own time limit and writes under $OUT, so one failing part keeps the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"
timeout 300 python3 tools/gpu_check.py --out "$OUT/gpu_check.json" --steps 8 --row-timeout 220 \
    --rows eager_sdpa_bf16 compiled_flex_bf16 2>&1 | tail -20
timeout 150 python3 tools/bench_train.py --device cuda --shape small --seq-len 4096 --batch 4 \
    --rows eager_bf16 compiled_bf16 hf_bf16 --steps 10 --rounds 3 --out "$OUT/bench_train_small_cuda.json" 2>&1 | tail -20
timeout 60 python3 -m bltx.run recipes/learned_tiny.toml --set training.steps=30 --set metrics.log_interval=10 \
    --set eval.interval=0 --set checkpoint.enable=false --set "job.dump_dir=\"$OUT/learned\"" \
    --set metrics.progress_bar=false 2>&1 | tail -6
ls -la "$OUT"
