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

Backends: ``transformers`` runs every sample through :class:`lrmsafety.engine.scheduler.RefillScheduler` (continuous
batching: a finished row's slot is refilled at once, so no batch waits on its longest row; forward hooks stay
active; CPU, bf16 and 4-bit alike; ``refill=False``: fixed groups of ``batch_size`` rows instead, for interventions
whose effect depends on the batch, such as paper B's head ablation). ``vllm`` (:mod:`lrmsafety.engine.vllm_backend`,
GPU,
``pip install "lrmsafety[vllm]"``) takes a ``vllm.LLM`` as the model. ``auto`` picks vLLM when given a vLLM engine.

The scheduler's decode engine is chosen per run (``scheduler.RefillScheduler(decode="auto")``): on CUDA a fixed-slot
static KV cache whose steps replay as CUDA graphs (:mod:`lrmsafety.engine.slots`), else, and whenever forward hooks are
installed or the model is quantized, the DynamicCache loop. The environment variable ``LRMSAFETY_DECODE``
(``auto``, ``static``, ``dynamic``) overrides the choice; it is not part of the cache key (both engines sample the
same distributions).

Extension point for inference-time interventions: ``rollouts(..., on_chunk=callback)``. Every ``chunk_tokens``
decode steps the callback receives the rows that continue (objects with ``unit`` (prompt_id, sample_index,
prompt), ``phase`` ("thinking" or "answer"), ``new_tokens`` and ``new_entropies`` (this chunk's tokens and the
entropy in nats of the distribution each was drawn from, at temperature 1), ``generated_text`` (everything after
the prompt and prefill) and ``rewrite(text)``). It returns the rows it rewrote; those are re-prefilled from their
new text and continue. The callback carries a ``config`` dict (its settings), which joins the cache key.

