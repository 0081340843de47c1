"""The CPU attention (lrmsafety.engine.attention) computes what transformers' sdpa computes, for every family, on
padded batches, and a row's output does not depend on the width its batch pads it to."""

import pytest
import torch
from tiny_models import ARCHITECTURE_TYPES, build_tiny

from lrmsafety.engine.attention import NAME, cpu_attention_forward, use_cpu_attention


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURE_TYPES))
def test_cpu_attention_matches_sdpa_on_a_left_padded_batch(architecture):
    model = build_tiny(architecture, vocab_size=128).eval()
    ids = torch.randint(3, 128, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding, as the rollouts batch prompts
    mask[1, :2] = 0
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        unpadded = model(input_ids=ids[2:]).logits  # no mask: transformers' causal path
        switched = use_cpu_attention(model)
        after = model(input_ids=ids, attention_mask=mask).logits
        after_unpadded = model(input_ids=ids[2:]).logits
    if architecture in ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM"):
        assert switched  # the families the organisms and most papers' models use
    if not switched:  # e.g. gpt-oss (attention sinks, sliding windows) keeps its own attention
        assert model.config._attn_implementation != NAME
        return
    assert model.config._attn_implementation == NAME
    keep = mask.bool()
    torch.testing.assert_close(after[keep], before[keep], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(after_unpadded, unpadded, atol=1e-4, rtol=1e-4)


class _Module:
    is_causal, training = True, False


@pytest.mark.parametrize("q_len", [1, 5])
def test_a_rows_attention_is_bitwise_the_same_at_any_padded_width(q_len):
    """Left padding by other widths and other batch mates leave a row's output bitwise unchanged (the masked columns
    add exact zeros; the products are MKL's strict ones, lrmsafety.numerics)."""
    generator = torch.Generator().manual_seed(0)
    heads, kv_heads, dim, n = 8, 4, 32, 7  # narrower than a vector: the softmax's other path
    q = torch.randn(1, heads, q_len, dim, generator=generator)
    k, v = (torch.randn(1, kv_heads, n, dim, generator=generator) for _ in range(2))
    causal = torch.ones(q_len, n, dtype=torch.bool).tril(n - q_len)
    alone = cpu_attention_forward(_Module(), q, k, v, causal[None, None])[0]
    for width, rows in [(n + 3, 2), (n + 16, 5), (256, 3), (n + 101, 1), (n, 4)]:
        keys, values = (torch.randn(rows, kv_heads, width, dim, generator=generator) for _ in range(2))
        query = torch.randn(rows, heads, q_len, dim, generator=generator)
        mask = torch.zeros(rows, 1, q_len, width, dtype=torch.bool)
        mask[1:] = True
        keys[0, :, width - n:], values[0, :, width - n:], query[0] = k[0], v[0], q[0]
        mask[0, 0, :, width - n:] = causal
        padded = cpu_attention_forward(_Module(), query, keys, values, mask)[0][:1]
        assert torch.equal(padded, alone), (width, rows)
