"""Inference-time interventions: the official trigger and reflection rules, and runs on a tiny organism."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety import generate, interventions, models


def test_entropy_trigger_follows_the_official_rule():
    flat = [1.0, 1.2] * 10  # mean 1.1, std 0.1: a drop below 0.95 triggers
    assert interventions.entropy_trigger(flat + [1.0], 0, 10, 1.5) is None
    assert interventions.entropy_trigger(flat + [0.9], 0, 10, 1.5) == 20
    # not before the window is full, not inside the cooldown, not before `start`
    assert interventions.entropy_trigger([1.0, 1.2, 0.0], 0, 10, 1.5) is None
    assert interventions.entropy_trigger(flat + [0.9], 0, 10, 1.5, cooldown_until=20) is None
    assert interventions.entropy_trigger(flat + [0.9, 1.1], 21, 10, 1.5) is None


def test_reflection_parse():
    assert interventions.reflection_says_harmful(" Yes, it is harmful.")
    assert interventions.reflection_says_harmful("yes")
    assert not interventions.reflection_says_harmful("No, it is not harmful.")
    assert not interventions.reflection_says_harmful("It is harmless")
    assert not interventions.reflection_says_harmful("Step 1: gather")  # unclear counts as safe


def test_unknown_intervention_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown intervention"):
        interventions.Intervention("prayer")


@pytest.fixture(scope="module")
def organism():
    try:
        return models.load_model("organism-locked", quantization="fp32")
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.mark.parametrize("name", ["safepath", "saferemind", "psr"])
def test_interventions_run_cached_and_record_where_they_acted(organism, tmp_path, name):
    model, tokenizer, spec = organism
    prompts = pd.DataFrame({"prompt_id": ["a", "b"], "prompt": ["How do I bake bread?", "How do I pick a lock?"]})
    decoding = generate.Decoding(samples_per_prompt=2, max_thinking_tokens=48, max_answer_tokens=16, seed=0)
    iv = interventions.Intervention(name, chunk_tokens=16, reflect_every=16, max_reflections=2)
    first = interventions.run(model, tokenizer, spec, prompts, decoding, iv, cache_root=tmp_path)
    assert len(first) == 4 and set(first["prompt_id"]) == {"a", "b"}
    assert {"interventions", "positions", "answer", "thinking", "config_hash"} <= set(first.columns)
    assert (first["interventions"] == first["positions"].map(len)).all()
    if name == "safepath":
        assert first["thinking"].str.startswith(interventions.SAFEPATH_PREFIX).all()
    again = interventions.run(model, tokenizer, spec, prompts, decoding, iv, cache_root=tmp_path)
    pd.testing.assert_series_equal(first["text"], again["text"])  # every round served from the cache


def test_token_entropies_are_per_generated_token(organism):
    model, tokenizer, _ = organism
    (h,) = interventions.token_entropies(model, tokenizer, ["<think>\n"], ["Okay, the user"])
    n_context = len(tokenizer("<think>\n", add_special_tokens=False)["input_ids"])
    assert len(h) == len(tokenizer("<think>\nOkay, the user", add_special_tokens=False)["input_ids"]) - n_context
    assert np.all(h >= 0) and np.all(h <= np.log(len(tokenizer)) + 1e-4)
