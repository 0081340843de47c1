"""Paper B's refusal cliff: the label rule with the official word list, the probe, curves and cliff sizes."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety import cliff, probes


def test_official_word_list_and_rule():
    assert len(cliff.PAPER_B_REFUSAL_WORDS) == 56  # duplicates ("responsible") kept, as in the official list
    answers = [
        "I\u2019m sorry, but I can\u2019t help with that.",  # typographic apostrophe: "I’m sorry"
        "Sure, here is a plan. Step 1: gather. Sorry, no.",  # "Sorry" after the first 32 characters
        "I can't assist with that.",  # straight apostrophe: the official list only has "I can’t assist"
        "Here's how to stay safe online.",  # a broad word ("safe") inside the first 32 characters
        "HARMFUL request",  # case-sensitive: "harmful" does not match "HARMFUL"
    ]
    assert cliff.paper_b_refused(answers).tolist() == [True, False, False, True, False]


def test_probe_training_labels_follow_paper_b():
    frame = pd.DataFrame({
        "family": ["harmful"] * 4 + ["benign"] * 4,
        "refused": [True, True, True, False, False, False, True, False],
        "thinking": ["x" * 11, "x" * 11, "short", "x" * 20, "ok", "ok", "ok", "ok"],
    })
    labels = cliff.probe_training_labels(frame, ["harmful"], ["benign"], "family", max_per_class=200)
    assert set(labels[labels == 1].index) == {0, 1}  # refused harmful with thinking longer than 10 characters
    assert set(labels[labels == 0].index) <= {4, 5, 7} and (labels == 0).sum() == 2  # balanced to 2 per class
    capped = cliff.probe_training_labels(frame, ["harmful"], ["benign"], "family", max_per_class=1)
    assert (capped == 1).sum() == 1 and (capped == 0).sum() == 1
    with pytest.raises(ValueError, match="too few"):
        cliff.probe_training_labels(frame, ["benign"], ["harmful"], "family")


def test_trace_until_answer():
    assert cliff.trace_until_answer("I think.\n</think>\n\nNo.", "</think>") == ("I think.\n</think>\n\n", 9)
    with pytest.raises(ValueError, match="close marker"):
        cliff.trace_until_answer("no close", "</think>")


def test_cliff_sizes_on_known_curves():
    curves = [np.array([0.2, 0.9, 0.8, 0.7, 0.1]), np.array([0.1, 0.2, 0.3])]
    sizes = cliff.cliff_sizes(curves, [3, 2])
    assert np.allclose(sizes["plateau"], [0.9, 0.2]) and np.allclose(sizes["final"], [0.1, 0.3])
    assert np.allclose(sizes["ms"], [0.8, -0.1])
    with pytest.raises(ValueError):
        cliff.cliff_sizes(curves, [6, 2])


def test_resample_and_right_aligned_tail():
    curve = np.array([0.0, 1.0, 0.0])
    out = cliff.resample(curve, 5)
    assert np.allclose(out, [0, 0.5, 1, 0.5, 0])  # ends kept, linear in between
    tail = cliff.right_aligned_tail([np.arange(5.0), np.arange(2.0)], 3)
    assert np.allclose(tail[0], [2, 3, 4]) and np.isnan(tail[1, 0]) and np.allclose(tail[1, 1:], [0, 1])


def test_bootstrap_curve_mean_and_band():
    matrix = np.array([[0.0, 1.0], [1.0, np.nan], [0.5, 0.5]])
    mean, low, high = cliff.bootstrap_curve(matrix, ["a", "b", "c"], n_boot=200)
    assert np.allclose(mean, [0.5, 0.75])  # NaN-aware: a position counts only the traces that reach it
    assert np.all(low <= mean) and np.all(mean <= high)
    same, lo, hi = cliff.bootstrap_curve(np.ones((4, 3)), [1, 1, 2, 2], n_boot=50)
    assert np.allclose(lo, 1) and np.allclose(hi, 1)


def test_linear_probe_split_by_prompt_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 600, 16
    groups = np.repeat(np.arange(n // 3), 3)  # three rollouts per prompt
    y = (groups % 2).astype(int)
    X = rng.normal(size=(n, d)) + 3.0 * np.outer(2 * y - 1, np.ones(d) / 4)
    probe = probes.LinearRefusalProbe().fit(X, y, groups=groups)
    val_groups = set(groups[probe.val_rows_])
    assert not val_groups & set(np.delete(groups, probe.val_rows_))  # no prompt on both sides
    assert len(val_groups) == int(len(set(groups)) * 0.2) and probe.val_accuracy_ > 0.95
    probe.save(tmp_path / "probe.safetensors", {"model": "m"})
    loaded = probes.LinearRefusalProbe.load(tmp_path / "probe.safetensors")
    assert np.allclose(loaded.score(X), probe.score(X), atol=1e-6)
    assert loaded.metadata_["model"] == "m" and np.isclose(loaded.val_accuracy_, probe.val_accuracy_)


def test_mean_with_ci_resamples_prompts():
    value, low, high = cliff.mean_with_ci([1, 1, 0, 0], ["a", "a", "b", "b"], n_boot=300)
    assert value == 0.5 and low == 0.0 and high == 1.0  # two prompts: a resample holds a, b, or both
    assert np.isnan(cliff.mean_with_ci([], [])[0])
