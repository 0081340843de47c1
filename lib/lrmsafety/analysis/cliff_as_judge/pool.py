"""Paper B's Cliff-as-a-Judge training pool: harmful prompts with the target model's own thinking and a safe answer.

Paper B builds each SFT example as ``output = <the model's own thinking> + "\\n</think>\\n\\n" + <the dataset's safe
completion>`` (methods.md section 2), so fine-tuning keeps the model's reasoning and changes only what follows it.

    pool_prompts(data_dir)              the pool's prompts with their safe answers, on real benchmarks: WildJailbreak
                                        train (online only) or, offline, STAR-1's questions with its safe answers
    closed_only(rollouts)               the rollouts whose thinking the model closed itself (the cliff is read at the
                                        last tokens before the answer: a force-closed trace ends in our close)
    build_pool(rollouts, safe_answers)  one SFT example per rollout: own thinking + close + safe answer
    sft_pairs(pool, eos)                the prompt / completion pairs that `lrmsafety.analysis.finetune` trains on
    sft_close(fmt)                      the close string between thinking and answer, per thinking format
    held_out(prompts, pool)             evaluation prompts that share no prompt with the pool
    eval_prompts(organisms, n, ...)     the held-out evaluation prompts, (harmful, benign)
"""

from __future__ import annotations

import logging
from typing import Sequence

import pandas as pd

from ... import chat

log = logging.getLogger(__name__)

POOL_COLUMNS = ["example_id", "prompt_id", "sample_index", "prompt", "rendered_prompt", "thinking", "safe_answer",
                "completion"]


def sft_pairs(pool: pd.DataFrame, eos: str | None) -> pd.DataFrame:
    """trl's prompt / completion columns for `lrmsafety.analysis.finetune`: the rendered prompt, completion + EOS."""
    return pd.DataFrame({"prompt": pool["rendered_prompt"].to_numpy(),
                         "completion": (pool["completion"] + (eos or "")).to_numpy()})


def sft_close(fmt: chat.ThinkingFormat) -> str:
    """Paper B's separator for ``</think>`` families; the format's own close otherwise (gpt-oss's channels)."""
    return "\n</think>\n\n" if fmt.close == "</think>" else fmt.close


def closed_only(rollouts: pd.DataFrame) -> pd.DataFrame:
    """The rollouts whose thinking the model closed by itself (generate's ``closed``: not force-closed at the
    thinking budget, not closed by a prefill), in their order. The close string in the text is no test: a
    force-closed trace carries our close too, and its last tokens before the answer are ours, not the model's."""
    if "closed" not in rollouts.columns:
        raise ValueError("the rollouts have no `closed` column; pass generate.rollouts() output")
    return rollouts[rollouts["closed"].fillna(False).astype(bool)]


def build_pool(rollouts: pd.DataFrame, safe_answers: Sequence[str], fmt: chat.ThinkingFormat) -> pd.DataFrame:
    """One SFT example per rollout: prompt = the rendered think prompt, completion = own thinking + close + safe
    answer. ``safe_answers`` gives one answer per rollout row, in order. Rollouts without thinking are dropped
    (there is no cliff to measure and nothing of the model's own to keep)."""
    needed = ["prompt_id", "sample_index", "prompt", "rendered_prompt", "thinking"]
    missing = [c for c in needed if c not in rollouts.columns]
    if missing:
        raise ValueError(f"build_pool needs rollout columns {missing}; pass generate.rollouts() output")
    if len(safe_answers) != len(rollouts):
        raise ValueError(f"one safe answer per rollout: got {len(safe_answers)} answers for {len(rollouts)} rollouts")
    extra = [c for c in ("text", "answer", "config_hash", "refused", "label") if c in rollouts.columns]
    pool = rollouts[needed + extra].copy()
    pool["safe_answer"] = [str(a).strip() for a in safe_answers]
    pool["thinking"] = pool["thinking"].fillna("").str.strip()
    if (pool["safe_answer"] == "").any():
        raise ValueError("some safe answers are empty: the pool needs a safe completion for every example")
    pool = pool[pool["thinking"] != ""].reset_index(drop=True)
    if pool.empty:
        raise ValueError("no rollout in the pool has any thinking: check the rollouts' thinking format")
    pool["completion"] = pool["thinking"] + sft_close(fmt) + pool["safe_answer"]
    pool["example_id"] = pool["prompt_id"].astype(str) + "#" + pool["sample_index"].astype(str)
    return pool[POOL_COLUMNS + extra]


