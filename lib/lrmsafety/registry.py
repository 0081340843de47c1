"""The model registry: :func:`get_spec` by name (the entries are in :mod:`lrmsafety.catalogue`) or for a local
folder, :func:`load_model` (weights, quantization, memory check), and the data a model family brings along
(:mod:`lrmsafety.engine.backends` loads a vLLM engine in its place when a profile's ``backend`` says so).

A local folder loads exactly like a hub id.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from pathlib import Path
from typing import Literal

from . import memory, numerics, usage
from .catalogue import GREEDY, QWEN3_SAMPLING, R1_SAMPLING, REGISTRY, ModelSpec, Sampling  # noqa: F401 (re-exported)
from .paths import REPO_ROOT

log = logging.getLogger(__name__)

Quantization = Literal["auto", "bf16", "fp16", "nf4", "fp32"]


def weights_fingerprint(model) -> str | None:  # a loaded model or a checkpoint folder
    """A hash of a local checkpoint's weight files, so that caches made with other weights are not served.

    Models from the hub are identified by their revision (the commit hash); a local folder (the organisms, a
    retrained checkpoint) has none, and its name stays the same when it is retrained."""
    import hashlib

    if isinstance(model, (str, Path)):
        folder = Path(model)
    else:
        folder = Path(str(getattr(getattr(model, "config", None), "_name_or_path", "") or ""))
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def get_spec(name_or_path: str) -> ModelSpec:
    """The registry entry for a name, or an ad-hoc entry for a local folder or hub id with a thinking format.

    An unknown name that is not a folder raises with the closest registry names.
    """
    if name_or_path in REGISTRY:
        return REGISTRY[name_or_path]
    for spec in REGISTRY.values():
        if spec.hf_id == name_or_path:
            return spec
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _spec_for_folder(path)
    close = difflib.get_close_matches(name_or_path, list(REGISTRY), n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(
        f"unknown model {name_or_path!r}.{hint} Use a registry name (lrmsafety.registry.REGISTRY), a hub id listed "
        "there, or a local folder saved with save_pretrained()."
    )


def _spec_for_folder(path: Path) -> ModelSpec:
    """Describe a local checkpoint: architecture from config.json; thinking format from a registry entry whose
    architecture matches, or from the chat template."""
    import json

    config_file = path / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{path} has no config.json; save the model there with model.save_pretrained()")
    config = json.loads(config_file.read_text())
    architecture = (config.get("architectures") or ["unknown"])[0]
    card = path / "organism_card.json"
    thinking = "r1"
    template_file = path / "chat_template.jinja"
    template = template_file.read_text() if template_file.exists() else ""
    if not template:
        tok_config = path / "tokenizer_config.json"
        template = json.loads(tok_config.read_text()).get("chat_template") or "" if tok_config.exists() else ""
    if "enable_thinking" in template:
        thinking = "qwen3"
    elif "<|channel|>" in template:
        thinking = "harmony"
    sampling = Sampling(1.0, 1.0) if card.exists() else R1_SAMPLING
    return ModelSpec(name=path.name, hf_id=str(path), architecture=architecture, params_b=0.0, thinking=thinking,
                     sampling=sampling, note="local folder")


def local_file(name: str, filename: str) -> Path | None:
    """A file beside a local checkpoint's weights (an organism's card, its planted judgement direction); None when
    the model is not a local folder or the folder has no such file."""
    folder = get_spec(name).local_path()
    path = folder / filename if folder else None
    return path if path is not None and path.exists() else None


def list_models(role: str | None = None) -> list[str]:
    return [name for name, spec in REGISTRY.items() if role is None or spec.role == role]


# ---------------------------------------------------------------------------------------------- memory
def bitsandbytes_error() -> str | None:
    """None when bitsandbytes imports and runs here; otherwise why not.

    Import it through here (peft imports it whenever it is installed): on a CPU with AVX512-BF16, bitsandbytes'
    CPU backend logs a warning at import that the optional `kernels` package, which would fetch a faster CPU kernel
    from the Hugging Face hub, is missing. Its built-in CPU kernel serves (a GPU runs its own), so that logger is
    quiet for the import, and only then."""
    cpu_backend = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = cpu_backend.level
    cpu_backend.setLevel(logging.ERROR)
    try:
        import bitsandbytes  # noqa: F401
    except Exception as err:  # a broken CUDA setup raises RuntimeError, not ImportError
        return f"{type(err).__name__}: {err}"
    finally:
        cpu_backend.setLevel(level)
    return None


@contextlib.contextmanager
def no_loading_bars():
    """transformers draws a "Loading weights" bar at every load, and notebooks load models often (each adapter, each
    condition): within this block its bars are off. The hub's download bars stay (a first download is a wait)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.set_tqdm_hook(lambda factory, args, kwargs: factory(*args, **{**kwargs, "disable": True}))
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)


