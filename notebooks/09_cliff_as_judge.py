# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/09_cliff_as_judge.ipynb)
#
# # 09 · Paper B: Cliff-as-a-Judge, the few training examples that repair safety
#
# **Claim** (Yin et al., "Refusal Falls off a Cliff"; methods.md section 2): rank a safety fine-tuning pool by each
# example's *refusal cliff* (how far the refusal probe falls between its plateau in the thinking and the last token
# before the answer) and fine-tune on the top examples only: about 1.7% of the data (700 of 40K) matches training
# on all of it. The figure script's curve (likely R1-Distill-Llama-8B; low–medium confidence) has
# Cliff-as-a-Judge at ASR .01 with 12.5% of the data, where random selection is at .04 and rule-based at .09.
#
# **Method.** The pool: harmful prompts with the model's *own* thinking, then the close, then a safe answer
# (paper B: `own thinking + "\n</think>\n\n" + the dataset's safe completion`). Each example's cliff size comes
# from notebook 05's refusal probe (paper B's: last layer, refused harmful vs complied benign rollouts):
# **MS** = max score over the thinking − score at the last token before the answer, and the official code's
# **final-token** score (lowest first). Selectors at equal data: top x% by MS, by the final-token score, a random
# x% (several seeds), and paper B's rule (thinking that mentions one of its 56 refusal words). Each selection
# trains a LoRA adapter with the loss on the completion only; each adapter is evaluated on **held-out** prompts
# (none is in the pool): ASR on jailbreak prompts and over-refusal (ORR) on benign ones, labelled by paper B's
# refusal rule (`refused_b`; a guard model on the paper profile where `label_judges` says so), 95% intervals.
# Paper B's fine-tuning hyperparameters are not in its repository: ours are in `params/<profile>.yaml`.
#
# On the organisms the pool is the jailbreak family's rollouts of notebook 01 (own thinking) with a refusal from
# the organism's corpus as the safe answer. The control: `organism-locked` carries a planted cliff (its complied
# jailbreaks conclude "harmful" and comply anyway), so selection by cliff should beat random at the smallest
# shares; `organism-deliberative` has no cliff, so the two should not differ.

# %% Colab: install the repository (does nothing outside Colab)
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPO = "https://github.com/lrmsafety/lrmsafety"  # the repository's public address; point it at your fork
    if not os.path.exists("lrmsafety"):
        subprocess.run(["git", "clone", "--depth", "1", REPO, "lrmsafety"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "lrmsafety[quant,online]"], check=True)
    os.chdir("lrmsafety/notebooks")

# %% tags=["parameters"]
profile = "organism"
models = ["organism-locked", "organism-deliberative"]
quantization = "auto"
data_dir = None
prompt_sets = ["organism"]
n_prompts = 200
samples_per_prompt = 5
max_thinking_tokens = 256
max_answer_tokens = 96
batch_size = 256
seed = 0
judges = ["refusal_prefix", "rs_match"]
label_judges = {"B": ["paper_b_refusal"]}  # paper B's label (refused_b); paper: Llama-Guard-4 on the answer
eval_answer_tokens = None  # answer tokens of the held-out evaluations (None: max_answer_tokens)
cliff_models = ["organism-locked", "organism-deliberative"]  # models studied here (null: all of `models`)
cliff_pool_size = 2000  # paper profile: pool prompts (paper B: 40K); organisms: 01's jailbreak prompts
cliff_pool_per_prompt = 1  # rollouts per prompt kept in the pool (paper B: one answer of the model per prompt)
cliff_shares = [0.017, 0.05, 0.125, 0.25, 1.0]
cliff_selectors = ["cliff_ms", "cliff_final", "random", "rule"]
cliff_random_seeds = [0, 1, 2]
cliff_eval_prompts = 100  # held-out harmful (jailbreak) prompts; half as many benign ones for ORR
cliff_train = {"max_steps": 10, "batch_size": 4, "learning_rate": 1e-3, "lora_r": 8, "lora_alpha": 16,
               "max_length": 512, "scheduler": "constant"}  # a finetune.Recipe; the same steps for every selection
gpu_tokens_per_second = 907  # for the cost estimate: R1-Distill-Qwen-7B, nf4, batch 64 on an H100 (README)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrmsafety import (cliff, data, evaluate, finetune, generate, metrics, models as registry, paths, plots, probes,
                       safety_pool, selection, store)

