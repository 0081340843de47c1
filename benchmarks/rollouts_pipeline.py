"""Throughput of the repository's own rollout path (generate.rollouts: thinking phase, force-close, answer phase)
with the static cache (the CUDA default) and with the plain dynamic cache. Random weights, real architecture.

    python benchmarks/rollouts_pipeline.py --tokenizer ../shared/tokenizers/qwen3 [--prompts 128]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from real_configs import build_random
from transformers import AutoTokenizer

from lrmsafety.engine import generate
from lrmsafety.registry import R1_SAMPLING, ModelSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="deepseek-r1-distill-qwen-1.5b")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--thinking-tokens", type=int, default=256)
    parser.add_argument("--answer-tokens", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.padding_side = "left"
    model = build_random(args.model)
    spec = ModelSpec(args.model, args.model, type(model).__name__, 0.0, thinking="qwen3", sampling=R1_SAMPLING)
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(args.prompts)],
                            "prompt": [f"Question number {i}: explain topic {i % 17} in detail."
                                       for i in range(args.prompts)]})
    rows = []
    for static in (True, False, True):  # the first static run includes compilation
        decoding = generate.Decoding(max_thinking_tokens=args.thinking_tokens, max_answer_tokens=args.answer_tokens,
                                     batch_size=args.prompts, static_cache=static)
        torch.cuda.synchronize()
        started = time.perf_counter()
        frame = generate.rollouts(model, tokenizer, spec, prompts, decoding, progress=False)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        tokens = int(frame["n_thinking_tokens"].sum() + frame["n_answer_tokens"].sum())
        rows.append({"static_cache": static, "seconds": round(seconds, 1), "generated_tokens": tokens,
                     "tokens_per_s": round(tokens / seconds)})
        print(rows[-1], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