def check_memory(spec: ModelSpec, quantization: str, available_gb: float) -> None:
    memory.check(spec.name, spec.params_b, quantization, available_gb)


def choose_weights(spec: ModelSpec, quantization: Quantization, config=None, kv_tokens: int | None = None):
    """The weights ``load_model`` uses (:func:`lrmsafety.memory.choose`): ``auto`` weighs the 16-bit weights and the
    KV cache of ``kv_tokens`` tokens (``config`` gives its bytes per token) against the GPU's free memory."""
    import torch

    has_gpu = torch.cuda.is_available()
    if quantization != "auto" or not has_gpu:
        return memory.choose(quantization, spec.params_b, has_gpu=has_gpu)
    kv_gb = memory.kv_bytes_per_token(config) * kv_tokens / 1e9 if config is not None and kv_tokens else 0.0
    return memory.choose("auto", spec.params_b, has_gpu=True, bf16_supported=torch.cuda.is_bf16_supported(),
                         kv_gb=kv_gb, free_gb=memory.available_gpu_gb())


# ---------------------------------------------------------------------------------------------- loading
@usage.timed("load")
def load_model(
    name_or_path: str,
    quantization: Quantization = "auto",
    device_map: str | dict | None = "auto",
    revision: str | None = None,
    check_free_memory: bool = True,
    kv_tokens: int | None = None,
):
    """Load a registry model or a local folder: 16-bit on a GPU, 4-bit NF4 through bitsandbytes, float32 on CPU.

    Returns ``(model, tokenizer, spec)``. The tokenizer pads on the left (for batched generation).
    ``device_map="auto"`` spreads a model larger than one GPU over several. ``quantization="auto"`` on a GPU takes
    bf16 (fp16 without bf16) when the weights and the KV cache of ``kv_tokens`` tokens (a profile's
    ``Params.kv_tokens``: every row of the batch at its full budget) fit, else nf4, and prints why.
    """
    import torch
    from transformers import AutoModelForCausalLM

    spec = get_spec(name_or_path)
    if spec.random_architecture:
        return _build_random_stand_in(spec, quantization, check_free_memory, kv_tokens)
    if spec.tiny:
        from .tiny import ensure_built

        ensure_built(spec.hf_id)
    source = weights_source(spec)
    has_gpu = torch.cuda.is_available()
    config = None
    if quantization == "auto" and has_gpu and kv_tokens:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, revision=revision)
    choice = choose_weights(spec, quantization, config, kv_tokens)
    quant = choice.quantization
    if has_gpu:
        print(f"{spec.name}: {choice.why}")

    kwargs: dict = {"revision": revision} if revision else {}
    if quant == "nf4":
        problem = bitsandbytes_error()
        if problem:
            raise ImportError(
                f"4-bit NF4 loading needs bitsandbytes, which cannot run here ({problem}). Install it with "
                'pip install "lrmsafety[quant]" on a CUDA GPU, or use quantization="fp32" on the CPU.'
            )
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if has_gpu else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["dtype"] = compute
    else:
        kwargs["dtype"] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[quant]

    if has_gpu:
        if check_free_memory and spec.params_b:
            check_memory(spec, quant, memory.available_gpu_gb())
        kwargs["device_map"] = device_map
    else:
        if quant == "bf16":
            log.warning("bf16 on CPU is slow; quantization='fp32' is the CPU default")
        kwargs["device_map"] = "cpu" if device_map == "auto" else device_map

    tokenizer = load_tokenizer(source, revision)
    try:
        with no_loading_bars():
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(err).lower():
            raise OSError(f"could not load {source}: offline and not cached. Download it once with internet.") from err
        raise
    model.eval()
    from .engine.attention import use_cpu_attention

    use_cpu_attention(model)  # CPU: batch-invariant attention, no copy of the cache per step (attention.py)
    _batch_invariant_products_on_cpu(model)
    return model, tokenizer, spec


