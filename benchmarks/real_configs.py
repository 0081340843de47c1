"""Architectures of real models, written out so that benchmarks can build them with random weights offline.

The numbers are those of each model's public config.json on the Hugging Face hub (only the fields that set shapes).
"""

from __future__ import annotations

REAL_CONFIGS = {
    # deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B
    "deepseek-r1-distill-qwen-1.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072, rope_theta=10000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=151646, eos_token_id=151643),
    # deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
    "deepseek-r1-distill-qwen-7b": dict(
        model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=131072, rope_theta=10000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=151646, eos_token_id=151643),
    # Qwen/Qwen3-8B
    "qwen3-8b": dict(
        model_type="qwen3", vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=151643,
        eos_token_id=151645),
}


def build_random(name: str, dtype=None, device: str = "cuda"):
    """A model of the named architecture with random weights, built directly on ``device``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(REAL_CONFIGS[name])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.bfloat16)
    return model.eval()


def save_random(name: str, folder, tokenizer_dir) -> None:
    """Write a random-weight checkpoint of the architecture, with a tokenizer, as a model folder."""
    import torch
    from transformers import AutoTokenizer

    model = build_random(name)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    del model
    torch.cuda.empty_cache()


def saved_random(name: str, root, tokenizer_dir):
    """The folder ``root/name`` holding a random-weight checkpoint of the architecture, written on first use (a
    quantized model is loaded from a folder, as models.load_model does it for real checkpoints)."""
    from pathlib import Path

    folder = Path(root) / name
    if not (folder / "config.json").exists():
        save_random(name, folder, tokenizer_dir)
    return folder


def random_model(name: str, quantization: str, root, tokenizer_dir, device: str = "cuda", dtype=None):
    """A random-weight model of the architecture: built in place for bf16 (or ``dtype``), otherwise saved under
    ``root`` and reloaded through models.load_model with ``quantization`` (nf4: bitsandbytes)."""
    if quantization == "bf16":
        return build_random(name, dtype=dtype, device=device)
    from lrmsafety.models import load_model

    return load_model(str(saved_random(name, root, tokenizer_dir)), quantization=quantization)[0]
