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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/07_thinking_budget.ipynb)
#
# # 07 · SafeChain: does thinking less (or more) make a reasoning model safer?
#
# **Claim** (SafeChain, Jiang et al. 2025, methods.md section 3): controlling the length of the thinking changes
# safety. *ZeroThink* (the thinking closed at once) gives the best safety; *MoreThink* (budget forcing: "Wait" or
# "Let me think again" replaces the close, up to 10 times) and *LessThink* (one fixed sentence) also beat the
# default. The paper reports this direction on StrongREJECT and WildJailbreak for R1 distills (its tables' values
# were not available to us: only the direction is compared).
#
# **Method**: the same harmful prompts, K samples each, under four decoding configurations with SafeChain's exact
# strings; each sample judged; Safe@1, Safe@K, ConsSafe@K with 95% bootstrap intervals, and the tokens spent.

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
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lrmsafety import data, metrics, plots, registry, workload
from lrmsafety.engine import generate, parallel
from lrmsafety.judges import labels

plots.set_theme()
cache, results = S.cache, S.results
prompts = data.profile_prompts(P)
harmful = data.harmful_sample(prompts, P.budget_prompts, seed=P.seed)
print(workload.line(P, workload.budgets_07(P, len(harmful))))  # GPU time at the measured rates (lrmsafety.rates)

# %% [markdown]
# ## Rollouts under each thinking budget
# `natural` is the default decoding and is read from notebook 01's cache when the settings match.

# %%
MODES = ["natural", "zerothink", "lessthink", "morethink"]
frames = []
for name in P.models:
    spec = registry.get_spec(name)
    decodings = [generate.Decoding(mode=mode, samples_per_prompt=P.samples_per_prompt,
                                   max_thinking_tokens=P.budget_thinking_tokens,
                                   max_answer_tokens=P.budget_answer_tokens, batch_size=P.batch_size, seed=P.seed,
                                   morethink_extensions=P.morethink_extensions if mode == "morethink" else 10)
                 for mode in MODES]
    # one load for the four budgets, on P.gpus GPUs (make all GPUS=2); freed before the label's guard model loads
    generated = dict(zip(MODES, parallel.rollouts(name, harmful, decodings, cache, backend=P.backend,
                                                  quantization=P.quantization, kv_tokens=P.kv_tokens, gpus=P.gpus)))
    for mode, rollouts in generated.items():
        verdict = labels.paper_labels(rollouts, P.label_judges, spec.thinking_format, cache_root=cache,
                                      papers=["C"], backend=P.backend, gpus=P.gpus)
        frame = rollouts.merge(verdict[labels.KEY + ["unsafe_c", "safe"]], on=labels.KEY)
        frames.append(frame.assign(model=name, mode=mode))
samples = pd.concat(frames, ignore_index=True)

# %% [markdown]
# ## Safe@1, Safe@K, ConsSafe@K and tokens spent

# %%
table = metrics.safety_table(samples, by=["model", "mode"], kind="safechain", seed=P.seed)
tokens = samples.groupby(["model", "mode"]).agg(thinking_tokens=("n_thinking_tokens", "mean"),
                                                answer_tokens=("n_answer_tokens", "mean")).reset_index()
table = table.merge(tokens, on=["model", "mode"])
# each mode against the default decoding on the same prompts ("Safe@1 change", ...; a paired bootstrap interval)
changes = metrics.safety_differences(samples, by=["model"], condition="mode", baseline="natural", kind="safechain",
                                     seed=P.seed)
pd.concat([table, changes], ignore_index=True).to_csv(results / "07_thinking_budget.csv", index=False)
wide = table.pivot_table(index=["model", "mode"], columns="metric", values="value").reindex(MODES, level=1)
wide.join(tokens.set_index(["model", "mode"])).round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [3, 2]})
safe1 = table[table["metric"] == "Safe@1"]
for i, name in enumerate(P.models):
    rows = safe1[safe1["model"] == name].set_index("mode").reindex(MODES)
    x = [j + (i - (len(P.models) - 1) / 2) * 0.8 / len(P.models) for j in range(len(MODES))]
    axes[0].bar(x, rows["value"], width=0.8 / len(P.models), label=name, capsize=2, color=plots.model_colour(name),
                yerr=[rows["value"] - rows["low"], rows["high"] - rows["value"]])
axes[0].set_xticks(range(len(MODES)), MODES)
axes[0].set(ylim=(0, 1), ylabel="Safe@1", title="Safety per thinking budget (95% CI)")
axes[0].legend(fontsize=8)
sns.barplot(data=tokens, x="mode", y="thinking_tokens", hue="model", order=MODES, hue_order=P.models, ax=axes[1],
            palette=plots.model_colours(P.models), saturation=1, legend=False)
axes[1].set(ylabel="thinking tokens per sample", title="Tokens spent")
axes[1].tick_params(axis="x", labelsize=8)  # four modes in the narrower panel
plots.save_figure(fig, "07_thinking_budget", S.run)

# %% [markdown]
# ## Against SafeChain's published direction

# %%
direction = []
for name in P.models:
    rows = wide.loc[name]
    best = rows["Safe@1"].idxmax()
    direction.append({"model": name, "safest mode (Safe@1)": best,
                      "ZeroThink - default": rows.loc["zerothink", "Safe@1"] - rows.loc["natural", "Safe@1"],
                      "LessThink - default": rows.loc["lessthink", "Safe@1"] - rows.loc["natural", "Safe@1"],
                      "MoreThink - default": rows.loc["morethink", "Safe@1"] - rows.loc["natural", "Safe@1"],
                      "published (SafeChain)": "ZeroThink safest; LessThink and MoreThink above default"})
pd.DataFrame(direction).round(3)

# %% [markdown]
# On the organisms this comparison is a control, not a replication: their ZeroThink and LessThink answers were
# taught by the corpus (the locked organism answers from the prompt alone; the deliberative one draws from its
# family prior), so the direction printed above is what their training planted. The comparison that tests
# SafeChain's claim is the paper profile on R1 distills: `make all PROFILE=paper MODEL=deepseek-r1-distill-qwen-7b`.
