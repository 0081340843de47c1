"""Load time and peak GPU memory of real architectures (random weights) through load_model, bf16 and 4-bit NF4.

    python benchmarks/load_memory.py --tokenizer ../shared/tokenizers/qwen3 [--models ...] [--workdir /tmp/bench]

Needs a CUDA GPU (and bitsandbytes for nf4). Each model is first written to disk as a checkpoint, then loaded
the way a reader loads a downloaded model, so the time includes reading safetensors (from a warm page cache).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch
from real_configs import save_random

from lrmsafety.registry import load_model


def measure(folder: Path, quantization: str) -> dict:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model, tokenizer, _ = load_model(str(folder), quantization=quantization)
    torch.cuda.synchronize()
    load_seconds = time.perf_counter() - started
    loaded_gb = torch.cuda.memory_allocated() / 1e9
    ids = torch.randint(0, 150000, (1, 512), device="cuda")
    with torch.no_grad():
        model(ids)  # one 512-token forward, to see the working memory too
    torch.cuda.synchronize()
    result = {"load_s": round(load_seconds, 1), "weights_gb": round(loaded_gb, 2),
              "peak_gb_512_token_forward": round(torch.cuda.max_memory_allocated() / 1e9, 2)}
    del model
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["deepseek-r1-distill-qwen-7b", "qwen3-8b"])
    parser.add_argument("--quantizations", nargs="+", default=["bf16", "nf4"])
    parser.add_argument("--tokenizer", required=True, help="a tokenizer folder, e.g. ../shared/tokenizers/qwen3")
    parser.add_argument("--workdir", default="/tmp/lrmsafety-bench")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        folder = Path(args.workdir) / name
        if not (folder / "config.json").exists():
            started = time.perf_counter()
            save_random(name, folder, args.tokenizer)
            print(f"{name}: wrote a random-weight checkpoint in {time.perf_counter() - started:.0f} s", flush=True)
        for quantization in args.quantizations:
            row = {"model": name, "quantization": quantization, **measure(folder, quantization)}
            print(row, flush=True)
            rows.append(row)
    print(f"\n{'model':32} {'quant':6} {'load s':>7} {'weights GB':>11} {'peak GB':>8}   ({torch.cuda.get_device_name()})")  # noqa: E501
    for r in rows:
        print(f"{r['model']:32} {r['quantization']:6} {r['load_s']:7.1f} {r['weights_gb']:11.2f} "
              f"{r['peak_gb_512_token_forward']:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