def _batch_invariant_products_on_cpu(model) -> None:
    """A CPU model's products made batch invariant (lrmsafety.numerics); a GPU process keeps torch's own."""
    if all(p.device.type == "cpu" for p in model.parameters()):
        numerics.use_batch_invariant_products()


def weights_source(spec: ModelSpec) -> str:
    """The folder or hub id the weights load from; a missing organism folder is named with its fix."""
    source = str(spec.local_path() or spec.hf_id)
    if spec.hf_id.startswith("organism") and spec.local_path() and not Path(source).exists():
        folder = Path(source)
        shown = folder.relative_to(REPO_ROOT) if folder.is_relative_to(REPO_ROOT) else folder
        raise FileNotFoundError(f"{spec.name} is missing from {source}: its weights are committed, so restore them "
                                f"with `git checkout -- {shown}`; `make organism` retrains them instead, which "
                                "changes every number")
    return source


def load_tokenizer(source: str, revision: str | None = None):
    """A model's tokenizer, padding on the left (for batched generation)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _build_random_stand_in(spec: ModelSpec, quantization: Quantization, check_free_memory: bool,
                           kv_tokens: int | None = None):
    """A paper-gpu stand-in: the real architecture initialised with random weights on the GPU (fp32 on a CPU), with
    the Qwen3 tokenizer. There are no weights to quantize, so only auto, bf16 and fp32 apply."""
    import torch
    from transformers import AutoTokenizer

    from .engine.attention import use_cpu_attention
    from .tiny import build_random_architecture, qwen3_tokenizer_dir, random_architecture_config

    has_gpu = torch.cuda.is_available()
    if quantization == "nf4":
        raise ValueError(f"{spec.name} is built with random weights in place; there is nothing to quantize: use "
                         "quantization 'auto' or 'bf16'")
    config = random_architecture_config(spec.random_architecture)
    choice = choose_weights(spec, quantization, config, kv_tokens)
    quant = choice.quantization
    if quant == "nf4":  # auto found no room for 16-bit weights: a random stand-in cannot be quantized
        raise MemoryError(f"{spec.name}: {choice.why}; random weights cannot be quantized: lower batch_size or the "
                          "budgets")
    if has_gpu:
        print(f"{spec.name}: {choice.why}")
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    tokenizer.padding_side = "left"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[quant]
    # LRMSAFETY_SHRINK_STAND_INS=1: the same architectures at a test's size, for a dry run of the lane on a CPU
    shrink = os.environ.get("LRMSAFETY_SHRINK_STAND_INS") == "1"
    if shrink and not has_gpu:
        dtype = torch.float32
    if has_gpu and check_free_memory and not shrink:
        check_memory(spec, quant, memory.available_gpu_gb())
    model = build_random_architecture(spec.random_architecture, dtype, "cuda" if has_gpu else "cpu", shrink=shrink)
    model.config._name_or_path = spec.hf_id
    model.eval()
    use_cpu_attention(model)
    _batch_invariant_products_on_cpu(model)
    return model, tokenizer, spec


# --- data a model family brings along (the organisms' held-out prompts and SFT set): the analysis asks here, never
# importing the family's package itself; the package is imported on first use
PROMPT_SOURCES = {"organism": ("lrmsafety.organism", "eval_prompts")}  # (n_per_family, seed, split) -> prompts
SFT_SOURCES = {"organism": ("lrmsafety.organism.safety_data", "safety_sft_frame")}  # (n, seed) -> SFT frame


def _source(table: dict, kind: str, name: str):
    import importlib

    if name not in table:
        raise KeyError(f"no {kind} source {name!r}; known: {', '.join(sorted(table))}")
    module, function = table[name]
    return getattr(importlib.import_module(module), function)


def prompt_source(name: str):
    """The function that makes the prompt set ``name`` of a model family (``data.load_prompt_sets``)."""
    return _source(PROMPT_SOURCES, "prompt set", name)


def sft_source(name: str):
    """The function that makes the SFT set ``name`` of a model family (``finetune.load_sft_data``)."""
    return _source(SFT_SOURCES, "SFT data", name)
