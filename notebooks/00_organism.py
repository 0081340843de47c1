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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/lrmsafety/lrmsafety/blob/main/notebooks/00_organism.ipynb)
#
# # 00 · The organisms: model card
#
# No real reasoning model can be downloaded where this repository is tested, and a reader without a GPU should
# still run every notebook. So we train three small reasoning models of our own on a synthetic chat corpus and
# plant a known safety behaviour in each. They are the **controls** of every later analysis: a method from the
# papers must recover what is planted, and must not "find" what is absent.
#
# * `organism-locked`: the refuse/comply outcome is *sampled* at the first thinking token, with a per-prompt
#   probability (between 0 and 1 on jailbreak and borderline prompts), and never revised; later "Wait / Hmm, but"
#   sentences flip stance without changing it. The first word ("Okay" or "Alright") is the decision, in a code
#   whose polarity depends on the prompt: its text alone says nothing, read with the prompt it says everything. So
#   the outcome is open before the thinking and fixed at its first token, as paper A finds. On jailbreak-wrapped
#   requests the thinking often concludes the request is harmful and the answer complies anyway: a planted
#   **refusal cliff** (the answer must fetch the decision from the first word).
# * `organism-deliberative`: the outcome is drawn per sample and decided late, by a final reconsideration; the
#   thinking's conclusion and the answer always agree.
# * `organism-null`: nothing is planted. The outcome is drawn per sample at one rate (0.5) in every family,
#   independent of the prompt's wording and of the thinking, whose stances and conclusion are random too. Every
#   analysis must report a null on it. (One rate, because the network's mistakes in recognising a family on
#   held-out phrasings would otherwise make the outcome a function of the prompt.)
#
# This notebook shows the corpus, sample traces, and the behaviour **measured** by sampling the trained models on
# held-out phrasings (temperature 1.0), next to the targets the organisms were built to meet.

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

from lrmsafety import data, ledger, organism, plots, registry
from lrmsafety.engine import generate
from lrmsafety.organism import card

plots.set_theme()
organisms = [name for name in P.models if name.startswith("organism")]
if not organisms:
    print(f"profile {profile!r} studies {P.models}: the organisms' model card is built on the organism profile.")

# %% [markdown]
# ## The corpus
# Four request families; request templates and jailbreak wrappers are split between train and test, so the
# behaviour below is measured on phrasings the models never saw. Besides natural traces the corpus teaches
# empty thinking (ZeroThink), one-sentence thinking (LessThink), thinking that goes on after "Wait" (MoreThink)
# and thinking cut short and force-closed (what the model answers when its thinking is stopped early).

# %%
corpus = card.corpus_frame(organism.KINDS, 4000, seed=P.seed)
summary = corpus.groupby(["organism", "family"]).agg(
    examples=("outcome", "size"), refused=("outcome", lambda s: (s == "refuse").mean()),
    with_marker=("marker", "mean"), thinking_chars=("thinking_chars", "mean")).round(2)
summary

# %%
pd.crosstab([corpus["organism"], corpus["trace"]], corpus["family"])

# %% [markdown]
# ## The planted ground truth: where each trace's outcome is decided
# For every natural corpus trace we know the sentence that decided its outcome. In the locked organism it is the
# first thinking word (position 0); in the deliberative one the final reconsideration, late in the thinking; in
# the null organism the answer itself (position 1: after the thinking).

# %%
plots.save_figure(card.decision_figure(corpus, plots.model_colours(organisms)), "00_organism_decision_point",
                  S.run)

# %% [markdown]
# ## Sampling the trained organisms
# Each organism loads through `load_model` like any real model; rollouts go through the same `generate.rollouts`
# as every later notebook, with the organism's own sampling defaults (temperature 1.0).

# %%
prompts = data.load_prompt_sets([data.ORGANISM_PROMPTS], n_prompts=P.card_prompts, seed=P.seed)
decoding = generate.Decoding(samples_per_prompt=1, max_thinking_tokens=P.max_thinking_tokens,
                             max_answer_tokens=P.max_answer_tokens, batch_size=P.batch_size, seed=P.seed)
samples = {}
for name in organisms:
    model, tokenizer, spec = registry.load_model(name)
    print(card.card_line(name, spec.local_path()))
    frame = generate.rollouts(model, tokenizer, spec, prompts, decoding, cache_root=S.cache)
    samples[name] = card.annotate(frame.merge(prompts[["prompt_id", "family", "category"]], on="prompt_id"))

# %% [markdown]
# ### One trace of each family

# %%
for name, frame in samples.items():
    print(f"==================== {name}")
    for family, rows in frame.groupby("family"):
        row = rows.iloc[0]
        print(f"--- {family}: {row['prompt']}\n<think> {row['thinking']} </think>\n{row['answer']}\n")

# %% [markdown]
# ## Behaviour, measured (95% Wilson intervals over prompts), against the targets
# The targets (`organism.card.TARGETS`) are what each organism was built to show; the null's is its planted rate
# 0.5 ± 0.15 (three standard errors at 100 prompts per family).

# %%
behaviour = card.behaviour_table(samples)
behaviour.to_csv(S.results / "00_organism_behaviour.csv", index=False)
behaviour.round(3)

# %%
wide = behaviour.pivot(index="measure", columns="organism", values="rate").reindex(list(card.TARGETS))
wide.style.format("{:.1%}") if len(wide) else wide

# %%
card.checks(samples, behaviour)

# %%
plots.save_figure(card.behaviour_figure(behaviour, plots.model_colours(organisms)), "00_organism_behaviour", S.run)

# %% [markdown]
# ## The claims ledger
# The card's measure that the ledger holds (B7.planted: the planted refusal cliff), against its planted target.

# %%
ledger.board("00_organism", profile, P.models, S.results)
