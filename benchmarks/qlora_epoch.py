"""Time and peak GPU memory of one QLoRA epoch (lrmsafety.analysis.finetune) on a real architecture with random weights.

    python benchmarks/qlora_epoch.py --tokenizer ../shared/tokenizers/qwen3 --data-dir ../shared/data --examples 256

The STAR-1 recipe (finetune_recipes.yaml) for one epoch, on an nf4 base through bitsandbytes. Random weights make
the loss meaningless but not the cost: sequence lengths are STAR-1's own, so time and memory are what a real run
pays. Needs a CUDA GPU and bitsandbytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from real_configs import saved_random

from lrmsafety import registry as models
from lrmsafety.analysis import finetune


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="deepseek-r1-distill-qwen-7b")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--recipe", default="star1")
    parser.add_argument("--workdir", default="/tmp/lrmsafety-qlora")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    folder = saved_random(args.model, args.workdir, args.tokenizer)
    print(f"random checkpoint ready in {time.perf_counter() - started:.0f} s", flush=True)
    model, tokenizer, spec = models.load_model(str(folder), quantization="nf4")
    spec = dataclasses.replace(models.get_spec(args.model), hf_id=str(folder))  # the registry's format, our weights
    recipe = finetune.get_recipe(args.recipe).replace(epochs=1)
    data = finetune.load_sft_data(recipe.data, n=args.examples, seed=recipe.seed, data_dir=args.data_dir)
    pairs = finetune.prompt_completion_pairs(data, tokenizer, spec.thinking_format)
    lengths = [len(tokenizer(p + c, add_special_tokens=False)["input_ids"])
               for p, c in zip(pairs["prompt"], pairs["completion"])]
    torch.cuda.reset_peak_memory_stats()
    result = finetune.train_adapter(model, tokenizer, spec, pairs, recipe, Path(args.workdir) / "adapters",
                                    force=True)
    torch.cuda.synchronize()
    row = {"model": args.model, "recipe": recipe.name, "quantization": "nf4", "examples": len(pairs),
           "tokens": sum(lengths), "mean_tokens": round(sum(lengths) / len(lengths)), "max_tokens": max(lengths),
           "steps": result.manifest.get("steps"), "effective_batch": recipe.batch_size * recipe.grad_accum,
           "epoch_seconds": round(result.seconds, 1), "tokens_per_second": round(sum(lengths) / result.seconds),
           "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
           "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
