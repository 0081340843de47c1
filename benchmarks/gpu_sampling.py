"""Per-sample randomness on a GPU: does a sample's text depend on the batch it ran in, the order, or a resume?

    python benchmarks/gpu_sampling.py [--models organism-locked organism-deliberative] [--json out.json]

On the CPU in fp32 the test suite shows a sample's tokens are the same whatever ran beside it or before it
(``tests/test_sampling.py``, ``tests/test_scheduler.py``). On CUDA three things could break that: the int64 hash
(:mod:`lrmsafety.engine.sampling`) computed by CUDA kernels, the slot engine's CUDA-graph replay, and logits that
differ in their last bits with the batch's composition (other kernels or tilings for another number of rows), which
flips a token whenever a draw falls that close to a boundary of the cumulative distribution.

What it runs, per model (the organisms: trained models, whose distributions are peaked as a real model's are;
random weights would give near-flat distributions, where such flips are far more common) and per weights (fp32,
bf16), with notebook 01's decoding on the organism profile's prompts (K = 5):

    reference   every sample at 256 slots (the slot engine with CUDA graphs)
    reversed    the prompts in reverse order at 16 slots (other rows beside each sample, refills at other steps)
    resumed     the first half of the prompts, then all of them from the same cache (a resume)
    dynamic     the DynamicCache engine (``LRMSAFETY_DECODE=dynamic``), eager steps, 64 rows

and reports the share of samples whose text differs from the reference, and where the first differing sample
differs. The hash is also checked directly: CUDA's uniforms equal the CPU's for 10^6 keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from lrmsafety import data, params, registry
from lrmsafety.engine import generate, sampling


def hash_check(n: int = 1_000_000) -> dict:
    seeds = torch.randint(-(2 ** 62), 2 ** 62, (n,), generator=torch.Generator().manual_seed(0))
    counts = torch.randint(0, 20000, (n,), generator=torch.Generator().manual_seed(1))
    cpu = sampling.uniform(sampling.row_keys(seeds, counts))
    gpu = sampling.uniform(sampling.row_keys(seeds.cuda(), counts.cuda())).cpu()
    return {"keys": n, "equal": int((cpu == gpu).sum())}


def run(model, tokenizer, spec, prompts, decoding, root: Path, decode: str = "auto"):
    os.environ["LRMSAFETY_DECODE"] = decode
    try:
        return generate.rollouts(model, tokenizer, spec, prompts, decoding, cache_root=root, progress=False)
    finally:
        os.environ.pop("LRMSAFETY_DECODE", None)


def compare(reference, other) -> dict:
    key = ["prompt_id", "sample_index"]
    merged = reference[key + ["text"]].merge(other[key + ["text"]], on=key, suffixes=("", "_other"))
    differ = merged[merged["text"] != merged["text_other"]]
    out = {"samples": len(merged), "differ": len(differ), "share": round(len(differ) / max(len(merged), 1), 4)}
    if len(differ):
        a, b = differ.iloc[0]["text"], differ.iloc[0]["text_other"]
        at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        out["first_difference_at_char"] = at
        out["first_difference_of_chars"] = len(a)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["organism-locked", "organism-deliberative"])
    parser.add_argument("--weights", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    P = params.load("organism")
    prompts = data.profile_prompts(P)
    base = generate.Decoding(samples_per_prompt=P.samples_per_prompt, max_thinking_tokens=P.max_thinking_tokens,
                             max_answer_tokens=P.max_answer_tokens, batch_size=256, seed=P.seed)
    report = {"device": torch.cuda.get_device_name(0), "hash": hash_check(), "prompts": len(prompts),
              "samples_per_prompt": P.samples_per_prompt, "runs": []}
    print(report["hash"], flush=True)
    for name in args.models:
        for weights in args.weights:
            model, tokenizer, spec = registry.load_model(name, quantization=weights)
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                started = time.perf_counter()
                reference = run(model, tokenizer, spec, prompts, base, tmp / "reference")
                seconds = time.perf_counter() - started
                others = {
                    "reversed": run(model, tokenizer, spec, prompts.iloc[::-1].reset_index(drop=True),
                                    dataclasses.replace(base, batch_size=16), tmp / "reversed"),
                }
                half = prompts.iloc[: len(prompts) // 2]
                run(model, tokenizer, spec, half, base, tmp / "resumed")
                others["resumed"] = run(model, tokenizer, spec, prompts, base, tmp / "resumed")
                others["dynamic"] = run(model, tokenizer, spec, prompts, dataclasses.replace(base, batch_size=64),
                                        tmp / "dynamic", decode="dynamic")
            row = {"model": name, "weights": weights, "reference_seconds": round(seconds, 1),
                   **{k: compare(reference, v) for k, v in others.items()}}
            print(json.dumps(row), flush=True)
            report["runs"].append(row)
            del model
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
