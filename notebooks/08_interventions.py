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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/08_interventions.ipynb)
#
# # 08 · Paper A: safety interventions trade attack success for over-refusal
#
# **Claim** (Ri, Panigrahi, Arora, Table 2; secondary source): interventions meant to make a reasoning model
# deliberate about safety move it along an ASR–ORR trade-off rather than below it. Inference-time interventions
# (SafePath-ZS, SafeRemind, PSR) and safety fine-tuning (STAR-1, R1-ACT, "ThinkSafe" = SFT on SafeChain data) lower
# the attack success rate mostly by refusing more benign requests, and they suppress the deliberation signals:
# off-policy SFT lowers the first-thinking-token probe's AUROC by about 0.11, and PSR cuts oscillations by 93–95%
# on Phi-4-reasoning.
#
# **Method**: the inference-time interventions are decoding configurations (`lrmsafety.analysis.interventions`, parameters
# from the paper's code; PSR's retry in the official code's way on the paper profile, `psr_resample`); the trained
# ones are LoRA adapters (`lrmsafety.analysis.finetune`, recipes in `lib/lrmsafety/analysis/finetune_recipes.yaml`). Each condition is
# sampled on the same prompts and labelled with paper A's own refusal label, `refused_a` (its guard majority,
# `label_judges["A"]`, through the same `lrmsafety.judges.labels` path as notebook 01): ASR on harmful prompts, ORR on
# benign ones, prompt-clustered bootstrap intervals. The deliberation signals are the existing analyses on a smaller
# budget: oscillations per trace (04's chunking and stance judge), the first-thinking-token probe (02's pipeline,
# split by prompt) and the continuation variance at a 20% cut (03's).

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
profile = "organism"  # a params/<profile>.yaml (make all PROFILE=...)
model = None  # one registry name in place of the profile's models (make all MODEL=...)

# %%
from lrmsafety import params

P = params.load(profile, model)  # every value this notebook reads (lib/lrmsafety/params.py)

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd

from lrmsafety import data, metrics, paths, plots, registry
from lrmsafety.analysis import deliberation, finetune, interventions
from lrmsafety.engine import generate

from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # one "Loading weights" bar per condition otherwise
started = time.perf_counter()
plots.set_theme()
cache = paths.CACHE_DIR / profile
results = paths.RESULTS_DIR / profile
results.mkdir(parents=True, exist_ok=True)
prompts = data.load_prompt_sets(P.prompt_sets, n_prompts=P.n_prompts, data_dir=P.data_dir, seed=P.seed)
group_column = data.group_column(prompts)
studied = data.sample_per_group(prompts, P.intervention_prompts, seed=P.seed)
contested = "jailbreak" if "jailbreak" in set(studied[group_column]) else None
decoding = generate.Decoding(samples_per_prompt=P.intervention_samples, max_thinking_tokens=P.max_thinking_tokens,
                             max_answer_tokens=P.intervention_answer_tokens, batch_size=P.batch_size,
                             seed=P.seed)
conditions = ["base", *P.inference_interventions, *P.finetune_recipes]
n_samples = len(studied) * P.intervention_samples * len(conditions) * len(P.models)
tokens = n_samples * (P.max_thinking_tokens + decoding.max_answer_tokens)
print(f"{len(studied)} prompts x {P.intervention_samples} samples x {len(conditions)} conditions x {len(P.models)} models:"
      f" at most {tokens:,} generated tokens (about {tokens / P.gpu_tokens_per_second / 3600:.1f} GPU hours at "
      f"{P.gpu_tokens_per_second} tokens/s), plus training and the 20% cuts")
print(f"label: refused_a, paper A's refusal ({' + '.join(P.label_judges['A'])}, strict majority); PSR retry: "
      f"{P.psr_resample}")
