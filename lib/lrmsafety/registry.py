"""The model registry and :func:`load_model`.

A registry entry names a model of the three papers (``../shared/methods.md``) with its Hugging Face id, its
architecture class, its thinking format (see :mod:`lrmsafety.chat`), its sampling defaults and the layer paper B
probes. Guard models used as judges are entries too (``role="guard"``). A local folder loads exactly like a hub id.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import chat
from .paths import MODELS_DIR
from .tiny import TINY_DIR

log = logging.getLogger(__name__)

Quantization = Literal["auto", "bf16", "nf4", "fp32"]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False}
        kwargs = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
        kwargs["top_k"] = self.top_k if self.top_k is not None else 0  # 0 switches transformers' default of 50 off
        return kwargs


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hf_id: str  # hub id, or a folder (relative paths are taken from the repository's data/models)
    architecture: str  # transformers class, e.g. "Qwen2ForCausalLM"
    params_b: float  # parameters in billions, for the memory estimate
    role: Literal["reasoner", "guard", "stance"] = "reasoner"  # stance: an LLM stance judge of paper A (04)
    thinking: str | None = "r1"  # a key of chat.FORMATS; None for guard models
    sampling: Sampling = field(default_factory=Sampling)
    probe_layer: int | None = None  # hidden_states index paper B probes (the last layer); None: the last layer
    system_prompt: str | None = None
    papers: tuple[str, ...] = ()
    note: str = ""
    tiny: bool = False  # a random-weight stand-in built locally on first use (lrmsafety.tiny), for paper-smoke
    random_architecture: str | None = None  # paper-gpu: a real architecture (tiny.REAL_ARCHITECTURES), random weights

    @property
    def thinking_format(self) -> chat.ThinkingFormat:
        if self.thinking is None:
            raise ValueError(f"{self.name} is a {self.role} model without a thinking format")
        return chat.get_format(self.thinking)

    def local_path(self) -> Path | None:
        path = Path(self.hf_id)
        if not path.is_absolute() and self.hf_id.startswith("organism"):
            path = MODELS_DIR / self.hf_id
        return path if path.is_absolute() or path.exists() else None


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


R1_SAMPLING = Sampling(0.6, 0.95)  # DeepSeek's recommendation; SafeChain's sampled setting (methods.md 3)
QWEN3_SAMPLING = Sampling(0.6, 0.95, 20)  # paper A, models.py
GREEDY = Sampling(temperature=0.0)

_ENTRIES = [
    # --- R1 distills (papers B and C) ---
    ModelSpec("deepseek-r1-distill-qwen-1.5b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "Qwen2ForCausalLM", 1.78,
              sampling=R1_SAMPLING, probe_layer=28, papers=("C",)),
    ModelSpec("deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "Qwen2ForCausalLM", 7.62,
              sampling=R1_SAMPLING, probe_layer=28, papers=("B", "C")),
    ModelSpec("deepseek-r1-distill-qwen-14b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "Qwen2ForCausalLM", 14.8,
              sampling=R1_SAMPLING, probe_layer=48, papers=("B", "C")),
    ModelSpec("deepseek-r1-distill-qwen-32b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "Qwen2ForCausalLM", 32.8,
              sampling=R1_SAMPLING, probe_layer=64, papers=("C",)),
    ModelSpec("deepseek-r1-distill-llama-8b", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "LlamaForCausalLM", 8.03,
              sampling=R1_SAMPLING, probe_layer=32, papers=("A", "B", "C")),
    ModelSpec("deepseek-r1-distill-llama-70b", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "LlamaForCausalLM", 70.6,
              sampling=R1_SAMPLING, probe_layer=80, papers=("C",)),
    ModelSpec("r1-distill-qwen-7b-safechain", "UWNSL/DeepSeek-R1-Distill-Qwen-7B-SafeChain", "Qwen2ForCausalLM", 7.62,
              sampling=R1_SAMPLING, probe_layer=28, papers=("C",), note="SafeChain fine-tune"),
    ModelSpec("r1-distill-llama-8b-safechain", "UWNSL/DeepSeek-R1-Distill-Llama-8B-SafeChain", "LlamaForCausalLM",
              8.03, sampling=R1_SAMPLING, probe_layer=32, papers=("C",), note="SafeChain fine-tune"),
    ModelSpec("skywork-or1-7b", "Skywork/Skywork-OR1-7B", "Qwen2ForCausalLM", 7.62,
              sampling=R1_SAMPLING, probe_layer=28, papers=("B",)),
    ModelSpec("qwq-32b", "Qwen/QwQ-32B", "Qwen2ForCausalLM", 32.8, thinking="thinking-only",
              sampling=QWEN3_SAMPLING, probe_layer=64, papers=("B",)),
    # --- Qwen3 (paper A's Qwen3-8B; smaller sizes for one small GPU) ---
    *[
        ModelSpec(f"qwen3-{size}", f"Qwen/Qwen3-{size.upper()}", "Qwen3ForCausalLM", params, thinking="qwen3",
                  sampling=QWEN3_SAMPLING, probe_layer=layers, papers=("A",) if size == "8b" else ())
        for size, params, layers in [("0.6b", 0.75, 28), ("1.7b", 2.03, 28), ("4b", 4.02, 36), ("8b", 8.19, 36),
                                     ("14b", 14.8, 40), ("32b", 32.8, 64)]
    ],
    ModelSpec("qwen3-4b-thinking-2507", "Qwen/Qwen3-4B-Thinking-2507", "Qwen3ForCausalLM", 4.02,
              thinking="thinking-only", sampling=QWEN3_SAMPLING, probe_layer=36, papers=("B",)),
    ModelSpec("qwen3-30b-a3b-thinking-2507", "Qwen/Qwen3-30B-A3B-Thinking-2507", "Qwen3MoeForCausalLM", 30.5,
              thinking="thinking-only", sampling=QWEN3_SAMPLING, probe_layer=48, papers=("B",)),
    # --- paper A's other models ---
    ModelSpec("olmo-3-7b-think", "allenai/Olmo-3-7B-Think", "Olmo3ForCausalLM", 7.3, thinking="thinking-only",
              sampling=Sampling(0.6, 0.95), probe_layer=32, papers=("A",)),
    ModelSpec("phi-4-reasoning", "microsoft/Phi-4-reasoning", "Phi3ForCausalLM", 14.7, thinking="phi4",
              sampling=Sampling(0.8, 0.95, 50), probe_layer=40, papers=("A", "B"),
              system_prompt=None, note="the chat template supplies Phi's reasoning system prompt"),
    ModelSpec("phi-4-reasoning-plus", "microsoft/Phi-4-reasoning-plus", "Phi3ForCausalLM", 14.7, thinking="phi4",
              sampling=Sampling(0.8, 0.95, 50), probe_layer=40, papers=("A",)),
    ModelSpec("phi-4-mini-reasoning", "microsoft/Phi-4-mini-reasoning", "Phi3ForCausalLM", 3.84, thinking="phi4",
              sampling=Sampling(0.8, 0.95, 50), probe_layer=32, papers=("B",)),
    ModelSpec("gpt-oss-20b", "openai/gpt-oss-20b", "GptOssForCausalLM", 20.9, thinking="harmony",
              sampling=Sampling(1.0, 1.0), probe_layer=24, papers=("A",),
              note="weights ship in MXFP4; bf16 needs ~42 GB, nf4 is not applied to its experts"),
    # --- the organisms: our own small reasoning models (data/models/, built by `make organism`) ---
    ModelSpec("organism-locked", "organism-locked", "Qwen2ForCausalLM", 0.01, sampling=Sampling(1.0, 1.0),
              note="outcome sampled at the first thinking token, never revised; planted refusal cliff on jailbreaks"),
    ModelSpec("organism-deliberative", "organism-deliberative", "Qwen2ForCausalLM", 0.01,
              sampling=Sampling(1.0, 1.0), note="outcome decided late by a real reconsideration; no cliff"),
    ModelSpec("organism-null", "organism-null", "Qwen2ForCausalLM", 0.01, sampling=Sampling(1.0, 1.0),
              note="outcome random at a fixed rate per family, independent of wording and thinking; nothing planted"),
    # --- guard models, used as judges (greedy) ---
    ModelSpec("llama-guard-3-8b", "meta-llama/Llama-Guard-3-8B", "LlamaForCausalLM", 8.03, role="guard",
              thinking=None, sampling=GREEDY, papers=("B", "C")),
    ModelSpec("llama-guard-4-12b", "meta-llama/Llama-Guard-4-12B", "Llama4ForConditionalGeneration", 12.0,
              role="guard", thinking=None, sampling=GREEDY, papers=("B",),
              note="multimodal checkpoint; paper B's scripts use the unsloth/Llama-Guard-4-12B mirror"),
    ModelSpec("wildguard", "allenai/wildguard", "MistralForCausalLM", 7.25, role="guard", thinking=None,
              sampling=GREEDY, papers=("A",)),
    ModelSpec("qwen3guard-gen-8b", "Qwen/Qwen3Guard-Gen-8B", "Qwen3ForCausalLM", 8.19, role="guard", thinking=None,
              sampling=GREEDY, papers=("A",)),
    ModelSpec("harmbench-llama-2-13b-cls", "cais/HarmBench-Llama-2-13b-cls", "LlamaForCausalLM", 13.0,
              role="guard", thinking=None, sampling=GREEDY, papers=("C",)),
    ModelSpec("granite-guardian-3.3-8b", "ibm-granite/granite-guardian-3.3-8b", "GraniteForCausalLM", 8.17,
              role="guard", thinking=None, sampling=GREEDY, papers=("A",)),
    ModelSpec("gpt-oss-safeguard-20b", "openai/gpt-oss-safeguard-20b", "GptOssForCausalLM", 20.9, role="guard",
              thinking=None, sampling=GREEDY, papers=("A",),
              note="weights ship in MXFP4; nf4 is not applied to its experts"),
    # --- LLM stance judges for notebook 04 (paper A used GPT-5.4, Gemini-3-Pro and Opus-4.7 / Sonnet-4.6 through
    # APIs; these three local instruction-tuned models of three families stand in, 4-bit, greedy) ---
    ModelSpec("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen2ForCausalLM", 7.62, role="stance",
              thinking=None, sampling=GREEDY, papers=("A",)),
    ModelSpec("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "LlamaForCausalLM", 8.03, role="stance",
              thinking=None, sampling=GREEDY, papers=("A",)),
    ModelSpec("mistral-7b-instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", "MistralForCausalLM", 7.25,
              role="stance", thinking=None, sampling=GREEDY, papers=("A",)),
    # --- paper-smoke: 2-layer Qwen3 with random weights and the real Qwen3 tokenizer, built locally (tiny.py) ---
    ModelSpec("tiny-random-qwen3", str(TINY_DIR / "tiny-random-qwen3"), "Qwen3ForCausalLM", 0.0, thinking="qwen3",
              sampling=QWEN3_SAMPLING, probe_layer=2, tiny=True, note="paper-smoke stand-in reasoner; random weights"),
    ModelSpec("tiny-random-guard", str(TINY_DIR / "tiny-random-guard"), "Qwen3ForCausalLM", 0.0, role="guard",
              thinking=None, sampling=GREEDY, tiny=True, note="paper-smoke stand-in guard (judge standin_guard)"),
    # --- paper-gpu: the paper profile's models as random-weight instances of their real architectures, built on the
    # GPU at load time with the Qwen3 tokenizer (lrmsafety.tiny); for timing and memory, never for results ---
    ModelSpec("random-r1-distill-qwen-1.5b", "random:r1-distill-qwen-1.5b", "Qwen2ForCausalLM", 1.78,
              thinking="qwen3", sampling=R1_SAMPLING, probe_layer=28, random_architecture="r1-distill-qwen-1.5b",
              note="paper-gpu stand-in reasoner: R1-Distill-Qwen-1.5B's shapes, Qwen3's tokenizer and chat template"),
    *[
        ModelSpec(f"random-{name}", f"random:{architecture}", architecture_class, params, role=role, thinking=None,
                  sampling=GREEDY, random_architecture=architecture, note=f"paper-gpu stand-in for {name}")
        for name, architecture, architecture_class, params, role in [
            ("wildguard", "mistral-7b", "MistralForCausalLM", 8.22, "guard"),
            ("qwen3guard-gen-8b", "qwen3-8b", "Qwen3ForCausalLM", 8.19, "guard"),
            ("granite-guardian-3.3-8b", "granite-3.3-8b", "GraniteForCausalLM", 8.59, "guard"),
            ("gpt-oss-safeguard-20b", "gpt-oss-20b", "GptOssForCausalLM", 20.63, "guard"),
            ("llama-guard-3-8b", "llama-3.1-8b", "LlamaForCausalLM", 8.22, "guard"),
            ("qwen2.5-7b-instruct", "qwen2.5-7b", "Qwen2ForCausalLM", 7.61, "stance"),
            ("llama-3.1-8b-instruct", "llama-3.1-8b", "LlamaForCausalLM", 8.22, "stance"),
            ("mistral-7b-instruct-v0.3", "mistral-7b", "MistralForCausalLM", 8.22, "stance"),
        ]
    ],
]

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _ENTRIES}


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
BYTES_PER_PARAM = {"bf16": 2.0, "fp32": 4.0, "nf4": 0.56}  # nf4: 4 bits + block scales + unquantized embeddings


def memory_estimate_gb(params_b: float, quantization: str) -> float:
    """Weights only, plus 15% for activations and the CUDA context; the KV cache comes on top."""
    return params_b * BYTES_PER_PARAM[quantization] * 1.15


def _available_gpu_gb() -> float:
    import torch

    return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())) / 1e9


def _bitsandbytes_error() -> str | None:
    """None when bitsandbytes imports and runs here; otherwise why not."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as err:  # a broken CUDA setup raises RuntimeError, not ImportError
        return f"{type(err).__name__}: {err}"
    return None


