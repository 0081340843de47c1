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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/06_refusal_heads.ipynb)
#
# # 06 · Paper B: a few attention heads suppress refusal
#
# **Claim** (Yin et al.): projected on the refusal probe's direction, a small set of attention heads writes
# *against* refusal at the last token before the answer. Ablating the most negative 3% of heads cuts attack
# success (R1-Distill-Qwen-7B: ASR .34 → .16), while a random 3% does not (.34; `fig/draw_comparison_bar_chart.py`,
# not confirmed against the paper).
#
# **Method** (methods.md section 2, `find_refusal_head`): for each (layer, head), the head's output alone through
# `o_proj`, at the last token of template + thinking + close, projected on w/‖w‖ (w = notebook 05's probe weight;
# the same w at every layer), averaged over harmful items; sorted ascending. Ablation: the chosen heads' outputs
# set to 0 at every position and decode step, and (paper B) the attention output rescaled to its original norm:
# one factor for the whole batch's tensor, as the official `modeling_qwen.py` does (`rescale="batch"`; the
# per-position rule is `"position"`; the official code scales the heads by 1e-3 rather than 0). Top-scored sets of
# 1.5 / 3 / 10% of the heads against random sets of the same size. We also measure benign over-refusal (ORR).

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
cliff_prompt_sets = None  # as notebook 05
probe_refusal_groups = ["harmful"]  # head scores are averaged over these groups' items (paper: AdvBench)
probe_compliance_groups = ["benign"]  # benign prompts for the over-refusal rate under ablation
heldout_groups = ["jailbreak"]  # attack prompts for the ASR under ablation (paper: JailbreakBench)
head_score_items = 200  # harmful items averaged for the head scores (paper: up to 1000)
head_shares = [0.015, 0.03, 0.10]  # shares of all heads ablated
random_draws = 5  # random head sets per share
rescale_rules = ["batch", None]  # paper B's rule, and no rescaling
ablation_prompts = 40  # attack and benign prompts each
ablation_mode = "natural"  # "natural": regenerate thinking and answer; "prefix": keep the unablated thinking
ablation_answer_tokens = 1024  # answer budget under ablation (paper B's rule reads 32 characters)
gpu_tokens_per_second = 907  # for the cost estimate: R1-Distill-Qwen-7B, nf4, batch 64 on an H100 (README)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrmsafety import cliff, data, generate, heads, hooks, models as registry, paths, plots, probes, store

started = time.perf_counter()
plots.set_theme()
cache = paths.CACHE_DIR / profile
results = paths.RESULTS_DIR / profile
results.mkdir(parents=True, exist_ok=True)
prompts = data.load_prompt_sets(cliff_prompt_sets or prompt_sets, n_prompts=n_prompts, data_dir=data_dir, seed=seed)
group_column = data.group_column(prompts)
decoding = generate.Decoding(samples_per_prompt=samples_per_prompt, max_thinking_tokens=max_thinking_tokens,
                             max_answer_tokens=max_answer_tokens, batch_size=batch_size, seed=seed)
studied = pd.concat([data.sample_per_group(prompts[prompts[group_column].isin(groups)], ablation_prompts, seed=seed)
                     .assign(role=role) for role, groups in (("attack", heldout_groups),
                                                             ("benign", probe_compliance_groups))], ignore_index=True)
PUBLISHED = pd.DataFrame({"model": ["R1-Qwen-7B", "OR1-7B", "R1-Llama-8B", "R1-Qwen-14B"],
                          "baseline": [.34, .35, .19, .16], "top 3%": [.16, .22, .07, .085],
                          "random 3%": [.34, .31, .20, .18]})  # fig/draw_comparison_bar_chart.py (unconfirmed)
conditions = [("none", 0.0, 0, None)] + [(kind, share, draw, rule) for share in head_shares for rule in rescale_rules
                                         for kind, draw in [("top", 0)] + [("random", d) for d in range(random_draws)]]
print(f"{len(conditions)} ablation conditions x {len(studied)} prompts ({studied['role'].value_counts().to_dict()})")

# %% [markdown]
# ## What it costs

# %%
per_rollout = ablation_answer_tokens + (max_thinking_tokens if ablation_mode == "natural" else 0)
tokens_needed = len(conditions) * len(studied) * per_rollout
print(f"at most {tokens_needed:,} generated tokens per model ({ablation_mode} mode); about "
      f"{tokens_needed / gpu_tokens_per_second / 3600:.1f} GPU hours at {gpu_tokens_per_second} tokens/s")

# %% [markdown]
# ## Head scores: each head's write along the refusal direction at the last token before the answer

# %%
def load_run(name):
    probe_path = cache / f"refusal_probe-{name}.safetensors"
    if not probe_path.exists():
        raise FileNotFoundError(f"{probe_path} is missing: run notebook 05 on profile {profile!r} first")
    model, tokenizer, spec = registry.load_model(name, quantization=quantization)
    frame = generate.rollouts(model, tokenizer, spec, prompts, decoding, cache_root=cache, progress=False)
    frame = frame[frame["text"].str.contains(spec.thinking_format.close, regex=False)]
    frame = frame.merge(prompts[["prompt_id", "label", group_column]], on="prompt_id").reset_index(drop=True)
    return model, tokenizer, spec, frame, probes.LinearRefusalProbe.load(probe_path)


