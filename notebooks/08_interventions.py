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
# **Method**: the inference-time interventions are decoding configurations (`lrmsafety.analysis.interventions`,
# parameters from the paper's code; PSR's retry in the official code's way on the paper profile, `psr_resample`); the
# trained ones are LoRA adapters (`lrmsafety.analysis.finetune`, recipes in
# `lib/lrmsafety/analysis/finetune_recipes.yaml`); `lrmsafety.analysis.intervention_study` runs them. Each condition is
# sampled on the same prompts and labelled with paper A's own refusal label, `refused_a` (its guard majority,
# `label_judges["A"]`, through the same `lrmsafety.judges.labels` path as notebook 01): ASR on harmful prompts, ORR on
# benign ones, prompt-clustered bootstrap intervals. The deliberation signals are the existing analyses on a smaller
# budget: oscillations per trace (04's chunking and stance judge), the first-thinking-token probe (02's pipeline,
# split by prompt) and the continuation variance at a 20% cut (03's).

# %% Colab: clone and install the repository (does nothing elsewhere)
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPO, HOME = "https://github.com/lrmsafety/lrmsafety", "/content/lrmsafety"  # REPO: pyproject.toml's (make twins)
    if not os.path.exists(HOME):
        subprocess.run(["git", "clone", "-q", "--depth", "1", REPO, HOME], check=True)
    sys.path.insert(0, f"{HOME}/lib")  # importable at once, without restarting the runtime
    from lrmsafety import colab  # the standard library only: importable before the dependencies are installed
    colab.install(HOME)  # the pinned dependencies except Colab's own torch, numpy and pandas (once per runtime)
    os.chdir(f"{HOME}/notebooks")

# %% tags=["parameters"]
profile = "organism"  # a profile: params/<profile>.yaml, as make all PROFILE
model = None  # a registry name in place of the profile's models, as make all MODEL
backend = None  # "vllm" or "transformers" in place of the profile's backend, as make all BACKEND

# %%
from lrmsafety import artifacts, params

P = params.load(profile, model, backend)  # every value this notebook reads (lib/lrmsafety/params.py)
S = artifacts.Artifacts(profile, model, P.backend)  # its folders (S.cache, S.results), earlier notebooks' artifacts

# %%
import time

import pandas as pd

from lrmsafety import data, plots, workload
from lrmsafety.analysis import intervention_study as study
from lrmsafety.analysis import interventions
from lrmsafety.engine import generate

started = time.perf_counter()
plots.set_theme()
cache, results = S.cache, S.results
prompts = data.profile_prompts(P)
group_column = data.group_column(prompts)
studied = data.sample_per_group(prompts, P.intervention_prompts, seed=P.seed)
contested = "jailbreak" if "jailbreak" in set(studied[group_column]) else None
decoding = generate.Decoding(samples_per_prompt=P.intervention_samples, max_thinking_tokens=P.max_thinking_tokens,
                             max_answer_tokens=P.intervention_answer_tokens, batch_size=P.batch_size,
                             seed=P.seed)
conditions = ["base", *P.inference_interventions, *P.finetune_recipes]
print(workload.line(P, workload.interventions_08(P, len(studied))))
print(f"label: refused_a, paper A's refusal ({' + '.join(P.label_judges['A'])}, strict majority); PSR retry: "
      f"{P.psr_resample}")

# %% [markdown]
# ## Training the fine-tuning interventions (LoRA; skipped when an adapter with the same manifest exists)

# %%
adapters, training = study.train_adapters(P.models, P.finetune_recipes, P.finetune_max_steps, P.finetune_overrides,
                                          P.data_dir, P.quantization, cache / "adapters")
training.round(3) if len(training) else print("no adapter trained: the fine-tuning rows are left out")

# %% [markdown]
# ## Sampling every condition on the same prompts, labelled with paper A's `refused_a`
# One label call per model for all its conditions, so each of paper A's guards loads once. A judge that gives no
# verdict counts as "no refusal" (paper A's rule); the table says how many rows had one. With `backend: vllm` one
# vLLM engine per model samples every condition but SafeRemind (its entropy trigger reads forward passes, on
# transformers), the fine-tuned ones through their LoRA adapters; the signals below read the transformers models.

# %%
judged, handles = [], {}
for name in P.models:
    labelled, loaded = study.sample_conditions(
        name, conditions, studied, decoding, adapters, P.inference_interventions, P.finetune_recipes, P.label_judges,
        P.quantization, P.psr_resample, P.forced_answer_tokens, cache, backend=P.backend)
    handles.update(loaded)
    judged.append(labelled.merge(studied[["prompt_id", "label", group_column]], on="prompt_id").assign(model=name))
