"""lrmsafety.artifacts: a reader opens what an earlier notebook stored, by name, in the producer's order."""

import pandas as pd
import pytest

from lrmsafety import artifacts, paths
from lrmsafety.store import TableStore, in_prompt_order


@pytest.fixture
def stages(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    return artifacts.Artifacts("mine")


def test_published_rollouts_read_back_as_the_producer_returned_them(stages):
    store = TableStore(stages.cache, "rollouts", {"decoding": 1}, key=["prompt_id", "sample_index"])
    rows = pd.DataFrame({"prompt_id": ["b", "a", "b", "a", "c"], "sample_index": [0, 0, 1, 1, 0],
                         "text": list("vwxyz"), "config_hash": store.hash})
    store.append(rows.iloc[:2])
    store.append(rows.iloc[2:])
    store.append(rows.iloc[:1].assign(text="later duplicate"))  # a second writer's copy: the first one wins
    returned = in_prompt_order(store.read().query("prompt_id != 'c'"), ["b", "a"])  # what rollouts() returns
    stages.publish_rollouts("01", "m", returned)
    pd.testing.assert_frame_equal(stages.rollouts("01", "m"), returned)


def test_a_missing_artifact_names_the_notebook_to_run(stages):
    with pytest.raises(artifacts.MissingArtifact, match=r"run 01_rollouts first \(make build/mine/01_rollouts"):
        stages.rollouts("01", "m")
    with pytest.raises(artifacts.MissingArtifact, match="run 05_refusal_cliff first"):
        stages.table("05_refusal_cliff")


def test_rollouts_from_two_configurations_are_refused(stages):
    frame = pd.DataFrame({"prompt_id": ["a", "b"], "sample_index": [0, 0], "config_hash": ["x", "y"]})
    with pytest.raises(ValueError, match="one cached configuration"):
        stages.publish_rollouts("01", "m", frame)


def test_a_run_of_one_model_keeps_its_results_apart_from_the_profiles(stages):
    one = artifacts.Artifacts("mine", "organism-locked")
    assert one.run == "mine/organism-locked" and one.results == stages.results / "organism-locked"
    assert one.cache == stages.cache  # the cache keys name the model: one cache serves both
    with pytest.raises(artifacts.MissingArtifact, match="PROFILE=mine MODEL=organism-locked"):
        one.rollouts("01", "organism-locked")
