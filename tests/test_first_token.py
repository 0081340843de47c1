"""Paper A's first-token study (notebook 02's mechanics): its inputs, rows and one table."""

import numpy as np
import pandas as pd

from lrmsafety.analysis import first_token


def test_probe_frame_takes_paper_a_label_and_drops_unlabelled_or_thinkless_rollouts():
    rollouts = pd.DataFrame({"prompt_id": ["a", "a", "b", "c"], "sample_index": [0, 1, 0, 0],
                             "thinking": ["Okay", "", "Alright", "Hmm"]})
    judged = pd.DataFrame({"prompt_id": ["a", "a", "b", "c"], "sample_index": [0, 1, 0, 0],
                           "refused_a": [True, False, None, False], "refused_b": [False] * 4})
    prompts = pd.DataFrame({"prompt_id": ["a", "b", "c"], "label": ["harmful", "benign", "harmful"],
                            "family": ["jailbreak", "benign", "harmful"], "prompt": ["x", "y", "z"]})
    frame = first_token.probe_frame(rollouts, judged, prompts, "family")
    assert frame["prompt_id"].tolist() == ["a", "c"] and frame["refused"].tolist() == [True, False]
    assert {"label", "family"} <= set(frame.columns) and "refused_b" not in frame


def test_a_skipped_model_keeps_an_na_row_with_the_reason_and_nulls_join_by_group():
    frame = pd.DataFrame({"prompt_id": ["a", "b"], "refused": [True, True]})
    skipped = first_token.skipped_row("m", frame)
    assert skipped["n_pos"] == 2 and "too few prompts" in skipped["reason"]
    probe = pd.DataFrame({"group": ["pooled"], "auroc": [0.8], "n": [10], "model": ["k"],
                          "feature": [first_token.FIRST]})
    null = pd.DataFrame({"model": ["k", "k"], "feature": [first_token.FIRST, first_token.STATE_A],
                         "group": ["pooled", "family=x"], "perm_p": [0.1, 0.5], "null_low": [0.4, 0.3],
                         "null_high": [0.6, 0.7], "n_permutations": [9, 9], "auroc": [0.8, 0.55], "n": [10, 4]})
    table = first_token.probe_table([probe], [skipped], [null])
    table = table.set_index(["model", "feature", "group"])
    assert len(table) == 3 and table.loc[("k", first_token.FIRST, "pooled"), "perm_p"] == 0.1
    skipped_row = table.loc[("m", first_token.FIRST, "pooled")]
    assert np.isnan(skipped_row["auroc"]) and skipped_row["reason"] == skipped["reason"]
    state_a = table.loc[("k", first_token.STATE_A, "family=x")]
    assert state_a[["auroc", "n", "perm_p"]].tolist() == [0.55, 4, 0.5]  # only the null holds it: the null's AUROC


def test_empty_study_gives_an_empty_table_with_the_columns():
    table = first_token.probe_table([], [], [])
    assert table.empty and set(first_token.COLUMNS) <= set(table.columns)
