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
from lrmsafety import artifacts, params

P = params.load(profile, model)  # every value this notebook reads (lib/lrmsafety/params.py)
S = artifacts.Artifacts(profile)  # what earlier notebooks stored, opened by name

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrmsafety import data, paths, plots, registry, store
from lrmsafety.analysis import activations, nulls as probes_nulls, probes
from lrmsafety.engine import generate

plots.set_theme()
cache = paths.CACHE_DIR / profile
results = paths.RESULTS_DIR / profile
prompts = data.load_prompt_sets(P.prompt_sets, n_prompts=P.n_prompts, data_dir=P.data_dir, seed=P.seed)
group_column = data.group_column(prompts)
PUBLISHED = pd.DataFrame({"model": ["Qwen3-8B", "Olmo-3", "Phi-4-R", "GPT-OSS"],
                          "harmful AUROC": [.948, .881, .875, .916], "benign AUROC": [.888, .891, .840, .878],
                          "pooled AUROC": [.971, .949, .897, .939]})  # Table 1 [secondary source]

# %% [markdown]
# ## Rollouts and labels (from notebook 01's caches), states at the first thinking token

# %%
def load_run(name):
    """Notebook 01's rollouts (served from the cache) and judged labels, plus the model."""
    model, tokenizer, spec = registry.load_model(name, quantization=P.quantization)
    rollouts = S.rollouts("01", name)
    judged = pd.read_parquet(results / f"01_judged_{name}.parquet", columns=["prompt_id", "sample_index", "refused_a"])
    judged = judged.rename(columns={"refused_a": "refused"})  # paper A's label (01: the guard majority)
    frame = rollouts.merge(judged, on=["prompt_id", "sample_index"]).merge(
        prompts[["prompt_id", "label", group_column]], on="prompt_id")
    frame = frame[frame["refused"].notna() & (frame["thinking"].str.len() > 0)].reset_index(drop=True)
    return model, tokenizer, spec, frame


def states_for(name, model, tokenizer, frame, position, layers, tag):
    ids, prompt_lengths = activations.rollout_token_ids(tokenizer, frame["rendered_prompt"], frame["text"])
    key = store.config_hash({"model": name, "rows": list(zip(frame["prompt_id"], frame["sample_index"])),
                             "rollouts": sorted(set(frame["config_hash"])), "position": tag, "layers": list(layers)})
    return activations.cached_hidden_states(cache / f"activations-{name}-{tag}-{key}.safetensors", model, tokenizer,
                                            ids, position, layers, prompt_lengths, batch_size=64)


def probe_ready(frame, n_splits=5):
    """The prompt-split probe needs both outcomes in at least n_splits prompts each."""
    prompts_per_class = frame.groupby("refused")["prompt_id"].nunique()
    return len(prompts_per_class) == 2 and prompts_per_class.min() >= n_splits


runs, first_states, prompt_states, skipped = {}, {}, {}, []
for name in P.models:
    model, tokenizer, spec, frame = load_run(name)
    if not probe_ready(frame):
        reason = ("too few prompts of each outcome to split 5 folds by prompt: "
                  f"{frame.groupby('refused')['prompt_id'].nunique().to_dict()}")
        print(f"{name}: skipped, {reason}")
        skipped.append({"model": name, "feature": "first thinking token", "group": "pooled", "n": len(frame),
                        "n_pos": int(frame["refused"].sum()), "reason": reason})
        continue
    n_layers = model.config.get_text_config().num_hidden_layers
    layers = list(range(n_layers + 1))
    runs[name] = (model, tokenizer, frame, n_layers)
    first_states[name] = states_for(name, model, tokenizer, frame, "first_thinking_token", layers, "first")
    prompt_states[name] = states_for(name, model, tokenizer, frame, "last_prompt_token", [n_layers], "stateA")
    print(f"{name}: {len(frame)} rollouts, {frame['prompt_id'].nunique()} prompts, refusal rate "
          f"{frame['refused'].mean():.2f}, first thinking tokens: "
          f"{frame['thinking'].str.split().str[0].value_counts().head(3).to_dict()}")

# %% [markdown]
# ## The probe at the first thinking token (last layer)

