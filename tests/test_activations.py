"""hidden_states_at cuts each text after its last asked position (the model is causal): same states, less compute."""

import numpy as np
import pandas as pd
import torch
from tiny_models import build_tiny

from lrmsafety.analysis.activations import hidden_states_at


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


def test_states_key_names_model_rows_rollout_caches_and_position():
    from lrmsafety.analysis.activations import states_key

    frame = pd.DataFrame({"prompt_id": ["a", "b"], "sample_index": [0, 1], "config_hash": ["h", "h"]})
    key = states_key("m", frame, position="first", layers=[0, 1])
    assert key == states_key("m", frame, layers=[0, 1], position="first")  # order of the extras does not matter
    assert len({key, states_key("n", frame, position="first", layers=[0, 1]), states_key("m", frame.iloc[:1],
               position="first", layers=[0, 1]), states_key("m", frame, position="stateA", layers=[0, 1])}) == 4
    from lrmsafety import store  # the key notebook 02 built before: its caches stay valid

    assert key == store.config_hash({"model": "m", "rows": list(zip(frame["prompt_id"], frame["sample_index"])),
                                     "rollouts": ["h"], "position": "first", "layers": [0, 1]})
