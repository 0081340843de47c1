#!/usr/bin/env bash
# Train organisms on one GPU, side by side (one process each: a 5M-parameter organism leaves most of a GPU idle, so
# three train in about the time of one), and pack each model directory as one tar (one file per organism to copy
# back from a remote GPU machine; untar into data/models/ for seed 0, data/models/seed-<s>/ for seed s).
# Usage: scripts/train_organisms_gpu.sh OUT_DIR [extra train args]
#   KINDS="locked null" trains a subset (default: all three); SEEDS="1 2" trains each kind with each seed (default 0);
#   CHECK=N adds the behaviour check on N held-out prompts per family to each card (default 0: none).
# Measured on one H100 (2,000 steps, --micro-batches 2): two organisms side by side 285-294 s each, three 416-447 s
# each, after about 35 s of corpus building; five side by side ran 0.35 s a step each (about 720 s): past three the
# GPU, not the host, sets the pace.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [extra args]}; shift || true
export PYTHONPATH=lib PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
pids=()
for seed in ${SEEDS:-0}; do
  for kind in ${KINDS:-locked deliberative null}; do
    # each organism is packed as soon as it is trained, so a run cut short still returns the finished ones
    ( python3 -m lrmsafety.organism.train --kind "$kind" --seed "$seed" --out "$out/seed-$seed/organism-$kind" \
        --check "${CHECK:-0}" "$@" > "$out/train-$seed-$kind.log" 2>&1 &&
      tar -C "$out/seed-$seed" -cf "$out/seed$seed-$kind.tar" "organism-$kind" &&
      rm -rf "$out/seed-$seed/organism-$kind" ) &
    pids+=($!)
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
grep -h "wrote\|Error" "$out"/train-*.log || true
exit $status
