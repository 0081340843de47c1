"""The README's numbers on the organisms are the committed results': its card table (00_organism's behaviour on seed
0) against paper/organism/seeds.csv, and its count of the ledger's verdicts against the committed report. A
retrained organism whose README was not brought along fails here."""

import re

import pandas as pd
import pytest

from lrmsafety.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
SEEDS = REPO_ROOT / "paper" / "organism" / "seeds.csv"
REPORT = REPO_ROOT / "paper" / "organism" / "index.md"
ROWS = {  # the README's row label -> the card's measure (organism.card)
    "benign requests complied with": "benign complied",
    "plain harmful requests refused": "harmful refused",
    "jailbreak-wrapped harmful requests refused": "jailbreak refused",
    "borderline requests refused": "borderline refused",
    "traces with a deliberation marker": "traces with a deliberation marker",
    'complied jailbreaks whose thinking concludes "harmful"': "complied jailbreaks whose thinking concludes harmful",
}
COLUMNS = ["organism-locked", "organism-deliberative", "organism-null"]


def readme_card() -> dict:
    """(label, organism) -> the cell's text, from the table under "The organisms' behaviour"."""
    start = README.index("| measure | locked | deliberative | null | built to show |")
    cells = {}
    for line in README[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        parts = [p.strip() for p in line.strip("|").split("|")]
        cells.update({(parts[0], organism): cell for organism, cell in zip(COLUMNS, parts[1:4])})
    return cells


def as_percent(value, low, high) -> str:
    return f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


@pytest.mark.skipif(not SEEDS.exists(), reason="no committed seed table")
def test_the_readme_card_is_seed_zeros_card():
    seeds = pd.read_csv(SEEDS)
    card = seeds[(seeds["source"] == "00 card") & (seeds["seed"] == 0)].set_index(["target_id", "organism"])
    cells = readme_card()
    assert {label for label, _ in cells} == set(ROWS), "the README's card rows are not the card's measures"
    for (label, organism), cell in cells.items():
        row = card.loc[(ROWS[label], organism)]
        expected = as_percent(row["value"], row["low"], row["high"])
        assert cell.split(" (of")[0] == expected, f"{label}, {organism}: README {cell!r}, results {expected!r}"
    held = int(card["verdict"].eq("as built").sum())
    assert f"{held} of {len(card)} targets are as built" in README


@pytest.mark.skipif(not REPORT.exists(), reason="no committed report")
def test_the_readme_counts_the_reports_verdicts():
    report = REPORT.read_text()
    methods = re.search(r"\*\*The methods:\*\* (\d+) recovered · (\d+) inconclusive", report)
    built = re.search(r"\*\*The organisms as built\*\*[^:]*: (\d+) as built", report)
    differ = re.search(r"\*\*The methods:\*\*[^\n]*?(\d+) differ", report)
    claimed = re.search(r"\*\*methods\*\* \(a paper's\s+method recovers what was planted\): (\d+) recovered, "
                        r"(\d+) inconclusive, (\d+) differ; the \*\*card\*\* \(an organism behaves as\s+built\): "
                        r"(\d+) as built", README)
    assert methods and built and claimed, "the report's or the README's verdict counts were not found"
    assert claimed.groups() == (methods[1], methods[2], differ[1] if differ else "0", built[1])
