"""Decoding settings and thinking modes: the `Decoding` dataclass, the cache-key fields of a decoding
(`decoding_config`, `GENERATOR_VERSION`), the backend choice, and the per-sample rules of each thinking mode
(`_Sample`: token by token, shared by the transformers driver (:mod:`lrmsafety.engine.generate`) and the vLLM
backend (:mod:`lrmsafety.engine.vllm_backend`)). The modes themselves are described in generate's docstring."""

from __future__ import annotations

import dataclasses
import random
import zlib
from dataclasses import dataclass
from typing import Literal

import torch

from .. import chat
from ..registry import ModelSpec

Mode = Literal["natural", "no_think", "zerothink", "lessthink", "morethink", "prefix"]
MODES = ("natural", "no_think", "zerothink", "lessthink", "morethink", "prefix")
# bumped whenever a change to this module changes what the same configuration generates: caches made before are
# then not served (2: positions of left-padded rows in the shared prefill; 3: one-token stop strings; 4: the refill
# scheduler, answer budget counted from the close, SafeChain's MoreThink whitespace, EOS and close string; 5: per-sample
# counter-based sampling, each token drawn from a hash of the sample's seed and its token count; 6: batch-invariant CPU
# numerics, lrmsafety.numerics and engine.attention)
GENERATOR_VERSION = 6
BACKENDS = ("auto", "transformers", "vllm")


