"""sdpa_gqa (lrmsafety.engine.attention) computes what transformers' sdpa computes, for every family, on padded
batches."""

import pytest
import torch
from tiny_models import ARCHITECTURE_TYPES, build_tiny

from lrmsafety.engine.attention import NAME, use_grouped_sdpa


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURE_TYPES))
def test_grouped_sdpa_matches_sdpa_on_a_left_padded_batch(architecture):
    model = build_tiny(architecture, vocab_size=128).eval()
    ids = torch.randint(3, 128, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding, as the rollouts batch prompts
    mask[1, :2] = 0
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        switched = use_grouped_sdpa(model)
        after = model(input_ids=ids, attention_mask=mask).logits
    if architecture in ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM"):
        assert switched  # the families the organisms and most papers' models use
    if not switched:  # e.g. gpt-oss (attention sinks) keeps its own attention
        assert model.config._attn_implementation != NAME
        return
    assert model.config._attn_implementation == NAME
    keep = mask.bool()
    torch.testing.assert_close(after[keep], before[keep], atol=1e-4, rtol=1e-4)
