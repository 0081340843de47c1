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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/02_first_token_probe.ipynb)
#
# # 02 · Paper A: the first thinking token already predicts refusal
#
# **Claim** (Ri, Panigrahi, Arora, Table 1): a linear probe on the last-layer hidden state at the *first token of
# the thinking* predicts whether the rollout ends in a refusal, with AUROC .875–.948 on harmful prompts and
# .840–.891 on benign ones, while a TF-IDF classifier on that token's text stays at .49–.68. The decision is
# readable before any visible deliberation.
#
# **Method** (methods.md section 1): the feature is `hidden_states[L]` at the first thinking-content token of the
# model's own rollout; StandardScaler → PCA(100) → logistic regression (C = 0.03, balanced), 5-fold cross-validation
# **split by prompt** (paper A splits by row: that variant is reported once beside it), out-of-fold scores; AUROC and
# balanced accuracy at the Youden threshold of the training folds' out-of-fold scores, per group; the benign group
# macro-averages its subsets with at least 20 refusals; 500 bootstrap intervals. Labels are paper A's (`refused_a`
# from notebook 01). Controls: TF-IDF on the first token's text, shuffled labels, the prompt-only "State A" (last
# prompt token; standardized L2 logistic regression, C = 1, per intent), a layer sweep, and the "refusal valley"
# J(t) along the thinking.
#
# **Is there any signal at all?** Paper A's intervals bootstrap prompts over *fixed* out-of-fold scores, which leaves
# out the variance of fitting: on pure noise they exclude 0.5 too often. Beside them we report a prompt-level
# permutation test of the whole cross-validated pipeline (whole prompts' labels exchanged within their family, every
# fold refitted, `permutations` times); "no signal" is judged by its p-value.

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
import pandas as pd

from lrmsafety import data, ledger, plots, registry
from lrmsafety.analysis import activations, first_token, probes

plots.set_theme()
cache = S.cache
prompts = data.profile_prompts(P)
group_column = data.group_column(prompts)

# %% [markdown]
# ## Rollouts and labels (from notebook 01's caches), states at the first thinking token

# %%
runs, first_states, prompt_states, skipped = {}, {}, {}, []
for name in P.models:
    model, tokenizer, spec = registry.load_model(name, quantization=P.quantization, kv_tokens=P.kv_tokens)
    frame = first_token.probe_frame(S.rollouts("01", name), S.judged(name), prompts, group_column)
    if not probes.probe_ready(frame):
        skipped.append(first_token.skipped_row(name, frame))
        print(f"{name}: skipped, {skipped[-1]['reason']}")
        continue
    n_layers = model.config.get_text_config().num_hidden_layers
    runs[name] = (model, tokenizer, frame, n_layers)
    first_states[name] = activations.rollout_states(cache, name, model, tokenizer, frame, "first_thinking_token",
                                                    list(range(n_layers + 1)), "first")
    prompt_states[name] = activations.rollout_states(cache, name, model, tokenizer, frame, "last_prompt_token",
                                                     [n_layers], "stateA")
    print(f"{name}: {len(frame)} rollouts, {frame['prompt_id'].nunique()} prompts, refusal rate "
          f"{frame['refused'].mean():.2f}, first thinking tokens: "
          f"{frame['thinking'].str.split().str[0].value_counts().head(3).to_dict()}")

# %% [markdown]
# ## The probe at the first thinking token (last layer), its controls and its permutation null
# `perm_p`: share of label permutations (whole prompts, within their family) whose refitted probe reaches the
# observed AUROC; `null_low`–`null_high`: the middle 95% of the permuted AUROCs. Paper A's folds are by row
# (StratifiedKFold), ours by prompt: the row-level variant is reported once beside it (`first token, row folds`).

# %%
tables, controls, nulls = [], [], []
for name, (model, tokenizer, frame, n_layers) in runs.items():
    first, state_a = first_states[name][n_layers][:, 0, :], prompt_states[name][n_layers][:, 0, :]
    tables += first_token.probe_rows(name, frame, first, state_a, group_column)
    controls += first_token.controls(name, frame, tokenizer, first, P.seed)
    nulls += first_token.permutation_rows(name, frame, first, state_a, group_column, P.permutations, P.seed, cache)
probe_table = first_token.probe_table(tables, skipped, nulls)
probe_table.to_csv(S.results / "02_first_token_probe.csv", index=False)
probe_table[["model", "feature", "group", "auroc", "auroc_lo", "auroc_hi", "bacc", "bacc_lo", "bacc_hi", "perm_p",
             "null_low", "null_high", "n", "n_pos"]].round(3)

# %%
pd.DataFrame(controls, columns=first_token.CONTROL_COLUMNS).round(3)

# %% [markdown]
# ## Layer sweep: where along the depth is the outcome readable?

# %%
sweeps = [probes.layer_sweep({layer: array[:, 0, :] for layer, array in first_states[name].items()},
                             frame["refused"].astype(int).to_numpy(), frame["prompt_id"].to_numpy(),
                             n_boot=100).assign(model=name) for name, (_, _, frame, _) in runs.items()]
sweep = pd.concat(sweeps, ignore_index=True) if sweeps else pd.DataFrame(columns=["model", "layer", "auroc"])
plots.save_figure(first_token.sweep_figure(sweep, P.models), "02_layer_sweep", S.run)

# %% [markdown]
# ## The "refusal valley": J(t) along the trace
# J(t) = ‖μ_r − μ_c‖² / (σ²_r + σ²_c) on standardized last-layer states at 100 evenly spaced positions over
# the thinking span (first thinking token to the last before the close), computed per pool (harmful, benign), as in
# paper A's code. Paper A finds it U-shaped (high at the start, low mid-trace, rising at the end). J is never 0 by
# chance: the grey null is its 95th percentile when the outcomes are shuffled among the pool's rollouts
# (`permutations` times).

# %%
valley = pd.concat([first_token.valley_curves(
    cache, name, model, tokenizer, frame, n_layers, registry.get_spec(name).thinking_format.close,
    P.valley_rollouts, P.seed, P.permutations) for name, (model, tokenizer, frame, n_layers) in runs.items()]
    or [pd.DataFrame(columns=["model", "pool", "position", "J", "null"])], ignore_index=True)
plots.save_figure(first_token.valley_figure(valley, P.models), "02_refusal_valley", S.run)

# %% [markdown]
# ## Reproduced vs published
# The claims ledger's rows of this notebook: our AUROC per group beside paper A's Table 1 (secondary source; on the
# organisms, the planted targets instead).

# %%
ledger.board("02_first_token_probe", profile, P.models, S.results)
