"""quantization="auto": 16-bit weights when they and the batch's KV cache fit, else nf4 (lrmsafety.memory)."""

import pytest

from lrmsafety import memory, params
from lrmsafety.tiny import random_architecture_config


def test_kv_bytes_per_token_of_r1_distill_qwen_7b():
    # 28 layers x 4 key-value heads x 128 dims x (K, V) x 2 bytes
    config = random_architecture_config("r1-distill-qwen-7b")
    assert memory.kv_bytes_per_token(config) == 28 * 4 * 128 * 2 * 2


def test_auto_takes_16_bit_weights_when_they_and_the_cache_fit():
    kv_gb = memory.kv_bytes_per_token(random_architecture_config("r1-distill-qwen-7b")) * \
        params.load("paper").kv_tokens / 1e9
    assert 30 < kv_gb < 40  # 64 rows x (512 + 8,192 + 1,024) tokens
    roomy = memory.choose("auto", 7.6, has_gpu=True, kv_gb=kv_gb, free_gb=79.0)
    assert roomy.quantization == "bf16" and "<= 79.0 GB free" in roomy.why
    small = memory.choose("auto", 7.6, has_gpu=True, kv_gb=kv_gb, free_gb=40.0)
    assert small.quantization == "nf4" and "> 40.0 GB free" in small.why
    t4 = memory.choose("auto", 1.8, has_gpu=True, bf16_supported=False, kv_gb=5.0, free_gb=15.0)
    assert t4.quantization == "fp16"  # a T4 has no bf16


def test_explicit_choices_and_the_cpu():
    assert memory.choose("nf4", 7.6, has_gpu=True, free_gb=1.0).quantization == "nf4"
    assert memory.choose("auto", 7.6, has_gpu=False).quantization == "fp32"
    with pytest.raises(ValueError, match="quantization must be one of"):
        memory.choose("int8", 7.6, has_gpu=True)


def test_check_names_the_fix():
    with pytest.raises(MemoryError, match="quantization='nf4' would fit"):
        memory.check("m", 7.6, "bf16", available_gb=10.0)
    memory.check("m", 7.6, "nf4", available_gb=10.0)


def test_vllm_splits_a_model_over_the_fewest_gpus_that_hold_it():
    from lrmsafety import memory

    assert memory.tensor_parallel_size(7.6, "bf16", [80.0]) == 1
    assert memory.tensor_parallel_size(7.6, "bf16", [80.0, 80.0]) == 1  # fits one: no split
    # 70B in bf16 is about 161 GB with overhead: two H200s (141 GB) hold 80.5 each; two H100s (80 GB) do not
    assert memory.tensor_parallel_size(70.0, "bf16", [141.0, 141.0]) == 2
    assert memory.tensor_parallel_size(70.0, "bf16", [80.0] * 8) == 4
    assert memory.tensor_parallel_size(70.0, "bf16", [80.0, 80.0]) == 1  # nothing holds it: vLLM says why
