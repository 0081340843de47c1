"""Rollout throughput on realistic work: variable trace lengths, many more requests than batch slots.

    python benchmarks/realistic_rollouts.py --tokenizer ../shared/tokenizers/qwen3 [--models ...] [--batch-sizes 64 256]
        [--engines batch refill] [--requests-per-slot 8] [--json out.json] [--deadline-s 480]

Each request is a distinct prompt of ``--prompt-tokens`` random tokens; its generated length is drawn from a
log-normal and the row stops there (random weights never stop by themselves). Two engines:

    batch   what generate.rollouts did before the refill scheduler: batch after batch of ``generate()`` with the
            static, compiled cache; a batch runs until its longest row stops (rows stop by a forced end-of-sequence)
    refill  lrmsafety.scheduler.RefillScheduler: finished rows leave and waiting requests take their slots

Reported: useful tokens per second (the drawn lengths, summed, over the wall time of the whole run, prefills and
compilation warm-up excluded only where said) and "of limit": the time the same useful tokens would take if every
decode step at this batch size ran at the memory-bandwidth limit (weights plus each row's KV cache read once per
step, at the device-to-device copy bandwidth measured here), over the measured time.

The length distribution: log-normal with median 396 and mean 537 tokens, capped at 2,048 (the issue-13 workload);
its median is close to that of real DeepSeek-R1 traces on safety prompts: STAR-1's 1,000 R1 responses
(UCSC-VLAA/STAR-1, ../shared/data/star1) have a median of 321 Qwen3 tokens (p90 568, max 1,120); raw rollouts
spread wider than that curated set (σ = 0.33 in log space), so the wider σ = 0.78 is used. ``--median``,
``--sigma`` and ``--cap`` change it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, LogitsProcessor, LogitsProcessorList

from lrmsafety import scheduler
from lrmsafety.generate import generate_batch
from real_configs import REAL_CONFIGS, build_random

# a tiny model of the 1.5B's architecture, to check the benchmark on a CPU (`--models tiny --device cpu`)
REAL_CONFIGS.setdefault("tiny", dict(REAL_CONFIGS["deepseek-r1-distill-qwen-1.5b"], hidden_size=64,
                                     intermediate_size=128, num_hidden_layers=2, num_attention_heads=4))

SAMPLING = {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 0}


def draw_lengths(n: int, median: float, sigma: float, cap: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in np.clip(np.round(rng.lognormal(math.log(median), sigma, n)), 1, cap)]


def make_prompts(tokenizer, n: int, tokens: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(1000, 100000, (n, tokens))
    return [tokenizer.decode(row) for row in ids]


class StopAt(LogitsProcessor):
    """Forces end-of-sequence in each row once it has generated its drawn length (the batch engine's stop)."""

    def __init__(self, lengths: list[int], start: int, eos: int):
        self.lengths, self.start, self.eos = torch.tensor(lengths), start, eos

    def __call__(self, input_ids, scores):
        done = (input_ids.shape[1] - self.start) >= self.lengths.to(scores.device)
        scores[done] = float("-inf")
        scores[done, self.eos] = 0.0
        return scores


class Fixed:
    """A refill request that takes exactly its drawn number of tokens."""

    useful = 0  # tokens accepted so far by all requests: printed every 30 s, so a run cut short still reports
    started = last_print = 0.0

    def __init__(self, text: str, n: int):
        self.text, self.n, self.taken = text, n, 0

    def max_steps(self) -> int:
        return self.n - self.taken

    def advance(self, tokens, entropies) -> str:
        before, self.taken = self.taken, min(self.n, self.taken + len(tokens))
        Fixed.useful += self.taken - before
        now = time.perf_counter()
        if now - Fixed.last_print > 30:
            Fixed.last_print = now
            print(f"  ... {Fixed.useful} useful tokens in {now - Fixed.started:.0f} s: "
                  f"{Fixed.useful / (now - Fixed.started):.0f} tokens/s", flush=True)
        return scheduler.DONE if self.taken >= self.n else scheduler.CONTINUE


def run_batch_engine(model, tokenizer, prompts, lengths, batch, cap, eos) -> None:
    for start in range(0, len(prompts), batch):
        texts, want = prompts[start:start + batch], lengths[start:start + batch]
        width = tokenizer(texts, padding=True, add_special_tokens=False, pad_to_multiple_of=64,
                          return_tensors="pt")["input_ids"].shape[1]
        sampling = dict(SAMPLING, logits_processor=LogitsProcessorList([StopAt(want, width, eos)]))
        generate_batch(model, tokenizer, texts, cap, sampling, share_prefixes=False, static_cache=True)


def run_refill_engine(model, tokenizer, prompts, lengths, batch, chunk) -> dict:
    Fixed.useful, Fixed.started = 0, time.perf_counter()
    Fixed.last_print = Fixed.started
    run = scheduler.RefillScheduler(model, tokenizer, SAMPLING, slots=batch, chunk=chunk,
                                    generator=torch.Generator(device=model.device).manual_seed(0))
    run.run([Fixed(p, n) for p, n in zip(prompts, lengths)], lambda r: None)
    return {"decode_steps": run.steps, "prefills": run.prefills}


def ideal_seconds(lengths, batch, prompt_tokens, weights, kv_per_token, bandwidth) -> float:
    """Bandwidth-bound time for these useful tokens at ``batch`` rows per step."""
    steps = sum(lengths) / batch
    kv = sum(prompt_tokens * n + n * n / 2 for n in lengths) * kv_per_token
    return (steps * weights + kv) / bandwidth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["deepseek-r1-distill-qwen-1.5b"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64])
    parser.add_argument("--engines", nargs="+", default=["refill", "batch"])
    parser.add_argument("--requests-per-slot", type=float, default=8)
    parser.add_argument("--batch-engine-batches", type=int, default=2,
                        help="the batch engine runs this many whole batches (its rate is the same each batch)")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--median", type=float, default=396)
    parser.add_argument("--sigma", type=float, default=0.78)
    parser.add_argument("--cap", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--deadline-s", type=float, default=1e9, help="skip runs that would start after this")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    began = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.padding_side = "left"  # generate_batch pads on the left, as load_model sets it
    cuda = args.device == "cuda"
    if cuda:
        from rollout_throughput import copy_bandwidth

        bandwidth = copy_bandwidth()
        name = torch.cuda.get_device_name()
    else:
        bandwidth, name = float("nan"), "cpu"
    print(f"{name}: copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    results = {"device": name, "bandwidth_bytes_per_s": bandwidth, "args": vars(args), "runs": []}
    from rollout_throughput import kv_bytes_per_token, weight_bytes

    for model_name in args.models:
        model = build_random(model_name, device=args.device,
                             dtype=torch.bfloat16 if cuda else torch.float32)
        eos = REAL_CONFIGS[model_name]["eos_token_id"]
        weights, kv = weight_bytes(model), kv_bytes_per_token(model)
        for batch in args.batch_sizes:
            for engine in args.engines:
                if time.perf_counter() - began > args.deadline_s:
                    print(f"deadline: skipping {model_name} batch {batch} {engine}", flush=True)
                    continue
                n = batch * args.batch_engine_batches if engine == "batch" else int(batch * args.requests_per_slot)
                lengths = draw_lengths(n, args.median, args.sigma, args.cap, seed=batch)
                prompts = make_prompts(tokenizer, n, args.prompt_tokens, seed=batch)
                extra = {}
                if engine == "batch":  # compile at the timed shapes first (one row, one token, same cache size)
                    warm = time.perf_counter()
                    run_batch_engine(model, tokenizer, prompts[:batch], [1] * batch, batch, args.cap, eos)
                    extra["warmup_s"] = round(time.perf_counter() - warm, 1)
                if cuda:
                    torch.cuda.synchronize()
                started = time.perf_counter()
                if engine == "batch":
                    run_batch_engine(model, tokenizer, prompts, lengths, batch, args.cap, eos)
                else:
                    extra.update(run_refill_engine(model, tokenizer, prompts, lengths, batch, args.chunk))
                if cuda:
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - started
                useful = sum(lengths)
                ideal = ideal_seconds(lengths, batch, args.prompt_tokens, weights, kv, bandwidth)
                row = {"model": model_name, "dtype": "bf16" if cuda else "fp32", "engine": engine, "batch": batch,
                       "requests": n, "useful_tokens": useful, "seconds": round(seconds, 2),
                       "useful_tokens_per_s": round(useful / seconds, 1), "of_limit": round(ideal / seconds, 4),
                       "median_len": float(np.median(lengths)), "mean_len": float(np.mean(lengths)),
                       "max_len": max(lengths), **extra}
                print(row, flush=True)
                results["runs"].append(row)
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=2))
        del model
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