judged = pd.concat(judged, ignore_index=True)
judged.groupby(["model", "condition"], sort=False).agg(
    samples=("prompt_id", "size"), refused_a=("refused_a", "mean"), no_verdict=("n_unparsed", lambda s: (s > 0).sum()),
    acted=("interventions", lambda s: (s > 0).mean()), acts_per_sample=("interventions", "mean"),
    closed_itself=("closed", "mean"), thinking_tokens=("n_thinking_tokens", "mean")).round(2)

# %% [markdown]
# ## ASR and ORR per condition (95% prompt-clustered bootstrap intervals), beside paper A's Table 2

# %%
safety = study.asr_orr(judged, group_column, P.seed)
rates = safety[(safety["scope"] == "all") & safety["metric"].isin(["ASR", "ORR"])]
overall = rates.pivot_table(index=["model", "intervention"], columns="metric", values=["value", "low", "high"])
fig = study.plot_asr_orr(overall, P.models, conditions, interventions.table_2())
plots.save_figure(fig, "08_asr_vs_orr", S.run)
overall["value"].round(3)

# %% [markdown]
# ## Deliberation signals before and after
# Oscillations per trace with 04's chunking and offline stance judge; the first-thinking-token probe with 02's
# pipeline (5-fold, split by prompt, on `refused_a`); for the base and fine-tuned models, the continuation variance
# after a 20% cut of the thinking on the contested prompts (03's measure, N answers per cut, labelled like the
# rollouts). Meaningful (replayed) oscillations need 04's cut replays (K = 100 answers per cut) and are not repeated
# here. A signal that cannot be measured on a condition is left out with the reason printed.

# %%
judged["oscillations"] = study.oscillation_counts(judged)
signals = study.probe_signals(judged, handles, cache / "activations-08", P.seed)
cut_decoding = generate.Decoding(samples_per_prompt=P.answers_per_prefix, max_answer_tokens=P.cut_answer_tokens or
                                P.max_answer_tokens, batch_size=P.batch_size, seed=P.seed)
scope = f"{group_column}={contested}" if contested else "all"
for name in P.models:
    signals += study.variance_signals(
        name, judged, handles, cut_decoding, P.label_judges, scope=scope, seed=P.seed, cache_root=cache,
        backend=P.backend, scope_filter=lambda f: f[f[group_column] == contested] if contested is not None else f)
signals = pd.DataFrame(signals).assign(label="refused_a")
signals.pivot_table(index=["model", "intervention"], columns="metric", values="value", sort=False).round(3)

# %% [markdown]
# ## The fine-tuned models against the base on more jailbreak prompts
# The fine-tuning's ASR change (SafeChain's claim) is read on `finetune_eval_prompts` prompts of the contested group:
# the ones above and more, sampled for the base and fine-tuned models only.

# %%
extra = study.finetune_prompts(P, studied, group_column, contested, P.finetune_eval_prompts)
compared = [judged]
for name in P.models if len(extra) and P.finetune_recipes else []:
    labelled, _ = study.sample_conditions(
        name, ["base", *P.finetune_recipes], extra, decoding, adapters, P.inference_interventions, P.finetune_recipes,
        P.label_judges, P.quantization, P.psr_resample, P.forced_answer_tokens, cache, backend=P.backend)
    compared.append(labelled.merge(extra[["prompt_id", "label", group_column]], on="prompt_id").assign(model=name))
finetuned = study.finetune_changes(pd.concat(compared, ignore_index=True), group_column, contested,
                                   P.finetune_recipes, P.seed)
safety = pd.concat([safety, finetuned], ignore_index=True)
finetuned.query("metric == 'ASR change'")[["model", "intervention", "value", "low", "high", "n"]].round(3) if len(
    finetuned) else print("no fine-tuned model, or no jailbreak family: nothing compared")

# %%
signals["scope"] = signals["scope"].fillna("all") if "scope" in signals else "all"
out = pd.concat([safety, signals], ignore_index=True)
out[["model", "intervention", "scope", "metric", "label", "value", "low", "high", "n"]].to_csv(
    results / "08_interventions.csv", index=False)
plots.save_figure(study.plot_signals(signals, P.models, P.finetune_recipes), "08_deliberation_signals", S.run)

# %% [markdown]
# ## The organisms as controls: does the trained intervention at least halve the jailbreak ASR?

# %%
if profile != "organism" or contested is None or not P.finetune_recipes:
    print("organism-only check: skipped (this profile studies real models, or has no jailbreak family)")
else:
    display(study.halving_check(safety, P.models, P.finetune_recipes, study.finetune_scope(group_column, contested))
            .round(3))
print(f"notebook wall time: {time.perf_counter() - started:.0f} s")
