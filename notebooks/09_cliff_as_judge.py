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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/09_cliff_as_judge.ipynb)
#
# # 09 · Paper B: Cliff-as-a-Judge, the few training examples that repair safety
#
# **Claim** (Yin et al., "Refusal Falls off a Cliff"; methods.md section 2): rank a safety fine-tuning pool by each
# example's *refusal cliff* (how far the refusal probe falls between its plateau in the thinking and the last token
# before the answer) and fine-tune on the top examples only: about 1.7% of the data (700 of 40K) matches training
# on all of it. The figure script's curve (likely R1-Distill-Llama-8B; low–medium confidence) has
# Cliff-as-a-Judge at ASR .01 with 12.5% of the data, where random selection is at .04 and rule-based at .09.
#
# **Method.** The pool: harmful prompts with the model's *own* thinking, then the close, then a safe answer
# (paper B: `own thinking + "\n</think>\n\n" + the dataset's safe completion`). Only traces whose thinking the model
# closed itself enter it: the cliff is read at the last tokens before the answer, and in a force-closed trace those
# are our close, not the model's. Each example's cliff size comes from notebook 05's refusal probe (paper B's: last
# layer, refused harmful vs complied benign rollouts): **MS** = max score over the thinking − score at the last
# token before the answer, and the official code's **final-token** score (lowest first). Selectors at equal data:
# top x% by MS, by the final-token score, a random x% (several seeds), and two word rules of the official code:
# `rule` (src/train/create_data.py: thinking that mentions one of paper B's 56 refusal words) and `rule_complied`
# (main.py, which writes `wildjailbreak_rule.json`: rollouts whose answer's first 128 characters hold none of
# them, i.e. the model complied). Which of the two is the paper's "rule-based" line is ambiguous.
#
# Each selection trains a LoRA adapter with the loss on the completion only, **for the same number of steps**, so
# the selectors differ only in *which* examples they see; but then a 1.7% selection is seen many times and the
# whole pool less than once, an under-trained full-data model. So 100% has a second arm, **`all_epochs`**: the
# whole pool for `cliff_full_epochs` epochs, reported beside the fixed-step arm. Each adapter is evaluated on
# **held-out** prompts (none is in the pool): ASR on jailbreak prompts and over-refusal (ORR) on benign ones,
# labelled by paper B's refusal rule (`refused_b`; a guard model on the paper profile where `label_judges` says
# so), 95% intervals. Paper B's fine-tuning hyperparameters are not in its repository: ours are in
# `params/<profile>.yaml`. The loop itself is `lrmsafety.analysis.cliff_as_judge`; the selectors are `lrmsafety.analysis.cliff_as_judge.selection`.
#
# On the organisms the pool is the jailbreak family's rollouts of notebook 01 (own thinking) with a refusal from
# the organism's corpus as the safe answer. The control: `organism-locked` carries a planted cliff (its complied
# jailbreaks conclude "harmful" and comply anyway), so selection by cliff should beat random at the smallest
# shares; `organism-deliberative` has no cliff, so the two should not differ.

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
import time

import pandas as pd

from lrmsafety import data, paths, plots, registry
from lrmsafety.analysis import cliff_as_judge, finetune
from lrmsafety.analysis.cliff_as_judge import pool as safety_pool
from lrmsafety.engine import generate
from lrmsafety.analysis.cliff_as_judge import EPOCH_ARM, PUBLISHED, PUBLISHED_BASE_ASR, Study, epoch_steps, rate_table

from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # the base model is loaded once per adapter: no wall of loading bars
plots.set_theme()
started = time.perf_counter()
cache = paths.CACHE_DIR / profile
results = paths.RESULTS_DIR / profile
results.mkdir(parents=True, exist_ok=True)
organisms = P.prompt_sets == ["organism"]
studied = [m for m in P.models if P.cliff_models is None or m in P.cliff_models]
prompts = data.load_prompt_sets(P.prompt_sets, n_prompts=P.n_prompts, data_dir=P.data_dir, seed=P.seed)
eval_decoding = generate.Decoding(samples_per_prompt=1, max_thinking_tokens=P.max_thinking_tokens,
                                  max_answer_tokens=P.eval_answer_tokens, batch_size=P.batch_size,
                                  seed=P.seed)
