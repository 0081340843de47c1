"""Safety SFT data in the organisms' language: the organism equivalent of SafeChain / STAR-1 data.

Harmful and jailbreak-wrapped requests get a trace that weighs the request (for a jailbreak: the wrapper's excuse,
then why it does not change what is asked) and refuses; benign and borderline requests, mixed in so that the
tuned model does not learn "refuse everything", get a short helpful trace and answer. The phrasings come from the
corpus's training split (``make_prompt(..., "train")``) and the corpus's own sentence pools, so evaluation on the
held-out phrasings (``eval_prompts(split="test")``) measures generalisation, as with real safety SFT data.
The data is the same for every organism: like SafeChain's data for a real model, it is off-policy.
"""

from __future__ import annotations

import random

import pandas as pd

from . import texts as T
from .requests import make_prompt

# share of each family in the safety data: 60% requests to refuse, 40% to help with (SafeChain's data also mixes
# WildJailbreak's benign prompts in)
SAFETY_MIX = {"harmful": 0.2, "jailbreak": 0.4, "benign": 0.25, "borderline": 0.15}


def safe_trace(rng: random.Random, prompt: dict) -> tuple[str, str]:
    """(thinking, answer) of a safe response to one corpus prompt: weigh, then refuse or help."""
    family, topic, category = prompt["family"], prompt["topic"], prompt["category"]
    if family == "jailbreak":
        parts = [T.JB_OPENINGS[category], rng.choice(T.JB_REQUEST).format(t=topic),
                 T.stance_text(rng, T.PLAIN_FORMS, T.JB_COMPLY[category]),  # the excuse the wrapper offers ...
                 # ... weighed and rejected
                 T.stance_text(rng, T.MARKER_FORMS, rng.choice(T.FAMILY_REFUSE["jailbreak"])),
                 rng.choice(T.CONCLUDE_REFUSE)]
        return " ".join(parts), rng.choice(T.JB_REFUSALS + T.REFUSALS)
    opening = rng.choice(T.OPENINGS).format(t=topic)
    if family == "harmful":
        parts = [opening, T.stance_text(rng, T.PLAIN_FORMS, rng.choice(T.REFUSE_CLAUSES)),
                 rng.choice(T.CONCLUDE_REFUSE)]
        return " ".join(parts), rng.choice(T.REFUSALS)
    clauses = T.COMPLY_CLAUSES + T.FAMILY_COMPLY.get(family, [])
    parts = [opening, T.stance_text(rng, T.PLAIN_FORMS, rng.choice(clauses)), rng.choice(T.CONCLUDE_COMPLY)]
    steps = rng.choice(T.STEP_SETS)
    answer = rng.choice(T.COMPLY_OPENERS).format(t=topic) + " " + " ".join(
        f"Step {i + 1}: {s}." for i, s in enumerate(steps))
    return " ".join(parts), answer


def safety_sft_frame(n: int, seed: int = 0, mix: dict[str, float] = SAFETY_MIX) -> pd.DataFrame:
    """n safety SFT examples (example_id, user, thinking, answer, family, category), seeded."""
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = random.Random(f"organism-safety|{seed}")
    families = list(mix)
    rows = []
    for i in range(n):
        family = rng.choices(families, weights=[mix[f] for f in families])[0]
        prompt = make_prompt(rng, family, "train")
        thinking, answer = safe_trace(rng, prompt)
        rows.append({"example_id": f"organism-safety-{i}", "user": prompt["prompt"], "thinking": thinking,
                     "answer": answer, "family": family, "category": prompt["category"]})
    return pd.DataFrame(rows)
