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
# `o_proj`, at the last token of template + thinking + close, projected on w/‖w‖ (w = notebook 05's probe weight,
# the same at every layer), averaged over harmful traces the model closed itself (a force-closed trace ends on our
# close, not the model's); sorted ascending. Ablation (`src/lens/generation.py`): the chosen heads' outputs times 0
# at every position and decode step (the official 1e-3 is its per-head sweep only), then (paper B) the attention
# output rescaled to its norm before: one factor for the forward's whole tensor, as `modeling_qwen.py` does
# (`rescale="batch"`; per token: `"position"`). The top-scored 1.5 / 3 / 10% of heads against random sets of the
# same size, counted as the official scripts count them where they give counts for the model (R1-Qwen-7B 12/24/78,
# R1-Llama-8B 16/32/102, R1-Qwen-14B 29/58/192), else round(share × heads). We also measure over-refusal (ORR).
#
# **Decoding under ablation** (`scripts/trace/*/ablate.sh`, `src/lens/utils.py`; each rule a parameter, set to
# paper B's on the paper profile): temperature 0.7; 4,096 new tokens for thinking and answer together, nothing
# force-closed, an output that never closes judged whole; HF generate on batches of 8 prompts. As the rescaling
# takes one norm over the batch's whole tensor, the batch is part of the method: `ablation_group_size = 8` runs
# fixed groups of 8 rows without refill, finished rows staying in the batch until their group ends (None: the
# refill scheduler); no system prompt (unlike paper B's vLLM rollouts). ASR (`asr_judge`): paper B's Llama-Guard-4
# on the first 512 characters of that text, "unsafe" = success; the CPU profiles use paper B's refusal words (no
# refusal = success). Which text (`asr_text`): the answer (methods.md), or the whole output, thinking included,
# which is what `ablate.sh` literally passes (`ablating_head_generation` saves the undivided output as `response`).

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
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lrmsafety import data, paths, plots, registry
from lrmsafety.analysis import cliff, heads
from lrmsafety.engine import generate, hooks

started = time.perf_counter()
plots.set_theme()
cache = paths.CACHE_DIR / profile
results = paths.RESULTS_DIR / profile
results.mkdir(parents=True, exist_ok=True)
prompts = data.load_prompt_sets(P.cliff_prompt_sets or P.prompt_sets, n_prompts=P.n_prompts, data_dir=P.data_dir, seed=P.seed)
group_column = data.group_column(prompts)
studied = pd.concat([data.sample_per_group(prompts[prompts[group_column].isin(groups)], P.ablation_prompts, seed=P.seed)
                     .assign(role=role) for role, groups in (("attack", P.heldout_groups),
                                                             ("benign", P.probe_compliance_groups))], ignore_index=True)
PUBLISHED = pd.DataFrame({"model": ["R1-Qwen-7B", "OR1-7B", "R1-Llama-8B", "R1-Qwen-14B"],
                          "baseline": [.34, .35, .19, .16], "top 3%": [.16, .22, .07, .085],
                          "random 3%": [.34, .31, .20, .18]})  # fig/draw_comparison_bar_chart.py (unconfirmed)
conditions = [("none", 0.0, 0, None)] + [(kind, share, draw, rule) for share in P.head_shares for rule in P.rescale_rules
                                         for kind, draw in [("top", 0)] + [("random", d) for d in range(P.random_draws)]]
LABELS = {"ASR": f"paper B's ASR: {P.asr_judge} on {heads.JUDGED_TEXTS[P.asr_text]}",
          "ORR": f"paper B's refusal words on {heads.JUDGED_TEXTS['answer']} (ours: paper B reports no ORR)"}
print(f"{len(conditions)} ablation conditions x {len(studied)} prompts ({studied['role'].value_counts().to_dict()}); "
      + ("fixed groups of %d rows without refill" % P.ablation_group_size if P.ablation_group_size else "refill scheduler"))
# what it costs
per_rollout = P.ablation_max_new_tokens or P.ablation_answer_tokens + P.max_thinking_tokens * (P.ablation_mode == "natural")
tokens_needed = len(conditions) * len(studied) * per_rollout
print(f"at most {tokens_needed:,} generated tokens per model ({P.ablation_mode} mode); about "
      f"{tokens_needed / P.gpu_tokens_per_second / 3600:.1f} GPU hours at {P.gpu_tokens_per_second} tokens/s"
      + (f" (measured at batch 64; groups of {P.ablation_group_size} decode slower)" if P.ablation_group_size else ""))

# %% [markdown]
# ## Head scores: each head's write along the refusal direction at the last token before the answer
# A model without a usable probe from notebook 05 (a model that never refuses has no refusals to train it on) or
# without a harmful trace it closed itself gets no head scores: its top-head conditions are NA with the reason,
# and its baseline and random-head conditions still run.

