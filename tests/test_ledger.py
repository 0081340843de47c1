"""The claims ledger: validation with errors that name the place and the fix, filling from result tables,
verdicts against published values or planted targets, and a notebook's board."""

import copy

import pandas as pd
import pytest
from ledger_fixtures import MEASURE, ledger_dict, probe_table, write

from lrmsafety import ledger as claims


def test_the_repository_ledger_validates_and_covers_the_checklist():
    ledger = claims.load_ledger()
    assert sorted(c.checklist for c in ledger.claims) == list(range(1, 15))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(notebook="02_first_tokn_probe"), "unknown notebook '02_first_tokn_probe'; did you mean "
                                                         "'02_first_token_probe'?"),
    (lambda m: m.pop("value"), "A1.harmful) > value: missing required field 'value'"),
    (lambda m: m["published"].pop("source"), "a published value needs `source:`"),
    (lambda m: m.update(table="results/02.parquet"), "must be a CSV file name"),
    (lambda m: m.update(colour="red"), "unknown field 'colour'"),
    (lambda m: m["published"]["per_model"].update({"Qwen3-8bb": 0.9}), "did you mean 'qwen3-8b'?"),
])
def test_ledger_errors_name_the_place_and_the_fix(tmp_path, edit, message):
    measure = copy.deepcopy(MEASURE)
    edit(measure)
    with pytest.raises(claims.LedgerError, match="does not validate") as err:
        claims.load_ledger(write(tmp_path, ledger_dict(measure)))
    assert message in str(err.value)


def test_a_checklist_item_without_a_claim_is_an_error(tmp_path):
    data = ledger_dict()
    data["claims"] = [c for c in data["claims"] if c["checklist"] != 7]
    with pytest.raises(claims.LedgerError, match=r"checklist items \[7\]"):
        claims.load_ledger(write(tmp_path, data))


def test_organisms_are_judged_against_their_planted_target(tmp_path):
    ledger = claims.load_ledger(write(tmp_path, ledger_dict()))
    probe_table(tmp_path / "results", "organism-locked", 0.62)
    row = claims.fill(ledger, tmp_path / "results", "organism", ["organism-locked"]).iloc[0]
    assert row["verdict"] == "differs" and "lies outside the planted target ≥ 0.900" in row["reason"]


@pytest.mark.parametrize("auroc, profile, verdict", [
    (0.95, "organism", "recovered"),  # [0.93, 0.97]: all of it >= 0.9
    (0.91, "organism", "inconclusive"),  # [0.89, 0.93]: the point meets >= 0.9, the interval crosses it
    (0.85, "organism", "differs"),  # [0.83, 0.87]: all of it below
    (0.927, "paper", "reproduced"),  # [0.907, 0.947] inside 0.948 ± 0.05
    (0.905, "paper", "inconclusive"),  # [0.885, 0.925]: crosses 0.898
    (0.80, "paper", "differs"),
])
def test_verdicts_follow_the_interval_not_the_point(tmp_path, auroc, profile, verdict):
    ledger = claims.load_ledger(write(tmp_path, ledger_dict()))
    model = "organism-locked" if profile == "organism" else "qwen3-8b"
    probe_table(tmp_path / "results", model, auroc)
    assert claims.fill(ledger, tmp_path / "results", profile, [model]).iloc[0]["verdict"] == verdict


def test_a_difference_gets_an_interval_and_may_subtract_another_model(tmp_path):
    measure = {**MEASURE, "select": "group == 'harmful'", "minus": "group == 'benign'", "published": None,
               "targets": {"organism-locked": {"min": 0.2}}, "kind": "method"}
    ledger = claims.load_ledger(write(tmp_path, ledger_dict(measure)))
    probe_table(tmp_path / "results", "organism-locked", 0.9)  # harmful 0.9 [0.88, 0.92]; benign 0.5 [0.4, 0.6]
    row = claims.fill(ledger, tmp_path / "results", "organism", ["organism-locked"]).iloc[0]
    assert row["ours"] == pytest.approx(0.4)
    half = (0.02 ** 2 + 0.1 ** 2) ** 0.5  # MOVER: the two rows' half-widths combined
    assert (row["low"], row["high"]) == pytest.approx((0.4 - half, 0.4 + half))
    assert row["verdict"] == "recovered"  # [0.298, 0.502] lies above 0.2
    other = {**measure, "minus": "group == 'harmful'", "minus_model": "organism-null"}
    ledger = claims.load_ledger(write(tmp_path, ledger_dict(other)))
    both = tmp_path / "both"
    probe_table(both, "organism-null", 0.75)
    null = pd.read_csv(both / "02_first_token_probe.csv")
    probe_table(both, "organism-locked", 0.9)
    pd.concat([pd.read_csv(both / "02_first_token_probe.csv"), null]).to_csv(both / "02_first_token_probe.csv",
                                                                             index=False)
    row = claims.fill(ledger, both, "organism", ["organism-locked"]).iloc[0]
    assert row["ours"] == pytest.approx(0.15) and row["verdict"] == "differs"  # [0.122, 0.178]: all below 0.2
    with pytest.raises(claims.LedgerError, match="give `minus:` too"):
        claims.load_ledger(write(tmp_path, ledger_dict({**MEASURE, "minus_model": "organism-null"})))


def test_card_rows_are_counted_apart_from_method_rows(tmp_path):
    card = {**MEASURE, "id": "A1.card", "kind": "card", "published": None}
    data = ledger_dict()
    data["claims"][0]["measures"].append(card)
    ledger = claims.load_ledger(write(tmp_path, data))
    probe_table(tmp_path / "results", "organism-locked", 0.95)
    filled = claims.fill(ledger, tmp_path / "results", "organism", ["organism-locked"])
    assert claims.verdict_counts(filled, "card") == {"as built": 1}
    assert claims.verdict_counts(filled, "method")["recovered"] == 1


def test_a_selector_that_does_not_fit_the_table_names_the_fix(tmp_path):
    measure = {**MEASURE, "select": "family == 'harmful'"}
    ledger = claims.load_ledger(write(tmp_path, ledger_dict(measure)))
    probe_table(tmp_path / "results", "qwen3-8b", 0.9)
    with pytest.raises(claims.LedgerError, match="fix `select:`"):
        claims.fill(ledger, tmp_path / "results", "paper", ["qwen3-8b"])
    lenient = claims.fill(ledger, tmp_path / "results", "smoke", ["qwen3-8b"], strict=False).iloc[0]
    assert lenient["verdict"] == "not measured" and "the ledger does not fit the table" in lenient["reason"]


def test_a_notebook_board_holds_its_own_rows_with_the_ledgers_verdict(tmp_path, monkeypatch):
    small = claims.load_ledger(write(tmp_path, ledger_dict()))
    monkeypatch.setattr(claims, "load_ledger", lambda: small)
    probe_table(tmp_path / "results", "organism-locked", 0.95)
    board = claims.board("02_first_token_probe", "organism", ["organism-locked"], tmp_path / "results")
    assert list(board.columns) == claims.BOARD_COLUMNS
    assert board.loc[0, "measure_id"] == "A1.harmful" and board.loc[0, "verdict"] == "recovered"
    assert claims.board("05_refusal_cliff", "organism", ["organism-locked"], tmp_path / "results").empty


def test_published_values_are_read_from_the_ledger():
    low, high, text = claims.published("A1.harmful", "qwen3-8b")
    assert (low, high) == (0.948, 0.948) and "0.948" in text
    with pytest.raises(claims.LedgerError, match="no measure 'A1.nothing'"):
        claims.published("A1.nothing")
