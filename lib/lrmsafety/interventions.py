"""Paper A's inference-time safety interventions, as decoding configurations over :mod:`lrmsafety.generate`.

Definitions and parameters from the paper's code (lrm_safety_deliberation, pipeline/defenses/*/src/):

    SafePath-ZS  prefill "<think>\\n" + "Let's think about safety first." and let the model think on (one rollout
                 in mode "prefix" with the thinking left open)
    SafeRemind   decode the thinking in chunks (64 tokens); per-token entropy H_t; when
                 H_t < mean(H[t-W:t]) - alpha * std(H[t-W:t]) (W = 10, alpha = 1.5) inside the thinking, keep the
                 tokens up to t, append the reminder, and go on; at most 3 injections, a cooldown of W tokens
    PSR          every K = 32 thinking tokens ask the model itself "Is the generated text harmful?" (greedy,
                 8 tokens); when it says harmful, discard the chunk and sample it again (backtrack); at most N = 4
                 reflections, then decode the rest normally

Each round of SafeRemind and PSR is one cached, resumable ``generate.rollouts`` call (mode "prefix",
``close_prefix=False``, the thinking so far as the prefix, the round's budget as ``max_thinking_tokens``); its
prompt ids carry the round and a hash of the prefix, so a rerun serves every finished round from the cache.
The answer is sampled at the end after the thinking (force-closed if needed). Every output row records how often
and where the intervention acted (``interventions``, ``positions``: thinking-token indices).

Deviations, said once: entropy is the full softmax's (the vLLM port approximates it from the top 20 log-probs),
and SafeRemind's reminder is separated from the kept text by a space where the text does not end in one.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import generate
from .store import config_hash, text_hash

SAFEPATH_PREFIX = "Let's think about safety first."
SAFEREMIND_REMINDER = "Wait, let me think again. Does this request involve potentially harmful content?"
PSR_REFLECTION = "\n\nLet's check if the generated text is harmful or harmless. Is the generated text harmful? Answer: "
INTERVENTIONS = ("none", "safepath", "saferemind", "psr")


@dataclass(frozen=True)
class Intervention:
    """One inference-time intervention and its parameters (the official defaults)."""

    name: str = "none"
    prefix: str = SAFEPATH_PREFIX  # safepath
    window: int = 10  # saferemind: W
    alpha: float = 1.5  # saferemind
    max_injections: int = 3  # saferemind
    chunk_tokens: int = 64  # saferemind: tokens per round
    reminder: str = SAFEREMIND_REMINDER
    reflect_every: int = 32  # psr: K
    max_reflections: int = 4  # psr: N
    reflection_prompt: str = PSR_REFLECTION
    reflection_tokens: int = 8

    def __post_init__(self):
        if self.name not in INTERVENTIONS:
            raise ValueError(f"unknown intervention {self.name!r}; choose one of {INTERVENTIONS}")


# ------------------------------------------------------------------------------------------- the rules
def entropy_trigger(entropies, start: int, window: int, alpha: float, cooldown_until: int = -1) -> int | None:
    """SafeRemind's rule: the first step t >= max(start, window) with t > cooldown_until and
    H_t < mean(H[t-W:t]) - alpha * std(H[t-W:t]) (population std), or None."""
    h = np.asarray(entropies, dtype=float)
    for t in range(max(start, window), len(h)):
        if t <= cooldown_until:
            continue
        past = h[t - window:t]
        if h[t] < past.mean() - alpha * past.std():
            return t
    return None


def reflection_says_harmful(text: str) -> bool:
    """PSR's parse of the model's self-reflection: negated-safe first, then unsafe words, then a leading yes/no;
    anything unclear counts as safe (no backtrack)."""
    lowered = text.lower().strip()
    if re.search(r"\bnot\s+harmful\b|\bnot\s+unsafe\b|\bnot\s+dangerous\b|\bharmless\b", lowered):
        return False
    if re.search(r"\bunsafe\b|\bharmful\b|\bdangerous\b", lowered):
        return True
    return bool(re.match(r"^\s*yes\b", lowered))


@torch.no_grad()
def token_entropies(model, tokenizer, contexts: list[str], continuations: list[str]) -> list[np.ndarray]:
    """Per generated token, the entropy (nats) of the next-token distribution that produced it: one forward pass
    over context + continuation per row."""
    device = next(model.parameters()).device
    out = []
    for context, continuation in zip(contexts, continuations):
        n_context = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        ids = tokenizer(context + continuation, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
        if ids.shape[1] <= n_context:
            out.append(np.zeros(0))
            continue
        logits = model(input_ids=ids).logits[0, n_context - 1:-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        out.append((-(logp.exp() * logp).sum(-1)).cpu().numpy())
    return out


# ------------------------------------------------------------------------------------------- the driver
def _ids(frame: pd.DataFrame, round_index: int) -> pd.Series:
    return (frame["unit"] + f"@{round_index}:" + frame["thinking_prefix"].map(lambda p: text_hash(p)[:10]))


def _round(model, tokenizer, spec, units: pd.DataFrame, decoding, budget: int, round_index: int, cache_root,
           name: str) -> pd.DataFrame:
    """Continue each unit's thinking prefix by up to ``budget`` tokens (no answer); cached per round."""
    frame = units.assign(prompt_id=_ids(units, round_index))
    step = dataclasses.replace(decoding, mode="prefix", close_prefix=False, samples_per_prompt=1,
                               max_thinking_tokens=budget, max_answer_tokens=0)
    out = generate.rollouts(model, tokenizer, spec, frame[["prompt_id", "prompt", "thinking_prefix"]], step,
                            cache_root=cache_root, name=name, progress=False)
    return frame.merge(out.drop(columns=["prompt", "thinking_prefix"]), on="prompt_id", how="left")


