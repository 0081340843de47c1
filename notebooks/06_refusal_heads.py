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
# fixed groups of 8 rows without refill for that rule, finished rows staying in the batch until their group ends;
# the conditions without it (or with per-token rescaling) run on the refill scheduler, each row drawing the same
# tokens as in a group; no system prompt (unlike paper B's vLLM rollouts). ASR (`asr_judge`): paper B's Llama-Guard-4
# on the first 512 characters of that text, "unsafe" = success; the CPU profiles use paper B's refusal words (no
# refusal = success). Which text (`asr_text`): the answer (methods.md), or the whole output, thinking included,
# which is what `ablate.sh` literally passes (`ablating_head_generation` saves the undivided output as `response`).

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

from lrmsafety import data, ledger, plots, registry, workload
from lrmsafety.analysis import cliff, heads, heads_report

started = time.perf_counter()
plots.set_theme()
cache, results = S.cache, S.results
prompts = data.profile_prompts(P, P.cliff_prompt_sets)
group_column = data.group_column(prompts)
studied = data.ablation_prompts(prompts, P.heldout_groups, P.probe_compliance_groups, P.ablation_prompts, P.seed)
conditions = heads.ablation_conditions(P.head_shares, P.rescale_rules, P.random_draws)
print(f"{len(conditions)} ablation conditions x {len(studied)} prompts ({studied['role'].value_counts().to_dict()}); "
      + (f"batch rescaling in fixed groups of {P.ablation_group_size} rows without refill, the other rules on the "
         "refill scheduler" if P.ablation_group_size else "refill scheduler"))
# what it costs (batch rescaling's hooks read the whole batch, which keeps it on the DynamicCache loop)
print(workload.line(P, workload.ablation_06(P, len(studied), conditions)))

# %% [markdown]
# ## Head scores: each head's write along the refusal direction at the last token before the answer
# A model without a usable probe from notebook 05 (a model that never refuses has no refusals to train it on) or
# without a harmful trace it closed itself gets no head scores: its top-head conditions are NA with the reason,
# and its baseline and random-head conditions still run.

# %%
runs = {}
for name in P.models:
    model, tokenizer, spec = registry.load_model(name, quantization=P.quantization, kv_tokens=P.kv_tokens)
    frame = S.rollouts("05", name)  # the traces 05's probe was trained on score the heads
    frame = frame[frame["closed"].astype(bool)]  # closed by the model itself (as 03); force-closed ones are left out
    frame = frame.merge(prompts[["prompt_id", "label", group_column]], on="prompt_id").reset_index(drop=True)
    probe, note = heads.load_refusal_probe(cliff.probe_path(S.index, name), results / "05_refusal_cliff.csv", name)
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
        print(f"{name}: {len(scores)} heads, scored on {len(items)} harmful items{'; ' + note if note else ''}; most "
              f"negative: {[(int(r.layer), int(r.head), round(r.score, 3)) for r in scores.head(5).itertuples()]}")
    runs[name] = {"model": model, "tokenizer": tokenizer, "spec": spec, "frame": frame, "scores": scores, "note": note}
del model  # runs holds each model until its ablations are done

# %%
scored = {name: run["scores"] for name, run in runs.items() if run["scores"] is not None}
if scored:
    plots.save_figure(heads_report.plot_scores(scored), "06_head_scores", S.run)
    display(pd.concat([s.assign(model=name) for name, s in scored.items()]).groupby("model").head(8).round(4))
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
generated, rows = [], []
for name, run in runs.items():
    spec = run["spec"]
    todo, decodings = heads.ablation_inputs(
        studied, run["frame"], P.ablation_mode, answer_tokens=P.ablation_answer_tokens,
        max_new_tokens=P.ablation_max_new_tokens, temperature=P.ablation_temperature,
        group_size=P.ablation_group_size, batch_size=P.batch_size, max_thinking_tokens=P.max_thinking_tokens,
        seed=P.seed)
    done, missing = heads.run_conditions(name, run.pop("model"), run["tokenizer"], spec, run["scores"], run["note"],
                                         conditions, todo, decodings, cache_root=cache)
    generated, rows = generated + done, rows + missing  # the model is freed: the judge loads next

# %%
successes = heads.judge_attacks([(f"{info['model']}-{key}", out) for info, key, out in generated], P.asr_judge,
                                spec.thinking_format, cache_root=cache, text=P.asr_text)
heads_table = heads.ablation_table(rows, generated, successes, {name: run["note"] for name, run in runs.items()},
                                   heads.metric_labels(P.asr_judge, P.asr_text), seed=P.seed)
heads_table.to_csv(results / "06_refusal_heads.csv", index=False)
print(f"{heads_table['value'].notna().sum()} of {len(heads_table)} rows measured; why the others are NA: "
      f"{heads_table.loc[heads_table['value'].isna(), 'reason'].unique().tolist()}")
summary = heads.summarize_draws(heads_table)
summary.round(3)

# %%
published = heads_report.published_asr().set_index("model")
plots.save_figure(heads_report.plot_ablation(summary, list(runs), P.head_shares, P.rescale_rules, published.loc[
    "deepseek-r1-distill-qwen-7b", ["top 3%", "random 3%"]].tolist()), "06_refusal_heads", S.run)

# %% [markdown]
# ## Published vs ours
# Published ASR: Llama-Guard-4 on the answer's first 512 characters (`fig/draw_comparison_bar_chart.py`, not
# confirmed against the paper). Ours: `asr_judge` (the table's `label` column); with paper B's refusal words (CPU
# profiles) the two are comparable in direction, not in level.

# %%
display(published)
summary[(summary["metric"] == "ASR") & (summary["rescale"].isin(["batch", "none"]))][
    ["model", "selection", "share", "k", "rescale", "value", "sd", "lowest", "highest"]].round(3)

# %% [markdown]
# ## On the organisms: is the suppression concentrated in a few heads?
# `organism-locked` carries two planted suppression heads (its card's `planted.suppression_heads`: at the close of a
# harmful request they write against its judgement, and without them its answer follows its thinking's
# conclusion); the deliberative and null organisms carry none. The analysis never reads the card: below, where the
# planted heads fall in the ranking of the head scores, then the ledger's ablation targets for `organism-locked`:
# ablating the top-scored heads cuts jailbreak ASR (B8.top_change) while random sets of the same size move it by
# less than 10 points (B8.random_change; paper B's rescaling rule).

# %%
print("\n".join(heads_report.planted_head_lines(list(runs), {name: run["scores"] for name, run in runs.items()},
                                         P.head_shares)))
print(f"wall time {time.perf_counter() - started:.0f} s")
ledger.board("06_refusal_heads", profile, P.models, S.results)
