"""Paper A's text-level deliberation: chunking, oscillations, cut-replay statistics (the stance labels come from
:mod:`lrmsafety.judges.stance`, re-exported here), notebook 04's steps, and paper A's measures on the organisms
beside their planted targets (:func:`paper_a_measures`, :func:`paper_a_verdicts`).

Paper A = "Do Thinking Tokens Help with Safety?" (code: narutatsuri/lrm_safety_deliberation, commit 975d2d2;
pipeline/causal_cuts/, pipeline/iaa/prompts.py, reproduce/fig_thinking_causal.py; methods.md section 1).

Stances: +1 = leans to comply, 0 = neutral, -1 = leans to refuse; None = no label (a judge failed, or the panel left
the chunk unresolved: :func:`majority_label`). A None counts as neutral in the oscillation count, as in paper A.
Replay outcomes: 1 = the answer complied, 0 = it refused.

Where we depart: the stance judges are local instruction-tuned models (paper A: GPT-5.4, Gemini-3-Pro, Opus-4.7 /
Sonnet-4.6), or on CPU profiles the cue-phrase labeler; with more than three judges a tie for the top count goes to
the tie-breaker. Notebook 04 replays at most ``deliberation_transitions`` oscillations per model, a seeded sample of
those found (:func:`replay_sample`; paper A replays every one).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import binom, fisher_exact

from ..judges.stance import (  # noqa: F401 (re-exported: notebook 04 calls them as dl.*)
    PAPER_A_PROMPT_TMPL,
    STANCE_INSTRUCTIONS,
    Chunk,
    CuePhraseStanceJudge,
    LLMStanceJudge,
    MajorityStanceJudge,
    PaperAStanceJudge,
    StanceJudge,
    StanceResult,
    category_counts,
    fleiss_kappa,
    majority_label,
    panel_kappa,
    parse_stance_labels,
    stance_agreement,
)

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
MAX_CHUNKS = 120  # the paper excludes longer traces from the oscillation analysis

# --------------------------------------------------------------------------------------------------- chunking


def chunk_thinking(text: str, max_chars: int = 200, min_chars: int = 20) -> list[Chunk]:
    """Sentences (split on `(?<=[.!?])\\s+`) merged greedily into chunks of <= max_chars; chunks <= min_chars dropped.

    A chunk is a span of the original text (its inner whitespace kept), so a sentence longer than max_chars is
    a chunk of its own.
    """
    sentences, pos = [], 0
    for m in [*SENTENCE_BREAK.finditer(text), None]:
        stop = m.start() if m else len(text)
        piece = text[pos:stop]
        lead = len(piece) - len(piece.lstrip())
        if piece.strip():
            sentences.append((pos + lead, pos + len(piece.rstrip())))
        pos = m.end() if m else len(text)
    chunks, cur = [], None
    for s, e in sentences:
        if cur is not None and e - cur[0] <= max_chars:
            cur = (cur[0], e)
        else:
            if cur is not None:
                chunks.append(cur)
            cur = (s, e)
    if cur is not None:
        chunks.append(cur)
    return [Chunk(text[s:e], s, e) for s, e in chunks if e - s > min_chars]


# ------------------------------------------------------------------------------------------------ oscillations


@dataclass(frozen=True)
class Transition:
    pre: tuple[int, int]  # chunk index range [start, stop) of the segment before the switch
    post: tuple[int, int]  # ... and of the segment after it
    pre_sign: int
    post_sign: int


@dataclass
class OscillationResult:
    n_chunks: int
    excluded: bool  # more than MAX_CHUNKS chunks: left out of the analysis
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # (start, stop, sign)
    transitions: list[Transition] = field(default_factory=list)

    @property
    def count(self) -> int | None:
        return None if self.excluded else len(self.transitions)


def oscillations(stances: Sequence[int | None], max_chunks: int = MAX_CHUNKS) -> OscillationResult:
    """Forward-fill neutral stances from the last sign, merge equal signs into segments, list sign switches.

    A None (no label, or a chunk the panel left unresolved) counts as neutral, as paper A's cut detection maps None
    to 0 (m4_build_majority3.py). Leading neutrals have no sign to inherit and belong to no segment. A filled
    neutral belongs to the segment before it, so segment ranges cover it.
    """
    n = len(stances)
    if n > max_chunks:
        return OscillationResult(n, True)
    filled, last = [], 0
    for s in stances:
        last = s if s not in (0, None) else last
        filled.append(last)
    segments = []
    for i, s in enumerate(filled):
        if s == 0:
            continue
        if segments and segments[-1][2] == s:
            segments[-1] = (segments[-1][0], i + 1, s)
        else:
            segments.append((i, i + 1, s))
    # After filling, adjacent segments always have opposite signs.
    transitions = [Transition((a[0], a[1]), (b[0], b[1]), a[2], b[2]) for a, b in zip(segments, segments[1:])]
    return OscillationResult(n, False, segments, transitions)


def cut_points(chunks: Sequence[Chunk], transition: Transition) -> tuple[int, int]:
    """Character offsets to cut the thinking just before and just after the post segment.

    thinking[:before] ends with whatever preceded the segment's first chunk (strip it before closing the trace);
    thinking[:after] ends with the segment's last chunk.
    """
    start, stop = transition.post
    return chunks[start].start, chunks[stop - 1].end


# ------------------------------------------------------------------------------------------- replay statistics


def replay_effect_counts(k_before: int, n_before: int, k_after: int, n_after: int,
                         post_sign: int | None = None, lock: float = 0.05) -> dict:
    """Compliance before vs after the post segment from counts (k complied of n); Fisher exact, two-sided."""
    if n_before <= 0 or n_after <= 0:
        raise ValueError("each cut needs at least one replayed answer")
    rb, ra = k_before / n_before, k_after / n_after
    odds, p = fisher_exact([[k_before, n_before - k_before], [k_after, n_after - k_after]])
    delta = ra - rb
    toward = None if post_sign is None else bool(delta != 0 and np.sign(delta) == np.sign(post_sign))
    return {"rate_before": rb, "rate_after": ra, "delta": delta, "locked": bool(rb <= lock or rb >= 1 - lock),
            "odds_ratio": float(odds), "pvalue": float(p), "toward_stance": toward}


def replay_effect(before_outcomes, after_outcomes, post_sign: int | None = None, lock: float = 0.05) -> dict:
    """The same from per-answer outcomes (1 complied, 0 refused)."""
    b, a = np.asarray(before_outcomes).astype(int), np.asarray(after_outcomes).astype(int)
    return replay_effect_counts(int(b.sum()), len(b), int(a.sum()), len(a), post_sign, lock)


def holm_correction(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order; NaNs stay NaN and do not count toward m."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    # Multiply the i-th smallest by (m - i), then carry the running maximum so the adjustment stays monotone.
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def annotate_transitions(frame: pd.DataFrame, alpha: float = 0.05, lock: float = 0.05) -> pd.DataFrame:
    """Add replay statistics to transition rows (k_before, n_before, k_after, n_after, post_sign).

    Holm's correction runs over all transitions in the frame. Rows without a post_sign stand for rollouts
    that did not oscillate and get no statistics.
    """
    out = frame.copy()
    has = out["post_sign"].notna()
    stats = pd.DataFrame(
        [replay_effect_counts(int(r.k_before), int(r.n_before), int(r.k_after), int(r.n_after), int(r.post_sign),
                              lock) for r in out[has].itertuples()],
        index=out.index[has],
    )
    for col in ["rate_before", "rate_after", "delta", "locked", "odds_ratio", "pvalue", "toward_stance"]:
        out[col] = stats[col] if len(stats) else np.nan
    out["p_holm"] = holm_correction(out["pvalue"].to_numpy(dtype=float))
    out["significant"] = (out["p_holm"] < alpha).where(has)
    return out


def share(k, m) -> float:
    """k / m, NaN when m is 0 (a share of nothing)."""
    return k / m if m else float("nan")


def oscillation_summary(frame: pd.DataFrame, n_rollouts: int | None = None, alpha: float = 0.05,
                        lock: float = 0.05) -> dict:
    """Paper A's headline shares from a frame of transitions (one row each, column `rollout` names the trace).

    Rollouts without oscillations enter either as rows with post_sign NaN or through `n_rollouts`.
    """
    t = annotate_transitions(frame, alpha, lock)
    osc = t[t["post_sign"].notna()]
    n_roll = n_rollouts if n_rollouts is not None else t["rollout"].nunique()
    n_osc_roll = osc["rollout"].nunique()
    sig = osc[osc["significant"].astype(bool)]
    n, n_sig = len(osc), len(sig)

    n_toward = int(sig["toward_stance"].astype(bool).sum())
    n_locked = int(osc["locked"].astype(bool).sum())
    return {
        "n_rollouts": n_roll, "n_oscillating": n_osc_roll, "share_oscillating": share(n_osc_roll, n_roll),
        "n_oscillations": n, "oscillations_per_trace": share(n, n_roll),
        "n_significant": n_sig, "meaningful_per_trace": share(n_sig, n_roll),
        "n_performative": n - n_sig, "share_performative": share(n - n_sig, n),
        "n_locked": n_locked, "share_locked": share(n_locked, n),
        "n_toward_stance": n_toward, "share_significant_toward_stance": share(n_toward, n_sig),
    }


def replay_compliance(transitions: pd.DataFrame) -> pd.Series:
    """Each prompt's compliance over all its replayed answers (before and after every transition of every trace),
    by prompt_id: its own rate as "the answers ignore the thinking" has it, read on hundreds of answers of every
    prompt the replays studied. (A prompt's few full rollouts give a noisy rate, and one that came out all one way by
    chance counts every one of its transitions as locked by chance.)"""
    grouped = transitions.groupby("prompt_id")
    complied = grouped["k_before"].sum() + grouped["k_after"].sum()
    judged = grouped["n_before"].sum() + grouped["n_after"].sum()
    return (complied / judged.where(judged > 0)).astype(float)


def chance_locked_share(n_before, compliance, lock: float = 0.05) -> float:
    """The share of transitions that would count as "locked" if the answers ignored the thinking: the mean over
    transitions of P(Bin(n, c) / n <= lock or >= 1 - lock), with n the answers replayed before the segment and c
    the prompt's own compliance rate (:func:`replay_compliance`). The null organism's share should match it."""
    n, c = np.asarray(n_before, dtype=int), np.clip(np.asarray(compliance, dtype=float), 0, 1)
    if n.shape != c.shape or n.size == 0:
        raise ValueError(f"need one compliance rate per transition, got {n.shape} and {c.shape}")
    low = binom.cdf(np.floor(lock * n + 1e-9), n, c)
    high = binom.sf(np.ceil((1 - lock) * n - 1e-9) - 1, n, c)
    return float(np.mean(low + high))


# ------------------------------------------------------------------------------------------- notebook 04's steps
TRANSITION_COLUMNS = ["model", "rollout", "prompt_id", "prompt", "transition", "post_sign", "before", "after"]


def panel_stances(prompts: Sequence[str], chunk_lists, traced_model: str, judges: Sequence[str], quantization,
                  batch_size: int, report=print, backend: str = "transformers") -> list[list]:
    """Every stance judge labels every trace with paper A's prompt, greedy (512 tokens); judges load one at a time,
    through ``backend`` (transformers, or vLLM: ``engine.backends.load_generator``, 16-bit where nf4 was asked).
    Returns one list of per-trace labels per judge (:func:`panel_majority` combines them)."""
    from ..engine import backends, generate, vllm_backend
    from ..engine.decoding import is_vllm

    per_judge = []
    quantization = backends.judge_quantization(quantization, backend)
    for judge_name in judges:
        model, tokenizer, _ = backends.load_generator(judge_name, backend, quantization)

        def complete(texts):
            chats = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                                   add_generation_prompt=True) for t in texts]
            if is_vllm(model):  # vLLM schedules the whole list itself
                return [text for text, _, _ in vllm_backend.greedy_batch(model, tokenizer, chats, 512)]
            return [text for start in range(0, len(chats), batch_size) for text, _, _ in
                    generate.generate_batch(model, tokenizer, chats[start:start + batch_size], 512,
                                            {"do_sample": False})]

        judge = PaperAStanceJudge(complete, name=judge_name, model=traced_model)
        per_judge.append([result.labels for result in judge.label_batch(prompts, chunk_lists)])
        failed = sum(not result.ok for result in judge.last_results)
        report(f"{judge_name}: {failed} of {len(chunk_lists)} traces without parseable labels")
        backends.close(model)  # freed before the next judge loads
        model = judge = None
    return per_judge


def panel_majority(panel: list[list]) -> list[list]:
    """Paper A's rule per chunk: two agreeing judges win, a three-way split goes to the last judge (its tie-breaker)."""
    return [[majority_label(v, tie_breaker=-1) for v in zip(*votes)] for votes in zip(*panel)]