Randomness is per sample: a sample's n-th token (counted over all its phases) is drawn from a hash of its own seed
(``decoding.sample_seed``: the decoding's seed, prompt id and sample index) and n, and MoreThink's words from a
``random.Random`` of that seed, so a sample is the same whatever ran before or beside it (a resumed run, another
order, other batch sizes), up to the model's numerics on different batch shapes.

Every sample records its prompt id, sample index, the generated text (prefill included), thinking, answer, token
counts, whether the thinking closed by itself, and the decoding configuration's hash.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import usage
from ..registry import ModelSpec, weights_fingerprint
from ..store import TableStore, config_hash, library_versions, rollout_rows, text_hash  # noqa: F401 (re-exported)
from .decoding import (  # noqa: F401 (re-exported: notebooks call generate.Decoding)
    _KEYED_WHEN_SET,
    BACKENDS,
    GENERATOR_VERSION,
    MODES,
    Decoding,
    Mode,
    _make_samples,
    _prefill,
    _record,
    _Sample,
    _special_strings,
    _stop_ids,
    decoding_config,
    is_vllm,
    resolve_backend,
    sample_seed,
)

log = logging.getLogger(__name__)

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


def _run_units(model, tokenizer, spec: ModelSpec, units: list[dict], decoding: Decoding, on_record,
               on_chunk=None, slots: int | None = None) -> None:
    """Generate every unit through the refill scheduler; ``on_record(record)`` as each sample finishes."""
    from .scheduler import RefillScheduler

    if not units:
        return
    # every sample carries its own seed (decoding.sample_seed) and token count: the scheduler draws its n-th token
    # from hash(seed, n), so no generator is shared between samples
    samples = _make_samples(tokenizer, spec, units, decoding, _stop_ids(tokenizer, model))
    scheduler = RefillScheduler(model, tokenizer, decoding.sampling_kwargs(spec), slots or decoding.batch_size,
                                chunk=decoding.chunk_tokens,
                                want_entropy=getattr(on_chunk, "wants_entropy", on_chunk is not None),
                                on_chunk=on_chunk, decode=os.environ.get("LRMSAFETY_DECODE", "auto"),
                                refill=decoding.refill)
    emit = lambda sample: on_record(_record(sample, tokenizer, spec, decoding))  # noqa: E731
    for sample in samples:
        if sample.done:  # nothing to generate (an answer budget of 0)
            emit(sample)
    pending = [s for s in samples if not s.done]
    with usage.timed("generate"):
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


@functools.cache  # once per process
def _ensure_batch_invariant() -> None:
    """Make this process's CPU products batch invariant (lrmsafety.numerics), and warn when they still round by
    their row count."""
    from .. import numerics

    numerics.use_batch_invariant_products()
    if not numerics.batch_invariant():
        logging.getLogger(__name__).warning(
            "CPU matrix products here depend on their row count, so a sample can come out differently resumed or "
            "beside other prompts: %s", numerics.FIX)


# ------------------------------------------------------------------------------------------- the driver
def rollouts(model, tokenizer, spec: ModelSpec, prompts: pd.DataFrame, decoding: Decoding,
             cache_root=None, name: str = "rollouts", progress: bool = True, on_chunk=None,
             shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """K samples per prompt under one decoding configuration; cached under ``cache_root`` when given.

    ``prompts`` needs ``prompt_id`` and ``prompt`` (and ``thinking_prefix`` for mode "prefix"). All pending samples
    go through the refill scheduler with ``batch_size`` slots (halved on out-of-memory; with ``refill=False``, in
    fixed groups of ``batch_size`` rows in the prompts' order); finished samples are saved every ``batch_size``
    samples, so a killed run resumes where it stopped. ``on_chunk`` (see the module
    docstring) must carry a ``config`` dict, which joins the cache key. ``shard=(i, n)`` generates only every n-th
    prompt from the i-th (one data parallel worker's share, :mod:`lrmsafety.engine.parallel`) into the same cache.
    With a cache, the frame's ``attrs["cache"]`` names its folder.
    """
    for column in ("prompt_id", "prompt") + (("thinking_prefix",) if decoding.mode == "prefix" else ()):
        if column not in prompts.columns:
            raise ValueError(f"the prompts frame needs a {column!r} column; it has {list(prompts.columns)}")
    if prompts["prompt_id"].duplicated().any():
        raise ValueError("prompt_id must be unique in the prompts frame")
    if on_chunk is not None and not isinstance(getattr(on_chunk, "config", None), dict):
        raise ValueError("on_chunk needs a `config` dict (its settings), which joins the rollout cache key")
    backend = resolve_backend(decoding.backend, model)
    if backend == "transformers" and next(model.parameters()).device.type == "cpu":
        _ensure_batch_invariant()
    if backend == "vllm" and not decoding.refill:
        raise ValueError("refill=False (fixed groups of batch_size rows) runs on the transformers backend only")
    config = rollout_config(model, tokenizer, spec, decoding, on_chunk=on_chunk)
    store = TableStore(cache_root, name, config, key=["prompt_id", "sample_index"]) if cache_root is not None else None
    columns = [c for c in ("prompt_id", "prompt", "thinking_prefix") if c in prompts.columns]
    share = prompts if shard is None else prompts.iloc[shard[0]::shard[1]]
    units = [{**row, "sample_index": k} for row in share[columns].to_dict("records")
             for k in range(decoding.samples_per_prompt)]
    # one writer per store at a time: a notebook beside this one asking for the same rows waits, then reads them
    with store.writing(shard) if store is not None else contextlib.nullcontext():
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
    if store is None:
        return rollout_rows(pd.concat(done_rows, ignore_index=True), prompts["prompt_id"],
                            decoding.samples_per_prompt) if done_rows else pd.DataFrame()
    frame = rollout_rows(store.read(), prompts["prompt_id"], decoding.samples_per_prompt)
    frame.attrs["cache"] = str(store.dir)
    return frame

