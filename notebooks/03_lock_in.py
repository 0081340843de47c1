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
import json

import matplotlib.pyplot as plt
import pandas as pd

from lrmsafety import data, paths, plots, workload
from lrmsafety.analysis import lock_in
from lrmsafety.engine import backends, generate

plots.set_theme()
cache, results = S.cache, S.results
prompts = data.profile_prompts(P)
group_column = data.group_column(prompts)
studied = data.sample_per_group(prompts, P.lockin_prompts, seed=P.seed)
print(f"{len(studied)} prompts: {studied[group_column].value_counts().to_dict()}")

answer_budget = P.cut_answer_tokens  # answers after a cut are only labelled

# %% [markdown]
# ## What it costs
# Generated tokens on this profile's settings, and GPU time at the measured rate of the engine that will run
# (`lrmsafety.rates`): at most (every trace at its budget) and at realistic trace lengths (an estimate).

# %%
print(workload.line(P, workload.lock_in_03(P, len(studied))))

# %% [markdown]
# ## M traces per prompt (think and no-think), then N answers after each cut
# `lrmsafety.analysis.lock_in` holds the cuts (self-closed traces only), q and N per prefix, and the variance.

# %%
per_prefix, agreement = [], []
for name in P.models:
    model, tokenizer, spec = backends.load_generator(name, P.backend, P.quantization, P.kv_tokens)
    settings = dict(samples_per_prompt=P.traces_per_prompt, max_thinking_tokens=P.max_thinking_tokens,
                    max_answer_tokens=P.max_answer_tokens, batch_size=P.batch_size, seed=P.seed)
    think = generate.rollouts(model, tokenizer, spec, studied, generate.Decoding(**settings), cache_root=cache)
    no_think = generate.rollouts(model, tokenizer, spec, studied, generate.Decoding(mode="no_think", **settings),
                                 cache_root=cache)
    # B = 0: no prefix is fixed; `baseline_rollouts` full rollouts per prompt are the continuations (paper A: 32)
    full = None if P.baseline_rollouts == P.traces_per_prompt else generate.rollouts(
        model, tokenizer, spec, studied, generate.Decoding(**{**settings, "samples_per_prompt": P.baseline_rollouts}),
        cache_root=cache)
    # traces the model closed itself are cut; force-closed ones are skipped, as paper A's code does
    cuts = lock_in.cut_prefixes(tokenizer, think, P.cut_percents)
    print(f"{name}: {int(think['closed'].astype(bool).sum())} of {len(think)} traces closed by the model are cut")
    answers = lock_in.answers_after_cuts(model, tokenizer, spec, cuts, generate.Decoding(
        samples_per_prompt=P.answers_per_prefix, max_answer_tokens=answer_budget, batch_size=P.batch_size,
        seed=P.seed), cache_root=cache) if len(cuts) else None
    backends.close(model)  # the label's guard models load next (a vLLM engine frees its memory now)
    del model

    def labelled(frame):  # paper A's label, `refused_a` as in notebook 01, as `refused`
        return lock_in.refusals(frame, P.label_judges, spec.thinking_format, cache_root=cache, backend=P.backend)

    think, no_think = labelled(think), labelled(no_think)
    full = think if full is None else labelled(full)
    answers = labelled(answers) if answers is not None else None
    per_prefix.append(lock_in.prefix_table(full, answers, cuts).assign(model=name))
    agreement.append({"model": name, **lock_in.majority_agreement(think, no_think)})
prefixes = pd.concat(per_prefix, ignore_index=True)[["model", "prompt_id", "cut", "trace", "q", "n"]].merge(
    prompts[["prompt_id", group_column]], on="prompt_id")
prefixes.to_csv(results / "03_lock_in_prefixes.csv", index=False)

# %% [markdown]
# ## Continuation variance after B% of the thinking

# %%
curve = lock_in.variance_curve(prefixes, ["model", group_column, "cut"], seed=P.seed)
pooled = lock_in.variance_curve(prefixes, ["model", "cut"], seed=P.seed)
baseline = lock_in.coin_flip_variance(P.answers_per_prefix)
curve.to_csv(results / "03_continuation_variance.csv", index=False)
pooled.pivot(index="cut", columns="model", values="continuation_variance").round(3)

# %%
groups = sorted(curve[group_column].unique())
fig, axes = plt.subplots(1, len(groups), figsize=(2.9 * len(groups) + 3, 3.3), sharey=True, squeeze=False,
                         layout="constrained")
at_zero = lock_in.coin_flip_variance(P.baseline_rollouts)
for ax, group in zip(axes[0], groups):
    for name, colour in plots.model_colours(P.models).items():
        rows = curve[(curve[group_column] == group) & (curve["model"] == name)]
        ax.plot(rows["cut"], rows["continuation_variance"], marker="o", color=colour, label=name)
    ax.axhline(baseline, color="grey", ls="--", lw=0.8, label=f"coin flips, N = {P.answers_per_prefix} answers\n"
               f"per cut ({baseline:.3f})")
    ax.plot([0], [at_zero], marker="_", ms=14, color="grey", ls="", label=f"coin flips at B = 0, its\n"
            f"{P.baseline_rollouts} full rollouts ({at_zero:.3f})")
    ax.axhline(0.2, color="black", ls=":", lw=0.8, label="paper A: below ~0.2 at B = 20%")
    ax.set(title=str(group), ylim=(0, 1))
axes[0][0].set_ylabel("continuation variance 4q(1-q)")
fig.supxlabel("thinking kept before the cut (%)", fontsize=10)
fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
fig.suptitle("Lock-in: continuation variance after a cut, per family", fontsize=10)
plots.save_figure(fig, "03_continuation_variance", S.run)

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
