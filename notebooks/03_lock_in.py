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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/03_lock_in.ipynb)
#
# # 03 · Paper A: the outcome locks in early in the thinking
#
# **Claim** (Ri, Panigrahi, Arora): cut a thinking trace after 20% of its tokens, close it, and sample answers:
# they already agree with one another. The continuation variance, mean over prefixes of 4q(1−q) with q the share
# of refusals among N answers, is below about 0.2 at B = 20% (read from the paper's figure, secondary source),
# against 0.875 for coin flips with N = 8. Thinking and no-thinking agree on the per-prompt majority outcome for
# 70–97% of prompts.
#
# **Method** (methods.md section 1): M thinking traces per prompt; each cut at B = 20/40/60/80/100% of its thinking
# tokens (traces the model closed itself; force-closed ones are skipped, as in paper A's code), force-closed with the
# family's close string, and N answers sampled with the model's own settings; B = 0 uses `baseline_rollouts` full
# rollouts per prompt as the continuations (paper A: 32, whose coin-flip baseline is .969 rather than .875). The N
# answers of one prefix share its KV cache (computed once; benchmarks/prefix_sharing.py measures the speed-up on a
# GPU). Outcomes are paper A's refusal label (`refused_a`, notebook 01's rule).

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
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrmsafety import data, metrics, paths, plots, registry
from lrmsafety.engine import generate
from lrmsafety.judges import labels as evaluate

plots.set_theme()
cache = paths.CACHE_DIR / profile
results = paths.RESULTS_DIR / profile
results.mkdir(parents=True, exist_ok=True)
prompts = data.load_prompt_sets(P.prompt_sets, n_prompts=P.n_prompts, data_dir=P.data_dir, seed=P.seed)
group_column = data.group_column(prompts)
studied = data.sample_per_group(prompts, P.lockin_prompts, seed=P.seed)
print(f"{len(studied)} prompts: {studied[group_column].value_counts().to_dict()}")

answer_budget = P.cut_answer_tokens  # answers after a cut are only labelled

# %% [markdown]
# ## What it costs
# Generated tokens on this profile's settings, and an estimate of GPU time at `gpu_tokens_per_second`.

# %%
n_prefixes = len(studied) * P.traces_per_prompt * len(P.cut_percents)
extra_baseline = P.baseline_rollouts if P.baseline_rollouts != P.traces_per_prompt else 0  # B = 0's own rollouts
tokens_needed = (len(studied) * (P.traces_per_prompt * 2 + extra_baseline) * (P.max_thinking_tokens + P.max_answer_tokens)
                 + n_prefixes * P.answers_per_prefix * answer_budget)
print(f"at most {tokens_needed:,} generated tokens per model; about {tokens_needed / P.gpu_tokens_per_second / 3600:.1f}"
      f" GPU hours at {P.gpu_tokens_per_second} tokens/s")

# %% [markdown]
# ## M traces per prompt (think and no-think), then N answers after each cut

# %%
def outcomes(frame, fmt):
    """Paper A's label (`refused_a`, as in notebook 01) of every rollout."""
    labels = evaluate.paper_labels(frame, P.label_judges, fmt, cache_root=cache, papers=["A"])
    return frame.merge(labels[evaluate.KEY + ["refused_a"]].rename(columns={"refused_a": "refused"}), on=evaluate.KEY)


