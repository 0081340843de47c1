"""Every notebook runs end to end, in order, through the same path `make all` uses: on the smoke profile (the
organisms), on the paper-smoke profile (the paper profile's code path with a tiny random-weight Qwen3, the real
Qwen3 tokenizer, real benchmark prompts and stand-in guards), and on paper-lite-smoke (paper-lite's, likewise)."""

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
        _check_tables(results, started, py_path.stem)
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


def test_notebooks_run_on_the_paper_lite_smoke_profile(tmp_path, qwen3_tokenizer_path):
    """paper-lite (each paper's headline claim in an afternoon of one GPU) through its own notebooks, the list make
    all runs, with its own options: one guard per paper's label, the 20% cut alone, 3% of the heads against random
    draws, zeroing without rescaling on the refill scheduler, paper B's prompt sets. Tiny stand-ins, as paper-smoke."""
    if paths.find_benchmark_dir() is None:
        pytest.skip("paper-lite-smoke reads the offline benchmark copies (../shared/data or data/raw); none here")
    profile = params.load("paper-lite-smoke")
    lite = params.load("paper-lite")
    for key in ("notebooks", "cut_percents", "head_shares", "random_draws", "rescale_rules", "ablation_group_size",
                "cliff_prompt_sets", "prompt_sets"):
        assert getattr(profile, key) == getattr(lite, key), key  # the smoke keeps what makes the profile paper-lite
    results = paths.RESULTS_DIR / "paper-lite-smoke"
    selected = [path for path in NOTEBOOKS if path.stem in profile.notebooks]
    assert [path.stem for path in selected] == sorted(profile.notebooks)
    for py_path in selected:
        output = tmp_path / f"{py_path.stem}.ipynb"
        started = time.time()
        pipeline.run(py_path, "paper-lite-smoke", output)
        assert output.exists(), py_path.name
        _check_tables(results, started, py_path.stem)
    ablations = pd.read_csv(results / "06_refusal_heads.csv")  # the unablated model, then 3% of the heads, top and
    assert set(ablations["share"]) == {0.0, 0.03} and set(ablations["rescale"]) == {"none"}  # random, no rescaling
    draws = set(ablations.loc[ablations["selection"] == "random", "draw"]) - {-1}  # -1: the draws pooled
    assert draws == set(range(profile.random_draws))


def _check_tables(results, since: float, stem: str) -> None:
    """The tables a notebook wrote: not empty, not all NaN, an NA value says why it is missing, and each carries its
    paper's label."""
    for table_path in _tables_written(results, since):
        table = pd.read_csv(table_path)
        assert len(table), table_path.name
        values = table.select_dtypes("number")
        assert values.notna().any().any(), f"{table_path.name} is all NaN"
        if "value" in table:
            na = table["value"].isna()
            assert not na.any() or ("reason" in table and table.loc[na, "reason"].notna().all()) or (
                "note" in table and table.loc[na, "note"].notna().all()), table_path.name
        if stem in PAPER_LABEL_COLUMN:
            column = PAPER_LABEL_COLUMN[stem]
            assert column in table and table[column].notna().all(), (table_path.name, column)


# the column of each notebook's result tables that names the label its rates are computed from
PAPER_LABEL_COLUMN = {"01_rollouts": "label", "06_refusal_heads": "label", "08_interventions": "label",
                      "09_cliff_as_judge": "judge"}
