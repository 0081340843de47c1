"""The claims ledger validates with clear errors, and the report shows what the result tables hold."""

import copy

import nbformat
import pandas as pd
import pytest
import yaml

from lrmsafety import ledger as claims
from lrmsafety import report

MEASURE = {"id": "A1.harmful", "what": "first-token probe AUROC, harmful", "notebook": "02_first_token_probe",
           "table": "02_first_token_probe.csv", "select": "group == 'harmful'", "value": "auroc",
           "low": "auroc_lo", "high": "auroc_hi", "n": "n",
           "published": {"range": [0.875, 0.948], "per_model": {"qwen3-8b": 0.948}, "source": "Paper A, Table 1",
                         "confidence": "secondary"},
           "tolerance": 0.05, "targets": {"organism-locked": {"min": 0.9}}, "headline": ["organism", "paper"]}


def ledger_dict(measure=MEASURE):
    claims = [{"id": "A1", "paper": "A", "checklist": 1, "claim": "The first token predicts refusal.",
               "measures": [copy.deepcopy(measure)]}]
    claims += [{"id": f"X{i}", "paper": "C", "checklist": i, "claim": f"claim {i}", "not_measured_because": "later"}
               for i in range(2, 15)]
    return {"papers": {"A": 'Ri et al., "Thinking"', "B": 'Yin et al., "Cliff"', "C": 'Jiang et al., "SafeChain"'},
            "organisms": {"organism-locked": "locks in early"}, "claims": claims}


def write(tmp_path, data):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


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


def probe_table(results, model, auroc, group="harmful"):
    results.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"model": model, "feature": "first thinking token", "group": [group, "benign"],
                  "auroc": [auroc, 0.5], "auroc_lo": [auroc - 0.02, 0.4], "auroc_hi": [auroc + 0.02, 0.6],
                  "n": [120, 80]}).to_csv(results / "02_first_token_probe.csv", index=False)


def test_a_known_value_reaches_the_rendered_report(tmp_path):
    ledger = claims.load_ledger(write(tmp_path, ledger_dict()))
    results = tmp_path / "results"
    probe_table(results, "qwen3-8b", 0.917)
    filled = claims.fill(ledger, results, "paper", ["qwen3-8b"])
    row = filled[filled["measure_id"] == "A1.harmful"].iloc[0]
    assert (row["ours"], row["low"], row["high"], row["n"]) == (0.917, 0.897, 0.937, 120)
    assert row["verdict"] == "reproduced" and "0.948" in row["reason"]  # this model's own value, within 0.05
    html = report.write_report(filled, ledger, "paper", tmp_path / "paper", tmp_path / "figures", None, [],
                               claims.tables_read(filled, results)).read_text()
    assert "| first-token probe AUROC, harmful | qwen3-8b | 0.948 |" in (tmp_path / "paper" / "index.md").read_text()
    assert "<td>0.917</td>" in html and "<td>0.897–0.937</td>" in html and "reproduced</strong>" in html


def test_organisms_are_judged_against_their_planted_target(tmp_path):
    ledger = claims.load_ledger(write(tmp_path, ledger_dict()))
    probe_table(tmp_path / "results", "organism-locked", 0.62)
    row = claims.fill(ledger, tmp_path / "results", "organism", ["organism-locked"]).iloc[0]
    assert row["verdict"] == "differs" and "misses the planted target ≥ 0.900" in row["reason"]


def test_a_missing_table_is_not_measured_and_says_why(tmp_path):
    ledger = claims.load_ledger(write(tmp_path, ledger_dict()))
    filled = claims.fill(ledger, tmp_path / "no-results", "paper", ["qwen3-8b"])
    row = filled[filled["measure_id"] == "A1.harmful"].iloc[0]
    assert row["verdict"] == "not measured" and "02_first_token_probe.csv missing" in row["reason"]
    assert (filled[filled["claim_id"] == "X7"]["reason"] == "later").all()  # claims never disappear
    markdown = report.markdown_report(filled, ledger, "paper", None, {}, [], {})
    assert "**not measured** | 02_first_token_probe.csv missing" in markdown


def test_a_selector_that_does_not_fit_the_table_names_the_fix(tmp_path):
    measure = {**MEASURE, "select": "family == 'harmful'"}
    ledger = claims.load_ledger(write(tmp_path, ledger_dict(measure)))
    probe_table(tmp_path / "results", "qwen3-8b", 0.9)
    with pytest.raises(claims.LedgerError, match="fix `select:`"):
        claims.fill(ledger, tmp_path / "results", "paper", ["qwen3-8b"])
    lenient = claims.fill(ledger, tmp_path / "results", "smoke", ["qwen3-8b"], strict=False).iloc[0]
    assert lenient["verdict"] == "not measured" and "the ledger does not fit the table" in lenient["reason"]


def test_every_file_the_html_links_exists(tmp_path):
    """The real ledger on an empty profile (every table missing), with a summary and a notebook figure."""
    import matplotlib

    matplotlib.use("Agg")
    ledger = claims.load_ledger()
    models = ["organism-locked", "organism-deliberative"]
    results = tmp_path / "results"
    probe_table(results, "organism-locked", 0.95, group="family=jailbreak")
    filled = claims.fill(ledger, results, "organism", models)
    figures = tmp_path / "figures"
    figures.mkdir()
    fig = report.summary_figure(filled, ledger, models, control=True)
    fig.savefig(figures / "10_summary.png")
    fig.savefig(figures / "02_layer_sweep.png")
    page = tmp_path / "paper" / "notebooks" / "02_first_token_probe.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>")
    html_path = report.write_report(filled, ledger, "organism", tmp_path / "paper", figures,
                                    figures / "10_summary.png", [page], claims.tables_read(filled, results))
    html = html_path.read_text()
    linked = report.linked_paths(html)
    assert "../figures/10_summary.png" in linked and "../figures/02_layer_sweep.png" in linked
    assert "notebooks/02_first_token_probe.html" in linked
    assert all((html_path.parent / p).exists() for p in linked), linked
    assert "These are controls, not the papers' models" in html and "data:image/png;base64," in html


def test_rendered_notebooks_keep_outputs_and_lose_progress_bars(tmp_path):
    cell = nbformat.v4.new_code_cell("print('AUROC 0.93')")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="\rrollouts:  50%|#####     | 4/8"),
                    nbformat.v4.new_output("stream", name="stderr", text="TqdmWarning: IProgress not found.\n"
                                           "  from .autonotebook import tqdm as notebook_tqdm\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="UserWarning: a real warning\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="AUROC 0.93\n")]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "02_first_token_probe.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "10_report.ipynb")
    pages = report.render_notebooks(tmp_path, tmp_path / "html")
    assert [p.name for p in pages] == ["02_first_token_probe.html"]
    text = pages[0].read_text()
    assert "AUROC 0.93" in text and "a real warning" in text
    assert "4/8" not in text and "IProgress" not in text