def trace_transitions(think: pd.DataFrame, chunk_lists, stance_lists, model: str) -> tuple[pd.DataFrame, list]:
    """Per trace: rollout, prompt_id, n_chunks, oscillations, excluded; and one record per sign switch
    (:data:`TRANSITION_COLUMNS`) with the thinking cut just before (`before`) and after (`after`) its post segment."""
    rows, transitions = [], []
    for row, chunks, stances in zip(think.itertuples(), chunk_lists, stance_lists):
        result = oscillations(stances)
        rollout = f"{row.prompt_id}#{row.sample_index}"
        rows.append({"rollout": rollout, "prompt_id": row.prompt_id, "n_chunks": len(chunks),
                     "oscillations": result.count, "excluded": result.excluded})
        for t_index, transition in enumerate(result.transitions):
            before, after = cut_points(chunks, transition)
            transitions.append({"model": model, "rollout": rollout, "prompt_id": row.prompt_id, "prompt": row.prompt,
                                "transition": t_index, "post_sign": transition.post_sign,
                                "before": row.thinking[:before].rstrip(), "after": row.thinking[:after]})
    return pd.DataFrame(rows), transitions


def replay_sample(transitions: pd.DataFrame, at_most: int | None, seed: int) -> pd.DataFrame:
    """At most ``at_most`` transitions of each model for the cut replays (None: all), in their original order: those
    with the lowest hash of (seed, model, rollout, transition), so that whether a transition is replayed depends on
    it and the seed alone, not on which other transitions were found. The shares over oscillations (performative,
    locked) are then estimated on the sample, and its Holm correction runs over the replayed transitions."""
    if at_most is None or transitions.empty:
        return transitions
    keys = [int.from_bytes(hashlib.blake2b(f"{seed}|{m}|{r}|{t}".encode(), digest_size=8).digest(), "big")
            for m, r, t in zip(transitions["model"], transitions["rollout"], transitions["transition"])]
    ranked = transitions.assign(_key=keys).sort_values(["model", "_key"], kind="stable")
    return ranked.groupby("model", sort=False).head(at_most).sort_index().drop(columns="_key")