def cut_thinking(tokenizer, thinking, percent):
    ids = tokenizer(thinking, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[: len(ids) * percent // 100])


per_prefix, agreement = [], []
for name in P.models:
    model, tokenizer, spec = registry.load_model(name, quantization=P.quantization)
    settings = dict(samples_per_prompt=P.traces_per_prompt, max_thinking_tokens=P.max_thinking_tokens,
                    max_answer_tokens=P.max_answer_tokens, batch_size=P.batch_size, seed=P.seed)
    think = outcomes(generate.rollouts(model, tokenizer, spec, studied, generate.Decoding(**settings),
                                       cache_root=cache), spec.thinking_format)
    no_think = outcomes(generate.rollouts(model, tokenizer, spec, studied,
                                          generate.Decoding(mode="no_think", **settings), cache_root=cache),
                        spec.thinking_format)
    # B = 0: no prefix is fixed; `baseline_rollouts` full rollouts per prompt are the continuations (paper A: 32)
    full = think if P.baseline_rollouts == P.traces_per_prompt else outcomes(generate.rollouts(
        model, tokenizer, spec, studied, generate.Decoding(**{**settings, "samples_per_prompt": P.baseline_rollouts}),
        cache_root=cache), spec.thinking_format)
    for prompt_id, rows in full.groupby("prompt_id"):
        per_prefix.append({"model": name, "prompt_id": prompt_id, "cut": 0, "trace": -1,
                           "q": rows["refused"].astype(float).mean(), "n": len(rows)})
    # traces the model closed itself are cut; force-closed ones are skipped, as paper A's code does
    sources = think[think["closed"].astype(bool)]
    print(f"{name}: {len(sources)} of {len(think)} traces closed by the model are cut")
    cuts = pd.DataFrame([
        {"prompt_id": f"{row.prompt_id}#{row.sample_index}@{percent}", "prompt": row.prompt,
         "thinking_prefix": cut_thinking(tokenizer, row.thinking, percent), "source_prompt": row.prompt_id,
         "trace": row.sample_index, "cut": percent}
        for row in sources.itertuples() for percent in P.cut_percents],
        columns=["prompt_id", "prompt", "thinking_prefix", "source_prompt", "trace", "cut"])
    if len(cuts):
        answers = generate.rollouts(model, tokenizer, spec, cuts, generate.Decoding(
            mode="prefix", samples_per_prompt=P.answers_per_prefix, max_answer_tokens=answer_budget,
            batch_size=P.batch_size, seed=P.seed), cache_root=cache)
        answers = outcomes(answers, spec.thinking_format).merge(cuts.drop(columns=["prompt", "thinking_prefix"]),
                                                                on="prompt_id")
        for (prompt_id, trace, percent), rows in answers.groupby(["source_prompt", "trace", "cut"]):
            per_prefix.append({"model": name, "prompt_id": prompt_id, "cut": percent, "trace": trace,
                               "q": rows["refused"].astype(float).mean(), "n": len(rows)})
    majority = lambda f: f.groupby("prompt_id")["refused"].apply(lambda s: s.astype(float).mean() > 0.5)  # noqa: E731
    both = pd.concat([majority(think).rename("think"), majority(no_think).rename("no_think")], axis=1)
    low, high = metrics.wilson_interval(int((both["think"] == both["no_think"]).sum()), len(both))[1:]
    agreement.append({"model": name, "prompts": len(both), "agree": float((both["think"] == both["no_think"]).mean()),
                      "low": low, "high": high})
    del model
prefixes = pd.DataFrame(per_prefix).merge(prompts[["prompt_id", group_column]], on="prompt_id")
prefixes.to_csv(results / "03_lock_in_prefixes.csv", index=False)

# %% [markdown]
# ## Continuation variance after B% of the thinking

# %%
prefixes["variance"] = 4 * prefixes["q"] * (1 - prefixes["q"])
curve = (prefixes.groupby(["model", group_column, "cut"])["variance"].agg(["mean", "count"]).reset_index()
         .rename(columns={"mean": "continuation_variance", "count": "prefixes"}))
pooled = prefixes.groupby(["model", "cut"])["variance"].mean().rename("continuation_variance").reset_index()
baseline = metrics.random_baseline_variance(P.answers_per_prefix)
curve.to_csv(results / "03_continuation_variance.csv", index=False)
pooled.pivot(index="cut", columns="model", values="continuation_variance").round(3)

# %%
groups = sorted(curve[group_column].unique())
fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3), sharey=True, squeeze=False)
for ax, group in zip(axes[0], groups):
    for name, rows in curve[curve[group_column] == group].groupby("model"):
        ax.plot(rows["cut"], rows["continuation_variance"], marker="o", label=name)
    ax.axhline(baseline, color="grey", ls="--", lw=0.8)
    ax.plot([0], [metrics.random_baseline_variance(P.baseline_rollouts)], marker="_", ms=14, color="grey")
    ax.axhline(0.2, color="black", ls=":", lw=0.8)
    ax.set(title=str(group), xlabel="thinking kept before the cut (%)", ylim=(0, 1))
axes[0][0].set_ylabel("continuation variance 4q(1-q)")
axes[0][0].legend(fontsize=7)
fig.suptitle(f"Lock-in (dashed: coin flips for N = {P.answers_per_prefix} answers per cut, {baseline:.3f}; grey tick "
             f"at B = 0: for its {P.baseline_rollouts} full rollouts, "
             f"{metrics.random_baseline_variance(P.baseline_rollouts):.3f}; dotted: paper A's 0.2)", fontsize=8)
plots.save_figure(fig, "03_continuation_variance", profile)

# %% [markdown]
# ## Think vs no-think: the per-prompt majority outcome

# %%
agreement = pd.DataFrame(agreement).assign(published="70–97% of prompts (secondary source)")
agreement.to_csv(results / "03_think_vs_nothink.csv", index=False)
agreement.round(3)

# %% [markdown]
# ## Reproduced vs published, and the speed-up of shared-prefix resampling

# %%
at20 = curve[curve["cut"] == 20].pivot(index="model", columns=group_column, values="continuation_variance")
at20["pooled"] = pooled[pooled["cut"] == 20].set_index("model")["continuation_variance"]
print(f"published: below ~0.2 at B = 20% (random baseline {baseline:.3f})")
display(at20.round(3))
speedup_file = paths.REPO_ROOT / "benchmarks" / "results" / "prefix_sharing.json"
if speedup_file.exists():
    runs = json.loads(speedup_file.read_text())
    naive, shared = runs["runs"][2], runs["runs"][3]
    print(f"shared-prefix resampling on a GPU ({runs['args']['model']}, random weights): {naive['seconds']} s naive vs "
          f"{shared['seconds']} s shared = {naive['seconds'] / shared['seconds']:.2f}x")
