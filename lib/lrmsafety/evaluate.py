"""Judging cached rollouts: judge outputs are cached like rollouts, keyed by the judge and the rollouts' config."""

from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from . import chat
from .judges import Judge
from .store import TableStore

KEY = ["prompt_id", "sample_index"]


def split_fn_for(fmt: chat.ThinkingFormat):
    """The judges' (thinking, answer) splitter for a family's thinking format."""

    def split(response: str) -> tuple[str, str]:
        parts = chat.split_reasoning(response, fmt)
        return parts.thinking, parts.answer

    return split


def judge_rollouts(rollouts: pd.DataFrame, judge: Judge, cache_root=None, chunk: int = 256,
                   judge_config: dict | None = None) -> pd.DataFrame:
    """Judge every (prompt, sample) of ``rollouts`` (columns prompt_id, sample_index, prompt, text; with columns
    thinking and answer, as lrmsafety.generate writes them, those are the split the judges read).

    Returns the rollouts' key columns with the judge's columns. With ``cache_root``, finished chunks are stored
    under a key made of the judge's name, the judged part, ``judge_config`` (e.g. the guard model) and the
    rollouts' configuration hashes, so a second call judges only what is new.
    """
    for column in KEY + ["prompt", "text"]:
        if column not in rollouts.columns:
            raise ValueError(f"judge_rollouts needs a {column!r} column in the rollouts frame")
    # the rollouts' own (thinking, answer) columns, when present, are the split: re-splitting the text would find
    # no close marker in a no-think rollout and judge an empty answer (the close sits in its rendered prompt)
    has_parts = {"thinking", "answer"} <= set(rollouts.columns)
    config = {"judge": judge.name, "part": judge.part, **(judge_config or {}),
              "split": "rollout-columns" if has_parts else "split_fn",
              "rollouts": sorted(set(rollouts.get("config_hash", pd.Series(["uncached"])).astype(str)))}
    store = TableStore(cache_root, f"judge-{judge.name}", config, KEY) if cache_root is not None else None
    todo = rollouts
    if store is not None:
        pending = set(store.pending(map(tuple, rollouts[KEY].itertuples(index=False))))
        todo = rollouts[[key in pending for key in map(tuple, rollouts[KEY].itertuples(index=False))]]
    frames = []
    for start in tqdm(range(0, len(todo), chunk), desc=f"judge {judge.name}", disable=len(todo) <= chunk):
        part = todo.iloc[start:start + chunk]
        parts = list(zip(part["thinking"].fillna(""), part["answer"].fillna(""))) if has_parts else None
        verdicts = judge.judge(part["prompt"].tolist(), part["text"].tolist(), parts=parts).reset_index(drop=True)
        out = pd.concat([part[KEY].reset_index(drop=True), verdicts], axis=1)
        if store is not None:
            store.append(out)
        frames.append(out)
    if store is not None:
        judged = store.read()
        return rollouts[KEY].merge(judged, on=KEY, how="left")
    return pd.concat(frames, ignore_index=True) if frames else rollouts[KEY].assign(judge=judge.name)


# judge name -> the registry entry of the guard model it runs
GUARD_MODELS = {
    "llama_guard_3": "llama-guard-3-8b", "llama_guard_4": "llama-guard-4-12b", "wildguard": "wildguard",
    "qwen3guard": "qwen3guard-gen-8b", "harmbench_cls": "harmbench-llama-2-13b-cls",
    "granite_guardian": "granite-guardian-3.3-8b",
}


def make_judge(name: str, fmt: chat.ThinkingFormat, quantization: str = "nf4") -> tuple[Judge, dict]:
    """A judge by name, splitting responses with the judged model's thinking format; guard models are loaded
    (4-bit by default). Returns the judge and its cache configuration."""
    from .judges import get_judge
    from .models import load_model

    if name in GUARD_MODELS:
        model, tokenizer, spec = load_model(GUARD_MODELS[name], quantization=quantization)
        judge = get_judge(name, model=model, tokenizer=tokenizer, split_fn=split_fn_for(fmt))
        return judge, {"guard": spec.hf_id, "quantization": quantization}
    return get_judge(name, split_fn=split_fn_for(fmt)), {}
