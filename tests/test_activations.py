"""hidden_states_at cuts each text after its last asked position (the model is causal): same states, less compute."""

import numpy as np
import torch

from lrmsafety.analysis.activations import hidden_states_at
from tiny_models import build_tiny


def test_states_equal_those_of_a_full_forward_pass():
    model = build_tiny("Qwen2ForCausalLM", vocab_size=128).eval()
    tokenizer = type("PadOnly", (), {"pad_token_id": 0})()  # token-id inputs: only the pad id is read
    texts = [list(range(3, 23)), list(range(5, 17))]
    positions = [[2, -1], [0, 7]]
    states = hidden_states_at(model, tokenizer, texts, positions, layers=[1, 2], batch_size=2, progress=False)
    for row, (ids, wanted) in enumerate(zip(texts, positions)):
        with torch.no_grad():
            full = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        for layer in (1, 2):
            expected = full[layer][0, [p if p >= 0 else len(ids) + p for p in wanted]].numpy()
            np.testing.assert_allclose(states[layer][row], expected, atol=1e-4, rtol=1e-4)
