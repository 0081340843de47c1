"""Paper A's lock-in: cut a thinking trace after B% of its tokens, close it, sample N answers, and measure how far
they still disagree (notebooks 03, 04 and 08).

Paper A = "Do Thinking Tokens Help with Safety?" (Ri, Panigrahi, Arora; code: narutatsuri/lrm_safety_deliberation;
methods.md section 1). A trace's thinking of L tokens is cut after its first L * B // 100 tokens, force-closed with
the family's close string, and N answers are sampled from that prefix; q is the share of them that refuse (paper A's
label `refused_a`), and the prefix's continuation variance is 4 q (1 - q): 0 when the prefix decides the outcome,
(N - 1) / N for coin flips (:func:`lrmsafety.metrics.random_baseline_variance`). The curve over B is the mean over
prefixes, :func:`lrmsafety.metrics.continuation_variance`'s statistic, taken here from q per prefix because unjudged
answers are left out of q (that function reads 0/1 outcomes and refuses missing ones). B = 0 fixes no prefix: the
continuations are full rollouts of the prompt. Think vs no-think compares each prompt's majority outcome.

Only traces the model closed itself are cut, as paper A's code does (a force-closed trace has no length L of its
own). Where we depart, said once: notebook 03 counts L by re-tokenizing the thinking; notebook 08 takes the
generator's count (`n_thinking_tokens`) and leaves out empty thinkings (`counted=True`); the two agree unless the
thinking re-tokenizes differently. Unjudged answers are left out of q but counted in N (the `n` column).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from .. import intervals, metrics
from ..engine import generate

PREFIX_COLUMNS = ["prompt_id", "prompt", "thinking_prefix", "source_prompt", "trace", "cut"]


# ------------------------------------------------------------------------------------------- the cuts
def cut_thinking(tokenizer, thinking: str, percent: int, length: int | None = None) -> str:
    """The first ``length * percent // 100`` tokens of ``thinking``, decoded; ``length`` defaults to the number of
    tokens the thinking re-tokenizes into."""
    ids = tokenizer(thinking, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[: (len(ids) if length is None else length) * percent // 100])


def cut_prefixes(tokenizer, traces: pd.DataFrame, percents, counted: bool = False) -> pd.DataFrame:
    """One row per (self-closed trace, cut): prompt_id "<prompt>#<sample>@<percent>", prompt, thinking_prefix,
    source_prompt, trace (the sample index) and cut (B, in percent). ``counted``: L is the generator's
    ``n_thinking_tokens`` and traces with no thinking are left out (notebook 08); else L re-tokenizes (03)."""
    keep = traces["closed"].astype(bool)
    if counted:
        keep &= traces["n_thinking_tokens"] > 0
    sources = traces[keep]
    lengths = sources["n_thinking_tokens"] if counted else [None] * len(sources)
    return pd.DataFrame([
        {"prompt_id": f"{row.prompt_id}#{row.sample_index}@{percent}", "prompt": row.prompt,
         "thinking_prefix": cut_thinking(tokenizer, row.thinking, percent, length), "source_prompt": row.prompt_id,
         "trace": row.sample_index, "cut": percent}
        for row, length in zip(sources.itertuples(), lengths) for percent in percents], columns=PREFIX_COLUMNS)


def answers_after_cuts(model, tokenizer, spec, prefixes: pd.DataFrame, decoding: generate.Decoding,
                       cache_root=None, progress: bool = True) -> pd.DataFrame:
    """``decoding.samples_per_prompt`` answers after each cut (mode "prefix": the prefix force-closed), cached."""
    return generate.rollouts(model, tokenizer, spec, prefixes[["prompt_id", "prompt", "thinking_prefix"]],
                             dataclasses.replace(decoding, mode="prefix"), cache_root=cache_root, progress=progress)


def refusals(frame: pd.DataFrame, label_judges: dict, fmt, cache_root=None,
             backend: str = "transformers") -> pd.DataFrame:
    """``frame`` with paper A's refusal label (`refused_a`, notebook 01's rule) as the column ``refused``; ``backend``
    runs its guard models (``judges.labels.make_judge``)."""
    from ..judges import labels

    verdicts = labels.paper_labels(frame, label_judges, fmt, cache_root=cache_root, papers=["A"], backend=backend)
    return frame.merge(verdicts[labels.KEY + ["refused_a"]].rename(columns={"refused_a": "refused"}), on=labels.KEY)


# ------------------------------------------------------------------------------------------- q per prefix
def q_per_prefix(answers: pd.DataFrame, keys, label: str = "refused") -> pd.DataFrame:
    """q (the share of refusals among the judged answers) and n (the answers) per prefix, sorted by ``keys``."""
    records = [{**dict(zip([keys] if isinstance(keys, str) else keys, key if isinstance(key, tuple) else (key,))),
                "q": rows[label].astype(float).mean(), "n": len(rows)} for key, rows in answers.groupby(keys)]
    return pd.DataFrame(records)


def prefix_table(full: pd.DataFrame, answers: pd.DataFrame | None = None,
                 prefixes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Notebook 03's prefixes: prompt_id, cut, trace, q, n. B = 0 (trace -1) takes each prompt's ``full`` rollouts
    as its continuations; every cut of ``prefixes`` takes its labelled ``answers``."""
    rows = q_per_prefix(full, "prompt_id").assign(cut=0, trace=-1)
    if answers is not None and len(answers):
        answers = answers.merge(prefixes.drop(columns=["prompt", "thinking_prefix"]), on="prompt_id")
        cuts = q_per_prefix(answers, ["source_prompt", "trace", "cut"]).rename(columns={"source_prompt": "prompt_id"})
        rows = pd.concat([rows, cuts], ignore_index=True)
    return rows[["prompt_id", "cut", "trace", "q", "n"]]


