import pytest
from tiny_models import QWEN3_TOKENIZER, build_tiny, tokenizer_for

from lrmsafety import registry as models


@pytest.fixture(scope="session")
def qwen3_tokenizer_path():
    if not QWEN3_TOKENIZER.exists():
        pytest.skip("the real Qwen3 tokenizer (../shared/tokenizers/qwen3) is not beside this checkout")
    return QWEN3_TOKENIZER


@pytest.fixture(scope="module")
def tiny_r1(tmp_path_factory, qwen3_tokenizer_path):
    """A tiny random-weight Qwen2 with the R1 distills' tokenizer and template, loaded as a registry model is."""
    folder = tmp_path_factory.mktemp("tiny-r1")
    tokenizer = tokenizer_for("r1")
    tokenizer.save_pretrained(folder)
    build_tiny("Qwen2ForCausalLM", len(tokenizer), folder)
    # on the CPU on a GPU machine too: exact comparisons between engines hold in fp32 on the CPU, while on CUDA the
    # DynamicCache engine's sdpa kernels and the slot engine's attention round differently and a tiny random model's
    # near-ties flip greedy tokens (benchmarks/gpu_sampling.py measures that on trained models)
    return models.load_model(str(folder), quantization="fp32", device_map="cpu")
