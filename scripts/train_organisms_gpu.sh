#!/usr/bin/env bash
# Train both organisms on one GPU, check their behaviour on held-out prompts, and pack each model directory as one
# tar (the device tool returns at most 8 files). Usage: scripts/train_organisms_gpu.sh OUT_DIR [extra train args]
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [extra args]}; shift || true
export PYTHONPATH=lib PYTHONUNBUFFERED=1
mkdir -p "$out/models"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m lrmsafety.organism.train --kind all --out "$out/models" --check 200 "$@" 2>&1 | tee "$out/train.log"
for kind in locked deliberative; do
  tar -C "$out/models" -cf "$out/organism-$kind.tar" "organism-$kind"
done
rm -rf "$out/models"
