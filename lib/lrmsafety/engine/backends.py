"""Which engine generates: :func:`load_generator` gives the notebooks the model they generate with, the transformers
model or a vLLM engine as the profile's ``backend`` says; :func:`transformers_model` swaps an engine for the
transformers model where a step hooks the model or reads its hidden states; :func:`close` frees an engine's memory
before the next model loads.

    model, tokenizer, spec = backends.load_generator(name, P.backend, P.quantization, P.kv_tokens)
    rollouts = generate.rollouts(model, tokenizer, spec, prompts, decoding, cache_root=S.cache)
    backends.close(model)  # a vLLM engine frees its memory now
    del model
"""

from __future__ import annotations

from typing import Literal

from .. import memory, registry
from ..registry import Quantization
from .decoding import is_vllm

Backend = Literal["transformers", "vllm"]
VLLM_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def judge_quantization(quantization: str, backend: Backend) -> str:
    """The weights a guard or stance judge loads with on ``backend``: vLLM loads no NF4, so a judge asked for in nf4
    takes what ``auto`` chooses there (16-bit where it fits); transformers keeps what was asked."""
    return "auto" if backend == "vllm" and quantization == "nf4" else quantization


def load_generator(name_or_path: str, backend: Backend = "transformers", quantization: Quantization = "auto",
                   kv_tokens: int | None = None, **llm_kwargs):
    """The model the notebooks generate with: ``(generator, tokenizer, spec)``, as ``registry.load_model`` returns.

    ``backend="transformers"``: ``registry.load_model`` itself. ``backend="vllm"``: a ``vllm.LLM``
    (:func:`lrmsafety.engine.vllm_backend.load_llm`) that ``generate.rollouts`` takes in place of the model, with the
    weights ``load_model`` would choose (bf16 on a GPU, fp16 without bf16, float32 on the CPU; ``auto`` weighs the
    weights alone, since vLLM fits its paged KV cache into what is left). vLLM cannot load bitsandbytes NF4, so a
    choice of nf4 is an error that names the fix. Weights too large for one GPU are split over the host's GPUs by
    vLLM's tensor parallelism (``memory.tensor_parallel_size``). ``llm_kwargs`` go to ``vllm.LLM``.
    """
    if backend == "transformers":
        return registry.load_model(name_or_path, quantization=quantization, kv_tokens=kv_tokens)
    if backend != "vllm":
        raise ValueError(f"unknown backend {backend!r}; choose 'transformers' or 'vllm'")
    import torch

    from . import vllm_backend

    spec = registry.get_spec(name_or_path)
    if spec.random_architecture:
        raise ValueError(f"{spec.name} is built with random weights in memory, and vLLM loads weights from a folder "
                         "or the hub: run this profile with backend transformers (make all BACKEND=transformers)")
    if spec.tiny:
        from ..tiny import ensure_built

        ensure_built(spec.hf_id)
    source = registry.weights_source(spec)
    has_gpu = torch.cuda.is_available()
    if quantization != "auto" or not has_gpu:
        choice = memory.choose(quantization, spec.params_b, has_gpu=has_gpu)
    else:
        choice = memory.choose("auto", spec.params_b, has_gpu=True, bf16_supported=torch.cuda.is_bf16_supported(),
                               free_gb=memory.available_gpu_gb())
    if choice.quantization == "nf4":
        raise ValueError(f"{spec.name}: {choice.why}, and vLLM has no bitsandbytes NF4 here. Set `quantization: bf16` "
                         "(or fp16) in the profile when the 16-bit weights fit, or generate with transformers "
                         "(`backend: transformers`, make all BACKEND=transformers), which loads NF4")
    if has_gpu:
        print(f"{spec.name}: {choice.why} (vLLM)")
        free_total = [torch.cuda.mem_get_info(i) for i in range(torch.cuda.device_count())]  # bytes, per GPU
        if "tensor_parallel_size" not in llm_kwargs and spec.params_b:  # too large for one GPU: split over several
            llm_kwargs["tensor_parallel_size"] = memory.tensor_parallel_size(
                spec.params_b, choice.quantization, [free / 1e9 for free, _ in free_total])
            if llm_kwargs["tensor_parallel_size"] > 1:
                print(f"{spec.name}: split over {llm_kwargs['tensor_parallel_size']} GPUs (vLLM tensor parallelism)")
        # vLLM claims a share of the whole GPU; beside models already loaded (08 keeps its base and fine-tuned models
        # while their answers are judged) that share is what is free now, less a margin
        free, total = free_total[0]
        llm_kwargs.setdefault("gpu_memory_utilization", round(min(0.9, 0.95 * free / total), 3))
    else:  # on the CPU vLLM reserves its KV cache in RAM: the batch's worst case, not a share of the machine
        llm_kwargs.setdefault("kv_cache_memory_bytes", _cpu_kv_bytes(source, kv_tokens))
        # compiling the graph costs more than it saves at CPU sizes (one organism: 23 s to start compiled vs 9 s
        # eager, for 01's 600 rollouts in 19 s vs 20 s)
        llm_kwargs.setdefault("enforce_eager", True)
    _collect()  # a model just deleted gives its memory back before vLLM measures what is free
    llm = vllm_backend.load_llm(spec, dtype=VLLM_DTYPES[choice.quantization], **llm_kwargs)
    return llm, registry.load_tokenizer(source), spec


def _cpu_kv_bytes(source: str, kv_tokens: int | None, floor: int = 256 << 20, cap: int = 4 << 30) -> int:
    """vLLM's KV cache on the CPU: ``kv_tokens`` tokens at fp32, between 256 MiB and 4 GiB."""
    from transformers import AutoConfig

    per_token = memory.kv_bytes_per_token(AutoConfig.from_pretrained(source), bytes_per_value=4)
    return int(min(max(per_token * (kv_tokens or 0), floor), cap))


def _collect() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def close(generator) -> None:
    """Give a vLLM engine's memory back now, so that the next model fits: its engine shuts down (on a GPU the engine
    runs in a process of its own, which ends with its weights and KV cache; in this process, as on the CPU lane,
    the memory goes with the last reference). Then garbage collection, and CUDA's cache. A transformers model needs
    only its references dropped (``del``)."""
    if generator is not None and is_vllm(generator):
        generator.llm_engine.engine_core.shutdown()
    _collect()


def transformers_model(loaded: tuple, name_or_path: str, quantization: Quantization = "auto",
                       kv_tokens: int | None = None) -> tuple:
    """For the steps that hook the model or read its hidden states: ``loaded`` (what :func:`load_generator`
    returned) when it is a transformers model, else the vLLM engine is closed (:func:`close`) and ``name_or_path``
    loaded with ``registry.load_model``. Returns ``(model, tokenizer, spec)``; assign it over the engine's names."""
    if not is_vllm(loaded[0]):
        return loaded
    close(loaded[0])
    return registry.load_model(name_or_path, quantization=quantization, kv_tokens=kv_tokens)