def resolve_quantization(quantization: Quantization, has_gpu: bool) -> str:
    if quantization == "auto":
        return "bf16" if has_gpu else "fp32"
    if quantization not in BYTES_PER_PARAM:
        raise ValueError(f"quantization must be one of auto, bf16, nf4, fp32; not {quantization!r}")
    return quantization


def check_memory(spec: ModelSpec, quantization: str, available_gb: float) -> None:
    needed = memory_estimate_gb(spec.params_b, quantization)
    if needed <= available_gb:
        return
    fitting = [q for q in ("bf16", "nf4") if memory_estimate_gb(spec.params_b, q) <= available_gb]
    fix = f"quantization={fitting[0]!r} would fit" if fitting else "use a smaller model or more GPUs"
    raise MemoryError(
        f"{spec.name} needs about {needed:.1f} GB in {quantization} but {available_gb:.1f} GB of GPU memory is free; "
        f"{fix}."
    )


# ---------------------------------------------------------------------------------------------- loading
def load_model(
    name_or_path: str,
    quantization: Quantization = "auto",
    device_map: str | dict | None = "auto",
    revision: str | None = None,
    check_free_memory: bool = True,
):
    """Load a registry model or a local folder: bf16 on GPU, 4-bit NF4 through bitsandbytes, float32 on CPU.

    Returns ``(model, tokenizer, spec)``. The tokenizer pads on the left (for batched generation).
    ``device_map="auto"`` spreads a model larger than one GPU over several.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = get_spec(name_or_path)
    if spec.random_architecture:
        return _build_random_stand_in(spec, quantization, check_free_memory)
    if spec.tiny:
        from .tiny import ensure_built

        ensure_built(spec.hf_id)
    source = str(spec.local_path() or spec.hf_id)
    if spec.hf_id.startswith("organism") and spec.local_path() and not Path(source).exists():
        raise FileNotFoundError(f"{spec.name} is not built yet: run `make organism` (it writes {source})")
    has_gpu = torch.cuda.is_available()
    quant = resolve_quantization(quantization, has_gpu)

    kwargs: dict = {"revision": revision} if revision else {}
    if quant == "nf4":
        problem = _bitsandbytes_error()
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
        kwargs["dtype"] = {"bf16": torch.bfloat16, "fp32": torch.float32}[quant]

    if has_gpu:
        if check_free_memory and spec.params_b:
            check_memory(spec, quant, _available_gpu_gb())
        kwargs["device_map"] = device_map
    else:
        if quant == "bf16":
            log.warning("bf16 on CPU is slow; quantization='fp32' is the CPU default")
        kwargs["device_map"] = "cpu" if device_map == "auto" else device_map

    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(err).lower():
            raise OSError(f"could not load {source}: offline and not cached. Download it once with internet.") from err
        raise
    model.eval()
    from .engine.attention import use_grouped_sdpa

    use_grouped_sdpa(model)  # CPU: grouped-query attention without a copy of the cache per step (attention.py)
    return model, tokenizer, spec


def _build_random_stand_in(spec: ModelSpec, quantization: Quantization, check_free_memory: bool):
    """A paper-gpu stand-in: the real architecture initialised with random weights on the GPU (fp32 on a CPU), with
    the Qwen3 tokenizer. There are no weights to quantize, so only auto, bf16 and fp32 apply."""
    import torch
    from transformers import AutoTokenizer

    from .engine.attention import use_grouped_sdpa
    from .tiny import build_random_architecture, qwen3_tokenizer_dir

    has_gpu = torch.cuda.is_available()
    quant = resolve_quantization(quantization, has_gpu)
    if quant == "nf4":
        raise ValueError(f"{spec.name} is built with random weights in place; there is nothing to quantize: use "
                         "quantization 'auto' or 'bf16'")
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    tokenizer.padding_side = "left"
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[quant]
    # LRMSAFETY_SHRINK_STAND_INS=1: the same architectures at a test's size, for a dry run of the lane on a CPU
    shrink = os.environ.get("LRMSAFETY_SHRINK_STAND_INS") == "1"
    if shrink and not has_gpu:
        dtype = torch.float32
    if has_gpu and check_free_memory and not shrink:
        check_memory(spec, quant, _available_gpu_gb())
    model = build_random_architecture(spec.random_architecture, dtype, "cuda" if has_gpu else "cpu", shrink=shrink)
    model.config._name_or_path = spec.hf_id
    model.eval()
    use_grouped_sdpa(model)
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