def replay_prefixes(transitions: pd.DataFrame) -> pd.DataFrame:
    """Both cuts of every transition as prefixes: prompt_id "<rollout>~<transition>~<side>", thinking_prefix, side."""
    return pd.concat([
        transitions.assign(prompt_id=transitions["rollout"] + "~" + transitions["transition"].astype(str) + "~" + side,
                           thinking_prefix=transitions[side], side=side) for side in ("before", "after")],
        ignore_index=True)


def replay_counts(transitions: pd.DataFrame, prefixes: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """The transitions with k (complied) of n (judged) replayed answers before and after: k_before, n_before,
    k_after, n_after. ``answers`` are the replays of :func:`replay_prefixes` with paper A's label as `refused`."""
    complied = answers.assign(complied=~answers["refused"].astype("boolean"))
    counts = complied.groupby("prompt_id")["complied"].agg(k="sum", n="count").reset_index()
    counts = prefixes[["prompt_id", "rollout", "transition", "side"]].merge(counts, on="prompt_id")
    wide = counts.pivot_table(index=["rollout", "transition"], columns="side", values=["k", "n"]).reset_index()
    wide.columns = ["rollout", "transition", "k_after", "k_before", "n_after", "n_before"]
    return transitions.drop(columns=["before", "after", "prompt"]).merge(wide, on=["rollout", "transition"])


def model_summary(traces: pd.DataFrame, replayed: pd.DataFrame) -> dict:
    """:func:`oscillation_summary` of one model's replayed transitions over its traces that were not excluded. The
    counts per trace are of every oscillation found; the shares (performative, locked, toward the stance) and the
    significant count per trace are read on the replayed ones (all of them, or :func:`replay_sample`'s sample:
    ``n_replayed``)."""
    kept = traces[~traces["excluded"]]
    summary = oscillation_summary(replayed, n_rollouts=len(kept)) if len(replayed) else {"n_rollouts": len(kept)}
    found, oscillating = int(kept["oscillations"].sum()), int((kept["oscillations"] > 0).sum())
    per_trace = share(found, len(kept))
    summary.update(n_oscillating=oscillating, share_oscillating=share(oscillating, len(kept)),
                   n_replayed=summary.get("n_oscillations", 0), n_oscillations=found, oscillations_per_trace=per_trace)
    if "n_significant" in summary:  # the significant share of the replayed, over every oscillation found
        summary["meaningful_per_trace"] = share(summary["n_significant"], summary["n_replayed"]) * per_trace
    return summary
