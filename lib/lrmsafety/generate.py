"""Batched rollouts with thinking control, cached and resumable.

Thinking modes (exact strings in :mod:`lrmsafety.chat`, rules in methods.md):
    natural    think, close when the model does; past ``max_thinking_tokens`` force-close (paper A); then up to
               ``max_answer_tokens`` answer tokens after the close
    no_think   the family's no-think prompt (paper A)
    zerothink  SafeChain: the thinking is closed at once
    lessthink  SafeChain: one fixed sentence, then closed
    morethink  SafeChain budget forcing (utils_model.morethink_single): each time the model closes its thinking or
               ends the sequence inside it, the text so far is kept as generated (whitespace included) and "Wait"
               or "Let me think again" follows, up to ``morethink_extensions`` times within
               ``max_thinking_tokens``; then the thinking is closed with SafeChain's "</think>\\n\\n"
    prefix     continue from a given thinking prefix (column ``thinking_prefix``); with ``close_prefix`` the
               prefix is force-closed and only the answer is sampled (paper A's lock-in cuts)

Backends: ``transformers`` runs every sample through :class:`lrmsafety.scheduler.RefillScheduler` (continuous
batching: a finished row's slot is refilled at once, so no batch waits on its longest row; forward hooks stay
active; CPU, bf16 and 4-bit alike; ``refill=False``: fixed groups of ``batch_size`` rows instead, for interventions
whose effect depends on the batch, such as paper B's head ablation). ``vllm`` (:mod:`lrmsafety.vllm_backend`, GPU,
``pip install "lrmsafety[vllm]"``) takes a ``vllm.LLM`` as the model. ``auto`` picks vLLM when given a vLLM engine.

The scheduler's decode engine is chosen per run (``scheduler.RefillScheduler(decode="auto")``): on CUDA a fixed-slot
static KV cache whose steps replay as CUDA graphs (:mod:`lrmsafety.slots`), else, and whenever forward hooks are
installed or the model is quantized, the DynamicCache loop. The environment variable ``LRMSAFETY_DECODE``
(``auto``, ``static``, ``dynamic``) overrides the choice; it is not part of the cache key (both engines sample the
same distributions).

Extension point for inference-time interventions: ``rollouts(..., on_chunk=callback)``. Every ``chunk_tokens``
decode steps the callback receives the rows that continue (objects with ``unit`` (prompt_id, sample_index,
prompt), ``phase`` ("thinking" or "answer"), ``new_tokens`` and ``new_entropies`` (this chunk's tokens and the
entropy in nats of the distribution each was drawn from, at temperature 1), ``generated_text`` (everything after
the prompt and prefill) and ``rewrite(text)``). It returns the rows it rewrote; those are re-prefilled from their
new text and continue. The callback carries a ``config`` dict (its settings), which joins the cache key.

Every sample records its prompt id, sample index, the generated text (prefill included), thinking, answer, token
counts, whether the thinking closed by itself, and the decoding configuration's hash.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
import zlib
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import chat, usage
from .models import ModelSpec, weights_fingerprint
from .store import TableStore, config_hash, library_versions, text_hash  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

Mode = Literal["natural", "no_think", "zerothink", "lessthink", "morethink", "prefix"]
MODES = ("natural", "no_think", "zerothink", "lessthink", "morethink", "prefix")
# bumped whenever a change to this module changes what the same configuration generates: caches made before are
# then not served (2: positions of left-padded rows in the shared prefill; 3: one-token stop strings; 4: the refill
# scheduler, answer budget counted from the close, SafeChain's MoreThink whitespace, EOS and close string)
GENERATOR_VERSION = 4
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
    return type(model).__module__.startswith("vllm")


def resolve_backend(backend: str, model) -> str:
    """The backend that runs: ``auto`` follows the model object (a vllm.LLM or a transformers model)."""
    if backend == "auto":
        return "vllm" if is_vllm(model) else "transformers"
    if (backend == "vllm") != is_vllm(model):
        raise ValueError(f"backend {backend!r} needs a {'vllm.LLM' if backend == 'vllm' else 'transformers'} model; "
                         "load it with models.load_model (transformers) or vllm_backend.load_llm (vLLM)")
    return backend


def rollout_config(model, tokenizer, spec: ModelSpec, decoding: Decoding, on_chunk=None) -> dict:
    """The cache key: model, revision, quantization, chat template, decoding settings, backend, library versions."""
    backend = resolve_backend(decoding.backend, model)
    if backend == "vllm":
        from . import vllm_backend

        return vllm_backend.rollout_config(model, tokenizer, spec, decoding)
    quantization = getattr(model.config, "quantization_config", None)
    return {
        "backend": backend,
        **({"on_chunk": on_chunk.config} if on_chunk is not None else {}),
        "model": spec.name,
        "source": spec.hf_id,
        "revision": getattr(model.config, "_commit_hash", None),
        "weights": weights_fingerprint(model),
        "dtype": str(next(model.parameters()).dtype),
        "quantization": quantization.to_dict().get("bnb_4bit_quant_type") if quantization is not None else None,
        "chat_template": text_hash(getattr(tokenizer, "chat_template", None)),
        "sampling": decoding.sampling_kwargs(spec),
        "decoding": {**decoding_config(decoding), "backend": backend},
        "generator": GENERATOR_VERSION,
        "versions": library_versions(),
    }


# ------------------------------------------------------------------------------------------- one batch
def _special_strings(tokenizer) -> tuple[str, ...]:
    ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return tuple(tokenizer.convert_ids_to_tokens(i) for i in ids if i is not None)


@torch.no_grad()
def generate_batch(model, tokenizer, texts: list[str], max_new_tokens: int, sampling: dict,
                   stop_strings: list[str] | None = None, share_prefixes: bool = True,
                   static_cache: bool = False) -> list[tuple[str, int, bool]]:
    """Continue each text; returns (continuation, generated tokens, ended with EOS) per text.

    Identical texts (K samples of one prompt, N answers after one thinking prefix) share one prefill: the KV
    cache of each distinct text is computed once and its rows are repeated, instead of recomputing the prefix.
    Otherwise, with ``static_cache``, prompts are padded to a multiple of 64 tokens so that the compiled decode
    step sees few distinct shapes.
    """
    if max_new_tokens <= 0:
        return [("", 0, False) for _ in texts]
    device = next(model.parameters()).device
    eos_ids = model.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) | {tokenizer.eos_token_id}
    stop_ids = _single_token_ids(tokenizer, stop_strings or [])
    if stop_ids is not None:
        # a stop string that is one token stops generation as an extra end-of-sequence id: much cheaper per step
        # than transformers' string matching; the token is kept in the text below
        extra = {"eos_token_id": sorted(i for i in eos_ids | stop_ids if i is not None)}
    else:
        extra = {"stop_strings": stop_strings, "tokenizer": tokenizer} if stop_strings else {}
        stop_ids = set()
    distinct = list(dict.fromkeys(texts))
    shared = share_prefixes and len(distinct) < len(texts)
    padding = {"pad_to_multiple_of": 64} if static_cache and not shared else {}
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False, **padding).to(device)
    if shared:
        extra["past_key_values"] = _shared_prefill(model, tokenizer, distinct, [distinct.index(t) for t in texts])
    elif static_cache:
        extra["cache_implementation"] = "static"
    output = model.generate(**encoded, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                            **sampling, **extra)
    generated = output[:, encoded["input_ids"].shape[1]:].cpu()
    results = []
    for row in generated.tolist():
        tokens = []
        ended = False
        for token in row:
            if token in stop_ids:
                tokens.append(token)
                break
            if token in eos_ids:
                ended = True
                break
            tokens.append(token)
        if not ended:  # padding after a stop string
            while tokens and tokens[-1] == tokenizer.pad_token_id:
                tokens.pop()
        results.append((tokenizer.decode(tokens, skip_special_tokens=False), len(tokens), ended))
    return results


def _single_token_ids(tokenizer, strings: list[str]) -> set[int] | None:
    """The token ids of stop strings when each is exactly one token, else None."""
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in strings]
    if not ids or any(len(i) != 1 for i in ids):
        return None
    return {i[0] for i in ids}


def padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: 0 at each row's first real token (padding gets 0 too)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _shared_prefill(model, tokenizer, distinct: list[str], rows: list[int]):
    """The KV cache of every token but the last of each distinct text, computed once and repeated to ``rows``.

    Left padding makes all texts equally long, so the distinct texts padded together have the same layout as
    the full batch; generate then feeds only the last token of each row.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    encoded = tokenizer(distinct, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    cache = DynamicCache(config=model.config)
    mask = encoded["attention_mask"][:, :-1]
    # positions count real tokens only, as generate() counts them; a plain forward would count the padding too
    model(input_ids=encoded["input_ids"][:, :-1], attention_mask=mask, position_ids=padded_positions(mask),
          past_key_values=cache, use_cache=True)
    cache.reorder_cache(torch.tensor(rows, device=device))
    return cache


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
    """

    def __init__(self, unit: dict, prompt: str, prefill: str, closed: bool, decoding: Decoding, fmt, tokenizer,
                 close_ids: list[int], eos_ids: set[int], rng: random.Random):
        self.unit, self.rendered_prompt, self.prefill = unit, prompt, prefill
        self.decoding, self.fmt, self.tokenizer = decoding, fmt, tokenizer
        self.close_ids, self.eos_ids, self.rng = close_ids, eos_ids, rng
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


def _make_samples(tokenizer, spec: ModelSpec, units: list[dict], decoding: Decoding, eos_ids: set[int],
                  rng: random.Random) -> list[_Sample]:
    fmt = spec.thinking_format
    close_ids = tokenizer(fmt.close, add_special_tokens=False)["input_ids"]
    samples = []
    for unit in units:
        mode = "no_think" if decoding.mode == "no_think" else "think"
        prompt = chat.render_prompt(tokenizer, fmt, unit["prompt"], mode=mode, system=decoding.system_prompt)
        prefill, closed = _prefill(decoding.mode, fmt, unit.get("thinking_prefix"), decoding.close_prefix)
        samples.append(_Sample(unit, prompt, prefill, closed or decoding.mode == "no_think", decoding, fmt,
                               tokenizer, close_ids, eos_ids, rng))
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


def _run_units(model, tokenizer, spec: ModelSpec, units: list[dict], decoding: Decoding, on_record,
               on_chunk=None, slots: int | None = None) -> None:
    """Generate every unit through the refill scheduler; ``on_record(record)`` as each sample finishes."""
    from .scheduler import RefillScheduler

    if not units:
        return
    seed = zlib.crc32(f"{decoding.seed}|{units[0]['prompt_id']}|{units[0]['sample_index']}".encode())
    rng = random.Random(seed)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    samples = _make_samples(tokenizer, spec, units, decoding, _stop_ids(tokenizer, model), rng)
    scheduler = RefillScheduler(model, tokenizer, decoding.sampling_kwargs(spec), slots or decoding.batch_size,
                                chunk=decoding.chunk_tokens, generator=generator,
                                want_entropy=getattr(on_chunk, "wants_entropy", on_chunk is not None),
                                on_chunk=on_chunk, decode=os.environ.get("LRMSAFETY_DECODE", "auto"),
                                refill=decoding.refill)
    emit = lambda sample: on_record(_record(sample, tokenizer, spec, decoding))  # noqa: E731
    for sample in samples:
        if sample.done:  # nothing to generate (an answer budget of 0)
            emit(sample)
    pending = [s for s in samples if not s.done]
    scheduler.run(pending, emit)
    # what this run generated, for the notebook's cost line (lrmsafety.usage): the prefill excluded, the force-close
    # and MoreThink's inserted words included (a few tokens per sample)
    usage.record(scheduler.decode, sum(len(tokenizer(s.generated_text, add_special_tokens=False)["input_ids"])
                                       for s in pending))


def decode_units(model, tokenizer, spec: ModelSpec, units: list[dict], decoding: Decoding,
                 on_chunk=None) -> list[dict]:
    """Generate (prompt, sample) units through all phases of the thinking mode; records in the units' order."""
    records = []
    _run_units(model, tokenizer, spec, units, decoding, records.append, on_chunk=on_chunk)
    order = {(u["prompt_id"], u["sample_index"]): i for i, u in enumerate(units)}
    return sorted(records, key=lambda r: order[(r["prompt_id"], r["sample_index"])])


# ------------------------------------------------------------------------------------------- the driver
def rollouts(model, tokenizer, spec: ModelSpec, prompts: pd.DataFrame, decoding: Decoding,
             cache_root=None, name: str = "rollouts", progress: bool = True, on_chunk=None) -> pd.DataFrame:
    """K samples per prompt under one decoding configuration; cached under ``cache_root`` when given.

    ``prompts`` needs ``prompt_id`` and ``prompt`` (and ``thinking_prefix`` for mode "prefix"). All pending samples
    go through the refill scheduler with ``batch_size`` slots (halved on out-of-memory; with ``refill=False``, in
    fixed groups of ``batch_size`` rows in the prompts' order); finished samples are saved every ``batch_size``
    samples, so a killed run resumes where it stopped. ``on_chunk`` (see the module
    docstring) must carry a ``config`` dict, which joins the cache key.
    """
    for column in ("prompt_id", "prompt") + (("thinking_prefix",) if decoding.mode == "prefix" else ()):
        if column not in prompts.columns:
            raise ValueError(f"the prompts frame needs a {column!r} column; it has {list(prompts.columns)}")
    if prompts["prompt_id"].duplicated().any():
        raise ValueError("prompt_id must be unique in the prompts frame")
    if on_chunk is not None and not isinstance(getattr(on_chunk, "config", None), dict):
        raise ValueError("on_chunk needs a `config` dict (its settings), which joins the rollout cache key")
    backend = resolve_backend(decoding.backend, model)
    if backend == "vllm" and not decoding.refill:
        raise ValueError("refill=False (fixed groups of batch_size rows) runs on the transformers backend only")
    config = rollout_config(model, tokenizer, spec, decoding, on_chunk=on_chunk)
    store = TableStore(cache_root, name, config, key=["prompt_id", "sample_index"]) if cache_root is not None else None
    columns = [c for c in ("prompt_id", "prompt", "thinking_prefix") if c in prompts.columns]
    units = [{**row, "sample_index": k} for row in prompts[columns].to_dict("records")
             for k in range(decoding.samples_per_prompt)]
    if store is not None:
        pending_keys = set(store.pending([(u["prompt_id"], u["sample_index"]) for u in units]))
        units = [u for u in units if (u["prompt_id"], u["sample_index"]) in pending_keys]
    done_rows: list[pd.DataFrame] = []
    waiting: list[dict] = []
    bar = tqdm(total=len(units), desc=f"{spec.name} {decoding.mode}", unit="sample", disable=not progress)
    counter = {"tokens": 0, "started": time.perf_counter()}

    def save(records: list[dict]) -> None:
        frame = pd.DataFrame.from_records(records)
        frame["mode"] = decoding.mode
        if store is not None:
            frame["config_hash"] = store.hash
            store.append(frame)
        done_rows.append(frame)

    def on_record(record: dict) -> None:
        waiting.append(record)
        counter["tokens"] += record["n_thinking_tokens"] + record["n_answer_tokens"]
        bar.update(1)
        bar.set_postfix(tok_s=f"{counter['tokens'] / max(time.perf_counter() - counter['started'], 1e-9):.0f}")
        if len(waiting) >= decoding.batch_size:
            save(waiting[:])
            waiting.clear()

    if backend == "vllm":
        from . import vllm_backend

        vllm_backend.run_units(model, tokenizer, spec, units, decoding, on_record)
    else:
        _run_units(model, tokenizer, spec, units, decoding, on_record, on_chunk=on_chunk)
    if waiting:
        save(waiting)
    bar.close()
    if store is not None:
        result = store.read()
        wanted = set(prompts["prompt_id"])
        return result[result["prompt_id"].isin(wanted)
                      & (result["sample_index"] < decoding.samples_per_prompt)].reset_index(drop=True)
    if not done_rows:
        return pd.DataFrame()
    frame = pd.concat(done_rows, ignore_index=True)
    order = {(u["prompt_id"], u["sample_index"]): i for i, u in enumerate(units)}
    frame["_order"] = [order[k] for k in zip(frame["prompt_id"], frame["sample_index"])]
    return frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)
