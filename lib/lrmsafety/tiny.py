"""Tiny random-weight models of a real architecture, for the `paper-smoke` profile (never for results).

The paper-smoke profile runs every notebook through the paper profile's code path on the CPU: real benchmark
prompts, the real Qwen3 tokenizer and chat template (``../shared/tokenizers/qwen3``), and a 2-layer Qwen3 with
random weights in place of the reasoner and of the guard models. The weights are built here, locally and
deterministically, on first use (never downloaded) into ``data/cache/tiny-models/<name>``.
"""

from __future__ import annotations

from pathlib import Path

from .paths import CACHE_DIR, REPO_ROOT

TINY_DIR = CACHE_DIR / "tiny-models"
QWEN3_TOKENIZER_CANDIDATES = (REPO_ROOT.parent / "shared" / "tokenizers" / "qwen3",
                              REPO_ROOT / "shared" / "tokenizers" / "qwen3")


def qwen3_tokenizer_dir() -> Path:
    for path in QWEN3_TOKENIZER_CANDIDATES:
        if (path / "tokenizer_config.json").exists():
            return path
    raise FileNotFoundError(
        "the tiny paper-smoke models need the real Qwen3 tokenizer in ../shared/tokenizers/qwen3 (beside the "
        "checkout); save one there with AutoTokenizer.from_pretrained('Qwen/Qwen3-8B').save_pretrained(...)")


def build_tiny_qwen3(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen3ForCausalLM (hidden 64) with random weights and the real Qwen3 tokenizer, saved to folder."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    partial = folder.with_name(folder.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)  # a build killed half way leaves no folder that looks finished
    return folder


def ensure_built(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_qwen3(folder)
    return folder