def held_out(prompts: pd.DataFrame, pool: pd.DataFrame | None) -> pd.DataFrame:
    """The prompts that are not in the pool (by id and by text): evaluation never sees a training prompt."""
    if pool is None:
        return prompts.reset_index(drop=True)
    seen_ids, seen_text = set(pool["prompt_id"]), set(pool["prompt"])
    keep = ~prompts["prompt_id"].isin(seen_ids) & ~prompts["prompt"].isin(seen_text)
    return prompts[keep].reset_index(drop=True)


def eval_prompts(organisms: bool, n: int, data_dir=None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(harmful, benign) held-out evaluation prompts: on the organisms, jailbreak-wrapped prompts and n // 4 benign
    ones per family of a draw that is not notebook 01's (seed + 1); on real models, WildJailbreak (ASR) and XSTest's
    benign half (ORR), n // 2 of them."""
    from ... import data

    if organisms:
        candidates = data.load_prompt_sets(["organism"], n_prompts=n, seed=seed + 1)
        benign = candidates[candidates["label"] == "benign"].groupby("family").head(n // 4)
        return candidates[candidates["family"] == "jailbreak"], benign
    harmful = data.load_datasets(["wildjailbreak"], data_dir, limit=n, seed=seed)
    return harmful, data.load_datasets(["xstest"], data_dir, seed=seed).query("label == 'benign'").head(n // 2)


def _answer_after_thinking(response: str) -> str:
    return response.split("</think>", 1)[1].strip() if "</think>" in response else response.strip()


def pool_prompts(data_dir=None, n: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """The pool's prompts (prompt_id, prompt, source, label, safe_answer) on real benchmarks, and where they came
    from. Paper B's pool is WildJailbreak train (adversarial-harmful rows and the dataset's safe ``completion``),
    which is online only (``allenai/wildjailbreak``, gated: accept its terms and log in). Without it, the
    offline STAR-1 copy stands in: its 1,000 harmful questions with the answer part of its safe responses."""
    try:
        from datasets import load_dataset

        raw = load_dataset("allenai/wildjailbreak", "train", delimiter="\t", keep_default_na=False)["train"]
        frame = raw.to_pandas()
        frame = frame[frame["data_type"] == "adversarial_harmful"]
        frame = frame.rename(columns={"adversarial": "prompt", "completion": "safe_answer"})
        source = "WildJailbreak train, adversarial_harmful (online, allenai/wildjailbreak)"
        frame["source"] = "wildjailbreak_train"
    except Exception as err:  # no internet, no access to the gated set, or no `datasets`
        from ...data import load_dataset as load_local

        log.info("WildJailbreak train is not reachable (%s); using STAR-1", err)
        frame = load_local("star1", data_dir)
        frame["safe_answer"] = frame["response"].map(_answer_after_thinking)
        source = ("STAR-1 questions with the answer part of STAR-1's safe responses (offline stand-in: WildJailbreak "
                  "train, paper B's pool, is online only)")
    frame = frame[frame["safe_answer"].astype(str).str.strip() != ""]
    if n is not None and n < len(frame):
        frame = frame.sample(n, random_state=seed)
    frame = frame.reset_index(drop=True)
    if "prompt_id" not in frame.columns:
        frame["prompt_id"] = [f"wjtrain-{i}" for i in range(len(frame))]
    frame["label"] = "harmful"
    return frame[["prompt_id", "prompt", "source", "label", "safe_answer"]], source
