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
# `params/<profile>.yaml`. The loop is `lrmsafety.analysis.cliff_as_judge` (the selectors: its `selection`).
#
# On the organisms the pool is 01's rollouts of plain and jailbreak-wrapped harmful requests (WildJailbreak's harmful
# half), each with a refusal from the organism's corpus. `organism-locked` carries a planted cliff, so the cliff
# selector should beat random at the smallest shares; `organism-deliberative` has none, but MS still ranks any
# compliance above a refusal, so there its lead over random measures that alone.

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

from lrmsafety import data, ledger, plots, workload
from lrmsafety.analysis import cliff_as_judge as caj
from lrmsafety.analysis import finetune
from lrmsafety.analysis.cliff_as_judge import pool as safety_pool
from lrmsafety.engine import generate

plots.set_theme()
started = time.perf_counter()
results = S.results
organisms = P.prompt_sets == ["organism"]
studied = [m for m in P.models if P.cliff_models is None or m in P.cliff_models]
prompts = data.profile_prompts(P)
eval_decoding = generate.Decoding(samples_per_prompt=1, max_thinking_tokens=P.max_thinking_tokens,
                                  max_answer_tokens=P.eval_answer_tokens, batch_size=P.batch_size, seed=P.seed)
recipe = finetune.Recipe(name="cliff-as-a-judge", data="09 pool", **P.cliff_train)
print(f"models: {studied}; shares: {P.cliff_shares}; selectors: {P.cliff_selectors}; "
      f"epoch arm: {P.cliff_full_epochs or 'none'} epochs")

# %% [markdown]
# ## Held-out evaluation prompts, and what it costs

# %%
eval_harmful, eval_benign = safety_pool.eval_prompts(organisms, P.cliff_eval_prompts, P.data_dir, P.seed)
study = caj.Study(S.cache, P.label_judges, P.quantization, recipe,
                  pd.concat([eval_harmful, eval_benign], ignore_index=True), eval_decoding,
                  full_epochs=P.cliff_full_epochs, probes=S.index, backend=P.backend)
if organisms:
    from lrmsafety.organism import safe_answers

    pool_source = "notebook 01's harmful and jailbreak rollouts; safe answers: refusals from the organism's corpus"
    source = safe_answers.cliff_pool_source(S, prompts, P.cliff_pool_per_prompt, seed=P.seed)
else:
    pool_prompt_frame, pool_source = safety_pool.pool_prompts(P.data_dir, n=P.cliff_pool_size, seed=P.seed)
    source = study.own_rollouts(pool_prompt_frame)
n_runs = caj.n_runs(P.cliff_selectors, P.cliff_shares, P.cliff_random_seeds, P.cliff_train_seeds)
print(f"pool: {pool_source}")
print(f"held-out evaluation: {len(eval_harmful)} harmful, {len(eval_benign)} benign prompts; "
      f"{n_runs} fixed-step adapters per model{' and the epoch arm' if P.cliff_full_epochs else ''}")
if not organisms:
    print(workload.cliff_as_judge_note(P, n_runs, len(study.eval_prompts), recipe))

# %% [markdown]
# ## The pool and each example's cliff size
# Notebook 05's refusal probe (paper B's, fitted on notebook 01's rollouts; `probes.LinearRefusalProbe.load` of the
# file 05 saves) is read at every token of each pool example's own thinking; MS = max over the thinking − score at
# the last token before the answer. A model without closed traces has no pool, and one without 05's probe no cliff:
# what cannot run is in the table as NA, with why.

# %%
conditions = caj.conditions(P.cliff_selectors, P.cliff_shares, P.cliff_full_epochs)
pools, not_measured = study.prepare_all(studied, conditions, source)
caj.cliff_summary(pools)