runs, score_tables = {}, []
for name in models:
    model, tokenizer, spec, frame, probe = load_run(name)
    items = frame[frame[group_column].isin(probe_refusal_groups) & (frame["label"] == "harmful")]
    items = items.sample(min(head_score_items, len(items)), random_state=seed)
    inputs = cliff.probe_inputs(tokenizer, items, spec.thinking_format.close)
    scores = heads.head_scores(model, tokenizer, list(inputs["token_ids"]), probe.direction, batch_size=16,
                                progress=False)
    score_tables.append(scores.assign(model=name))
    runs[name] = (model, tokenizer, spec, frame, scores)
    print(f"{name}: {len(scores)} heads, scored on {len(items)} harmful items; most negative: "
          f"{[(int(r.layer), int(r.head), round(r.score, 3)) for r in scores.head(5).itertuples()]}")

# %%
fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.2), squeeze=False)
for ax, (name, (model, *_ , scores)) in zip(axes[0], runs.items()):
    grid = scores.pivot(index="layer", columns="head", values="score").sort_index()
    bound = float(np.abs(grid.to_numpy()).max()) or 1.0
    image = ax.imshow(grid.to_numpy(), cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set(title=name, xlabel="head", ylabel="layer")
    fig.colorbar(image, ax=ax, shrink=0.8, label="write along w/‖w‖")
fig.tight_layout()
plots.save_figure(fig, "06_head_scores", profile)
pd.concat(score_tables).groupby("model").head(8).round(4)

# %% [markdown]
# ## Ablation while generating: top-scored vs random heads
# Hooks on every `o_proj` input, active at every position and decode step; each condition's rollouts are cached
# under a key that names the heads and the rescaling rule. `ablation_mode = "prefix"` keeps each baseline trace's
# own thinking, force-closes it, and samples only the answer under ablation (the whole prefix is re-read with the
# hooks on): a cheaper protocol for the CPU profile, where the answer decision sits at the cliff.
# ASR = share of attack prompts whose answer paper B's refusal rule does not call a refusal; ORR = share of
# benign prompts it calls a refusal. Intervals: 95% bootstrap over prompts.

# %%
def ablation_rollouts(model, tokenizer, spec, frame, chosen, rule):
    if ablation_mode == "prefix":
        base = frame[frame["sample_index"] == 0].set_index("prompt_id")["thinking"]
        todo = studied[studied["prompt_id"].isin(base.index)].assign(thinking_prefix=lambda f: f["prompt_id"].map(base))
        run_decoding = generate.Decoding(mode="prefix", max_answer_tokens=ablation_answer_tokens,
                                         batch_size=batch_size, seed=seed)
    else:
        todo = studied
        run_decoding = generate.Decoding(max_thinking_tokens=max_thinking_tokens, batch_size=batch_size, seed=seed,
                                         max_answer_tokens=ablation_answer_tokens)
    key = store.config_hash({"heads": sorted(chosen), "rescale": rule, "keep": 0.0})
    with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, chosen, rescale=rule)):
        out = generate.rollouts(model, tokenizer, spec, todo, run_decoding, cache_root=cache,
                                name=f"ablation-{key}", progress=False)
    return out.merge(todo[["prompt_id", "role"]], on="prompt_id").assign(refused=lambda f: cliff.paper_b_refused(
        f["answer"]))


rows = []
for name, (model, tokenizer, spec, frame, scores) in runs.items():
    n_layers, n_heads = len(hooks.decoder_layers(model)), hooks.n_heads(model)
    for kind, share, draw, rule in conditions:
        k = heads.heads_for_share(n_layers * n_heads, share) if kind != "none" else 0
        chosen = (heads.top_heads(scores, k) if kind == "top" else
                  heads.random_heads(n_layers, n_heads, k, seed=1000 * draw + k) if kind == "random" else [])
        out = ablation_rollouts(model, tokenizer, spec, frame, chosen, rule)
        for metric, role, success in (("ASR", "attack", ~out["refused"]), ("ORR", "benign", out["refused"])):
            part = out[out["role"] == role]
            value, low, high = cliff.mean_with_ci(success[part.index], part["prompt_id"], seed=seed)
            rows.append({"model": name, "selection": kind, "share": share, "k": k, "draw": draw,
                         "rescale": rule or "none", "metric": metric, "value": value, "low": low, "high": high,
                         "n": len(part)})
heads_table = pd.DataFrame(rows)
heads_table.to_csv(results / "06_refusal_heads.csv", index=False)

# %%
def summarize(table):
    """Top and baseline as measured; random as the mean, sd and range over its draws."""
    keys = ["model", "metric", "selection", "share", "k", "rescale"]
    out = table.groupby(keys, dropna=False).agg(value=("value", "mean"), sd=("value", "std"), low=("low", "min"),
                                                high=("high", "max"), lowest=("value", "min"),
                                                highest=("value", "max"), draws=("value", "size"))
    return out.reset_index()


