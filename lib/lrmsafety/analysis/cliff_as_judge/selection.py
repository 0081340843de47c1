"""Training-data selectors for paper B's Cliff-as-a-Judge: which x% of a safety pool to fine-tune on.

Each selector is a plain function of the pool (one row per example) and a share in (0, 1]; it returns the chosen
row positions, best first, and every selector returns exactly ``subset_size(len(pool), share)`` rows, so that
selectors are compared at equal data.

    by_score(scores, share)             the largest scores first (paper B: the largest cliff size MS)
    by_score(-final_scores, share)      the code's variant (src/train/ranking.py): the lowest final-token score first
    at_random(n, share, seed)           a uniform random subset (the paper's "random" line)
    by_rule(thinking, share, seed)      paper B's rule (src/train/create_data.py): thinking that contains one of the
                                        56 `refusal_words` (case-insensitive), in random order, then the rest
    by_rule_complied(answers, share, seed)
                                        the other rule of the official code (main.py, which writes
                                        data/wildjailbreak_rule.json): rollouts whose answer's first 128 characters
                                        hold none of the 56 words (case-insensitive), i.e. the model complied, in
                                        random order, then the rest
    by_length(lengths, share)           the longest thinking first (a simple heuristic baseline)
    plan(pool, shares, selectors, ...)  every selector's choice at every share: (selector, seed) -> share -> positions

Which rule the paper's "rule-based" curve used is ambiguous: create_data.py's `create_malicious_data` keeps thinking
that mentions a refusal word (`rule` here), while main.py writes the file named `wildjailbreak_rule.json` from the
rollouts whose answer does not (`rule_complied` here). Both are offered; neither is known to be the published one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..cliff import PAPER_B_REFUSAL_WORDS  # paper B's 56 `refusal_words`, verbatim


def subset_size(n_pool: int, share: float) -> int:
    """How many of n_pool examples a share selects: round(share * n), at least 1 (1.7% of 200 is 3)."""
    if n_pool < 1:
        raise ValueError("the pool is empty: there is nothing to select from")
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    return max(1, min(n_pool, int(round(share * n_pool))))


def by_score(scores: Sequence[float], share: float) -> np.ndarray:
    """Positions of the largest scores, largest first; ties keep pool order. NaN scores are never chosen
    before a number (an example whose cliff could not be measured is not evidence of a cliff)."""
    values = np.asarray(scores, dtype=float)
    k = subset_size(len(values), share)
    key = np.where(np.isnan(values), -np.inf, values)
    return np.argsort(-key, kind="stable")[:k]


def at_random(n_pool: int, share: float, seed: int) -> np.ndarray:
    """A uniform random subset of the pool (seeded)."""
    k = subset_size(n_pool, share)
    return np.random.default_rng(seed).permutation(n_pool)[:k]


def mentions_refusal(text: str, words: Sequence[str] = PAPER_B_REFUSAL_WORDS) -> bool:
    """Paper B's test: any refusal word in the text, case-insensitive (typographic and plain apostrophes alike)."""
    lowered = text.lower().replace("\u2019", "'")
    return any(w.lower().replace("\u2019", "'") in lowered for w in words)


def by_rule(thinking: Sequence[str], share: float, seed: int = 0,
            words: Sequence[str] = PAPER_B_REFUSAL_WORDS) -> np.ndarray:
    """Paper B's rule-based selection: examples whose thinking mentions a refusal word. The paper takes the first
    matches in file order; the pool has no meaningful order, so matches come in a seeded random order, and when
    fewer match than the share asks for, the rest is filled with non-matching examples in that order."""
    order = np.random.default_rng(seed).permutation(len(thinking))
    matches = np.array([mentions_refusal(thinking[i], words) for i in order], dtype=bool)
    ranked = np.concatenate([order[matches], order[~matches]])
    return ranked[: subset_size(len(thinking), share)]


RULE_COMPLIED_CHARS = 128  # main.py: `response[:128]`, the answer's first 128 characters


def answer_complies(answer: str, n_chars: int = RULE_COMPLIED_CHARS,
                    words: Sequence[str] = PAPER_B_REFUSAL_WORDS) -> bool:
    """main.py's test, negated: no refusal word (case-insensitive) in the answer's first ``n_chars`` characters.
    Typographic and plain apostrophes count alike, as in ``by_rule`` (main.py compares them as typed)."""
    return not mentions_refusal(str(answer)[:n_chars], words)


def by_rule_complied(answers: Sequence[str], share: float, seed: int = 0, n_chars: int = RULE_COMPLIED_CHARS,
                     words: Sequence[str] = PAPER_B_REFUSAL_WORDS) -> np.ndarray:
    """The official main.py's rule: rollouts whose answer complied by the word rule (no refusal word in its first
    128 characters, case-insensitive), shuffled (main.py: `random.shuffle`, seeded here); when fewer complied than the
    share asks for, the rest is filled with the refused ones in that order."""
    answers = list(answers)
    order = np.random.default_rng(seed).permutation(len(answers))
    complied = np.array([answer_complies(answers[i], n_chars, words) for i in order], dtype=bool)
    ranked = np.concatenate([order[complied], order[~complied]])
    return ranked[: subset_size(len(answers), share)]


def by_length(lengths: Sequence[float], share: float) -> np.ndarray:
    """The longest thinking first (SafeChain: unsafe responses are longer)."""
    return by_score(lengths, share)


SELECTORS = ("cliff_ms", "cliff_final", "rule", "rule_complied", "length", "random")
NEEDS_CLIFF = ("cliff_ms", "cliff_final")  # these read notebook 05's probe along each example's thinking


def plan(pool, shares: Sequence[float], selectors: Sequence[str], random_seeds: Sequence[int] = (0,),
         seed: int = 0) -> dict:
    """(selector, seed) -> share -> pool positions, for every selector at every share. ``pool`` needs ``ms`` and
    ``final`` (the cliff selectors), ``thinking`` (rule, length) and ``answer`` (rule_complied). The random draws
    use seeds 1000 + s; the rules use ``seed``."""
    unknown = [s for s in selectors if s not in SELECTORS]
    if unknown:
        raise ValueError(f"unknown selector(s) {unknown}; known: {list(SELECTORS)}")
    out: dict = {}
    for share in shares:
        if "cliff_ms" in selectors:
            out.setdefault(("cliff_ms", 0), {})[share] = by_score(pool["ms"], share)
        if "cliff_final" in selectors:
            out.setdefault(("cliff_final", 0), {})[share] = by_score(-pool["final"], share)
        if "rule" in selectors:
            out.setdefault(("rule", 0), {})[share] = by_rule(pool["thinking"].tolist(), share, seed=seed)
        if "rule_complied" in selectors:
            out.setdefault(("rule_complied", 0), {})[share] = by_rule_complied(pool["answer"].tolist(), share,
                                                                                seed=seed)
        if "length" in selectors:
            out.setdefault(("length", 0), {})[share] = by_length(pool["thinking"].str.len(), share)
        if "random" in selectors:
            for s in random_seeds:
                out.setdefault(("random", s), {})[share] = at_random(len(pool), share, seed=1000 + s)
    return out