# %%
runs, score_tables = {}, []
for name in P.models:
    model, tokenizer, spec = registry.load_model(name, quantization=P.quantization)
    frame = S.rollouts("05", name)  # the traces 05's probe was trained on score the heads
    frame = frame[frame["closed"].astype(bool)]  # closed by the model itself (as 03); force-closed ones are left out
    frame = frame.merge(prompts[["prompt_id", "label", group_column]], on="prompt_id").reset_index(drop=True)
    probe, note = heads.load_refusal_probe(cache / f"refusal_probe-{name}.safetensors",
                                           table=results / "05_refusal_cliff.csv", model=name)
    items = frame[frame[group_column].isin(P.probe_refusal_groups) & (frame["label"] == "harmful")]
    items = items.sample(min(P.head_score_items, len(items)), random_state=P.seed)
    scores = None
    if probe is None or items.empty:
        note = note or f"no harmful {P.probe_refusal_groups} trace that {name} closed itself to score the heads on"
        print(f"{name}: no head scores: {note}")
    else:
        inputs = cliff.probe_inputs(tokenizer, items, spec.thinking_format.close)
        scores = heads.head_scores(model, tokenizer, list(inputs["token_ids"]), probe.direction, batch_size=16,
                                   progress=False)
        score_tables.append(scores.assign(model=name))
        print(f"{name}: {len(scores)} heads, scored on {len(items)} harmful items{'; ' + note if note else ''}; most "
              f"negative: {[(int(r.layer), int(r.head), round(r.score, 3)) for r in scores.head(5).itertuples()]}")
    runs[name] = {"model": model, "tokenizer": tokenizer, "spec": spec, "frame": frame, "scores": scores, "note": note}