# Table 2 (ASR / ORR %, secondary source); keys are the registry names of paper A's models
PUBLISHED = pd.DataFrame(
    [(m, c, a, o) for m, rows in {
        "qwen3-8b": [("base", 86.9, 6.0), ("psr", 86.9, 6.1), ("saferemind", 80.8, 11.0), ("safepath", 68.2, 13.5),
                     ("star1", 41.0, 45.5), ("r1act", 57.0, 37.8), ("thinksafe", 30.9, 44.6)],
        "olmo-3-7b-think": [("base", 70.6, 21.2), ("psr", 38.0, 43.5), ("saferemind", 32.5, 44.9),
                            ("safepath", 30.7, 49.1), ("star1", 39.2, 49.8), ("r1act", 85.4, 27.7),
                            ("thinksafe", 46.7, 38.4)],
        "phi-4-reasoning": [("base", 47.3, 38.5), ("psr", 32.7, 70.6), ("saferemind", 33.3, 70.4),
                            ("safepath", 31.9, 71.9), ("star1", 35.8, 45.3), ("r1act", 53.5, 39.2),
                            ("thinksafe", 40.8, 40.8)],
        "gpt-oss-20b": [("base", 26.5, 44.9), ("psr", 29.8, 42.7), ("saferemind", 21.3, 49.2),
                        ("safepath", 22.5, 48.8), ("star1", 71.7, 14.8), ("r1act", 54.6, 46.7),
                        ("thinksafe", 18.8, 52.3)]}.items() for c, a, o in rows],
    columns=["model", "condition", "ASR", "ORR"])

# %% [markdown]
# ## Training the fine-tuning interventions (LoRA; skipped when an adapter with the same manifest exists)

# %%
adapters, training = {}, []
for name in P.models:
    for recipe_name in P.finetune_recipes:
        recipe = finetune.get_recipe(recipe_name).replace(max_steps=P.finetune_max_steps, **P.finetune_overrides)
        try:
            sft = finetune.load_sft_data(recipe.data, n=recipe.examples, seed=recipe.seed, data_dir=P.data_dir)
        except finetune.SFTDataUnavailable as err:
            print(f"{name} / {recipe_name}: not trained, its data is not available here: {err}")
            continue
        if sft.empty:
            print(f"{name} / {recipe_name}: not trained, no examples to train on")
            continue
        model, tokenizer, spec = registry.load_model(name, quantization=P.quantization)
        pairs = finetune.prompt_completion_pairs(sft, tokenizer, spec.thinking_format)
        result = finetune.train_adapter(model, tokenizer, spec, pairs, recipe, cache / "adapters")
        adapters[(name, recipe_name)] = result.path
        losses = [loss for _, loss in result.losses]
        training.append({"model": name, "recipe": recipe_name, "examples": len(pairs),
                         "learning rate": f"{recipe.learning_rate:g}", "steps": result.manifest.get("steps"),
                         "first loss": losses[0] if losses else None, "last loss": losses[-1] if losses else None,
                         "train seconds": round(result.seconds, 1), "cached": not result.trained})
        del model
pd.DataFrame(training).round(3) if training else print("no adapter trained: the fine-tuning rows are left out")

# %% [markdown]
# ## Sampling every condition on the same prompts, labelled with paper A's `refused_a`
# One label call per model for all its conditions, so each of paper A's guards loads once. A judge that gives no
# verdict counts as "no refusal" (paper A's rule); the table says how many rows had one.

# %%
def load_condition(name, condition):
    if condition in P.finetune_recipes:
        return finetune.load_adapted(name, adapters[(name, condition)], quantization=P.quantization)
    return registry.load_model(name, quantization=P.quantization)


judged, handles = [], {}
for name in P.models:
    frames = {}
    for condition in conditions:
        if condition in P.finetune_recipes and (name, condition) not in adapters:
            continue
        model, tokenizer, spec = load_condition(name, condition)
        iv = interventions.Intervention(condition if condition in P.inference_interventions else "none",
                                        psr_resample=P.psr_resample,
                                        forced_answer_tokens=P.forced_answer_tokens)
        frames[condition] = interventions.run(model, tokenizer, spec, studied, decoding, iv, cache_root=cache)
        if condition == "base" or condition in P.finetune_recipes:
            handles[(name, condition)] = (model, tokenizer, spec)
        else:
            del model
    labelled = interventions.label_conditions(frames, P.label_judges, registry.get_spec(name).thinking_format,
                                              cache_root=cache)
    judged.append(labelled.merge(studied[["prompt_id", "label", group_column]], on="prompt_id").assign(model=name))
judged = pd.concat(judged, ignore_index=True)
judged.groupby(["model", "condition"], sort=False).agg(
    samples=("prompt_id", "size"), refused_a=("refused_a", "mean"), no_verdict=("n_unparsed", lambda s: (s > 0).sum()),
    acted=("interventions", lambda s: (s > 0).mean()), acts_per_sample=("interventions", "mean"),
    closed_itself=("closed", "mean"), thinking_tokens=("n_thinking_tokens", "mean")).round(2)

# %% [markdown]
# ## ASR and ORR per condition (95% prompt-clustered bootstrap intervals)