@dataclass(frozen=True)
class Decoding:
    """One decoding configuration; everything that changes the samples is here and in the cache key."""

    mode: Mode = "natural"
    samples_per_prompt: int = 1
    max_thinking_tokens: int = 1024
    max_answer_tokens: int = 512
    temperature: float | None = None  # None: the model's own sampling defaults
    top_p: float | None = None
    top_k: int | None = None
    morethink_extensions: int = 10
    close_prefix: bool = True  # mode "prefix": force-close the given thinking prefix, then sample the answer
    system_prompt: str | None = None
    seed: int = 0
    batch_size: int = 32
    # generate_batch only (the batch-synchronous path kept for notebooks and benchmarks): a static, compiled KV
    # cache; "auto" uses it on CUDA. Rollouts go through the refill scheduler, which does not use it.
    static_cache: bool | Literal["auto"] = "auto"
    # decode steps between the refill scheduler's looks at the rows (finished rows leave, waiting ones enter)
    chunk_tokens: int = 16
    # auto: vLLM when the model is a vllm.LLM, else transformers
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    # one budget for thinking and answer together, as HF generate's ``max_new_tokens`` (paper B's ablation runs:
    # 4,096): the thinking is never force-closed, and a row that spends the budget (or ends) inside its thinking
    # stays unclosed. None: ``max_thinking_tokens``, force-close, then ``max_answer_tokens`` after the close.
    max_new_tokens: int | None = None
    # False: fixed groups of ``batch_size`` rows without refill, each run until its last row ends, finished rows
    # kept in the batch (as HF generate's batches; paper B's batch rescaling takes one norm over the forward's whole
    # tensor, so the group is part of the method). True: the refill scheduler. transformers backend only.
    refill: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown thinking mode {self.mode!r}; choose one of {MODES}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {BACKENDS}")
        if self.chunk_tokens < 1:
            raise ValueError("chunk_tokens must be at least 1")
        if self.samples_per_prompt < 1 or self.batch_size < 1:
            raise ValueError("samples_per_prompt and batch_size must be at least 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 0:
            raise ValueError("max_new_tokens must be at least 0 (or None)")

    def sampling_kwargs(self, spec: ModelSpec) -> dict:
        base = spec.sampling
        sampling = dataclasses.replace(
            base,
            temperature=base.temperature if self.temperature is None else self.temperature,
            top_p=base.top_p if self.top_p is None else self.top_p,
            top_k=base.top_k if self.top_k is None else self.top_k,
        )
        return sampling.generate_kwargs()


# fields added after caches were written: left out of the cache key at their defaults, so earlier caches still serve
_KEYED_WHEN_SET = {"max_new_tokens": None, "refill": True}


def decoding_config(decoding: Decoding) -> dict:
    """The decoding settings of the cache key (fields of ``_KEYED_WHEN_SET`` only when not at their default)."""
    return {k: v for k, v in dataclasses.asdict(decoding).items()
            if not (k in _KEYED_WHEN_SET and v == _KEYED_WHEN_SET[k])}


def is_vllm(model) -> bool:
    """Whether ``model`` is a vLLM engine: a ``vllm.LLM``, or one that generates through a LoRA adapter
    (``vllm_backend.Adapted``, which holds the engine as ``llm``)."""
    return any(type(m).__module__.startswith("vllm") for m in (model, getattr(model, "llm", None)))


def resolve_backend(backend: str, model) -> str:
    """The backend that runs: ``auto`` follows the model object (a vllm.LLM or a transformers model)."""
    if backend == "auto":
        return "vllm" if is_vllm(model) else "transformers"
    if (backend == "vllm") != is_vllm(model):
        raise ValueError(f"backend {backend!r} needs a {'vllm.LLM' if backend == 'vllm' else 'transformers'} model; "
                         "load it with models.load_model (transformers) or vllm_backend.load_llm (vLLM)")
    return backend


def sample_seed(seed: int, prompt_id, sample_index: int) -> int:
    """The seed of one (prompt, sample) unit: all its randomness (token draws, MoreThink's words) comes from it, so
    a sample is the same whichever samples run before or beside it (a resumed run regenerates it identically)."""
    return zlib.crc32(f"{seed}|{prompt_id}|{sample_index}".encode())


def _special_strings(tokenizer) -> tuple[str, ...]:
    ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return tuple(tokenizer.convert_ids_to_tokens(i) for i in ids if i is not None)


@torch.no_grad()
def _prefill(mode: str, fmt: chat.ThinkingFormat, prefix: str | None, close_prefix: bool) -> tuple[str, bool]:
    """(the assistant text placed after the opened thinking, whether the thinking is already closed)."""
    if mode == "zerothink":
        return chat.ZEROTHINK_PREFILL if fmt.close == "</think>" else fmt.force_close, True
    if mode == "lessthink":
        if fmt.close == "</think>":
            return chat.LESSTHINK_PREFILL, True
        return chat.LESSTHINK_PREFILL.split("\n</think>")[0] + fmt.force_close, True
    if mode == "prefix":
        if prefix is None:
            raise ValueError("mode 'prefix' needs a thinking_prefix column in the prompts frame")
        return (chat.force_close(prefix.rstrip(), fmt), True) if close_prefix else (prefix, False)
    return "", False


class _Sample:
    """One (prompt, sample) unit as a request of the refill scheduler: the thinking mode's rules, token by token.

    Thinking phase: the close token ends it (MoreThink: the close, or an end-of-sequence, is replaced by a
    continuation word while extensions and budget last, then the thinking is closed with SafeChain's string);
    past ``max_thinking_tokens`` the thinking is force-closed. Answer phase: up to ``max_answer_tokens`` tokens
    after the close, or an end-of-sequence. With ``max_new_tokens`` (one budget for both phases, HF generate's
    rule) nothing is force-closed: a row that runs out of budget, or ends, inside its thinking is done, unclosed.

    Randomness: ``seed`` (:func:`sample_seed`) and ``n_drawn`` (tokens handed to ``advance`` and looked at, over all
    phases) key the scheduler's draws, so the sample's n-th token is drawn from hash(seed, n) wherever it runs;
    MoreThink's words come from ``random.Random(seed)``, the sample's own.
    """

    def __init__(self, unit: dict, prompt: str, prefill: str, closed: bool, decoding: Decoding, fmt, tokenizer,
                 close_ids: list[int], eos_ids: set[int]):
        self.unit, self.rendered_prompt, self.prefill = unit, prompt, prefill
        self.decoding, self.fmt, self.tokenizer = decoding, fmt, tokenizer
        self.close_ids, self.eos_ids = close_ids, eos_ids
        self.seed = sample_seed(decoding.seed, unit["prompt_id"], unit["sample_index"])
        self.rng = random.Random(self.seed)
        self.n_drawn = 0  # tokens looked at by advance (the one that ended a phase included; dropped ones not)
        self.generated = ""  # text generated after prompt + prefill, inserted words included
        self.segment: list[int] = []  # tokens accepted since the text was last rebuilt
        self.closed_early = closed
        self.phase = "answer" if closed else "thinking"
        self.shared = decoding.max_new_tokens is not None and decoding.mode != "morethink"
        self.budget = (decoding.max_new_tokens if decoding.max_new_tokens is not None
                       else decoding.max_answer_tokens if closed else decoding.max_thinking_tokens)
        self.force_closed = self.finished = False
        self.extensions = 0
        self.new_tokens: list[int] = []  # this chunk's accepted tokens and their entropies (for on_chunk)
        self.new_entropies: list[float] | None = None
        if self.phase == "thinking" and self.budget <= 0:
            self._end_unclosed() if self.shared else self._close_thinking(forced=True)

    # the scheduler's request interface
    @property
    def text(self) -> str:
        return self.rendered_prompt + self.prefill + self.generated_text

    @property
    def generated_text(self) -> str:
        self._flush()
        return self.generated

    @property
    def done(self) -> bool:
        return self.phase == "answer" and (self.finished or self.budget <= 0)

    def max_steps(self) -> int:
        return max(1, self.budget)

    def advance(self, tokens: list[int], entropies: list[float] | None) -> str:
        from .scheduler import CONTINUE, DONE, REQUEUE

        self.new_tokens, self.new_entropies = [], [] if entropies is not None else None
        for i, token in enumerate(tokens):
            self.n_drawn += 1
            if self.phase == "answer":
                if token in self.eos_ids:
                    self.finished = True
                    return DONE
                self._accept(token, entropies, i)
                self.budget -= 1
                if self.budget <= 0:
                    return DONE
                continue
            if token in self.eos_ids:  # an end-of-sequence inside the thinking
                if self.shared:  # HF generate's rule: the row ends here, unclosed
                    self.finished = True
                    self._end_unclosed()
                elif self.decoding.mode == "morethink":
                    self._morethink_close(forced=True)
                else:
                    self._close_thinking(forced=True)
                return DONE if self.done else REQUEUE
            self._accept(token, entropies, i)
            self.budget -= 1
            if self.segment[-len(self.close_ids):] == self.close_ids:
                if self.decoding.mode == "morethink":
                    del self.segment[-len(self.close_ids):]  # the close is replaced (SafeChain drops its stop string)
                    self._morethink_close(forced=False)
                    return DONE if self.done else REQUEUE
                self.phase, self.budget = "answer", self._answer_budget()  # the model closed: answer on
                if self.budget <= 0:
                    return DONE
                continue
            if self.budget <= 0:
                if self.shared:  # the shared budget is spent inside the thinking: done, unclosed
                    self._end_unclosed()
                    return DONE
                self._close_thinking(forced=True) if self.decoding.mode != "morethink" else \
                    self._morethink_close(forced=True, out_of_budget=True)
                return DONE if self.done else REQUEUE
        return CONTINUE

    # the thinking mode's rules
    def _accept(self, token: int, entropies, i: int) -> None:
        self.segment.append(token)
        self.new_tokens.append(token)
        if entropies is not None:
            self.new_entropies.append(entropies[i])

    def _flush(self) -> None:
        if self.segment:
            self.generated += self.tokenizer.decode(self.segment, skip_special_tokens=False)
            self.segment = []

    def _answer_budget(self) -> int:
        """Tokens the answer may take once the thinking closes: what is left of ``max_new_tokens`` when set."""
        return self.budget if self.decoding.max_new_tokens is not None else self.decoding.max_answer_tokens

    def _end_unclosed(self) -> None:
        self._flush()
        self.phase, self.budget = "answer", 0

    def _close_thinking(self, forced: bool) -> None:
        self._flush()
        if forced:
            self.generated += self.fmt.force_close
            self.force_closed = True
        self.phase, self.budget = "answer", self._answer_budget()

    def _morethink_close(self, forced: bool, out_of_budget: bool = False) -> None:
        """SafeChain's budget forcing (utils_model.morethink_single): the text so far is kept as generated,
        whitespace included; a continuation word follows while extensions and budget remain, else the close."""
        self._flush()
        if not out_of_budget and self.extensions < self.decoding.morethink_extensions and self.budget > 0:
            self.generated += self.rng.choice(chat.MORETHINK_CONTINUATIONS)
            self.extensions += 1
            return
        self.generated += chat.MORETHINK_CLOSE if self.fmt.close == "</think>" else self.fmt.force_close
        self.force_closed = forced
        self.phase, self.budget = "answer", self._answer_budget()

    def rewrite(self, generated: str) -> None:
        """Replace the text generated so far (an intervention's edit); the row is then re-prefilled."""
        self._flush()
        self.generated = generated


def _stop_ids(tokenizer, model) -> set[int]:
    eos_ids = model.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) | {tokenizer.eos_token_id}
    return {i for i in eos_ids if i is not None}


