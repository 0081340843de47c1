"""Safe completions in the organisms' language, for paper B's Cliff-as-a-Judge pool.

Paper B pairs the target model's own thinking with a *dataset's* safe completion (WildJailbreak's); the organisms'
equivalent dataset is their training corpus: the answers of its refused jailbreak examples.
"""

from __future__ import annotations

import random

from .corpus import generate_corpus


def corpus_refusals(kind: str, seed: int = 0, n_examples: int = 2000) -> list[str]:
    """The distinct refusal answers that the corpus of ``kind`` gives to jailbreak-wrapped requests."""
    examples = generate_corpus(kind, n_examples, seed=seed, split="train")
    answers = sorted({e.answer for e in examples if e.family == "jailbreak" and e.outcome == "refuse"})
    if not answers:
        raise ValueError(f"the {kind} corpus of {n_examples} examples holds no refused jailbreak: raise n_examples")
    return answers


def safe_answers(n: int, kind: str, seed: int = 0) -> list[str]:
    """n safe answers drawn (seeded, with replacement) from the corpus's jailbreak refusals."""
    pool = corpus_refusals(kind, seed=seed)
    rng = random.Random(f"safe-answers|{kind}|{seed}")
    return [rng.choice(pool) for _ in range(n)]