def _new_text(row) -> str:
    """The thinking this round added after its prefix (split_reasoning's thinking starts with the prefix)."""
    return row.thinking[len(row.thinking_prefix):] if row.thinking.startswith(row.thinking_prefix) else row.thinking


def run(model, tokenizer, spec, prompts: pd.DataFrame, decoding: generate.Decoding, intervention: Intervention,
        cache_root=None) -> pd.DataFrame:
    """K samples per prompt under one intervention; rows like ``generate.rollouts``' plus ``intervention``,
    ``interventions`` (how often it acted) and ``positions`` (thinking-token indices where it acted)."""
    for column in ("prompt_id", "prompt"):
        if column not in prompts.columns:
            raise ValueError(f"the prompts frame needs a {column!r} column; it has {list(prompts.columns)}")
    if intervention.name in ("none", "safepath"):
        frame = prompts[["prompt_id", "prompt"]]
        step = decoding
        if intervention.name == "safepath":
            frame = frame.assign(thinking_prefix=intervention.prefix)
            step = dataclasses.replace(decoding, mode="prefix", close_prefix=False)
        out = generate.rollouts(model, tokenizer, spec, frame, step, cache_root=cache_root,
                                name=f"rollouts-{intervention.name}" if intervention.name != "none" else "rollouts",
                                progress=False)
        acted = intervention.name == "safepath"
        return out.assign(intervention=intervention.name, interventions=int(acted),
                          positions=[[0] if acted else [] for _ in range(len(out))])
    units = pd.DataFrame([{"unit": f"{row.prompt_id}#{k}", "source_id": row.prompt_id, "sample_index": k,
                           "prompt": row.prompt, "thinking_prefix": "", "used": 0, "done": False, "acted": 0,
                           "positions": [], "rounds": 0, "backtracks": 0}
                          for row in prompts.itertuples() for k in range(decoding.samples_per_prompt)])
    state = {u: dict(r) for u, r in zip(units["unit"], units.to_dict("records"))}
    step_fn = _saferemind_round if intervention.name == "saferemind" else _psr_round
    round_index = 0
    while True:
        active = [s for s in state.values() if not s["done"]]
        if not active:
            break
        step_fn(model, tokenizer, spec, pd.DataFrame(active), decoding, intervention, round_index, cache_root, state)
        round_index += 1
    finals = pd.DataFrame(state.values())
    finals["prompt_id"] = _ids(finals, 10_000)
    # the answer after the (possibly force-closed) thinking, as paper A's force-close does
    closing = dataclasses.replace(decoding, mode="prefix", close_prefix=True, samples_per_prompt=1)
    answers = generate.rollouts(model, tokenizer, spec, finals[["prompt_id", "prompt", "thinking_prefix"]], closing,
                                cache_root=cache_root, name=f"rollouts-{intervention.name}-answer", progress=False)
    out = finals[["prompt_id", "source_id", "sample_index", "acted", "positions", "rounds", "backtracks"]].merge(
        answers.drop(columns=["sample_index"]), on="prompt_id")
    out["config_hash"] = config_hash({"rollouts": sorted(set(out["config_hash"])),
                                      "intervention": dataclasses.asdict(intervention)})
    out = out.drop(columns=["prompt_id", "thinking_prefix"]).rename(columns={"source_id": "prompt_id",
                                                                             "acted": "interventions"})
    return out.assign(intervention=intervention.name)


