"""The organisms' rollouts on this machine's CPU: the transformers path against vLLM's CPU build.

What `make all` does on the organism profile (natural thinking, K samples per prompt, variable trace lengths,
per-sample stopping), timed end to end through `generate.rollouts` for each backend; useful tokens = thinking +
answer tokens of the records. Run it in the vLLM lane's environment (`make test-vllm` builds it):

    VLLM_TARGET_DEVICE=cpu VLLM_ENABLE_V1_MULTIPROCESSING=0 .venv-vllm/bin/python benchmarks/organism_backends.py \
        --json benchmarks/results/organism_backends.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="organism-locked")
    parser.add_argument("--prompts", type=int, default=30, help="prompts per organism family")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--thinking-tokens", type=int, default=256)
    parser.add_argument("--answer-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per backend (the rate varies run to run)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from lrmsafety import data, registry
    from lrmsafety.engine import generate, vllm_backend

    model, tokenizer, spec = registry.load_model(args.model)
    prompts = data.load_prompt_sets([data.ORGANISM_PROMPTS], n_prompts=args.prompts, seed=0)
    decoding = generate.Decoding(samples_per_prompt=args.samples, max_thinking_tokens=args.thinking_tokens,
                                 max_answer_tokens=args.answer_tokens, batch_size=256)
    rows = []

    def timed(backend: str, engine) -> None:
        started = time.perf_counter()
        frame = generate.rollouts(engine, tokenizer, spec, prompts, decoding, progress=False)
        seconds = time.perf_counter() - started
        tokens = int(frame["n_thinking_tokens"].sum() + frame["n_answer_tokens"].sum())
        rows.append({"backend": backend, "samples": len(frame), "seconds": round(seconds, 1),
                     "useful_tokens": tokens, "tokens_per_s": round(tokens / seconds),
                     "refusal_rate": round(float(frame["answer"].str.contains("can't|cannot|won't|sorry",
                                                                               case=False).mean()), 3),
                     "closed_rate": round(float(frame["closed"].mean()), 3)})
        print(rows[-1], flush=True)

    for _ in range(args.repeats):
        timed("transformers", model)
    started = time.perf_counter()
    llm = vllm_backend.load_llm(spec, dtype="float32", max_model_len=1024, gpu_memory_utilization=0.08)
    load_seconds = round(time.perf_counter() - started, 1)
    for _ in range(args.repeats):
        timed("vllm-cpu", llm)
    result = {"args": vars(args), "machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                                              "torch_threads": torch.get_num_threads()},
              "vllm_load_seconds": load_seconds, "runs": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":  # vLLM may spawn workers: keep the work behind the guard
    main()
