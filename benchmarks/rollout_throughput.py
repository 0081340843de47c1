"""Rollout throughput of real architectures (random weights) against the memory-bandwidth limit of decoding.

    python benchmarks/rollout_throughput.py [--models ...] [--quantizations bf16 nf4] [--batch-sizes 1 16 64 256]
        [--cache static dynamic] [--prompt-tokens 512] [--new-tokens 1024] --tokenizer ../shared/tokenizers/qwen3

Lengths are fixed (end-of-sequence is ignored). The limit of one decode step is the bytes it must read, the
weights (embedding rows aside) plus the KV cache at the step's length, divided by the bandwidth of a large
device-to-device copy measured here; "of limit" is that time over the measured step time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from real_configs import random_model


def copy_bandwidth(gigabytes: float = 4.0, repeats: int = 20) -> float:
    """Bytes per second of a device-to-device copy, counting bytes read plus bytes written."""
    source = torch.empty(int(gigabytes * 1e9), dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        target.copy_(source)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / repeats
    del source, target
    return 2 * gigabytes * 1e9 / seconds


def weight_bytes(model) -> int:
    embedding = model.get_input_embeddings().weight
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not embedding)


def kv_bytes_per_token(model) -> int:
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2  # K and V, bf16


def timed_generate(model, batch: int, prompt_tokens: int, new_tokens: int, cache: str) -> tuple[float, float]:
    """(seconds for the prefill forward alone, seconds for a whole generate of new_tokens).

    The warm-up is a full generate of the same shapes: a static cache is sized by prompt + new tokens, and
    generate compiles the forward for that size, so a shorter warm-up would leave compilation in the timing.
    """
    ids = torch.randint(0, model.config.vocab_size - 1000, (batch, prompt_tokens), device="cuda")
    mask = torch.ones_like(ids)
    kwargs = dict(do_sample=True, temperature=0.6, top_p=0.95, top_k=0, pad_token_id=0, eos_token_id=None,
                  max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    if cache == "static":
        kwargs["cache_implementation"] = "static"
    with torch.no_grad():
        model.generate(ids, attention_mask=mask, **kwargs)  # warm-up (and compilation) at the timed shapes
        torch.cuda.synchronize()
        started = time.perf_counter()
        model(ids, attention_mask=mask, logits_to_keep=1)
        torch.cuda.synchronize()
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        model.generate(ids, attention_mask=mask, **kwargs)
        torch.cuda.synchronize()
    return prefill, time.perf_counter() - started


def profile_steps(model, batch: int, prompt_tokens: int, cache: str, steps: int = 32) -> None:
    """Where a decode step's time goes: the top kernels and CPU ops of a short generate."""
    from torch.profiler import ProfilerActivity, profile

    timed_generate(model, batch, prompt_tokens, steps, cache)  # warm-up at these shapes
    ids = torch.randint(0, model.config.vocab_size - 1000, (batch, prompt_tokens), device="cuda")
    kwargs = dict(do_sample=True, temperature=0.6, top_p=0.95, top_k=0, pad_token_id=0, eos_token_id=None,
                  max_new_tokens=steps, min_new_tokens=steps)
    if cache == "static":
        kwargs["cache_implementation"] = "static"
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof, torch.no_grad():
        model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15), flush=True)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b"])
    parser.add_argument("--quantizations", nargs="+", default=["bf16", "nf4"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--cache", nargs="+", default=["static"], choices=["static", "dynamic"])
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=1024)
    parser.add_argument("--tokenizer", default=None, help="needed for nf4 (the model is saved and reloaded)")
    parser.add_argument("--workdir", default="/tmp/lrmsafety-bench")
    parser.add_argument("--json", default=None)
    parser.add_argument("--profile-batch", type=int, default=None,
                        help="also profile 32 decode steps at this batch size and print the top GPU kernels")
    args = parser.parse_args()

    bandwidth = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {bandwidth / 1e12:.2f} TB/s", flush=True)
    rows = []
    for name in args.models:
        for quantization in args.quantizations:
            model = random_model(name, quantization, args.workdir, args.tokenizer)
            weights, per_token = weight_bytes(model), kv_bytes_per_token(model)
            if args.profile_batch:
                profile_steps(model, args.profile_batch, args.prompt_tokens, args.cache[0])
            for cache in args.cache:
                for batch in args.batch_sizes:
                    try:
                        prefill, total = timed_generate(model, batch, args.prompt_tokens, args.new_tokens, cache)
                    except torch.cuda.OutOfMemoryError:
                        print(f"{name} {quantization} {cache} batch {batch}: out of memory", flush=True)
                        torch.cuda.empty_cache()
                        continue
                    step = (total - prefill) / args.new_tokens
                    mean_length = args.prompt_tokens + args.new_tokens / 2
                    limit = (weights + per_token * batch * mean_length) / bandwidth
                    row = {"model": name, "quantization": quantization, "cache": cache, "batch": batch,
                           "ms_per_step": round(step * 1e3, 2), "tokens_per_s": round(batch / step),
                           "limit_ms": round(limit * 1e3, 2), "of_limit": round(limit / step, 3),
                           "prefill_s": round(prefill, 2)}
                    print(row, flush=True)
                    rows.append(row)
            del model
            torch.cuda.empty_cache()
    print(f"\n{'model':30} {'quant':5} {'cache':7} {'batch':>5} {'ms/step':>8} {'tok/s':>8} {'limit ms':>9} {'of limit':>8}")  # noqa: E501
    for r in rows:
        print(f"{r['model']:30} {r['quantization']:5} {r['cache']:7} {r['batch']:5d} {r['ms_per_step']:8.2f} "
              f"{r['tokens_per_s']:8d} {r['limit_ms']:9.2f} {r['of_limit']:8.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"bandwidth_bytes_per_s": bandwidth, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
