"""Paper A's lock-in mechanics (lrmsafety.analysis.lock_in) on hand-made inputs."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety import metrics
from lrmsafety.analysis import lock_in


class WordTokenizer:
    """One token per word: enough to see where a cut falls."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}

    def decode(self, ids):
        return " ".join(ids)


def traces():
    return pd.DataFrame({"prompt_id": ["a", "b", "c"], "sample_index": [0, 1, 0], "prompt": ["p", "q", "r"],
                         "thinking": ["one two three four five", "six seven eight nine ten", ""],
                         "n_thinking_tokens": [4, 5, 0], "closed": [True, False, True]})


def test_cut_thinking_keeps_the_first_percent_of_the_tokens():
    tok = WordTokenizer()
    assert lock_in.cut_thinking(tok, "one two three four five", 40) == "one two"
    assert lock_in.cut_thinking(tok, "one two three four five", 40, length=4) == "one"  # 4 * 40 // 100
    assert lock_in.cut_thinking(tok, "one two three", 0) == ""


def test_only_traces_the_model_closed_are_cut():
    re_tokenized = lock_in.cut_prefixes(WordTokenizer(), traces(), [20, 60])
    assert re_tokenized["prompt_id"].tolist() == ["a#0@20", "a#0@60", "c#0@20", "c#0@60"]
    assert re_tokenized["thinking_prefix"].tolist() == ["one", "one two three", "", ""]
    assert list(re_tokenized.columns) == lock_in.PREFIX_COLUMNS
    counted = lock_in.cut_prefixes(WordTokenizer(), traces(), [60], counted=True)  # 08: the generator's count
    assert counted["prompt_id"].tolist() == ["a#0@60"] and counted["thinking_prefix"].tolist() == ["one two"]
    assert lock_in.cut_prefixes(WordTokenizer(), traces().iloc[1:2], [20]).empty


def test_answers_after_cuts_are_sampled_in_prefix_mode(monkeypatch):
    seen = {}
    monkeypatch.setattr(lock_in.generate, "rollouts", lambda model, tok, spec, prefixes, decoding, **kw:
                        seen.update(prefixes=prefixes, decoding=decoding))
    prefixes = lock_in.cut_prefixes(WordTokenizer(), traces(), [40])
    lock_in.answers_after_cuts(None, None, None, prefixes, lock_in.generate.Decoding(samples_per_prompt=3))
    assert list(seen["prefixes"].columns) == ["prompt_id", "prompt", "thinking_prefix"]
    assert seen["decoding"].mode == "prefix" and seen["decoding"].samples_per_prompt == 3


def test_prefix_table_q_and_n_per_prefix():
    full = pd.DataFrame({"prompt_id": ["a", "a", "b", "b"], "refused": [True, False, True, True]})
    prefixes = lock_in.cut_prefixes(WordTokenizer(), traces(), [20])
    answers = pd.DataFrame({"prompt_id": ["a#0@20"] * 3 + ["c#0@20"] * 2, "prompt": "x",
                            "refused": [True, None, False, False, False]})
    table = lock_in.prefix_table(full, answers, prefixes)
    assert list(table.columns) == ["prompt_id", "cut", "trace", "q", "n"]
    assert table.values.tolist() == [["a", 0, -1, 0.5, 2], ["b", 0, -1, 1.0, 2], ["a", 20, 0, 0.5, 3],
                                     ["c", 20, 0, 0.0, 2]]  # an unjudged answer: out of q, counted in n
    assert lock_in.prefix_table(full).shape == (2, 5)


def test_variance_matches_metrics_continuation_variance():
    outcomes = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 1]])
    prefixes = pd.DataFrame({"model": "m", "cut": [20, 20, 20], "q": outcomes.mean(axis=1),
                             "prompt_id": ["a", "b", "c"]})
    curve = lock_in.variance_curve(prefixes, ["model", "cut"], seed=0, n_boot=200)
    assert curve["continuation_variance"].iloc[0] == pytest.approx(metrics.continuation_variance(outcomes))
    assert curve["prefixes"].iloc[0] == 3
    value, low, high = lock_in.variance_with_ci(prefixes, seed=0, n_boot=200)
    assert value == pytest.approx(metrics.continuation_variance(outcomes)) and low <= value <= high
    # one computation: variance_with_ci is the curve's row over all prefixes
    assert curve[["low", "high"]].iloc[0].tolist() == pytest.approx([low, high])
    assert lock_in.coin_flip_variance(8) == pytest.approx(0.875)


def test_majority_agreement_between_think_and_no_think():
    think = pd.DataFrame({"prompt_id": ["a", "a", "b", "b", "c"], "refused": [1, 1, 0, 0, 1]})
    no_think = pd.DataFrame({"prompt_id": ["a", "b", "c"], "refused": [1, 1, 1]})
    out = lock_in.majority_agreement(think, no_think)
    assert out["prompts"] == 3 and out["agree"] == pytest.approx(2 / 3) and out["low"] < out["agree"] < out["high"]
