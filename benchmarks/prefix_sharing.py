"""Speed-up of sharing a thinking prefix's KV cache among its N sampled continuations (paper A's lock-in).

    python benchmarks/prefix_sharing.py --tokenizer ../shared/tokenizers/qwen3 [--model deepseek-r1-distill-qwen-7b]

P prefixes of T tokens each get N continuations of A tokens: naively the batch holds P*N copies of each prefix
and prefills all of them; shared, each prefix is prefilled once and its cache rows are repeated
(lrmsafety.engine.generate.generate_batch). Random weights, real architecture.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from real_configs import build_random
from transformers import AutoTokenizer

from lrmsafety.engine.generate import generate_batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="deepseek-r1-distill-qwen-7b")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--prefixes", type=int, default=8)
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    parser.add_argument("--continuations", type=int, default=8)
    parser.add_argument("--answer-tokens", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.padding_side = "left"
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = build_random(args.model)
    generator = torch.Generator().manual_seed(0)
    prefixes = [tokenizer.decode(torch.randint(1000, 100000, (args.prefix_tokens,), generator=generator))
                for _ in range(args.prefixes)]
    texts = [p for p in prefixes for _ in range(args.continuations)]
    sampling = dict(do_sample=True, temperature=0.6, top_p=0.95, top_k=0, min_new_tokens=args.answer_tokens)
    rows = []
    for shared in (False, True, False, True):  # twice each: the first pair warms up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        generate_batch(model, tokenizer, texts, args.answer_tokens, sampling, share_prefixes=shared)
        torch.cuda.synchronize()
        rows.append({"shared": shared, "seconds": round(time.perf_counter() - started, 2),
                     "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 1)})
        print(rows[-1], flush=True)
    naive, shared = rows[2], rows[3]
    print(f"\n{args.model}, {args.prefixes} prefixes x {args.prefix_tokens} tokens, {args.continuations} continuations "
          f"of {args.answer_tokens} tokens: naive {naive['seconds']} s ({naive['peak_gb']} GB), shared "
          f"{shared['seconds']} s ({shared['peak_gb']} GB): speed-up {naive['seconds'] / shared['seconds']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