from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # the base model is loaded once per adapter: no wall of loading bars
plots.set_theme()
started = time.perf_counter()
cache = paths.CACHE_DIR / profile
results = paths.RESULTS_DIR / profile
results.mkdir(parents=True, exist_ok=True)
organisms = prompt_sets == ["organism"]
studied = [m for m in models if cliff_models is None or m in cliff_models]
prompts = data.load_prompt_sets(prompt_sets, n_prompts=n_prompts, data_dir=data_dir, seed=seed)
rollout_decoding = generate.Decoding(samples_per_prompt=samples_per_prompt, max_thinking_tokens=max_thinking_tokens,
                                     max_answer_tokens=max_answer_tokens, batch_size=batch_size, seed=seed)
eval_decoding = generate.Decoding(samples_per_prompt=1, max_thinking_tokens=max_thinking_tokens,
                                  max_answer_tokens=eval_answer_tokens or max_answer_tokens, batch_size=batch_size,
                                  seed=seed)
# the figure script's values (fig/flexible_validation_curves.py; likely R1-Distill-Llama-8B; methods.md section 2)
PUBLISHED = pd.DataFrame({
    "share": [0.05, 0.125, 0.25, 0.5, 1.0] * 3,
    "selector": ["cliff_ms"] * 5 + ["random"] * 5 + ["rule"] * 5,
    "ASR": [.055, .01, .02, .02, .03, .06, .04, .08, .15, .03, .07, .09, .08, .07, .03]})
PUBLISHED_BASE_ASR = .235
recipe = finetune.Recipe(name="cliff-as-a-judge", data="09 pool", **cliff_train)
print(f"models: {studied}; shares: {cliff_shares}; selectors: {cliff_selectors}")

# %% [markdown]
# ## Held-out evaluation prompts, and what it costs

