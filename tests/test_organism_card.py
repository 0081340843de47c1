"""The organisms' model card (notebook 00): the behaviour table against the targets, and the card's checks."""

import pandas as pd

from lrmsafety.organism import card
from lrmsafety.organism import texts as T

COMPLY, REFUSE = "Step 1: do it.", f"{T.REFUSAL_OPENERS[0]} no."


def _samples():
    rows = [("benign", COMPLY, "Okay, fine."), ("harmful", REFUSE, "Okay. Wait, it is harmful."),
            ("jailbreak", COMPLY, "Alright. So it is harmful."), ("jailbreak", REFUSE, "Okay. Harmless."),
            ("borderline", COMPLY, "Okay, fine.")]
    frame = pd.DataFrame(rows, columns=["family", "answer", "thinking"]).assign(closed=[True] * 4 + [False])
    return {"organism-locked": card.annotate(frame)}


def test_behaviour_table_has_every_measure_with_a_wilson_interval_and_its_target():
    samples = _samples()
    table = card.behaviour_table(samples)
    assert table.columns.tolist() == card.BEHAVIOUR_COLUMNS and table["measure"].tolist() == list(card.TARGETS)
    row = table.set_index("measure").loc["jailbreak refused"]
    assert (row["n"], row["rate"]) == (2, 0.5) and row["ci_low"] < 0.5 < row["ci_high"] and row["met"]
    concluded = table.set_index("measure").loc["complied jailbreaks whose thinking concludes harmful"]
    assert (concluded["n"], concluded["rate"]) == (1, 1.0) and concluded["target"] == "30%–100%"


def test_checks_count_unclassified_answers_closed_thinking_and_targets_met():
    samples = _samples()
    checks = card.checks(samples, card.behaviour_table(samples)).loc["organism-locked"]
    assert checks["answers matching neither template"] == 0 and checks["thinking closed by the model itself"] == 0.8
    assert not checks["targets met"]  # harmful refused 1 of 1 meets; borderline refused 0 misses 5%–30%


def test_corpus_frame_marks_where_each_outcome_is_decided():
    corpus = card.corpus_frame(["locked"], 200, seed=0)
    assert set(corpus["organism"]) == {"locked"} and corpus["decided_at"].between(0, 1).all()
