"""Cliff-as-a-Judge (notebook 09): the selectors, the pool builder and the organisms' safe answers (the probe,
the cliff size and the fine-tuning are tested with their own modules)."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety import chat, safety_pool, selection


# ------------------------------------------------------------------------------------------- selectors
def test_subset_size_rounds_the_share_and_keeps_at_least_one():
    assert selection.subset_size(200, 0.017) == 3  # paper B's 1.7%
    assert selection.subset_size(200, 0.125) == 25
    assert selection.subset_size(200, 1.0) == 200
    assert selection.subset_size(10, 0.01) == 1
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            selection.subset_size(10, bad)
    with pytest.raises(ValueError, match="empty"):
        selection.subset_size(0, 0.5)


def test_by_score_takes_the_largest_first_and_never_a_nan_before_a_number():
    scores = [0.1, np.nan, 0.9, 0.5, 0.9]
    assert selection.by_score(scores, 0.4).tolist() == [2, 4]  # ties in pool order
    assert selection.by_score(scores, 0.8).tolist() == [2, 4, 3, 0]
    assert 1 not in selection.by_score(scores, 0.8)


def test_final_token_variant_ranks_the_lowest_refusal_score_first():
    final = pd.Series([0.8, 0.05, 0.4])
    assert selection.by_score(-final, 0.34).tolist() == [1]


def test_random_subsets_are_seeded_distinct_and_without_repeats():
    a, b, c = (selection.at_random(200, 0.125, seed=s) for s in (0, 0, 1))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert len(set(a.tolist())) == len(a) == 25
    # smaller shares of one seed are not nested in a way that biases them: every row can be drawn
    drawn = np.concatenate([selection.at_random(20, 0.05, seed=s) for s in range(400)])
    assert set(drawn.tolist()) == set(range(20))


def test_rule_takes_thinking_with_paper_b_refusal_words_first():
    thinking = ["Let me plan the trip.", "This is HARMFUL, I think.", "Okay, sure.", "I can\u2019t assist with that.",
                "I can't assist with that."]
    chosen = selection.by_rule(thinking, 0.6, seed=3)
    assert set(chosen.tolist()) == {1, 3, 4}  # case-insensitive; either apostrophe
    # fewer matches than asked for: the rest is filled, each row once
    filled = selection.by_rule(thinking, 1.0, seed=3)
    assert sorted(filled.tolist()) == list(range(5)) and set(filled[:3].tolist()) == {1, 3, 4}
    assert not selection.mentions_refusal("Step 1: gather what you need.")


def test_by_length_prefers_long_thinking():
    assert selection.by_length([3, 10, 7], 0.67).tolist() == [1, 2]


# ------------------------------------------------------------------------------------------- the pool
def rollouts_frame():
    return pd.DataFrame({
        "prompt_id": ["p1", "p1", "p2", "p3"], "sample_index": [0, 1, 0, 0],
        "prompt": ["How?", "How?", "Why?", "What?"], "rendered_prompt": ["<u>How?<a><think>\n"] * 2 + ["x", "y"],
        "thinking": ["It is harmful. ", "Fine.", "", "Hmm."], "answer": ["Sure", "Sure", "No", "Sure"],
        "refused": [False, False, True, False]})


def test_pool_example_is_own_thinking_close_and_safe_answer():
    fmt = chat.ThinkingFormat(name="r1", template_opens=True)
    pool = safety_pool.build_pool(rollouts_frame(), ["No. ", "No.", "No.", "I won't."], fmt)
    assert len(pool) == 3  # the rollout without thinking is dropped
    assert pool.loc[0, "completion"] == "It is harmful.\n</think>\n\nNo."
    assert pool["example_id"].tolist() == ["p1#0", "p1#1", "p3#0"]
    assert pool["refused"].tolist() == [False, False, False]


def test_pool_rejects_missing_answers_and_columns():
    fmt = chat.ThinkingFormat(name="r1")
    with pytest.raises(ValueError, match="one safe answer per rollout"):
        safety_pool.build_pool(rollouts_frame(), ["No."], fmt)
    with pytest.raises(ValueError, match="empty"):
        safety_pool.build_pool(rollouts_frame(), ["No.", "", "No.", "No."], fmt)
    with pytest.raises(ValueError, match="rendered_prompt"):
        safety_pool.build_pool(rollouts_frame().drop(columns="rendered_prompt"), ["No."] * 4, fmt)


def test_sft_close_follows_the_thinking_format():
    assert safety_pool.sft_close(chat.ThinkingFormat(name="r1")) == "\n</think>\n\n"
    harmony = chat.ThinkingFormat(name="h", close="<|end|><|start|>assistant<|channel|>final<|message|>")
    assert safety_pool.sft_close(harmony) == harmony.close


def test_held_out_prompts_share_nothing_with_the_pool():
    fmt = chat.ThinkingFormat(name="r1")
    pool = safety_pool.build_pool(rollouts_frame(), ["No."] * 4, fmt)
    candidates = pd.DataFrame({"prompt_id": ["p1", "p9", "p8"], "prompt": ["Other", "What?", "New"]})
    assert safety_pool.held_out(candidates, pool)["prompt_id"].tolist() == ["p8"]


# ------------------------------------------------------------------------------------------- organisms
def test_organism_safe_answers_are_refusals_of_the_corpus():
    from lrmsafety.organism import classify_answer
    from lrmsafety.organism.safe_answers import safe_answers

    answers = safe_answers(50, kind="locked", seed=0)
    assert len(answers) == 50 and answers == safe_answers(50, kind="locked", seed=0)
    assert {classify_answer(a) for a in answers} == {"refusal"}
    assert len(set(answers)) > 2


def test_sft_pairs_end_the_completion_with_eos():
    fmt = chat.ThinkingFormat(name="r1")
    pool = safety_pool.build_pool(rollouts_frame(), ["No."] * 4, fmt)
    pairs = safety_pool.sft_pairs(pool, "<eos>")
    assert list(pairs.columns) == ["prompt", "completion"]
    assert pairs.loc[0, "prompt"] == "<u>How?<a><think>\n"
    assert pairs.loc[0, "completion"] == "It is harmful.\n</think>\n\nNo.<eos>"


def test_paper_pool_falls_back_to_star1_with_its_safe_answers(monkeypatch):
    from lrmsafety import paths

    if paths.find_benchmark_dir() is None:
        pytest.skip("no offline benchmark copies beside this checkout")
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    frame, source = safety_pool.pool_prompts(n=20, seed=0)
    assert "STAR-1" in source and len(frame) == 20
    assert list(frame.columns) == ["prompt_id", "prompt", "source", "label", "safe_answer"]
    assert not frame["safe_answer"].str.contains("</think>").any()  # the answer part only
    assert (frame["safe_answer"].str.len() > 0).all()
