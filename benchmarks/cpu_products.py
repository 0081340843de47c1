"""The cost of batch-invariant CPU products (lrmsafety.numerics) on the organisms' rollouts.

Where MKL's strict mode does not make products batch invariant (MKL's own code path on AMD CPUs), the library
replaces torch's linear by one of its fallbacks (padded or row-blocked products). This times what `make all` does
most, `generate.rollouts` of an organism (natural thinking, K samples per prompt, variable trace lengths, per-sample
stopping), with torch's own products and with each fallback, alternating, each in a fresh process; useful tokens =
thinking + answer tokens of the records. It also says whether they give the same text (a cold run's batches are the
same in every mode; a resumed run's are not, which is what the fallbacks are for).

    .venv/bin/python benchmarks/cpu_products.py --json benchmarks/results/cpu_products.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def run_once(mode: str, args) -> dict:
    """One timed rollout in this process: ``mode`` "torch" (no fallback) or a key of ``numerics.FALLBACKS``."""
    from lrmsafety import numerics

    if mode == "torch":  # no fallback: loading the model must not install one
        numerics.use_batch_invariant_products = numerics.mode
    else:
        numerics.install_fallback(mode)
    from lrmsafety import data, registry
    from lrmsafety.engine import generate

    model, tokenizer, spec = registry.load_model(args.model)
    prompts = data.load_prompt_sets([data.ORGANISM_PROMPTS], n_prompts=args.prompts, seed=0)
    decoding = generate.Decoding(samples_per_prompt=args.samples, max_thinking_tokens=args.thinking_tokens,
                                 max_answer_tokens=args.answer_tokens, batch_size=256, seed=0)
    start = time.perf_counter()
    frame = generate.rollouts(model, tokenizer, spec, prompts, decoding, progress=False)
    seconds = time.perf_counter() - start
    useful = int(frame["n_thinking_tokens"].sum() + frame["n_answer_tokens"].sum())
    digest = hashlib.sha256("\x00".join(frame["thinking"] + "\x01" + frame["answer"]).encode()).hexdigest()[:16]
    return {"mode": numerics.mode(), "samples": len(frame), "seconds": round(seconds, 1), "useful_tokens": useful,
            "tokens_per_s": round(useful / seconds), "text_sha256": digest}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="organism-deliberative")
    parser.add_argument("--prompts", type=int, default=30, help="prompts per organism family")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--thinking-tokens", type=int, default=256)
    parser.add_argument("--answer-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode, alternating")
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_once(args.one, args)))
        return

    from lrmsafety import numerics

    modes = ["torch", *numerics.FALLBACKS]
    runs = []
    for _ in range(args.repeats):
        for mode in modes:
            child = [sys.executable, __file__, "--one", mode] + [a for a in sys.argv[1:] if a != "--json"
                                                                  and not a.endswith(".json")]
            out = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            runs.append({"asked": mode, **json.loads(out)})
            print(runs[-1], flush=True)
    rate = {m: sorted(r["tokens_per_s"] for r in runs if r["asked"] == m) for m in modes}
    result = {"args": {k: v for k, v in vars(args).items() if k != "one"},
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or _cpu_model(),
                          "mkl_cbwr": os.environ.get("MKL_CBWR"), "mkl_strict_batch_invariant":
                          numerics.mkl_batch_invariant()},
              "runs": runs,
              "median_tokens_per_s": {m: v[len(v) // 2] for m, v in rate.items()},
              "same_text": len({r["text_sha256"] for r in runs}) == 1}
    result["cost"] = {m: round(result["median_tokens_per_s"]["torch"] / result["median_tokens_per_s"][m] - 1, 3)
                      for m in numerics.FALLBACKS}  # extra time against torch's own products
    result["mode_here"] = numerics.use_batch_invariant_products()
    print(json.dumps({k: result[k] for k in ("median_tokens_per_s", "cost", "same_text", "mode_here")}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