# %%
by = ["model", "condition"]
scored = judged.assign(refused=judged["refused_a"])  # metrics.safety_table reads `refused`: here paper A's label
safety = pd.concat([metrics.safety_table(scored, by=by, kind="asr_orr", seed=P.seed).assign(scope="all"),
                    metrics.safety_table(scored, by=[*by, group_column], kind="asr_orr", seed=P.seed).assign(
                        scope=lambda f: group_column + "=" + f[group_column].astype(str))], ignore_index=True)
safety = safety.rename(columns={"condition": "intervention"}).assign(
    n=lambda f: f["n_samples"] - f["n_unjudged"], label="refused_a")
overall = safety[safety["scope"] == "all"].pivot_table(index=["model", "intervention"], columns="metric",
                                                       values=["value", "low", "high"])
overall["value"].round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True)
every = list(dict.fromkeys([*conditions, *PUBLISHED["condition"]]))
markers = dict(zip(every, "osD^vPX*ph<>"))
for color, name in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], P.models):
    for condition in conditions:
        if (name, condition) not in overall.index:
            continue
        r = overall.loc[(name, condition)]
        x, y = 100 * r["value"]["ORR"], 100 * r["value"]["ASR"]
        axes[0].errorbar(x, y, xerr=[[x - 100 * r["low"]["ORR"]], [100 * r["high"]["ORR"] - x]],
                         yerr=[[y - 100 * r["low"]["ASR"]], [100 * r["high"]["ASR"] - y]], fmt=markers[condition],
                         color=color, ms=7, capsize=2, label=name if condition == "base" else None)
for color, (model_name, part) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"][len(P.models):],
                                     PUBLISHED.groupby("model")):
    for r in part.itertuples():
        axes[1].scatter(r.ORR, r.ASR, marker=markers[r.condition], color=color, s=30,
                        label=model_name if r.condition == "base" else None)
axes[0].set(title="ours (this profile, refused_a; bars: 95% CI)", xlabel="ORR, benign prompts (%)",
            ylabel="ASR, harmful prompts (%)", xlim=(-3, 103), ylim=(-3, 103))
axes[1].set(title="paper A, Table 2 (secondary source)", xlabel="ORR (%)")
for ax in axes:
    ax.legend(fontsize=7, loc="upper right", title="model (colour)", title_fontsize=7)
fig.legend([plt.Line2D([], [], marker=markers[c], color="black", ls="") for c in every], every, fontsize=7,
           loc="lower center", ncol=len(every), title="condition (marker)", title_fontsize=7,
           bbox_to_anchor=(0.5, -0.12))
plots.save_figure(fig, "08_asr_vs_orr", profile)

# %% [markdown]
# ## Deliberation signals before and after
# Oscillations per trace with 04's chunking and offline stance judge; the first-thinking-token probe with 02's
# pipeline (5-fold, split by prompt, on `refused_a`); for the base and fine-tuned models, the continuation variance
# after a 20% cut of the thinking on the contested prompts (03's measure, N answers per cut, labelled like the
# rollouts). Meaningful (replayed) oscillations need 04's cut replays (K = 100 answers per cut) and are not repeated
# here. A signal that cannot be measured on a condition is left out with the reason printed.

# %%
stance_judge = deliberation.CuePhraseStanceJudge()


def oscillation_counts(frame):
    counts = [deliberation.oscillations(stance_judge.label(p, deliberation.chunk_thinking(t))).count
              for p, t in zip(frame["prompt"], frame["thinking"])]
    return pd.Series(counts, index=frame.index, dtype="float")


signals = []
judged["oscillations"] = oscillation_counts(judged)
for (name, condition), frame in judged.groupby(["model", "condition"], sort=False):
    counted = frame[["prompt_id", "oscillations"]].dropna()
    mean, low, high = metrics.bootstrap_ci(counted, lambda f: f["oscillations"].mean(), n_boot=500, seed=P.seed)
    signals.append({"model": name, "intervention": condition, "metric": "oscillations_per_trace", "value": mean,
                    "low": low, "high": high, "n": len(counted)})
    if (name, condition) in handles:
        probe = interventions.first_token_auroc(*handles[(name, condition)], frame, cache / "activations-08")
        if isinstance(probe, str):
            print(f"{name} / {condition}: no first-token probe AUROC: {probe}")
            continue
        signals.append({"model": name, "intervention": condition, "metric": "first_token_auroc",
                        "value": probe["auroc"], "low": probe["auroc_lo"], "high": probe["auroc_hi"], "n": probe["n"]})