def _make_samples(tokenizer, spec: ModelSpec, units: list[dict], decoding: Decoding,
                  eos_ids: set[int]) -> list[_Sample]:
    """One request per unit; each carries its own seed and random.Random (nothing shared between samples)."""
    fmt = spec.thinking_format
    close_ids = tokenizer(fmt.close, add_special_tokens=False)["input_ids"]
    samples = []
    for unit in units:
        mode = "no_think" if decoding.mode == "no_think" else "think"
        prompt = chat.render_prompt(tokenizer, fmt, unit["prompt"], mode=mode, system=decoding.system_prompt)
        prefill, closed = _prefill(decoding.mode, fmt, unit.get("thinking_prefix"), decoding.close_prefix)
        samples.append(_Sample(unit, prompt, prefill, closed or decoding.mode == "no_think", decoding, fmt,
                               tokenizer, close_ids, eos_ids))
    return samples


def _record(sample: _Sample, tokenizer, spec: ModelSpec, decoding: Decoding) -> dict:
    text = sample.prefill + sample.generated_text
    if decoding.mode == "no_think":
        parts = chat.Reasoning("", text.strip(), True)
    else:
        parts = chat.split_reasoning(text, spec.thinking_format, eos_strings=_special_strings(tokenizer))
    unit = sample.unit
    return {
        "prompt_id": unit["prompt_id"], "sample_index": unit["sample_index"], "prompt": unit["prompt"],
        "rendered_prompt": sample.rendered_prompt, "text": text, "thinking": parts.thinking, "answer": parts.answer,
        # closed by the model itself (not by our force-close or a prefill)
        "closed": parts.closed and not sample.force_closed and not sample.closed_early,
        "force_closed": sample.force_closed, "finished": sample.finished, "extensions": sample.extensions,
        "n_prompt_tokens": len(tokenizer(sample.rendered_prompt, add_special_tokens=False)["input_ids"]),
        "n_thinking_tokens": len(tokenizer(parts.thinking, add_special_tokens=False)["input_ids"]),
        "n_answer_tokens": len(tokenizer(parts.answer, add_special_tokens=False)["input_ids"]),
        **{k: unit[k] for k in ("thinking_prefix",) if k in unit},
    }