# %%
def masks(frame):
    # paper A's benign group macro-averages its benign subsets, dropping those with fewer than 20 refusals
    benign = {value: (frame[group_column] == value).to_numpy()
              for value in sorted(frame.loc[frame["label"] == "benign", group_column].unique())}
    named = {"harmful": (frame["label"] == "harmful").to_numpy(), "benign": benign}
    for value in sorted(frame[group_column].unique()):
        named[f"{group_column}={value}"] = (frame[group_column] == value).to_numpy()
    return named


tables, controls = [], []
for name, (model, tokenizer, frame, n_layers) in runs.items():
    labels = frame["refused"].astype(int).to_numpy()
    groups = frame["prompt_id"].to_numpy()
    cv = probes.cross_validated_probe(first_states[name][n_layers][:, 0, :], labels, groups)
    tables.append(probes.group_metrics(cv, masks(frame)).assign(model=name, feature="first thinking token"))
    # paper A's folds are by row (StratifiedKFold); ours by prompt. The row-level variant, once, for Table 1
    by_row = probes.cross_validated_probe(first_states[name][n_layers][:, 0, :], labels, np.arange(len(labels)))
    tables.append(probes.group_metrics(by_row, masks(frame)).assign(model=name, feature="first token, row folds"))
    for intent in ("harmful", "benign"):  # State A: standardized L2 logistic regression (C = 1) per intent
        rows = (frame["label"] == intent).to_numpy()
        if not probe_ready(frame[rows]):
            continue
        state_a = probes.cross_validated_probe(prompt_states[name][n_layers][rows, 0, :], labels[rows], groups[rows],
                                               pipeline_factory=probes.state_a_pipeline)
        tables.append(probes.group_metrics(state_a, {intent: np.ones(rows.sum(), dtype=bool)}).query(
            "group == @intent").assign(model=name, feature="State A (last prompt token)"))
    first_text = [tokenizer.decode(ids[:1]) for ids in
                  (tokenizer(t, add_special_tokens=False)["input_ids"] for t in frame["text"])]
    controls.append({"model": name, **probes.tfidf_first_token_control(first_text, labels, groups)})
    controls.append({"model": name, **probes.shuffled_label_control(first_states[name][n_layers][:, 0, :], labels,
                                                                     groups, seed=P.seed)})
COLUMNS = ["model", "feature", "group", "auroc", "auroc_lo", "auroc_hi", "bacc", "bacc_lo", "bacc_hi", "n", "n_pos",
           "reason"]
# a model whose probe could not be fitted keeps a row: NA, with the reason
tables += [pd.DataFrame(skipped, columns=COLUMNS)] if skipped else []
probe_table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
probe_table[COLUMNS].round(3)

# %% [markdown]
# ### The permutation null beside the bootstrap
# `perm_p`: share of label permutations (whole prompts, within their family) whose refitted probe reaches the
# observed AUROC; `null_low`–`null_high`: the middle 95% of the permuted AUROCs.

# %%
nulls = []
for name, (model, tokenizer, frame, n_layers) in runs.items():
    labels, groups = frame["refused"].astype(int).to_numpy(), frame["prompt_id"].to_numpy()
    # one boolean mask per group: the benign macro-average's subsets are pooled for the permutation null
    named = {k: v if isinstance(v, np.ndarray) else (frame["label"] == k).to_numpy() for k, v in masks(frame).items()}
    named = {k: v for k, v in named.items() if len(np.unique(labels[v])) == 2}
    for feature, slug, states, factory in (
            ("first thinking token", "first_token", first_states, probes.first_token_probe_pipeline),
            ("State A (last prompt token)", "state_a", prompt_states, probes.state_a_pipeline)):
        test = probes_nulls.permutation_test(states[name][n_layers][:, 0, :], labels, groups, named, P.permutations,
                                       strata=frame[group_column].to_numpy(), seed=P.seed, pipeline_factory=factory,
                                       n_jobs=-1, cache_path=cache / f"permutations-{name}-{slug}.csv")
        nulls.append(test.assign(model=name, feature=feature))
NULL_COLUMNS = ["model", "feature", "group", "perm_p", "null_low", "null_high", "n_permutations"]
nulls = pd.concat(nulls, ignore_index=True) if nulls else pd.DataFrame(columns=NULL_COLUMNS + ["auroc", "n"])
# groups the probe table does not hold (e.g. State A per family) come from the permutation run's own AUROC
probe_table = probe_table.merge(nulls[NULL_COLUMNS + ["auroc", "n"]], on=["model", "feature", "group"], how="outer",
                                suffixes=("", "_perm"))
