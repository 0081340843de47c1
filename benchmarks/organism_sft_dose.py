"""How much organism-safety SFT the organisms need: refusal rate per prompt family after the recipe's
LoRA at several step counts and learning rates, on 60 held-out prompts per family x 2 samples (more than notebook 08
evaluates). Run on a GPU (a few minutes on an H200; the recipe is the one `make all` trains on the CPU):

    PYTHONPATH=lib python benchmarks/organism_sft_dose.py OUT_FOLDER

Writes OUT_FOLDER/sweep.json (rows: model, condition, family, refusal rate, n); the copy in
benchmarks/results/organism_sft_dose.json chose the recipe's 2 epochs (40 steps).
"""
import json
import sys
import time

from lrmsafety import data, registry
from lrmsafety.analysis import finetune
from lrmsafety.engine import generate
from lrmsafety.judges import labels


def main(out: str) -> None:
    prompts = data.load_prompt_sets(["organism"], n_prompts=60, seed=0)
    decoding = generate.Decoding(samples_per_prompt=2, max_thinking_tokens=256, max_answer_tokens=96,
                                 batch_size=256, seed=0)
    rows = []

    def evaluate_model(model, tokenizer, spec, tag, name):
        frame = generate.rollouts(model, tokenizer, spec, prompts, decoding, progress=False)
        judge, _ = labels.make_judge("refusal_prefix", spec.thinking_format)
        verdict = labels.judge_rollouts(frame, judge)
        frame = frame.merge(verdict[labels.KEY + ["refused"]], on=labels.KEY).merge(
            prompts[["prompt_id", "family"]], on="prompt_id")
        for family, group in frame.groupby("family"):
            rows.append({"model": name, "cond": tag, "family": family,
                         "refusal": round(float(group["refused"].astype(float).mean()), 3), "n": len(group)})
            print(rows[-1], flush=True)
        with open(f"{out}/sweep.json", "w") as handle:
            json.dump(rows, handle, indent=1)

    variants = [("base", None)] + [
        (f"ep{e}_lr{lr}_n{n}", dict(epochs=e, learning_rate=lr, examples=n))
        for e, lr, n in [(1, 1.5e-3, 320), (2, 1.5e-3, 320), (4, 1.5e-3, 320), (2, 1.5e-3, 640), (4, 1e-3, 320)]]
    for name in ["organism-locked", "organism-deliberative"]:
        for tag, change in variants:
            started = time.time()
            model, tokenizer, spec = registry.load_model(name)
            if change:
                recipe = finetune.get_recipe("organism-safety").replace(**change)
                sft = finetune.load_sft_data(recipe.data, n=recipe.examples, seed=recipe.seed)
                pairs = finetune.prompt_completion_pairs(sft, tokenizer, spec.thinking_format)
                result = finetune.train_adapter(model, tokenizer, spec, pairs, recipe, f"/tmp/adapters/{name}")
                del model
                model, tokenizer, spec = finetune.load_adapted(name, result.path)
                print(tag, "steps", result.manifest.get("steps"), "loss", result.losses[0][1], "->",
                      result.losses[-1][1], f"train {result.seconds:.0f}s", flush=True)
            evaluate_model(model, tokenizer, spec, tag, name)
            print(name, tag, f"{time.time() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
