"""Tiny random-weight models of each registry architecture, and imitation chat templates per thinking family.

The real Qwen3 tokenizer (../shared/tokenizers/qwen3) gives every tiny model a real vocabulary. Only Qwen3's chat
template is real; the others are short imitations of each family's generation prompt, written for these tests
(the real templates ship with each model's tokenizer on the hub).
"""

from __future__ import annotations

from pathlib import Path

from lrmsafety.paths import REPO_ROOT

QWEN3_TOKENIZER = REPO_ROOT.parent / "shared" / "tokenizers" / "qwen3"

# a small stand-in vocabulary when the real tokenizer is absent is not provided: the tests that need it skip
ARCHITECTURE_TYPES = {
    "Qwen2ForCausalLM": ("qwen2", {}),
    "LlamaForCausalLM": ("llama", {}),
    "Qwen3ForCausalLM": ("qwen3", {"head_dim": 16}),
    "Qwen3MoeForCausalLM": ("qwen3_moe", {"head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2,
                                          "moe_intermediate_size": 32}),
    "Olmo3ForCausalLM": ("olmo3", {}),
    "Phi3ForCausalLM": ("phi3", {}),
    "MistralForCausalLM": ("mistral", {}),
    "GraniteForCausalLM": ("granite", {}),
    "GptOssForCausalLM": ("gpt_oss", {"head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2,
                                      "sliding_window": 32, "rope_parameters": {"rope_type": "default",
                                                                                 "rope_theta": 10000.0}}),
    # the guard's checkpoint is multimodal; its text tower is what AutoModelForCausalLM builds
    "Llama4ForConditionalGeneration": ("llama4_text", {"num_local_experts": 2, "intermediate_size_mlp": 128,
                                                       "head_dim": 16}),
}

_GEN = "{% if add_generation_prompt %}"
FAMILY_TEMPLATES = {
    # R1 distills: the generation prompt ends with "<think>\n"
    "r1": "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
          "{% elif m['role'] == 'assistant' %}<｜Assistant｜>{{ m['content'] }}<｜end▁of▁sentence｜>{% endif %}"
          "{% endfor %}" + _GEN + "<｜Assistant｜><think>\n{% endif %}",
    "thinking-only": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                     "{% endfor %}" + _GEN + "<|im_start|>assistant\n<think>\n{% endif %}",
    "phi4": "{% for m in messages %}<|im_start|>{{ m['role'] }}<|im_sep|>{{ m['content'] }}<|im_end|>"
            "{% endfor %}" + _GEN + "<|im_start|>assistant<|im_sep|>{% endif %}",
    "harmony": "{% for m in messages %}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>"
               "{% endfor %}" + _GEN + "<|start|>assistant{% endif %}",
    "qwen3": None,  # the real template
}


def tokenizer_for(family: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(QWEN3_TOKENIZER)
    if FAMILY_TEMPLATES[family] is not None:
        tokenizer.chat_template = FAMILY_TEMPLATES[family]
    return tokenizer


def build_tiny(architecture: str, vocab_size: int, folder: Path | None = None, seed: int = 0):
    """A 2-layer random-weight model of the architecture; saved to ``folder`` when given."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, extra = ARCHITECTURE_TYPES[architecture]
    config = AutoConfig.for_model(
        model_type, vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, tie_word_embeddings=True, **extra,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if folder is not None:
        model.save_pretrained(folder)
    return model
