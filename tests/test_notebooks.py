"""Every notebook runs end to end on the smoke profile, in order, through the same path `make all` uses."""

import pytest

from lrmsafety import models, pipeline
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