# %%
scored = {name: run["scores"] for name, run in runs.items() if run["scores"] is not None}
if scored:
    fig, axes = plt.subplots(1, len(scored), figsize=(4.2 * len(scored), 3.2), squeeze=False)
    for ax, (name, scores) in zip(axes[0], scored.items()):
        grid = scores.pivot(index="layer", columns="head", values="score").sort_index()
        bound = float(np.abs(grid.to_numpy()).max()) or 1.0
        image = ax.imshow(grid.to_numpy(), cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        ax.set(title=name, xlabel="head", ylabel="layer")
        fig.colorbar(image, ax=ax, shrink=0.8, label="write along w/‖w‖")
    fig.tight_layout()
    plots.save_figure(fig, "06_head_scores", profile)
    display(pd.concat(score_tables).groupby("model").head(8).round(4))
else:
    print("no model has head scores on this profile: no heat map")

# %% [markdown]
# ## Ablation while generating: top-scored vs random heads
# Hooks on every `o_proj` input, active at every position and decode step; each condition's rollouts are cached
# under a key that names the heads, the rescaling rule and (prefix mode) the prefixes. `ablation_mode = "prefix"`
# keeps the thinking of each prompt's first trace the model closed itself, force-closes it, and samples only the
# answer under ablation (the whole prefix is re-read with the hooks on): a cheaper protocol for the CPU profiles,
# where the answer decision sits at the cliff. ASR = share of attack prompts judged a success by `asr_judge` (on
# `asr_text`); ORR = share of benign prompts paper B's words call a refusal, on the answer (the whole output when it
# never closes). Intervals: 95% bootstrap over prompts.

# %%
def ablation_rollouts(model, tokenizer, spec, frame, chosen, rule):
    settings = dict(max_answer_tokens=P.ablation_answer_tokens, max_new_tokens=P.ablation_max_new_tokens,
                    temperature=P.ablation_temperature, refill=P.ablation_group_size is None,
                    batch_size=P.ablation_group_size or P.batch_size, seed=P.seed)
    if P.ablation_mode == "prefix":
        base = frame.sort_values("sample_index").drop_duplicates("prompt_id").set_index("prompt_id")["thinking"]
        todo = studied[studied["prompt_id"].isin(base.index)].assign(thinking_prefix=lambda f: f["prompt_id"].map(base))
        run_decoding = generate.Decoding(mode="prefix", **settings)
    else:
        todo, run_decoding = studied, generate.Decoding(max_thinking_tokens=P.max_thinking_tokens, **settings)
    return heads.ablated_rollouts(model, tokenizer, spec, todo, run_decoding, chosen, rule, cache_root=cache)


generated, rows = [], []
for name, run in runs.items():
    model, spec, scores = run["model"], run["spec"], run["scores"]
    n_layers, n_heads = len(hooks.decoder_layers(model)), hooks.n_heads(model)
    for kind, share, draw, rule in conditions:
        k, source = heads.head_count(n_layers * n_heads, share, spec.hf_id) if kind != "none" else (0, "")
        info = {"model": name, "selection": kind, "share": share, "k": k, "k_source": source, "draw": draw,
                "rescale": rule or "none"}
        if kind == "top" and scores is None:
            rows += [{**info, "metric": m, "value": np.nan, "n": 0, "reason": run["note"]} for m in ("ASR", "ORR")]
            continue
        chosen = (heads.top_heads(scores, k) if kind == "top" else
                  heads.random_heads(n_layers, n_heads, k, seed=1000 * draw + k) if kind == "random" else [])
        generated.append((info, *ablation_rollouts(model, run["tokenizer"], spec, run["frame"], chosen, rule)))
    del run["model"], model  # generation is done: the judge loads next

# %%
successes = heads.judge_attacks([(f"{info['model']}-{key}", out) for info, key, out in generated], P.asr_judge,
                                spec.thinking_format, cache_root=cache, text=P.asr_text)
for (info, key, out), success in zip(generated, successes):
    note = runs[info["model"]]["note"] if info["selection"] == "top" else ""
    rows += [{**info, **rate, "reason": rate["reason"] or note} for rate in heads.ablation_rates(out, success, P.seed)]
heads_table = pd.DataFrame(rows).assign(label=lambda f: f["metric"].map(LABELS)).sort_values(
    ["model", "share", "rescale", "selection", "draw", "metric"], kind="stable", ignore_index=True)
heads_table.to_csv(results / "06_refusal_heads.csv", index=False)
print(f"{heads_table['value'].notna().sum()} of {len(heads_table)} rows measured; why the others are NA: "
      f"{heads_table.loc[heads_table['value'].isna(), 'reason'].unique().tolist()}")
summary = heads.summarize_draws(heads_table)
summary.round(3)

# %%
fig, axes = plt.subplots(len(runs), 2, figsize=(9, 3.0 * len(runs)), squeeze=False)
for name, row in zip(runs, axes):
    for ax, metric in zip(row, ["ASR", "ORR"]):
        part = summary[(summary["model"] == name) & (summary["metric"] == metric)]
        base = part[part["selection"] == "none"]["value"].iloc[0]
        ax.axhline(base, color="grey", lw=1, ls="--", label="no ablation")
        for i, rule in enumerate(r or "none" for r in P.rescale_rules):
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
        ax.set_xticks([100 * s for s in P.head_shares], [f"{100 * s:g}%" for s in P.head_shares])
handles, labels = axes[0][0].get_legend_handles_labels()
fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False)
fig.tight_layout(rect=(0, 0.07 / len(runs) ** 0.5, 1, 1))
plots.save_figure(fig, "06_refusal_heads", profile)

# %% [markdown]
# ## Published vs ours
# Published ASR: Llama-Guard-4 on the answer's first 512 characters. Ours: `asr_judge` (the table's `label`
# column); with paper B's refusal words (CPU profiles) the two are comparable in direction, not in level.

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
# points (paper B's rescaling rule).

# %%
cards = {name: json.loads(path.read_text()) for name in runs
         if (path := registry.local_file(name, "organism_card.json"))}
for name, card in cards.items():
    planted = [tuple(h) for h in card.get("planted", {}).get("suppression_heads", {}).get("heads", [])]
    scores = runs[name]["scores"]
    ranks = {(int(r.layer), int(r.head)): int(r.rank) for r in scores.itertuples()} if scores is not None else {}
    print(f"{name}: planted heads {planted or 'none'}" + (f" at ranks {[ranks.get(h) for h in planted]} of "
                                                         f"{len(ranks)}" if planted else ""))
    if len(planted) == 2 and ranks and 0.04 in P.head_shares:  # why the organism profile adds a 4% share
        print(f"  two heads were planted here; of {len(ranks)} heads 3% (and 1.5%) is "
              f"{heads.head_count(len(ranks), 0.03)[0]}, too few to remove both, so the profile adds 4% "
              f"(k = {heads.head_count(len(ranks), 0.04)[0]}), the share the target below is judged at")
if "organism-locked" in cards and runs["organism-locked"]["scores"] is not None:
    part = summary[(summary["model"] == "organism-locked") & (summary["metric"] == "ASR")]
    base = part[part["selection"] == "none"]["value"].iloc[0]
    total = len(runs["organism-locked"]["scores"])
    for share in P.head_shares:
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
    print("organism control skipped: organism-locked is not among the models (or has no head scores)")

# %%
print(f"wall time {time.perf_counter() - started:.0f} s")