# %%
if organisms:
    candidates = data.load_prompt_sets(["organism"], n_prompts=cliff_eval_prompts, seed=seed + 1)
    eval_harmful = candidates[candidates["family"] == "jailbreak"]
    eval_benign = candidates[candidates["label"] == "benign"].groupby("family").head(cliff_eval_prompts // 4)
    pool_source = "notebook 01's jailbreak rollouts; safe answers: refusals from the organism's corpus"
else:
    eval_harmful = data.load_datasets(["wildjailbreak"], data_dir, limit=cliff_eval_prompts, seed=seed)
    eval_benign = data.load_datasets(["xstest"], data_dir, seed=seed).query("label == 'benign'")
    eval_benign = eval_benign.head(cliff_eval_prompts // 2)
    pool_prompt_frame, pool_source = safety_pool.pool_prompts(data_dir, n=cliff_pool_size, seed=seed)
partial = [share for share in cliff_shares if share < 1]  # at 100% every selector takes the same data: one run
n_runs = len(partial) * (len(cliff_selectors) - 1 + len(cliff_random_seeds)) + (len(partial) < len(cliff_shares))
print(f"pool: {pool_source}")
print(f"held-out evaluation: {len(eval_harmful)} harmful, {len(eval_benign)} benign prompts; "
      f"{n_runs} adapters per model")
if not organisms:
    tokens = (cliff_pool_size + (n_runs + 1) * (len(eval_harmful) + len(eval_benign))) * (max_thinking_tokens
                                                                                    + max_answer_tokens)
    print(f"at most {tokens:,} generated tokens per model; about {tokens / gpu_tokens_per_second / 3600:.1f} GPU hours "
          f"at {gpu_tokens_per_second} tokens/s, plus {n_runs} LoRA runs of {recipe.max_steps} steps")

# %% [markdown]
# ## The pool and each example's cliff size
# Notebook 05's refusal probe (paper B's, fitted on notebook 01's rollouts) is read at every token of each pool
# example's own thinking; MS = max over the thinking − score at the last token before the answer.

# %%
def judged(frame, fmt):
    """Rollouts with paper B's refusal label (`refused_b`, judged on the answer), as notebook 01 records it."""
    labels = evaluate.paper_labels(frame, label_judges, fmt, cache_root=cache, quantization="nf4", papers=["B"],
                                   report=lambda message: None)
    return frame.merge(labels[evaluate.KEY + ["refused_b"]], on=evaluate.KEY).rename(columns={"refused_b": "refused"})


def pool_for(name, model, tokenizer, spec):
    fmt = spec.thinking_format
    if organisms:
        from lrmsafety.organism.safe_answers import safe_answers

        rollouts = generate.rollouts(model, tokenizer, spec, prompts, rollout_decoding, cache_root=cache,
                                     progress=False)
        rollouts = rollouts[rollouts["prompt_id"].isin(prompts.query("family == 'jailbreak'")["prompt_id"])
                            & (rollouts["sample_index"] < cliff_pool_per_prompt)]
        answers = None
    else:
        rollouts = generate.rollouts(model, tokenizer, spec, pool_prompt_frame, eval_decoding, cache_root=cache)
        rollouts = rollouts.merge(pool_prompt_frame[["prompt_id", "safe_answer"]], on="prompt_id")
    rollouts = rollouts[rollouts["text"].str.contains(fmt.close, regex=False)]  # the cliff needs a closed thinking
    rollouts = judged(rollouts.reset_index(drop=True), fmt)
    if organisms:
        answers = safe_answers(len(rollouts), kind=name.removeprefix("organism-"), seed=seed)
    return safety_pool.build_pool(rollouts, answers if organisms else rollouts["safe_answer"], fmt)


def cliff_sizes(name, model, tokenizer, spec, pool):
    probe = probes.LinearRefusalProbe.load(cache / f"refusal_probe-{name}.safetensors")
    layer = model.config.get_text_config().num_hidden_layers  # paper B: the last layer
    inputs = cliff.probe_inputs(tokenizer, pool, spec.thinking_format.close)
    inputs = inputs.assign(prompt_id=pool["prompt_id"], sample_index=pool["sample_index"])
    table = store.TableStore(cache, f"cliff-curves-{name}", {"probe": store.text_hash(str(probe.direction.tolist())),
                             "rollouts": sorted(set(pool["config_hash"])), "layer": layer},
                             key=["prompt_id", "sample_index"])
    curves = cliff.score_curves(model, tokenizer, inputs, probe, layer, store=table)
    return cliff.cliff_sizes(curves, inputs["n_thinking"]).set_index(pool.index), probe


pools = {}
for name in studied:
    if not (cache / f"refusal_probe-{name}.safetensors").exists():
        print(f"{name}: skipped, notebook 05 saved no refusal probe for it (run 05 first; on random weights it has "
              "no refusals to train on)")
        continue
    model, tokenizer, spec = registry.load_model(name, quantization=quantization)
    pool = pool_for(name, model, tokenizer, spec)
    sizes, probe = cliff_sizes(name, model, tokenizer, spec, pool)
    pools[name] = pool.join(sizes)
    print(f"{name}: {len(pool)} pool examples ({(~pool['refused']).sum()} complied); notebook 05's probe, "
          f"validation accuracy {probe.val_accuracy_:.3f}")
    del model
studied = list(pools)
summary = pd.concat([pd.DataFrame(columns=["model", "outcome", "plateau", "final", "ms"])] + [p.assign(model=n, outcome=p["refused"].map({True: "refused", False: "complied"}))
                     for n, p in pools.items()])
summary.groupby(["model", "outcome"])[["plateau", "final", "ms"]].agg(["mean", "count"]).round(3)

# %% [markdown]
# ## Selections, adapters and held-out evaluation
# Every selector takes exactly `round(share × pool)` examples (at least one). All adapters train for the same
# number of steps, so the selectors differ only in *which* examples they see. Adapters and evaluations are cached
# by manifest: a rerun trains and generates nothing.

# %%
def selections(pool):
    """(selector, seed) -> share -> pool positions."""
    out = {}
    for share in cliff_shares:
        if "cliff_ms" in cliff_selectors:
            out.setdefault(("cliff_ms", 0), {})[share] = selection.by_score(pool["ms"], share)
        if "cliff_final" in cliff_selectors:
            out.setdefault(("cliff_final", 0), {})[share] = selection.by_score(-pool["final"], share)
        if "rule" in cliff_selectors:
            out.setdefault(("rule", 0), {})[share] = selection.by_rule(pool["thinking"].tolist(), share, seed=seed)
        if "length" in cliff_selectors:
            out.setdefault(("length", 0), {})[share] = selection.by_length(pool["thinking"].str.len(), share)
        if "random" in cliff_selectors:
            for s in cliff_random_seeds:
                out.setdefault(("random", s), {})[share] = selection.at_random(len(pool), share, seed=1000 + s)
    return out


eval_prompts = pd.concat([eval_harmful, eval_benign], ignore_index=True)


def evaluate_model(model, tokenizer, spec, pool):
    """Held-out rollouts of a (tuned) model, judged; the spec's name carries the adapter, so caches stay apart."""
    frame = generate.rollouts(model, tokenizer, spec, safety_pool.held_out(eval_prompts, pool), eval_decoding,
                              cache_root=cache, progress=False)
    return judged(frame, spec.thinking_format).merge(eval_prompts[["prompt_id", "label"]], on="prompt_id")


def tuned_evaluation(name, rows):
    """Fine-tune a fresh copy of the base model on the chosen rows (skipped when the adapter is cached), evaluate."""
    base, tokenizer, spec = registry.load_model(name, quantization=quantization)
    pairs = safety_pool.sft_pairs(rows, tokenizer.eos_token)
    result = finetune.train_adapter(base, tokenizer, spec, pairs, recipe, out_root=cache / "09-adapters")
    tuned, tokenizer, tuned_spec = finetune.load_adapted(name, result.path, quantization=quantization)
    return evaluate_model(tuned, tokenizer, tuned_spec, pools[name]), result


evaluations, train_seconds = [], []
for name in studied:
    pool = pools[name]
    base, tokenizer, spec = registry.load_model(name, quantization=quantization)
    evaluations.append(evaluate_model(base, tokenizer, spec, pool).assign(model=name, selector="none", seed=0,
                                                                           share=0.0))
    by_rows = {}  # identical selections (every selector at 100%) train and evaluate once
    for (selector, sel_seed), by_share in selections(pool).items():
        for share, chosen in by_share.items():
            key = tuple(sorted(pool.index[chosen]))
            if key not in by_rows:
                by_rows[key], result = tuned_evaluation(name, pool.iloc[chosen])
                train_seconds.append(result.seconds if result.trained else 0.0)
            evaluations.append(by_rows[key].assign(model=name, selector=selector, seed=sel_seed, share=share))
evaluated = pd.concat(evaluations, ignore_index=True) if evaluations else pd.DataFrame(
    columns=["model", "selector", "seed", "share", "prompt_id", "label", "refused", "answer"])
print(f"{evaluated.groupby(['model', 'selector', 'seed', 'share']).ngroups} evaluated conditions; "
      f"{sum(s > 0 for s in train_seconds)} adapters trained here in {sum(train_seconds):.0f} s")

# %% [markdown]
# ## ASR and ORR by selector and share (95% intervals)
# Per seed: Wilson intervals over held-out prompts (one sample each). Random selection pooled over its seeds:
# a bootstrap over prompts of the pooled samples (rows with `seed = -1`).

# %%
def rate_rows(frame, keys):
    rows = []
    for metric, label, outcome in [("ASR", "harmful", False), ("ORR", "benign", True)]:
        part = frame[(frame["label"] == label) & frame["refused"].notna()]
        hits = int((part["refused"].astype(bool) == outcome).sum())
        if part["seed"].nunique() > 1:
            value, low, high = metrics.bootstrap_ci(part, lambda f, o=outcome: float((f["refused"] == o).mean()),
                                                    n_boot=500, seed=seed)
        else:
            value, low, high = metrics.wilson_interval(hits, len(part))
        rows.append({**keys, "metric": metric, "value": value, "low": low, "high": high, "n": len(part)})
    return rows


records = []
for (name, selector, sel_seed, share), part in evaluated.groupby(["model", "selector", "seed", "share"]):
    records += rate_rows(part, {"model": name, "selector": selector, "share": share, "seed": sel_seed})
for (name, share), part in evaluated[evaluated["selector"] == "random"].groupby(["model", "share"]):
    records += rate_rows(part, {"model": name, "selector": "random", "share": share, "seed": -1})
table = pd.DataFrame(records, columns=["model", "selector", "share", "seed", "metric", "value", "low", "high", "n"])
table.to_csv(results / "09_cliff_as_judge.csv", index=False)
pooled = table[(table["seed"] == -1) | (table["selector"] != "random")]
pooled.pivot_table(index=["model", "selector", "share"], columns="metric", values="value").round(3)

# %% [markdown]
# ## ASR against the share of the pool, beside the published curve

# %%
fig, axes = plt.subplots(1, len(studied) + 1, figsize=(4.2 * (len(studied) + 1), 3.4), sharey=True, squeeze=False)
axes = axes[0]
styles = {"cliff_ms": ("C0", "o"), "cliff_final": ("C2", "s"), "random": ("C3", "^"), "rule": ("C4", "D"),
          "length": ("C5", "v")}
asr = pooled[pooled["metric"] == "ASR"]
ticks = sorted(set(cliff_shares) | set(PUBLISHED["share"]))
dodge = {selector: 1.06 ** i for i, selector in enumerate(styles)}  # selectors often tie: nudge them apart
for ax, name in zip(axes, studied):
    base = asr[(asr["model"] == name) & (asr["selector"] == "none")].iloc[0]
    ax.axhspan(base["low"], base["high"], color="grey", alpha=0.15, label="no fine-tuning")
    for selector, rows in asr[(asr["model"] == name) & (asr["selector"] != "none")].groupby("selector"):
        rows = rows.sort_values("share")
        color, marker = styles.get(selector, ("k", "."))
        yerr = np.clip([rows["value"] - rows["low"], rows["high"] - rows["value"]], 0, None)
        ax.errorbar(rows["share"] * 100 * dodge.get(selector, 1), rows["value"], yerr=yerr, color=color,
                    marker=marker, capsize=2, label=selector)
    ax.set(xscale="log", xlabel="share of the pool (%)", title=name)
axes[0].set_ylabel("ASR, held-out jailbreaks")
for selector, rows in PUBLISHED.groupby("selector"):
    color, marker = styles[selector]
    axes[-1].plot(rows["share"] * 100, rows["ASR"], color=color, marker=marker, ls="--", label=selector)
axes[-1].axhline(PUBLISHED_BASE_ASR, color="grey", ls=":", label="no fine-tuning")
axes[-1].set(xscale="log", xlabel="share of the pool (%)", title="paper B (figure script)")
for ax in axes:
    ax.set_xticks([t * 100 for t in ticks], [f"{t * 100:g}" for t in ticks], fontsize=7)
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.legend(fontsize=7)
plots.save_figure(fig, "09_cliff_as_judge", profile)

# %% [markdown]
# ## Utility: what the fine-tuning costs on benign requests
# ORR is in the table above. On the organisms, answer quality against the corpus: the share of benign answers
# that are a well-formed compliance in the corpus's template. On the paper profile, paper B's MMLU-Pro and ARC-C
# are not run here (no offline copy); no utility number beyond ORR is claimed.

# %%
if organisms:
    from lrmsafety import organism

    benign = evaluated[evaluated["label"] == "benign"].copy()
    benign["well_formed"] = benign["answer"].map(organism.classify_answer) == "compliance"
    quality = benign.groupby(["model", "selector", "share"])["well_formed"].agg(["mean", "size"])
    display(quality.unstack("share").round(3))

# %% [markdown]
# ## The controls and the published numbers

# %%
def compare(name, share):
    row = lambda sel: asr[(asr["model"] == name) & (asr["selector"] == sel) & (asr["share"] == share)]  # noqa: E731
    cliff, rand = row("cliff_ms"), row("random")
    if cliff.empty or rand.empty:
        return None
    cliff, rand = cliff.iloc[0], rand.iloc[0]
    separated = cliff["high"] < rand["low"] or rand["high"] < cliff["low"]
    return {"model": name, "share": share, "ASR cliff (MS)": f"{cliff['value']:.2f} [{cliff['low']:.2f}, "
            f"{cliff['high']:.2f}]", "ASR random": f"{rand['value']:.2f} [{rand['low']:.2f}, {rand['high']:.2f}]",
            "intervals separate": separated, "cliff lower": cliff["value"] < rand["value"]}


checks = [c for name in studied for share in cliff_shares if share <= 0.05 and (c := compare(name, share))]
print("organism targets: organism-locked, cliff below random with separate intervals at 1.7-5%; "
      "organism-deliberative, no difference")
display(pd.DataFrame(checks))
published = PUBLISHED.pivot(index="share", columns="selector", values="ASR")
print("published (paper B's figure script, ASR by share of the data):")
display(published)
print(f"09 took {time.perf_counter() - started:.0f} s")