# %% [markdown]
# ## Selections, adapters and held-out evaluation
# Every selector takes exactly `round(share × pool)` examples (at least one); the fixed-step adapters all train
# `max_steps` steps, the epoch arm the whole pool for `cliff_full_epochs` epochs. Adapters and evaluations are
# cached by manifest: a rerun trains and generates nothing. A model without a pool is evaluated untuned only. With
# `backend: vllm` every adapter is trained first, then one vLLM engine generates the held-out rollouts of the base
# model and of each adapter (a LoRA request each).

# %%
evaluated, trained = study.run_all(pools, P.cliff_selectors, P.cliff_shares, P.cliff_random_seeds, seed=P.seed,
                                   train_seeds=P.cliff_train_seeds)
seconds = sum(r.seconds for r in trained if r.trained)
print(f"{evaluated.groupby(['model', 'selector', 'seed', 'share']).ngroups} evaluated conditions; "
      f"{sum(r.trained for r in trained)} adapters trained here in {seconds:.0f} s")

# %% [markdown]
# ## ASR and ORR by selector and share (95% intervals)
# Per run: Wilson intervals over held-out prompts (one sample each). Every selector fine-tunes once per seed of
# `cliff_train_seeds`, random selection once per selection seed; each condition's runs are pooled (`seed = -1`:
# a bootstrap over prompts). "ASR minus random" is each selector against random selection at the same share, with
# a bootstrap over prompts and runs (a LoRA run at this size is noisy). MS (peak minus final score) is near 0 on
# a refused trace, whose final score is its peak: a cliff selector takes complied traces first on any model, and
# "ASR minus rule_complied" (complied traces at random) leaves what the cliff adds beyond the outcome. Conditions
# that could not run are NA, with the reason in `note`.

# %%
table = pd.concat([caj.rate_table(evaluated, seed=P.seed, judge=study.judge)] + not_measured, ignore_index=True)
table.to_csv(results / "09_cliff_as_judge.csv", index=False)
caj.outcomes(evaluated, study.judge).to_csv(results / "09_heldout_outcomes.csv", index=False)  # for make seeds
pooled = caj.pooled(table)
pooled.set_index(["model", "selector", "share", "metric"])["value"].unstack("metric").round(3)

# %%
versus = table[table["metric"].str.startswith("ASR minus")]
versus[["model", "selector", "share", "metric", "value", "low", "high", "n"]].round(3)

# %% [markdown]
# ## ASR against the share of the pool, beside the published curve
# Paper B's curve is its figure script's (`cliff_as_judge.PUBLISHED`, likely R1-Distill-Llama-8B; low–medium
# confidence); the untuned model is the grey band, the epoch arm the star at 100%.

# %%
asr = pooled[(pooled["metric"] == "ASR") & pooled["value"].notna()]
fig = caj.figure(asr, studied, caj.PUBLISHED, caj.PUBLISHED_BASE_ASR, P.cliff_shares, P.cliff_full_epochs)
plots.save_figure(fig, "09_cliff_as_judge", S.run)

# %% [markdown]
# ## Utility: what the fine-tuning costs on benign requests
# ORR is in the table above. On the organisms, the share of benign answers that are a well-formed compliance in
# the corpus's template. Paper B's MMLU-Pro and ARC-C are not run (no offline copy): no utility beyond ORR is claimed.

# %%
if organisms:
    display(safe_answers.benign_quality(evaluated))

# %% [markdown]
# ## The controls and the published numbers
# At the smallest shares, cliff (MS) against random; at 100%, the fixed-step arm against the epoch arm. Then the
# claims ledger's rows: our ASR beside paper B's (on the organisms: organism-locked, cliff below random at 5%;
# organism-deliberative, no difference).

# %%
checks = [c for name in studied for share in P.cliff_shares if share <= 0.05 and (c := caj.compare(asr, name, share))]
checks += [c for name in studied if (c := caj.compare(asr, name, 1.0, "cliff_ms", caj.EPOCH_ARM))]
display(pd.DataFrame(checks)) if checks else print("nothing to compare: the selectors did not run (see the NA notes)")
print(f"09 took {time.perf_counter() - started:.0f} s")
ledger.board("09_cliff_as_judge", profile, P.models, S.results)