# %%
cut_decoding = generate.Decoding(samples_per_prompt=P.answers_per_prefix, max_answer_tokens=P.cut_answer_tokens or
                                P.max_answer_tokens, batch_size=P.batch_size, seed=P.seed)
scope = f"{group_column}={contested}" if contested else "all"
for name in P.models:
    cuts = {}
    for condition in [c for m, c in handles if m == name]:
        frame = judged[(judged["model"] == name) & (judged["condition"] == condition)]
        frame = frame[frame[group_column] == contested] if contested is not None else frame
        if (frame["closed"].astype(bool) & (frame["n_thinking_tokens"] > 0)).any():
            cuts[condition] = interventions.cut_answers(*handles[(name, condition)], frame, 20, cut_decoding, cache)
        else:  # paper A cuts a thinking counted up to the model's own close
            print(f"{name} / {condition}: no continuation variance: no trace closed its thinking itself")
    if not cuts:
        continue
    labelled = interventions.label_conditions(cuts, P.label_judges, registry.get_spec(name).thinking_format,
                                              cache_root=cache)
    for condition, part in labelled.groupby("condition", sort=False):
        q = part.groupby("prompt_id")["refused_a"].mean()  # per cut trace: the share of refusing answers
        per_prefix = pd.DataFrame({"prompt_id": q.index.str.split("#").str[0], "v": 4 * q * (1 - q)})
        value, low, high = metrics.bootstrap_ci(per_prefix, lambda f: f["v"].mean(), n_boot=500, seed=P.seed)
        signals.append({"model": name, "intervention": condition, "metric": "continuation_variance_at_20",
                        "value": value, "low": low, "high": high, "n": len(per_prefix), "scope": scope})
signals = pd.DataFrame(signals).assign(label="refused_a")
signals.pivot_table(index=["model", "intervention"], columns="metric", values="value", sort=False).round(3)

# %%
signals["scope"] = signals["scope"].fillna("all") if "scope" in signals else "all"
out = pd.concat([safety, signals], ignore_index=True)
out[["model", "intervention", "scope", "metric", "label", "value", "low", "high", "n"]].to_csv(
    results / "08_interventions.csv", index=False)
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
for ax, metric in zip(axes, ["oscillations_per_trace", "first_token_auroc", "continuation_variance_at_20"]):
    part = signals[signals["metric"] == metric].reset_index(drop=True)
    labels = [f"{m.replace('organism-', '')} · {c}" for m, c in zip(part["model"], part["intervention"])]
    ax.bar(range(len(part)), part["value"], yerr=[part["value"] - part["low"], part["high"] - part["value"]],
           color=[f"C{P.models.index(m)}" for m in part["model"]], capsize=2)
    ax.set_xticks(range(len(part)), labels, fontsize=6, rotation=60, ha="right")
    ax.set_title(metric.replace("_", " ") + ("" if len(part) else " (not measured here)"), fontsize=9)
fig.suptitle("Deliberation signals per condition (published: SFT lowers the AUROC by ~0.11; PSR cuts oscillations "
             "93–95% on Phi-4-R)", fontsize=8)
plots.save_figure(fig, "08_deliberation_signals", profile)

# %% [markdown]
# ## The organisms as controls: does the trained intervention at least halve the jailbreak ASR?

# %%
if profile != "organism" or contested is None or not P.finetune_recipes:
    print("organism-only check: skipped (this profile studies real models, or has no jailbreak family)")
else:
    jb = safety[(safety["scope"] == f"{group_column}={contested}") & (safety["metric"] == "ASR")]
    checks = []
    for name in P.models:
        base = jb[(jb["model"] == name) & (jb["intervention"] == "base")]
        for recipe_name in P.finetune_recipes:
            tuned = jb[(jb["model"] == name) & (jb["intervention"] == recipe_name)]
            if base.empty or tuned.empty:
                continue
            orr = safety[(safety["model"] == name) & (safety["scope"] == "all") & (safety["metric"] == "ORR")]
            checks.append({"model": name, "recipe": recipe_name, "jailbreak ASR base": base["value"].iloc[0],
                           "jailbreak ASR tuned": tuned["value"].iloc[0],
                           "halved": tuned["value"].iloc[0] <= base["value"].iloc[0] / 2,
                           "ORR base": orr[orr["intervention"] == "base"]["value"].iloc[0],
                           "ORR tuned": orr[orr["intervention"] == recipe_name]["value"].iloc[0]})
    display(pd.DataFrame(checks).round(3))
print(f"notebook wall time: {time.perf_counter() - started:.0f} s")
