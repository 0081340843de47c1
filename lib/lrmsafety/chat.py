"""Prompt rendering per thinking format, and splitting a generation into thinking and answer.

Every reasoning family opens its thinking differently (methods.md, "Think prompt" / "No-think prompt" / "Force-close"):
R1 distills' template already ends in ``<think>\\n``; Qwen3 takes ``enable_thinking``; gpt-oss writes harmony channels.
A :class:`ThinkingFormat` holds those strings, and :func:`render_prompt` always returns a prompt whose last characters
open the thinking (think mode) or have already closed it (no-think mode), followed by an optional assistant prefill.
The text a model generates after a think prompt is therefore ``thinking + close + answer`` for every family.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["think", "no_think"]


@dataclass(frozen=True)
class ThinkingFormat:
    """How one family writes its thinking.

    open:            the string that opens the thinking right after the generation prompt
    close:           the string the model writes to end the thinking (what split_reasoning looks for)
    force_close:     appended to a thinking that ran past its budget, or to a cut prefix (paper A)
    no_think:        appended after ``open`` to skip the thinking (paper A's no-think prompt)
    template_opens:  the chat template's generation prompt already ends with ``open`` (R1 distills)
    template_kwargs: extra chat-template arguments for think / no-think (Qwen3's ``enable_thinking``)
    """

    name: str
    open: str = "<think>\n"
    close: str = "</think>"
    force_close: str = "\n</think>\n"
    no_think: str = "\n</think>\n"
    template_opens: bool = False
    think_kwargs: dict = field(default_factory=dict)
    no_think_kwargs: dict = field(default_factory=dict)
    # a regular expression for the separator between thinking and answer (paper B splits on \n*</think>\n*)
    split_pattern: str = r"\n*</think>\n*"


R1 = ThinkingFormat(name="r1", template_opens=True)
# Qwen3 hybrid models: the template opens no thinking by itself; enable_thinking=False inserts an empty think block.
QWEN3 = ThinkingFormat(
    name="qwen3",
    no_think="</think>\n\n",
    think_kwargs={"enable_thinking": True},
    no_think_kwargs={"enable_thinking": False},
)
# Thinking-only models (Qwen3-*-Thinking-2507, QwQ, Olmo-3-Think): the template ends in "<think>\n" already.
THINKING_ONLY = ThinkingFormat(name="thinking-only", template_opens=True)
# Phi-4-reasoning writes "<think>" itself after the assistant marker.
PHI4 = ThinkingFormat(name="phi4")
# gpt-oss: harmony channels. The analysis channel is the thinking, the final channel the answer.
HARMONY = ThinkingFormat(
    name="harmony",
    open="<|channel|>analysis<|message|>",
    close="<|end|><|start|>assistant<|channel|>final<|message|>",
    force_close="<|end|><|start|>assistant<|channel|>final<|message|>",
    no_think="<|end|><|start|>assistant<|channel|>final<|message|>",
    split_pattern=r"<\|end\|><\|start\|>assistant(?:<\|channel\|>final)?<\|message\|>",
)

FORMATS = {f.name: f for f in (R1, QWEN3, THINKING_ONLY, PHI4, HARMONY)}

# SafeChain's thinking-length controls, as exact strings (methods.md section 3).
ZEROTHINK_PREFILL = "\n</think>\n\n"
LESSTHINK_PREFILL = "Okay, the user ask for this, I can answer it without thinking much. \n</think>\n\n"
MORETHINK_CONTINUATIONS = ("Wait", "Let me think again")
MORETHINK_CLOSE = "</think>\n\n"  # SafeChain closes a MoreThink thinking with this string (utils_model.py)


def get_format(name: str) -> ThinkingFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown thinking format {name!r}; known formats: {sorted(FORMATS)}") from None


def messages_for(user: str, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]


def _apply_template(tokenizer, messages: list[dict], **kwargs) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "this tokenizer has no chat template; load the model's own tokenizer, or set tokenizer.chat_template"
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)


def generation_prompt(tokenizer, fmt: ThinkingFormat, user: str, system: str | None = None) -> str:
    """The chat template's generation prompt with the thinking opened (the start of paper A's probe input)."""
    text = _apply_template(tokenizer, messages_for(user, system), **fmt.think_kwargs)
    if fmt.name == "harmony":
        # gpt-oss templates end with "<|start|>assistant"; the model picks the channel. We pick analysis.
        return text if text.endswith(fmt.open) else text + fmt.open
    if text.rstrip("\n").endswith(fmt.open.strip()):
        # R1 distills and thinking-only models: the template already opened the thinking
        return text if text.endswith(fmt.open) else text.rstrip("\n") + "\n"
    return text + fmt.open


def render_prompt(
    tokenizer,
    fmt: ThinkingFormat,
    user: str,
    mode: Mode = "think",
    prefill: str = "",
    system: str | None = None,
) -> str:
    """The text to feed the model: chat template, thinking opened (or skipped), then ``prefill``.

    think:    template + open + prefill. A prefill is a thinking prefix (lock-in cuts, SafePath's
              "Let's think about safety first."), possibly already closed (ZeroThink, LessThink, force-close).
    no_think: the family's no-think prompt (Qwen3's enable_thinking=False; otherwise open + "\\n</think>\\n"),
              then the prefill as the start of the answer.
    """
    if mode == "think":
        return generation_prompt(tokenizer, fmt, user, system) + prefill
    if mode != "no_think":
        raise ValueError(f"mode must be 'think' or 'no_think', not {mode!r}")
    if fmt.no_think_kwargs:
        text = _apply_template(tokenizer, messages_for(user, system), **fmt.no_think_kwargs)
        if fmt.close not in text:
            raise ValueError(
                f"the chat template ignored {fmt.no_think_kwargs}: no {fmt.close!r} in the no-think prompt; "
                "this tokenizer's template does not support thinking control, use a template that does"
            )
        return text + prefill
    return generation_prompt(tokenizer, fmt, user, system) + fmt.no_think + prefill


def force_close(thinking_prefix: str, fmt: ThinkingFormat) -> str:
    """A thinking prefix closed the way paper A closes cut or over-budget traces."""
    return thinking_prefix + fmt.force_close


@dataclass(frozen=True)
class Reasoning:
    thinking: str
    answer: str
    closed: bool  # False when the thinking never closed (ran out of budget): the answer is then empty


SplitRule = Literal["first_close", "last_close", "paper_b", "trace"]
SPLIT_RULES = ("first_close", "last_close", "paper_b", "trace")


@functools.lru_cache(maxsize=None)
def _trace_pattern(open_tag: str, close: str) -> re.Pattern:
    return re.compile(rf"^\s*(?:{re.escape(open_tag)})?\s*(?P<thinking>.*?)\s*{re.escape(close)}\s*(?P<answer>.*)$",
                      re.DOTALL)


def split(text: str, fmt: ThinkingFormat = R1, rule: SplitRule = "first_close",
          eos_strings: tuple[str, ...] = ()) -> Reasoning:
    """Split a generation into thinking and answer, by one of the papers' rules (``closed``: a close was found).

    first_close  the rollouts' split (split_reasoning): ``eos_strings`` stripped from the end, a repeated opener
                 (``fmt.open``) removed, split at the first ``fmt.split_pattern``; both parts stripped; unclosed:
                 the whole text (stripped) is thinking, the answer is ""
    last_close   paper A's guard input (judges.split_last_think): split at the LAST ``fmt.close``; "<think>" removed
                 from the thinking's start, newlines around the close dropped; unclosed: all thinking, answer ""
    paper_b      paper B (RefusalCliff ``think_pattern.split(text, 1)``; judges.split_paper_b): split at the first
                 ``fmt.split_pattern``, "<think>" removed from the thinking's start, nothing else stripped; unclosed:
                 thinking "", the whole text is the answer
    trace        SFT data ("<think>\\n...</think>\\n\\nanswer"; finetune.split_trace): first close, whitespace around
                 both parts dropped; unclosed: thinking "", the answer is the whole text stripped
    """
    for eos in eos_strings:
        if eos and text.endswith(eos):
            text = text[: -len(eos)]
    tag = fmt.open.strip()
    if rule == "first_close":
        if text.startswith(fmt.open):
            text = text[len(fmt.open) :]
        match = re.search(fmt.split_pattern, text)
        if match is None:
            return Reasoning(thinking=text.strip(), answer="", closed=False)
        answer = text[match.end() :]
        if fmt.name == "harmony":
            answer = re.sub(r"<\|(return|end)\|>\s*$", "", answer)
        return Reasoning(thinking=text[: match.start()].strip(), answer=answer.strip(), closed=True)
    if rule == "last_close":
        head, sep, tail = text.rpartition(fmt.close)
        if not sep:
            return Reasoning(thinking=text, answer="", closed=False)
        return Reasoning(thinking=head.removeprefix(tag).rstrip("\n"), answer=tail.lstrip("\n"), closed=True)
    if rule == "paper_b":
        pieces = re.split(fmt.split_pattern, text, maxsplit=1)
        if len(pieces) == 1:
            return Reasoning(thinking="", answer=text, closed=False)
        return Reasoning(thinking=pieces[0].removeprefix(tag), answer=pieces[1], closed=True)
    if rule == "trace":
        match = _trace_pattern(tag, fmt.close).match(text)
        if match is None:
            return Reasoning(thinking="", answer=text.strip(), closed=False)
        return Reasoning(thinking=match["thinking"], answer=match["answer"].strip(), closed=True)
    raise ValueError(f"unknown split rule {rule!r}; known: {', '.join(SPLIT_RULES)}")


def split_reasoning(generated: str, fmt: ThinkingFormat, eos_strings: tuple[str, ...] = ()) -> Reasoning:
    """Split text generated after a think prompt into thinking and answer (``split(..., rule="first_close")``).

    The thinking ends at the first close marker; everything after the separator is the answer. An unclosed
    thinking returns the whole text as thinking and an empty answer. ``eos_strings`` are stripped from the end.
    A generation that repeats the opener (models that write "<think>" themselves) has it removed.
    """
    return split(generated, fmt, "first_close", eos_strings)
