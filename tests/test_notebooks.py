"""Every notebook runs end to end, in order, through the same path `make all` uses: on the smoke profile (the
organisms), and on the paper-smoke profile (the paper profile's code path with a tiny random-weight Qwen3, the real
Qwen3 tokenizer, real benchmark prompts and stand-in guards)."""

import pandas as pd
import pytest

from lrmsafety import models, paths, pipeline
from lrmsafety.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


@pytest.fixture(scope="module")
def organisms_present():
    for name in ("organism-locked", "organism-deliberative"):
        path = models.REGISTRY[name].local_path()
        if not (path / "config.json").exists():
            pytest.fail(f"{name} is missing from {path}: run `make organism` (the checkpoints are committed)")


def test_notebooks_run_on_the_smoke_profile(tmp_path, organisms_present):
    for py_path in NOTEBOOKS:
        output = tmp_path / f"{py_path.stem}.ipynb"
        pipeline.run(py_path, "smoke", output)
        assert output.exists(), py_path.name


# Paper B's notebooks and the interventions train a refusal probe or fine-tune on the model's own refusals; a
# random-weight model never refuses, so they stop with a clear "too few training rollouts" error there. Until they
# skip such a model cleanly (a tiny stand-in that refuses, or a per-model skip), they are left out of this test.
NOT_YET_ON_PAPER_SMOKE = {"05_refusal_cliff", "06_refusal_heads", "08_interventions", "09_cliff_as_judge"}


def test_notebooks_run_on_the_paper_smoke_profile(tmp_path, qwen3_tokenizer_path):
    if paths.find_benchmark_dir() is None:
        pytest.skip("paper-smoke reads the offline benchmark copies (../shared/data or data/raw); none here")
    for py_path in (p for p in NOTEBOOKS if p.stem not in NOT_YET_ON_PAPER_SMOKE):
        output = tmp_path / f"{py_path.stem}.ipynb"
        pipeline.run(py_path, "paper-smoke", output)
        assert output.exists(), py_path.name
        if py_path.stem == "01_rollouts":
            # every paper's label is there for every rollout, with the judges' raw outputs: never a NaN table
            params = pipeline.load_profile("paper-smoke")
            for name in params["models"]:
                judged = pd.read_parquet(paths.RESULTS_DIR / "paper-smoke" / f"01_judged_{name}.parquet")
                for column in ("refused_a", "refusal_score_a", "refused_b", "unsafe_c", "refused", "safe",
                               "standin_guard.raw"):
                    assert judged[column].notna().all(), column
                assert judged["refused_a"].nunique() == 2  # the stand-in gives both outcomes, so 02-04 run
                metrics = pd.read_csv(paths.RESULTS_DIR / "paper-smoke" / "01_metrics.csv")
                assert metrics.loc[metrics["metric"].isin(["ASR", "ORR"]), "value"].notna().all()
