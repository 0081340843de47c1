"""Random-weight models of real architectures, for the `paper-smoke` and `paper-gpu` profiles (never for results).

The paper-smoke profile runs every notebook through the paper profile's code path on the CPU: real benchmark
prompts, the real Qwen3 tokenizer and chat template (``../shared/tokenizers/qwen3``), and a 2-layer Qwen3 with
random weights in place of the reasoner and of the guard models. The weights are built here, locally and
deterministically, on first use (never downloaded) into ``data/cache/tiny-models/<name>``.

The paper-gpu profile runs the same path on one GPU at real sizes: the reasoner and every guard and stance judge are
random-weight instances of their real architectures (``REAL_ARCHITECTURES``), initialised on the GPU at load time.
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


# ---------------------------------------------------------------------------------------------- paper-gpu stand-ins
# The shapes of real checkpoints (the fields of each public config.json that set shapes), so that the `paper-gpu`
# profile runs the paper profile's code path on a GPU at real sizes without downloading weights. The vocabulary is
# the Qwen3 tokenizer's (the only real tokenizer available offline), so embedding and lm_head rows differ from the
# real models' where their vocabularies differ; every other shape is the real one.
REAL_ARCHITECTURES = {
    # deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B
    "r1-distill-qwen-1.5b": dict(
        model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, max_position_embeddings=131072, rope_theta=10000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=False),
    # deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
    "r1-distill-qwen-7b": dict(
        model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, max_position_embeddings=131072, rope_theta=10000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=False),
    # Qwen/Qwen3-8B (and Qwen/Qwen3Guard-Gen-8B)
    "qwen3-8b": dict(
        model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=False),
    # mistralai/Mistral-7B-v0.3 (allenai/wildguard, mistralai/Mistral-7B-Instruct-v0.3)
    "mistral-7b": dict(
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-5,
        sliding_window=None, tie_word_embeddings=False),
    # meta-llama/Llama-3.1-8B (Llama-Guard-3-8B, Llama-3.1-8B-Instruct)
    "llama-3.1-8b": dict(
        model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        tie_word_embeddings=False),
    # ibm-granite/granite-3.3-8b-instruct (granite-guardian-3.3-8b)
    "granite-3.3-8b": dict(
        model_type="granite", hidden_size=4096, intermediate_size=12800, num_hidden_layers=40, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=131072, rope_theta=10000000.0, rms_norm_eps=1e-5,
        attention_multiplier=0.0078125, embedding_multiplier=12.0, logits_scaling=16.0, residual_multiplier=0.22,
        tie_word_embeddings=True),
    # openai/gpt-oss-20b (and gpt-oss-safeguard-20b): 24 layers of 32 experts, 4 active; bf16 here, not MXFP4
    "gpt-oss-20b": dict(
        model_type="gpt_oss", hidden_size=2880, intermediate_size=2880, num_hidden_layers=24, num_attention_heads=64,
        num_key_value_heads=8, head_dim=64, num_local_experts=32, num_experts_per_tok=4, sliding_window=128,
        max_position_embeddings=131072, rope_theta=150000.0, rms_norm_eps=1e-5,
        rope_scaling={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                      "original_max_position_embeddings": 4096},
        tie_word_embeddings=False),
}
# Qwen/Qwen2.5-7B-Instruct: R1-Distill-Qwen-7B's shapes (its base), with its own rope and context
REAL_ARCHITECTURES["qwen2.5-7b"] = {**REAL_ARCHITECTURES["r1-distill-qwen-7b"], "max_position_embeddings": 32768,
                                   "rope_theta": 1000000.0}
# the registry's real checkpoints whose shapes are above (the KV cache's size without a download, lrmsafety.rates;
# the benchmarks' random-weight builds)
CHECKPOINT_ARCHITECTURES = {"deepseek-r1-distill-qwen-1.5b": "r1-distill-qwen-1.5b",
                            "deepseek-r1-distill-qwen-7b": "r1-distill-qwen-7b", "qwen3-8b": "qwen3-8b"}


# the shapes a test shrinks a real architecture to (its type and special fields kept), so that the CPU runs it
SHRUNK = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16)
SHRUNK_EXPERTS = dict(num_local_experts=4, num_experts_per_tok=2)


def random_architecture_config(architecture: str, shrink: bool = False):
    """The transformers config of a real architecture (REAL_ARCHITECTURES) with the Qwen3 tokenizer's vocabulary;
    ``shrink`` keeps the architecture's type and special fields at a test's size (SHRUNK)."""
    from transformers import AutoConfig, AutoTokenizer

    if architecture not in REAL_ARCHITECTURES:
        raise KeyError(f"no real architecture {architecture!r}; known: {', '.join(REAL_ARCHITECTURES)}")
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    fields = dict(REAL_ARCHITECTURES[architecture])
    if shrink:
        fields.update(SHRUNK, **(SHRUNK_EXPERTS if "num_local_experts" in fields else {}))
    fields.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def build_random_architecture(architecture: str, dtype, device: str, seed: int = 0, shrink: bool = False):
    """A real architecture with random weights, initialised directly on ``device`` (nothing is written to disk: a
    20B model in bf16 is 42 GB). The same seed gives the same weights, so a fine-tuned adapter saved in one notebook
    loads onto the same base in the next; the global random state is left as it was."""
    import torch
    from transformers import AutoModelForCausalLM

    config = random_architecture_config(architecture, shrink=shrink)
    devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model