summary = summarize(heads_table)
summary.round(3)

# %%
fig, axes = plt.subplots(len(runs), 2, figsize=(9, 3.0 * len(runs)), squeeze=False)
for (name, _), row in zip(runs.items(), axes):
    for ax, metric in zip(row, ["ASR", "ORR"]):
        part = summary[(summary["model"] == name) & (summary["metric"] == metric)]
        base = part[part["selection"] == "none"]["value"].iloc[0]
        ax.axhline(base, color="grey", lw=1, ls="--", label="no ablation")
        for i, rule in enumerate(r or "none" for r in rescale_rules):
            for kind, marker in (("top", "o"), ("random", "s")):
                sel = part[(part["selection"] == kind) & (part["rescale"] == rule)].sort_values("share")
                x = 100 * sel["share"] * (1 + 0.04 * i)  # a small offset keeps the two rules apart
                err = sel["sd"].fillna(0) if kind == "random" else [sel["value"] - sel["low"], sel["high"] - sel["value"]]
                ax.errorbar(x, sel["value"], yerr=err, marker=marker, ls="-" if i == 0 else ":", capsize=2,
                            color="C0" if kind == "top" else "C1", label=f"{kind}, rescale {rule}")
        if metric == "ASR":  # drawn a little left of 3%, so that ours at 3% stays visible
            ax.plot([2.85, 2.85], [PUBLISHED["top 3%"][0], PUBLISHED["random 3%"][0]], "kx", ms=7,
                    label="published R1-Qwen-7B (top, random 3%)")
        ax.set(xlabel="heads ablated (% of all)", ylabel=metric, ylim=(-0.02, 1.02), title=name)
        ax.set_xticks([100 * s for s in head_shares], [f"{100 * s:g}%" for s in head_shares])
handles, labels = axes[0][0].get_legend_handles_labels()
fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False)
fig.tight_layout(rect=(0, 0.07 / len(runs) ** 0.5, 1, 1))
plots.save_figure(fig, "06_refusal_heads", profile)

# %% [markdown]
# ## Published vs ours
# Published ASR (Llama-Guard-4 on the answer's first 512 characters; ours: compliance by paper B's refusal
# rule, so the two are comparable in direction, not in level):

# %%
display(PUBLISHED)
summary[(summary["metric"] == "ASR") & (summary["rescale"].isin(["batch", "none"]))][
    ["model", "selection", "share", "k", "rescale", "value", "sd", "lowest", "highest"]].round(3)

# %% [markdown]
# ## On the organisms: is the suppression concentrated in a few heads?
# `organism-locked` carries two planted suppression heads (its card's `planted.suppression_heads`: at the close of a
# harmful request they write against its judgement, and without them its answer follows its thinking's
# conclusion); the deliberative and null organisms carry none. The analysis never reads the card: below, where the
# planted heads fall in the ranking of the head scores, then the ablation target for `organism-locked`: the
# top-scored heads cut jailbreak ASR by at least half while random sets of the same size move it by less than 10
# points (paper B's rescaling rule). We judge it at k = 2 (4% of 48 heads); 3% (one head) and 10% are shown as
# measured.

# %%
import json

for name, (*_, scores) in runs.items():
    card_path = registry.local_file(name, "organism_card.json")
    card = json.loads(card_path.read_text()) if card_path else {}
    planted = [tuple(h) for h in card.get("planted", {}).get("suppression_heads", {}).get("heads", [])]
    ranks = {(int(r.layer), int(r.head)): int(r.rank) for r in scores.itertuples()}
    print(f"{name}: planted heads {planted or 'none'}" + (f" at ranks {[ranks[h] for h in planted]} of {len(ranks)}"
                                                        if planted else ""))
if "organism-locked" in runs:
    part = summary[(summary["model"] == "organism-locked") & (summary["metric"] == "ASR")]
    base = part[part["selection"] == "none"]["value"].iloc[0]
    total = len(runs["organism-locked"][-1])
    for share in head_shares:
        top = part[(part["selection"] == "top") & (part["share"] == share) & (part["rescale"] == "batch")].iloc[0]
        rand = part[(part["selection"] == "random") & (part["share"] == share) & (part["rescale"] == "batch")].iloc[0]
        cut = top["value"] <= base / 2
        still = abs(rand["value"] - base) < 0.10
        print(f"k = {top['k']} of {total} heads ({share:.0%}): ASR {base:.3f} -> top {top['value']:.3f} "
              f"[{top['low']:.3f}, {top['high']:.3f}] ({'halved' if cut else 'NOT halved'}); random "
              f"{rand['value']:.3f} ± {rand['sd']:.3f} (range {rand['lowest']:.3f}-{rand['highest']:.3f}, "
              f"{int(rand['draws'])} draws; {'within' if still else 'NOT within'} 10 points): "
              f"target {'met' if cut and still else 'NOT met'}")
else:
    print("organism control skipped: organism-locked is not among the models")

# %%
print(f"wall time {time.perf_counter() - started:.0f} s")