recipe = finetune.Recipe(name="cliff-as-a-judge", data="09 pool", **P.cliff_train)
print(f"models: {studied}; shares: {P.cliff_shares}; selectors: {P.cliff_selectors}; "
      f"epoch arm: {P.cliff_full_epochs or 'none'} epochs")

# %% [markdown]
# ## Held-out evaluation prompts, and what it costs

# %%
if organisms:
    candidates = data.load_prompt_sets(["organism"], n_prompts=P.cliff_eval_prompts, seed=P.seed + 1)
    eval_harmful = candidates[candidates["family"] == "jailbreak"]
    eval_benign = candidates[candidates["label"] == "benign"].groupby("family").head(P.cliff_eval_prompts // 4)
    pool_source = "notebook 01's jailbreak rollouts; safe answers: refusals from the organism's corpus"
else:
    eval_harmful = data.load_datasets(["wildjailbreak"], P.data_dir, limit=P.cliff_eval_prompts, seed=P.seed)
    eval_benign = data.load_datasets(["xstest"], P.data_dir, seed=P.seed).query("label == 'benign'")
    eval_benign = eval_benign.head(P.cliff_eval_prompts // 2)
    pool_prompt_frame, pool_source = safety_pool.pool_prompts(P.data_dir, n=P.cliff_pool_size, seed=P.seed)
study = Study(cache, P.label_judges, P.quantization, recipe, pd.concat([eval_harmful, eval_benign], ignore_index=True),
              eval_decoding, full_epochs=P.cliff_full_epochs)
partial = [share for share in P.cliff_shares if share < 1]  # at 100% every selector takes the same data: one run
n_runs = len(partial) * (len(P.cliff_selectors) - 1 + len(P.cliff_random_seeds)) + (len(partial) < len(P.cliff_shares))
print(f"pool: {pool_source}")
print(f"held-out evaluation: {len(eval_harmful)} harmful, {len(eval_benign)} benign prompts; "
      f"{n_runs} fixed-step adapters per model{' and the epoch arm' if P.cliff_full_epochs else ''}")
if not organisms:
    n_evaluated = (n_runs + 1 + bool(P.cliff_full_epochs)) * len(study.eval_prompts)  # the base model too
    tokens = (P.cliff_pool_size + n_evaluated) * (P.max_thinking_tokens + P.max_answer_tokens)
    epochs = epoch_steps(P.cliff_pool_size, P.cliff_full_epochs or 1, recipe.batch_size, recipe.grad_accum)
    print(f"at most {tokens:,} generated tokens per model; about {tokens / P.gpu_tokens_per_second / 3600:.1f} GPU hours "
          f"at {P.gpu_tokens_per_second} tokens/s, plus {n_runs} LoRA runs of {recipe.max_steps} steps"
          + (f" and one of at most {epochs} (the whole pool, {P.cliff_full_epochs} epochs)" if P.cliff_full_epochs else ""))

# %% [markdown]
# ## The pool and each example's cliff size
# Notebook 05's refusal probe (paper B's, fitted on notebook 01's rollouts; `probes.LinearRefusalProbe.load` of the
# file 05 saves) is read at every token of each pool example's own thinking; MS = max over the thinking − score at the last token before the answer. A model without
# closed traces has no pool, and one without 05's probe no cliff: what cannot run is in the table as NA, with why.

# %%
def pool_rollouts(name, model, tokenizer, spec):
    """(the pool's rollouts, one safe answer per row of a frame of them)."""
    if organisms:
        from lrmsafety.organism.safe_answers import safe_answers

        rollouts = S.rollouts("01", name)
        rollouts = rollouts[rollouts["prompt_id"].isin(prompts.query("family == 'jailbreak'")["prompt_id"])
                            & (rollouts["sample_index"] < P.cliff_pool_per_prompt)]
        return rollouts, lambda frame: safe_answers(len(frame), kind=name.removeprefix("organism-"), seed=P.seed)
    rollouts = generate.rollouts(model, tokenizer, spec, pool_prompt_frame, eval_decoding, cache_root=cache)
    return rollouts.merge(pool_prompt_frame[["prompt_id", "safe_answer"]], on="prompt_id"), \
        lambda frame: frame["safe_answer"]


conditions = [(s, share) for s in P.cliff_selectors for share in P.cliff_shares]
conditions += [(EPOCH_ARM, 1.0)] * bool(P.cliff_full_epochs)  # what the table holds for each model, NA or not
pools, not_measured = {}, []
for name in studied:
    model, tokenizer, spec = registry.load_model(name, quantization=P.quantization)
    pools[name], note, missing = study.prepare(name, model, tokenizer, spec, *pool_rollouts(name, model, tokenizer,
                                                                                            spec), conditions)
    not_measured += missing
    print(f"{name}: {note}")
    del model
cliff_as_judge.cliff_summary(pools)

# %% [markdown]
# ## Selections, adapters and held-out evaluation
# Every selector takes exactly `round(share × pool)` examples (at least one); the fixed-step adapters all train
# `max_steps` steps, the epoch arm the whole pool for `cliff_full_epochs` epochs. Adapters and evaluations are
# cached by manifest: a rerun trains and generates nothing. A model without a pool is evaluated untuned only.

# %%
evaluations, trained = [], []
for name, pool in pools.items():
    frames, runs = study.run(name, pool, P.cliff_selectors, P.cliff_shares, P.cliff_random_seeds, seed=P.seed)
    evaluations, trained = evaluations + frames, trained + runs
evaluated = pd.concat(evaluations, ignore_index=True)
seconds = sum(r.seconds for r in trained if r.trained)
print(f"{evaluated.groupby(['model', 'selector', 'seed', 'share']).ngroups} evaluated conditions; "
      f"{sum(r.trained for r in trained)} adapters trained here in {seconds:.0f} s")

# %% [markdown]
# ## ASR and ORR by selector and share (95% intervals)
# Per seed: Wilson intervals over held-out prompts (one sample each). Random selection pooled over its seeds:
# a bootstrap over prompts of the pooled samples (rows with `seed = -1`). Conditions that could not run are NA,
# with the reason in `note`.

# %%
table = pd.concat([rate_table(evaluated, seed=P.seed, judge=study.judge)] + not_measured, ignore_index=True)
table.to_csv(results / "09_cliff_as_judge.csv", index=False)
pooled = table[(table["seed"] == -1) | (table["selector"] != "random")]
for note, rows in pooled[pooled["note"] != ""].groupby("note"):
    print(f"NA ({', '.join(sorted(set(rows['model'])))}; {', '.join(dict.fromkeys(rows['selector']))}): {note}")
pooled.set_index(["model", "selector", "share", "metric"])["value"].unstack("metric").round(3)

# %% [markdown]
# ## ASR against the share of the pool, beside the published curve

# %%
asr = pooled[(pooled["metric"] == "ASR") & pooled["value"].notna()]
fig = cliff_as_judge.figure(asr, studied, PUBLISHED, PUBLISHED_BASE_ASR, P.cliff_shares, P.cliff_full_epochs)
plots.save_figure(fig, "09_cliff_as_judge", profile)

# %% [markdown]
# ## Utility: what the fine-tuning costs on benign requests
# ORR is in the table above. On the organisms, answer quality against the corpus: the share of benign answers
# that are a well-formed compliance in the corpus's template. On the paper profile, paper B's MMLU-Pro and ARC-C
# are not run here (no offline copy); no utility number beyond ORR is claimed.

# %%
if organisms:
    from lrmsafety import organism

    benign = evaluated[evaluated["label"] == "benign"].copy()
    benign["well_formed"] = benign["answer"].map(organism.classify_answer) == "compliance"
    quality = benign.groupby(["model", "selector", "share"])["well_formed"].agg(["mean", "size"])
    display(quality.unstack("share").round(3))

# %% [markdown]
# ## The controls and the published numbers
# At the smallest shares, cliff (MS) against random; at 100%, the fixed-step arm against the epoch arm.

# %%
checks = [c for name in studied for share in P.cliff_shares if share <= 0.05
          and (c := cliff_as_judge.compare(asr, name, share))]
checks += [c for name in studied if (c := cliff_as_judge.compare(asr, name, 1.0, "cliff_ms", EPOCH_ARM))]
if organisms:
    print("organism targets: organism-locked, cliff below random with separate intervals at 1.7-5%; "
          "organism-deliberative, no difference")
display(pd.DataFrame(checks)) if checks else print("nothing to compare: the selectors did not run (see the NA notes)")
published = PUBLISHED.pivot(index="share", columns="selector", values="ASR")
print("published (paper B's figure script, ASR by share of the data):")
display(published)
print(f"09 took {time.perf_counter() - started:.0f} s")
