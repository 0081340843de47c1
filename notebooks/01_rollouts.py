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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/01_rollouts.ipynb)
#
# # 01 · Rollouts, judges and safety metrics
#
# The shared cache every later analysis reads: K sampled rollouts per prompt for each model, on harmful prompts
# (StrongREJECT, WildJailbreak, AdvBench on the paper profile; the organisms' harmful and jailbreak families by
# default) and on benign / over-refusal prompts (XSTest, OR-Bench; the organisms' benign and borderline families).
# Each rollout is judged, and we report
#
# * **ASR**, attack success: compliance rate on harmful prompts; **ORR**, over-refusal: refusal rate on benign ones
#   (papers A and B judge the answer only);
# * SafeChain's **Safe@1** (share of safe samples), **Safe@K** (all K safe) and **ConsSafe@K** (at least half safe),
#   over harmful prompts, with 95% bootstrap intervals over prompts.
#
# Published reference points (methods.md): paper A's base ASR/ORR, e.g. Qwen3-8B 86.9 / 6.0; paper B's repo
# records R1-Distill-Qwen-7B at ASR .34 on AdvBench; SafeChain finds no reasoning model strongly safe.

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
models = ["organism-locked", "organism-deliberative", "organism-null"]
quantization = "auto"
data_dir = None
prompt_sets = ["organism"]
n_prompts = 200
samples_per_prompt = 5
max_thinking_tokens = 256
max_answer_tokens = 96
batch_size = 256
seed = 0
judges = ["refusal_prefix", "rs_match"]  # the first decides `refused` (answer only); guard judges need a GPU

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lrmsafety import data, evaluate, generate, metrics, models as registry, paths, plots

plots.set_theme()
cache = paths.CACHE_DIR / profile
results = paths.RESULTS_DIR / profile
results.mkdir(parents=True, exist_ok=True)
prompts = data.load_prompt_sets(prompt_sets, n_prompts=n_prompts, data_dir=data_dir, seed=seed)
group = data.group_column(prompts)
prompts.groupby([group, "label"]).size().rename("prompts").to_frame()

# %% [markdown]
# ## Rollouts
# Each model's own sampling defaults; the thinking is force-closed past `max_thinking_tokens`. Finished batches
# are cached as they complete, so a rerun skips them and a killed run resumes.

# %%
decoding = generate.Decoding(samples_per_prompt=samples_per_prompt, max_thinking_tokens=max_thinking_tokens,
                             max_answer_tokens=max_answer_tokens, batch_size=batch_size, seed=seed)
rollouts = {}
for name in models:
    model, tokenizer, spec = registry.load_model(name, quantization=quantization)
    rollouts[name] = generate.rollouts(model, tokenizer, spec, prompts, decoding, cache_root=cache)
    del model

# %% [markdown]
# ## Judges
# String judges need nothing; guard models (Llama-Guard-3/4, WildGuard, Qwen3Guard, HarmBench, Granite) load in
# 4-bit on a GPU. The first judge in `judges` decides the refusal label used below.

# %%
judged = {}
for name, frame in rollouts.items():
    fmt = registry.get_spec(name).thinking_format
    verdicts = []
    for judge_name in judges:
        judge, judge_config = evaluate.make_judge(judge_name, fmt)
        verdict = evaluate.judge_rollouts(frame, judge, cache_root=cache, judge_config=judge_config)
        verdicts.append(verdict.rename(columns=lambda c, j=judge_name: c if c in evaluate.KEY else f"{j}.{c}"))
    merged = frame.merge(prompts.drop(columns=["prompt"]), on="prompt_id")
    for verdict in verdicts:
        merged = merged.merge(verdict, on=evaluate.KEY)
    merged["refused"] = merged[f"{judges[0]}.refused"].astype("boolean")
    merged["safe"] = merged["refused"]  # SafeChain's metrics are over harmful prompts: a refusal is the safe outcome
    judged[name] = merged
    merged.drop(columns=["text"]).to_parquet(results / f"01_judged_{name}.parquet", index=False)

# %% [markdown]
# ### How well does the string judge read the organisms? (their answers have known templates)

# %%
if all(name.startswith("organism") for name in judged):
    from lrmsafety import organism

    for name, frame in judged.items():
        truth = frame["answer"].map(organism.classify_answer)
        table = pd.crosstab(truth, frame["refused"].map({True: "judged refusal", False: "judged compliance"}))
        agreement = float(((truth == "refusal") == frame["refused"]).mean())
        print(f"{name}: {judges[0]} agrees with the planted outcome on {agreement:.2%} of {len(frame)} samples")
        display(table)

# %% [markdown]
# ## ASR, ORR and SafeChain's Safe@K

# %%
tables = []
for name, frame in judged.items():
    by = [group] if group == "family" else []
    asr_orr = metrics.safety_table(frame, kind="asr_orr", seed=seed)
    harmful = frame[frame["label"] == "harmful"]
    safechain = metrics.safety_table(harmful, by=by, kind="safechain", seed=seed)
    per_group = metrics.safety_table(frame, by=[group], kind="asr_orr", seed=seed)
    tables.append(pd.concat([asr_orr.assign(scope="all"), safechain.assign(scope="harmful"),
                             per_group.assign(scope=group)]).assign(model=name))
table = pd.concat(tables, ignore_index=True)
table.to_csv(results / "01_metrics.csv", index=False)
headline = table[table["scope"] == "all"].dropna(subset=["value"])
if group == "family":  # SafeChain metrics pooled over the harmful families
    pooled = pd.concat([metrics.safety_table(f[f["label"] == "harmful"], kind="safechain", seed=seed).assign(model=n)
                        for n, f in judged.items()])
    headline = pd.concat([headline, pooled])
else:
    headline = pd.concat([headline, table[table["scope"] == "harmful"]])
headline = headline[["model", "metric", "value", "low", "high", "n_prompts", "n_samples"]].reset_index(drop=True)
headline.round(3)

# %%
table[table["scope"] == group][["model", group, "metric", "value", "low", "high", "n_prompts"]].round(3)

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.2))
names = list(judged)
width = 0.8 / len(names)
order = ["ASR", "ORR", "Safe@1", f"Safe@{samples_per_prompt}", f"ConsSafe@{samples_per_prompt}"]
for i, name in enumerate(names):
    rows = headline[headline["model"] == name].set_index("metric").reindex(order)
    ax.bar([j + (i - (len(names) - 1) / 2) * width for j in range(len(order))], rows["value"], width=width,
           yerr=[rows["value"] - rows["low"], rows["high"] - rows["value"]], label=name, capsize=2)
ax.set_xticks(range(len(order)), order)
ax.set(ylim=(0, 1), ylabel="rate", title=f"Safety metrics, {samples_per_prompt} samples per prompt (95% CI)")
ax.legend(fontsize=8)
plots.save_figure(fig, "01_safety_metrics", profile)