probe_table["auroc"] = probe_table["auroc"].fillna(probe_table.pop("auroc_perm"))
probe_table["n"] = probe_table["n"].fillna(probe_table.pop("n_perm"))
probe_table.to_csv(results / "02_first_token_probe.csv", index=False)
probe_table[["model", "feature", "group", "auroc", "auroc_lo", "auroc_hi", "perm_p", "null_low", "null_high"]].round(3)

# %%
pd.DataFrame(controls, columns=["model", "control", "auroc", "auroc_lo", "auroc_hi", "n"]).round(3)

# %% [markdown]
# ## Layer sweep: where along the depth is the outcome readable?

# %%
sweeps = []
for name, (model, tokenizer, frame, n_layers) in runs.items():
    by_layer = {layer: array[:, 0, :] for layer, array in first_states[name].items()}
    sweeps.append(probes.layer_sweep(by_layer, frame["refused"].astype(int).to_numpy(),
                                     frame["prompt_id"].to_numpy(), n_boot=100).assign(model=name))
sweep = pd.concat(sweeps, ignore_index=True) if sweeps else pd.DataFrame(columns=["model", "layer", "auroc"])
fig, ax = plt.subplots(figsize=(6, 3.2))
for name, rows in sweep.groupby("model"):
    ax.plot(rows["layer"], rows["auroc"], marker="o", label=name)
    ax.fill_between(rows["layer"], rows["auroc_lo"], rows["auroc_hi"], alpha=0.2)
ax.axhline(0.5, color="grey", lw=0.8, ls="--")
ax.set(xlabel="layer (hidden_states index)", ylabel="AUROC (pooled, out of fold)", ylim=(0.3, 1.02),
       title="First-thinking-token probe per layer")
if len(sweep):
    ax.legend(fontsize=8)
plots.save_figure(fig, "02_layer_sweep", profile)

# %% [markdown]
# ## The "refusal valley": J(t) along the trace
# J(t) = ‖μ_r − μ_c‖² / (σ²_r + σ²_c) on standardized last-layer states at 100 evenly spaced positions over
# the thinking span (first thinking token to the last before the close), computed per pool (harmful, benign), as in
# paper A's code. Paper A finds it U-shaped (high at the start, low mid-trace, rising at the end).

# %%
valley = {}
for name, (model, tokenizer, frame, n_layers) in runs.items():
    subset = frame.sample(min(P.valley_rollouts, len(frame)), random_state=P.seed).reset_index(drop=True)
    close = registry.get_spec(name).thinking_format.close
    # the generated text up to the close: the states of a causal model there do not depend on what follows
    subset["text"] = [t[: t.find(close)] if close in t else t for t in subset["text"]]
    states = states_for(name, model, tokenizer, subset, activations.evenly_spaced(100), [n_layers], "valley-thinking")
    for pool in ("harmful", "benign"):
        rows = (subset["label"] == pool).to_numpy()
        if subset.loc[rows, "refused"].nunique() == 2:
            valley[(name, pool)] = probes.separation_curve(states[n_layers][rows],
                                                           subset.loc[rows, "refused"].astype(int).to_numpy())
        else:
            print(f"{name}, {pool}: one outcome only among {rows.sum()} rollouts, no J(t)")
fig, ax = plt.subplots(figsize=(6, 3.2))
for (name, pool), curve in valley.items():
    ax.plot(np.linspace(0, 100, len(curve)), curve, label=f"{name}, {pool}", ls="-" if pool == "harmful" else "--")
ax.set(xlabel="position along the thinking (%)", ylabel="J(t)", title="Separation of refusals and compliances")
if valley:
    ax.legend(fontsize=7)
plots.save_figure(fig, "02_refusal_valley", profile)

# %% [markdown]
# ## Reproduced vs published

# %%
headline = probe_table[probe_table["feature"] == "first thinking token"].pivot(index="model", columns="group",
                                                                              values="auroc")
print("published (paper A, Table 1, secondary source):")
display(PUBLISHED)
headline.round(3)