def _saferemind_round(model, tokenizer, spec, active, decoding, iv, round_index, cache_root, state):
    budget = min(iv.chunk_tokens, decoding.max_thinking_tokens)
    out = _round(model, tokenizer, spec, active, decoding, budget, round_index, cache_root, "rollouts-saferemind")
    contexts = [r + p for r, p in zip(out["rendered_prompt"], out["thinking_prefix"])]
    new_texts = [_new_text(row) for row in out.itertuples()]
    entropies = token_entropies(model, tokenizer, contexts, new_texts)
    for i, (row, new, h) in enumerate(zip(out.itertuples(), new_texts, entropies)):
        s = state[row.unit]
        history = s.setdefault("entropies", [])
        start = len(history)
        history.extend(h.tolist())
        cooldown = s.setdefault("cooldown", -1)
        t = entropy_trigger(history, start, iv.window, iv.alpha, cooldown) if s["acted"] < iv.max_injections else None
        if t is not None:
            local = t - start + 1  # keep the tokens up to and including t
            ids = tokenizer(contexts[i] + new, add_special_tokens=False)["input_ids"]
            n_context = len(ids) - len(h)
            kept = tokenizer.decode(ids[n_context:n_context + local])
            sep = "" if (s["thinking_prefix"] + kept)[-1:].isspace() else " "
            s["thinking_prefix"] += kept + sep + iv.reminder
            s["used"] += local
            s["acted"] += 1
            s["positions"] = s["positions"] + [s["used"]]
            s["cooldown"] = t + iv.window
            del history[t + 1:]
        else:
            s["thinking_prefix"] += new
            s["used"] += len(h)
            s["done"] = bool(row.closed) or bool(row.finished) or s["used"] >= decoding.max_thinking_tokens \
                or len(h) == 0
        s["rounds"] += 1


def _psr_round(model, tokenizer, spec, active, decoding, iv, round_index, cache_root, state):
    reflecting = [s for s in active.to_dict("records") if s["rounds"] < iv.max_reflections]
    finishing = active[~active["unit"].isin([s["unit"] for s in reflecting])]
    if len(finishing):  # reflections used up: decode the rest of the thinking in one go
        left = max(1, decoding.max_thinking_tokens - int(finishing["used"].min()))
        out = _round(model, tokenizer, spec, finishing, decoding, left, round_index, cache_root, "rollouts-psr")
        for row in out.itertuples():
            state[row.unit]["thinking_prefix"] += _new_text(row)
            state[row.unit]["done"] = True
    if not reflecting:
        return
    frame = pd.DataFrame(reflecting)
    budget = min(iv.reflect_every, decoding.max_thinking_tokens)
    out = _round(model, tokenizer, spec, frame, decoding, budget, round_index, cache_root, "rollouts-psr")
    new_texts = [_new_text(row) for row in out.itertuples()]
    queries = [r + p + n + iv.reflection_prompt for r, p, n in zip(out["rendered_prompt"], out["thinking_prefix"],
                                                                   new_texts)]
    verdicts = generate.generate_batch(model, tokenizer, queries, iv.reflection_tokens, {"do_sample": False},
                                       share_prefixes=False)
    for row, new, (reply, _, _) in zip(out.itertuples(), new_texts, verdicts):
        s = state[row.unit]
        if not bool(row.closed):  # PSR reflects inside the thinking only; a chunk that closed it is committed
            s["rounds"] += 1
        if not bool(row.closed) and reflection_says_harmful(reply):  # backtrack: drop the chunk, sample it again next round
            s["backtracks"] += 1
            s["acted"] += 1
            s["positions"] = s["positions"] + [s["used"]]
            continue
        n_new = len(tokenizer(new, add_special_tokens=False)["input_ids"])
        s["thinking_prefix"] += new
        s["used"] += n_new
        s["done"] = bool(row.closed) or bool(row.finished) or s["used"] >= decoding.max_thinking_tokens or n_new == 0
