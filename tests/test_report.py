"""The report shows what the result tables hold: Markdown, self-contained HTML, rendered notebooks; the committed
report links only committed files."""

import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from ledger_fixtures import ledger_dict, probe_table, write

from lrmsafety import ledger as claims
from lrmsafety import report


def test_a_known_value_reaches_the_rendered_report(tmp_path):
    ledger = claims.load_ledger(write(tmp_path, ledger_dict()))
    results = tmp_path / "results"
    probe_table(results, "qwen3-8b", 0.927)
    filled = claims.fill(ledger, results, "paper", ["qwen3-8b"])
    row = filled[filled["measure_id"] == "A1.harmful"].iloc[0]
    assert (row["ours"], row["low"], row["high"], row["n"]) == pytest.approx((0.927, 0.907, 0.947, 120))
    # the whole interval lies within 0.05 of this model's own value 0.948
    assert row["verdict"] == "reproduced" and "0.948" in row["reason"]
    html = report.write_report(filled, ledger, "paper", tmp_path / "paper", tmp_path / "figures", None, [],
                               claims.tables_read(filled, results)).read_text()
    markdown = (tmp_path / "paper" / "index.md").read_text()
    assert "| first-token probe AUROC, harmful | method | qwen3-8b | 0.948 |" in markdown
    assert "<td>0.927</td>" in html and "<td>0.907–0.947</td>" in html and "reproduced</strong>" in html


def test_a_missing_table_is_not_measured_and_says_why(tmp_path):
    ledger = claims.load_ledger(write(tmp_path, ledger_dict()))
    filled = claims.fill(ledger, tmp_path / "no-results", "paper", ["qwen3-8b"])
    row = filled[filled["measure_id"] == "A1.harmful"].iloc[0]
    assert row["verdict"] == "not measured" and "02_first_token_probe.csv missing" in row["reason"]
    assert (filled[filled["claim_id"] == "X7"]["reason"] == "later").all()  # claims never disappear
    markdown = report.markdown_report(filled, ledger, "paper", None, {}, [], {})
    assert "**not measured** | 02_first_token_probe.csv missing" in markdown


@pytest.fixture
def organism_ledger(tmp_path):
    """The real ledger filled on a profile with one table (the locked organism's probe): (ledger, models, results,
    filled)."""
    import matplotlib

    matplotlib.use("Agg")
    ledger = claims.load_ledger()
    models = ["organism-locked", "organism-deliberative"]
    results = tmp_path / "results"
    probe_table(results, "organism-locked", 0.95, group="family=jailbreak")
    return ledger, models, results, claims.fill(ledger, results, "organism", models)


def test_every_file_the_html_links_exists(tmp_path, organism_ledger):
    """The real ledger on an empty profile (every table missing), with a summary and a notebook figure."""
    ledger, models, results, filled = organism_ledger
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
    # the rendered page is not committed: the report links the notebook's committed twin instead
    source = os.path.relpath(report.NOTEBOOKS_DIR / "02_first_token_probe.ipynb", tmp_path / "paper")
    assert source in linked and not any(p.endswith(".html") for p in linked)
    assert all((html_path.parent / p).exists() for p in linked), linked
    assert "These are controls, not the papers' models" in html and "data:image/png;base64," in html


def test_the_summary_legend_lists_only_what_is_drawn(organism_ledger):
    ledger, models, _, filled = organism_ledger

    def drawn_and_listed(frame):
        fig = report.summary_figure(frame, ledger, models, control=True)
        diamonds = any(line.get_marker() == "D" for ax in fig.axes for line in ax.lines)
        return diamonds, "published (value)" in [t.get_text() for t in fig.legends[0].get_texts()]

    assert drawn_and_listed(filled) == (False, False)  # the organism headline rows publish ranges and bounds only
    point = filled.copy()
    first = point["headline"].fillna(False).astype(bool).idxmax()
    point.loc[point["measure_id"] == point.loc[first, "measure_id"], ["published_low", "published_high"]] = 0.5
    assert drawn_and_listed(point) == (True, True)


def test_rendered_notebooks_keep_outputs_and_lose_progress_bars(tmp_path):
    cell = nbformat.v4.new_code_cell("print('AUROC 0.93')")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="\rrollouts:  50%|#####     | 4/8"),
                    nbformat.v4.new_output("display_data", data={
                        "text/plain": "generate:  50%|#####     | 4/8",
                        "application/vnd.jupyter.widget-view+json": {"model_id": "a1", "version_major": 2,
                                                                     "version_minor": 0}}),
                    nbformat.v4.new_output("stream", name="stderr", text="UserWarning: a real warning\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="AUROC 0.93\n")]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "02_first_token_probe.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "10_report.ipynb")
    (tmp_path / "vllm").mkdir()  # another run's notebooks (make all BACKEND=vllm, or MODEL=): its report renders them
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "vllm" / "01_rollouts.ipynb")
    pages = report.render_notebooks(tmp_path, tmp_path / "html")
    assert [p.name for p in pages] == ["02_first_token_probe.html"]
    text = pages[0].read_text()
    assert "AUROC 0.93" in text and "a real warning" in text
    assert "4/8" not in text and "generate:" not in text


def _tracked_files() -> set[str]:
    root = report.REPO_ROOT
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return set()
    return set(filter(None, listed.stdout.split("\0")))


TRACKED = _tracked_files()
COMMITTED_PAGES = sorted(f for f in TRACKED if re.fullmatch(r"paper/.+/index\.(md|html)", f))


@pytest.mark.skipif(not TRACKED, reason="not a git checkout")
@pytest.mark.parametrize("page", COMMITTED_PAGES or ["none"])
def test_the_committed_report_links_only_committed_files(page):
    """A fresh clone has only what is committed: every relative link of a committed report page must be in git."""
    if page == "none":
        pytest.skip("no report is committed")
    text = (report.REPO_ROOT / page).read_text()
    links = (report.linked_paths(text) if page.endswith(".html") else
             [p for p in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"^(#|https?:|mailto:)", p)])
    assert links, f"{page} links nothing: the pattern no longer finds its links"
    resolved = {link: os.path.normpath(Path(page).parent / link.split("#")[0]) for link in links}
    missing = sorted(link for link, path in resolved.items() if path not in TRACKED)
    assert not missing, f"{page} links files a fresh clone does not have: {missing}"
