"""Every notebook runs end to end, in order, through the same path `make all` uses: on the smoke profile (the
organisms), and on the paper-smoke profile (the paper profile's code path with a tiny random-weight Qwen3, the real
Qwen3 tokenizer, real benchmark prompts and stand-in guards)."""

import time

import pandas as pd
import pytest

from lrmsafety import params, paths, pipeline, registry
from lrmsafety.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
pytestmark = pytest.mark.slow  # the slow lane


@pytest.fixture(scope="module")
def organisms_present():
    for name in ("organism-locked", "organism-deliberative"):
        path = registry.REGISTRY[name].local_path()
        if not (path / "config.json").exists():
            pytest.fail(f"{name} is missing from {path}: the checkpoints are committed; restore them with "
                        f"`git checkout -- data/models/{name}`")


def test_notebooks_run_on_the_smoke_profile(tmp_path, organisms_present):
    for py_path in NOTEBOOKS:
        output = tmp_path / f"{py_path.stem}.ipynb"
        pipeline.run(py_path, "smoke", output)
        assert output.exists(), py_path.name


def _tables_written(folder, since: float) -> list:
    return sorted(path for path in folder.glob("*.csv") if path.stat().st_mtime >= since)


def test_notebooks_run_on_the_paper_smoke_profile(tmp_path, qwen3_tokenizer_path):
    """Every notebook, 00 to 10, through the paper profile's code path. A random-weight model never refuses and never
    closes its thinking, so paper B's probe, the cliff and the fine-tunes have nothing to train on: each notebook
    must say so and still write its tables, each carrying its paper's label, none of them all NaN."""
    if paths.find_benchmark_dir() is None:
        pytest.skip("paper-smoke reads the offline benchmark copies (../shared/data or data/raw); none here")
    results = paths.RESULTS_DIR / "paper-smoke"
    for py_path in NOTEBOOKS:
        output = tmp_path / f"{py_path.stem}.ipynb"
        started = time.time()
        pipeline.run(py_path, "paper-smoke", output)
        assert output.exists(), py_path.name
        if py_path.stem == "00_organism":
            continue  # the organisms' model card: empty on a profile without organisms, by design
        for table_path in _tables_written(results, started):
            table = pd.read_csv(table_path)
            assert len(table), table_path.name
            values = table.select_dtypes("number")
            assert values.notna().any().any(), f"{table_path.name} is all NaN"
            if "value" in table:
                na = table["value"].isna()
                # an NA value says why it is missing
                assert not na.any() or ("reason" in table and table.loc[na, "reason"].notna().all()) or (
                    "note" in table and table.loc[na, "note"].notna().all()), table_path.name
            if py_path.stem in PAPER_LABEL_COLUMN:
                column = PAPER_LABEL_COLUMN[py_path.stem]
                assert column in table and table[column].notna().all(), (table_path.name, column)
        if py_path.stem == "01_rollouts":
            # every paper's label is there for every rollout, with the judges' raw outputs: never a NaN table
            for name in params.load("paper-smoke").models:
                judged = pd.read_parquet(results / f"01_judged_{name}.parquet")
                for column in ("refused_a", "refusal_score_a", "refused_b", "unsafe_c", "refused", "safe",
                               "standin_guard.raw"):
                    assert judged[column].notna().all(), column
                assert judged["refused_a"].nunique() == 2  # the stand-in gives both outcomes, so 02-04 run
                metrics = pd.read_csv(results / "01_metrics.csv")
                assert metrics.loc[metrics["metric"].isin(["ASR", "ORR"]), "value"].notna().all()


# the column of each notebook's result tables that names the label its rates are computed from
PAPER_LABEL_COLUMN = {"01_rollouts": "label", "06_refusal_heads": "label", "08_interventions": "label",
                      "09_cliff_as_judge": "judge"}
