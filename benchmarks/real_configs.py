"""The real checkpoints the benchmarks build with random weights offline: the library's shapes
(lrmsafety.tiny.REAL_ARCHITECTURES, from each model's public config.json) with each checkpoint's own vocabulary."""

from __future__ import annotations

from lrmsafety.tiny import CHECKPOINT_ARCHITECTURES, REAL_ARCHITECTURES

# each checkpoint's own vocabulary and special tokens: the lm_head's width is part of what a decode step costs
REAL_CONFIGS = {
    name: {**REAL_ARCHITECTURES[CHECKPOINT_ARCHITECTURES[name]], **own}
    for name, own in [
        ("deepseek-r1-distill-qwen-1.5b", dict(vocab_size=151936, bos_token_id=151646, eos_token_id=151643)),
        ("deepseek-r1-distill-qwen-7b", dict(vocab_size=152064, bos_token_id=151646, eos_token_id=151643)),
        ("qwen3-8b", dict(vocab_size=151936, bos_token_id=151643, eos_token_id=151645)),
    ]
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
    from lrmsafety.registry import load_model

    return load_model(str(saved_random(name, root, tokenizer_dir)), quantization=quantization)[0]