# ------------------------------------------------------------------------------------------- the variance
def prefix_variance(q):
    """4 q (1 - q) per prefix: the term :func:`lrmsafety.metrics.continuation_variance` averages."""
    return 4 * q * (1 - q)


def variance_curve(prefixes: pd.DataFrame, by, seed: int = 0, n_boot: int = 1000) -> pd.DataFrame:
    """The continuation variance (mean of 4 q (1 - q)), its 95% interval (a bootstrap over prompts: a prompt's
    prefixes are resampled together) and the number of prefixes, per ``by`` (e.g. model, cut)."""
    frame = prefixes.assign(variance=prefix_variance(prefixes["q"]))
    rows = []
    for key, group in frame.groupby(by, sort=True):
        per_prompt = group.groupby("prompt_id")["variance"].agg(["sum", "count"])
        # the mean over prefixes is a pooled rate of per-prompt sums (each prefix's term lies in [0, 1])
        value, low, high = intervals.pooled_rate_ci(per_prompt["sum"].to_numpy(), per_prompt["count"].to_numpy(),
                                                    n_boot=n_boot, seed=seed)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "continuation_variance": value,
                     "low": low, "high": high, "prefixes": len(group)})
    return pd.DataFrame(rows, columns=[*by, "continuation_variance", "low", "high", "prefixes"])


def variance_with_ci(q: pd.DataFrame, seed: int, n_boot: int = 500) -> tuple[float, float, float]:
    """(mean of 4 q (1 - q), low, high) over all of ``q``'s prefixes: :func:`variance_curve`'s one row."""
    row = variance_curve(q.assign(everything=0), ["everything"], seed=seed, n_boot=n_boot).iloc[0]
    return float(row["continuation_variance"]), float(row["low"]), float(row["high"])


def coin_flip_variance(n: int) -> float:
    """The continuation variance of answers that ignore the prefix, each refusing with probability 1/2."""
    return metrics.random_baseline_variance(n)


# ------------------------------------------------------------------------------------------- think vs no-think
def majority_agreement(think: pd.DataFrame, no_think: pd.DataFrame) -> dict:
    """Prompts whose majority outcome (refusal share > 1/2) is the same with and without thinking, with a Wilson
    interval: prompts, agree, low, high."""
    def majority(frame):
        return frame.groupby("prompt_id")["refused"].apply(lambda s: s.astype(float).mean() > 0.5)

    both = pd.concat([majority(think).rename("think"), majority(no_think).rename("no_think")], axis=1)
    same = both["think"] == both["no_think"]
    low, high = intervals.wilson_interval(int(same.sum()), len(both))[1:]
    return {"prompts": len(both), "agree": float(same.mean()), "low": low, "high": high}
