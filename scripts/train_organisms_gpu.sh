#!/usr/bin/env bash
# Train the organisms on one GPU, check their behaviour on held-out prompts, and pack each model directory as one
# tar (one file per organism to copy back from a remote GPU machine).
# Usage: scripts/train_organisms_gpu.sh OUT_DIR [extra train args]
# KINDS=locked,null trains a subset (default: all).
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [extra args]}; shift || true
export PYTHONPATH=lib PYTHONUNBUFFERED=1
mkdir -p "$out/models"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
kinds=${KINDS:-all}
python3 -m lrmsafety.organism.train --kind "$kinds" --out "$out/models" --check 200 "$@" 2>&1 | tee "$out/train.log"
for dir in "$out"/models/organism-*; do
  kind=${dir##*/organism-}
  tar -C "$out/models" -cf "$out/organism-$kind.tar" "organism-$kind"
done
rm -rf "$out/models"
