"""The judges' base: the `Judge` interface, the registry (each judge's name is set once, by `register_judge`),
and which part of a response a judge reads."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import pandas as pd

from .. import chat

SplitFn = Callable[[str], tuple[str, str]]
GenerateFn = Callable[[list[str]], list[str]]
COLUMNS = ["judge", "refused", "unsafe", "score", "raw"]

_REGISTRY: dict[str, type[Judge]] = {}


def register_judge(name: str):
    """Class decorator: register a Judge subclass under `name` (also sets its `name`)."""

    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"a judge named {name!r} is already registered ({_REGISTRY[name].__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_judges() -> list[str]:
    return sorted(_REGISTRY)


def judge_class(name: str) -> type[Judge]:
    """The registered judge class `name`; an unknown name is an error with the closest names."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown judge {name!r}.{hint} Available: {', '.join(available_judges())}")
    return _REGISTRY[name]


def get_judge(name: str, **kwargs) -> Judge:
    """Build the registered judge `name` with `kwargs` (e.g. model=, tokenizer=, generate_fn=)."""
    return judge_class(name)(**kwargs)


# --------------------------------------------------------------------------------------------------------------
# Thinking / answer split
# --------------------------------------------------------------------------------------------------------------


def split_last_think(response: str) -> tuple[str, str]:
    """(thinking, answer) split on the LAST "</think>"; without one, everything is thinking and the answer is "".

    Newlines around the tag are dropped, like paper B's regex `\\n*</think>\\n*`, so prefix rules see the answer's
    first real characters. lrmsafety.chat.split_reasoning is the family-aware version; pass it as split_fn.
    """
    parts = chat.split(response, chat.R1, "last_close")
    return parts.thinking, parts.answer


def after_last_close(answer: str, close: str = "</think>") -> str:
    """Paper A's guard input: the text after the last ``close`` (the whole text when it has none), stripped."""
    return answer.rpartition(close)[2].strip()


def select_part(response: str, part: str, split_fn: SplitFn | None = None,
                split: tuple[str, str] | None = None) -> str:
    """The text a judge reads: "full" (as is), "answer" or "thinking" (``split`` when given, else split_fn)."""
    if part == "full":
        return response
    if part not in ("answer", "thinking"):
        raise ValueError(f"part must be 'full', 'answer' or 'thinking', got {part!r}")
    thinking, answer = split if split is not None else (split_fn or split_last_think)(response)
    return answer if part == "answer" else thinking


# --------------------------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------------------------


class Judge:
    name: str = "judge"
    part: str = "answer"  # default per judge; overridable in __init__
    primary: str = "refused"  # which verdict `score` carries
    # paper A's guard input: the answer is further cut after its last "</think>" (after_last_close)
    answer_after_last_close: bool = False

    def __init__(self, part: str | None = None, split_fn: SplitFn | None = None):
        if part is not None:
            select_part("", part)  # validates
            self.part = part
        self.split_fn = split_fn

    def judge(self, prompts: Sequence[str], responses: Sequence[str],
              parts: Sequence[tuple[str, str]] | None = None) -> pd.DataFrame:
        """One verdict row per response. ``parts``: each response's (thinking, answer), when already split."""
        prompts, responses = _check_inputs(prompts, responses)
        parts = _check_parts(parts, len(responses))
        texts = [select_part(r, self.part, self.split_fn, s) for r, s in zip(responses, parts)]
        if self.part == "answer" and self.answer_after_last_close:
            texts = [after_last_close(t) for t in texts]
        return self._finish(self._judge(prompts, texts))

    def _judge(self, prompts: list[str], texts: list[str]) -> pd.DataFrame:
        raise NotImplementedError

    def _finish(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        for col in ("refused", "unsafe"):
            frame[col] = frame[col].astype("boolean") if col in frame else pd.array([pd.NA] * len(frame), "boolean")
        if "score" not in frame:
            frame["score"] = frame[self.primary].astype("Float64").to_numpy(dtype=float, na_value=float("nan"))
        frame["judge"] = self.name
        rest = [c for c in frame.columns if c not in COLUMNS]
        return frame[COLUMNS + rest]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, part={self.part!r})"


def _check_parts(parts, n: int) -> list:
    if parts is None:
        return [None] * n
    parts = [tuple(p) for p in parts]
    if len(parts) != n or any(len(p) != 2 or not all(isinstance(x, str) for x in p) for p in parts):
        raise ValueError(f"parts must be {n} (thinking, answer) pairs of strings, one per response")
    return parts


def _check_inputs(prompts, responses) -> tuple[list[str], list[str]]:
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses; pass one prompt per response")
    for what, values in (("prompts", prompts), ("responses", responses)):
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise TypeError(f"{what}[{i}] is {type(v).__name__}, not str; fill or drop missing rows first")
    return prompts, responses

