"""The organisms: small reasoning models with planted, known safety behaviour, and a null (controls for papers A
and B). Locked and deliberative carry a planted judgement in the last layer (planted.judgement_loss); locked also
carries two planted refusal-suppressing heads (corpus.SUPPRESSION_HEADS, planted.SuppressionHeads), and was trained
with random other heads zeroed so that no other small set of heads matters as they do (planted.HeadDropout).

    generate_corpus(kind, n, seed, split)   the synthetic chat corpus with per-example ground truth (corpus.py)
    requests.make_prompt(rng, family, split) a request in a split's phrasings (requests.py)
    train_organism(kind, out_dir, ...)      corpus -> tokenizer -> Qwen2ForCausalLM -> model directory (train.py)
    eval_prompts(n_per_family, seed, split) held-out prompts as the repository's tidy frame (evaluate.py)
    classify_answer(answer)                 "refusal" | "compliance" | "unknown" from the answer templates
    behaviour_check(model_dir, ...)         sample a trained organism and tabulate its behaviour per family
    card.behaviour_table(samples), ...      notebook 00's model card: measured behaviour against the targets (card.py)
"""

from .corpus import FAMILIES, KINDS, Example, generate_corpus, make_example, render_prompt
from .evaluate import (
    behaviour_check,
    classify_answer,
    conclusion_says_harmful,
    eval_prompts,
    has_marker,
    split_trace,
)


def train_organism(kind, out_dir, **kwargs):
    """See train.train_organism (imported lazily so that `python -m lrmsafety.organism.train` runs cleanly)."""
    from .train import train_organism as _train

    return _train(kind, out_dir, **kwargs)


__all__ = [
    "FAMILIES", "KINDS", "Example", "generate_corpus", "make_example", "render_prompt", "behaviour_check",
    "classify_answer", "conclusion_says_harmful", "eval_prompts", "has_marker", "split_trace", "train_organism",
]
