"""Judges: one interface, `judge(prompts, responses) -> frame`, for string matchers, guard models and ensembles.

Every judge returns one row per (prompt, response), in input order, with at least these columns:
    judge    the judge's registry name
    refused  boolean (nullable): the response is a refusal; NA when the judge does not say or could not be parsed
    unsafe   boolean (nullable): the response is harmful/unsafe; NA likewise
    score    float in [0, 1]: the judge's soft value of its primary verdict (`Judge.primary`: "refused" or
             "unsafe"); 0/1 for single judges, the vote share for ensembles; NaN when unparsed
    raw      the judge's raw output (or the matched string for string judges)
Some judges add columns (categories, harmful_request, votes). Unparseable output gives NA, never a guess.

`part` says what a judge reads: "answer" (text after the thinking, as papers A and B do) or "full" (thinking and
answer, as SafeChain does). Responses are passed whole; `split_fn(response) -> (thinking, answer)` does the split,
unless `judge(..., parts=[(thinking, answer), ...])` passes the split already made (lrmsafety.judges.labels passes the
rollouts' own columns: a no-think rollout has no close marker in its text, and its whole text is the answer).
Paper A's four guards (wildguard, qwen3guard, granite_guardian, gpt_oss_safeguard) read paper A's guard input: the
answer cut after its LAST "</think>" and stripped (paper A's strip_thinking, narutatsuri/lrm_safety_deliberation
pipeline/eval/evaluation/base.py, commit 975d2d2), so an answer in which the model closed its thinking twice is judged
on what follows the second close. Paper B splits on the FIRST close (RefusalCliff src/inference/generation.py,
``split(..., 1)``), which the rollouts' columns and split_paper_b give.

Where we depart from the papers: an unparsable guard output is NA here (paper A's parsers read it as "no"; its
label, lrmsafety.judges.labels.paper_labels, counts NA as no, so the label is the same); paper A passes a no-think
output
whole, while our paper-A guards would also cut a no-think answer after a "</think>" the model wrote in it (they
cannot tell the two apart from the (thinking, answer) pair); Qwen3Guard needs its own chat template (no plain-text
fallback).

Modules: `base` (the Judge interface and registry), `strings` (string rules), `guards` (parsers and the guard driver),
`guard_models` (one class per guard model), `ensembles` (votes), `labels` (each paper's label of a rollout),
`stance` (stance judges of thinking chunks, paper A's deliberation analysis).
"""

from __future__ import annotations

from .base import (
                   COLUMNS,
                   GenerateFn,
                   Judge,
                   SplitFn,
                   after_last_close,
                   available_judges,
                   get_judge,
                   register_judge,
                   select_part,
                   split_last_think,
)
from .ensembles import MajorityRefusal, combine_votes
from .guard_models import (
                   GPT_OSS_SAFEGUARD_POLICY,
                   GRANITE_REFUSAL_CRITERION,
                   GptOssSafeguard,
                   GraniteGuardian,
                   HarmBenchClassifier,
                   LlamaGuard3,
                   LlamaGuard4,
                   Qwen3Guard,
                   StandInGuard,
                   WildGuard,
                   parse_gpt_oss_safeguard,
)
from .guards import (
                   NA,
                   GuardJudge,
                   parse_granite_guardian,
                   parse_harmbench,
                   parse_llama_guard,
                   parse_qwen3guard,
                   parse_wildguard,
)
from .strings import (
                   PAPER_B_REFUSAL_WORDS,
                   REFUSAL_WORDS,
                   RS_MATCH_STRINGS,
                   PaperBRefusal,
                   RefusalPrefix,
                   RSMatch,
                   split_paper_b,
)

__all__ = [
    "COLUMNS", "GenerateFn", "Judge", "SplitFn", "after_last_close", "available_judges", "get_judge", "register_judge",
    "select_part", "split_last_think", "MajorityRefusal", "combine_votes", "GPT_OSS_SAFEGUARD_POLICY",
    "GRANITE_REFUSAL_CRITERION", "GptOssSafeguard", "GraniteGuardian", "HarmBenchClassifier", "LlamaGuard3",
    "LlamaGuard4", "Qwen3Guard", "StandInGuard", "WildGuard", "parse_gpt_oss_safeguard", "NA", "GuardJudge",
    "parse_granite_guardian", "parse_harmbench", "parse_llama_guard", "parse_qwen3guard", "parse_wildguard",
    "PAPER_B_REFUSAL_WORDS", "REFUSAL_WORDS", "RS_MATCH_STRINGS", "PaperBRefusal", "RefusalPrefix", "RSMatch",
    "split_paper_b",
]
