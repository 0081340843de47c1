"""The models of the three papers, one entry each: what a model is (hub id, architecture, thinking format,
sampling defaults, the layer paper B probes, its role), not how it is loaded (:mod:`lrmsafety.registry`).

Guard models used as judges are entries too (``role="guard"``), and so are the random-weight stand-ins of the
smoke and GPU lanes (``tiny``, ``random_architecture``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import chat
from .paths import MODELS_DIR
from .tiny import TINY_DIR


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


R1_SAMPLING = Sampling(0.6, 0.95)  # DeepSeek's recommendation; SafeChain's sampled setting (methods.md 3)
QWEN3_SAMPLING = Sampling(0.6, 0.95, 20)  # paper A, models.py
GREEDY = Sampling(temperature=0.0)

ENTRIES = [
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
    ModelSpec("random-r1-distill-qwen-7b", "random:r1-distill-qwen-7b", "Qwen2ForCausalLM", 7.62,
              thinking="qwen3", sampling=R1_SAMPLING, probe_layer=28, random_architecture="r1-distill-qwen-7b",
              note="paper-lite-gpu stand-in reasoner: R1-Distill-Qwen-7B's shapes, Qwen3's tokenizer and template"),
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

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in ENTRIES}
