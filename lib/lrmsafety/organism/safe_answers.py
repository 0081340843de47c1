"""Safe completions in the organisms' language, for paper B's Cliff-as-a-Judge pool.

Paper B pairs the target model's own thinking with a *dataset's* safe completion (WildJailbreak's); the organisms'
equivalent dataset is their training corpus: the answers of its refused harmful requests, plain and jailbreak-wrapped.
The pool's prompts are, like WildJailbreak's harmful half, plain and wrapped harmful requests (``POOL_FAMILIES``):
on both organisms the plain ones are nearly always refused, so that the examples which can repair a complied
jailbreak are a minority of the pool, as in paper B's. Notebook 09's pool on
the organisms (cliff_pool_source) and its utility measure (benign_quality) live here too: the analysis never imports
the organisms.
"""

from __future__ import annotations

import random

from .corpus import generate_corpus

POOL_FAMILIES = ("harmful", "jailbreak")


def corpus_refusals(kind: str, seed: int = 0, n_examples: int = 2000) -> list[str]:
    """The distinct refusal answers that the corpus of ``kind`` gives to harmful requests (``POOL_FAMILIES``)."""
    examples = generate_corpus(kind, n_examples, seed=seed, split="train")
    answers = sorted({e.answer for e in examples if e.family in POOL_FAMILIES and e.outcome == "refuse"})
    if not answers:
        raise ValueError(f"the {kind} corpus of {n_examples} examples holds no refused request: raise n_examples")
    return answers


def safe_answers(n: int, kind: str, seed: int = 0) -> list[str]:
    """n safe answers drawn (seeded, with replacement) from the corpus's refusals of harmful requests."""
    pool = corpus_refusals(kind, seed=seed)
    rng = random.Random(f"safe-answers|{kind}|{seed}")
    return [rng.choice(pool) for _ in range(n)]


def cliff_pool_source(artifacts, prompts, per_prompt: int, seed: int = 0):
    """Notebook 09's pool source on the organisms, ``(name, model, tokenizer, spec) -> (rollouts, answers_for)``:
    notebook 01's rollouts of the plain and jailbreak-wrapped harmful requests (``POOL_FAMILIES``; at most
    ``per_prompt`` per prompt; the model's own thinking), each with a refusal of the organism's corpus as its safe
    answer."""
    harmful = prompts[prompts["family"].isin(POOL_FAMILIES)]["prompt_id"]

    def source(name, model, tokenizer, spec):
        rollouts = artifacts.rollouts("01", name)
        rollouts = rollouts[rollouts["prompt_id"].isin(harmful) & (rollouts["sample_index"] < per_prompt)]
        return rollouts, lambda frame: safe_answers(len(frame), kind=name.removeprefix("organism-"), seed=seed)
    return source


def benign_quality(evaluated):
    """Answer quality on benign prompts against the corpus: the share of answers that are a well-formed compliance
    in the corpus's template (and how many), per model, selector and share, shares as columns."""
    from .evaluate import classify_answer

    benign = evaluated[evaluated["label"] == "benign"].copy()
    benign["well_formed"] = benign["answer"].map(classify_answer) == "compliance"
    quality = benign.groupby(["model", "selector", "share"])["well_formed"].agg(["mean", "size"])
    return quality.unstack("share").round(3)
