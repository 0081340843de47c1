"""Named artifacts between notebooks: what one notebook stores, the next opens by name.

A notebook that produces rollouts another one reads *publishes* them: a small file
``data/results/<profile>/artifacts/<notebook>-rollouts-<model>.json`` names the rollout cache they live in and the
rows it returned. A reader then opens them with ``S.rollouts("01", model)``, without loading the model or rebuilding
the decoding settings that key the cache, and gets the same rows in the same order as the producer did. Tables and
tensors are opened the same way (``S.table``, ``S.judged``, ``S.path``); a missing artifact says which notebook to
run first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import paths
from .store import _atomic_write_text, read_parts, rollout_rows


class MissingArtifact(FileNotFoundError):
    """An artifact an earlier notebook has not written yet; the message names the notebook to run."""


NOTEBOOK_FILES = {path.stem[:2]: path.stem for path in (paths.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")}


class Artifacts:
    """The artifacts of one run (``S = artifacts.Artifacts(profile, model, P.backend)``): ``S.cache`` and ``S.results``
    are its cache and results folders. A run of one model in place of the profile's list (``make all MODEL=...``) has
    results, figures and report of its own (``S.run`` = ``<profile>/<model>``), so that it never overwrites the
    profile's; so has a run through vLLM (``make all BACKEND=vllm``: ``<profile>/vllm``, or
    ``<profile>/<model>/vllm``), so that it can be compared with the transformers run, and a run on the organisms of
    another training seed (``<profile>/seed-<s>``, lrmsafety.seeds). The cache is the profile's: its keys name the
    model and its weights, and the rollouts' keys the backend."""

    def __init__(self, profile: str, model: str | None = None, backend: str = "transformers"):
        self.profile, self.model, self.backend = profile, model, backend
        self.run = "/".join([profile, *([model] if model else []), *(["vllm"] if backend == "vllm" else [])])
        if paths.ORGANISM_SEED:  # the organisms of another training seed (make all SEED=<s>): their own run folders
            self.run += f"/seed-{paths.ORGANISM_SEED}"
        self.cache = paths.CACHE_DIR / profile
        self.results = paths.RESULTS_DIR / self.run
        self.index = self.results / "artifacts"
        self.results.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ writing
    def publish_rollouts(self, notebook: str, model: str, rollouts: pd.DataFrame) -> Path:
        """Name the rollout cache ``rollouts`` (``engine.generate.rollouts``' frame) came from, for later readers."""
        hashes = rollouts["config_hash"].dropna().unique().tolist() if "config_hash" in rollouts else []
        if len(hashes) != 1:
            raise ValueError(f"rollouts to publish must come from one cached configuration; found {len(hashes)}")
        store = next(self.cache.glob(f"*-{hashes[0]}"), None)
        if store is None:
            raise FileNotFoundError(f"no cache folder ending in -{hashes[0]} under {self.cache}")
        record = {"notebook": notebook, "model": model, "store": store.name,
                  "prompt_ids": rollouts["prompt_id"].drop_duplicates().tolist(),
                  "samples_per_prompt": int(rollouts["sample_index"].max()) + 1, "rows": len(rollouts)}
        path = self._pointer(notebook, "rollouts", model)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(path, json.dumps(record, indent=1))
        return path

    # ------------------------------------------------------------------ reading
    def rollouts(self, notebook: str, model: str) -> pd.DataFrame:
        """The rollouts ``notebook`` published for ``model``: the rows it returned, in its order."""
        pointer = self._pointer(notebook, "rollouts", model)
        if not pointer.exists():
            raise MissingArtifact(self._missing(notebook, f"its rollouts of {model}"))
        record = json.loads(pointer.read_text())
        stored = read_parts(self.cache / record["store"], ["prompt_id", "sample_index"])
        if stored.empty:
            raise MissingArtifact(self._missing(notebook, f"the rollout cache {record['store']} (deleted?)"))
        # the producer's rows, in its order (engine.generate.rollouts returns the same selection)
        frame = rollout_rows(stored, record["prompt_ids"], record["samples_per_prompt"])
        if len(frame) != record["rows"]:
            raise MissingArtifact(self._missing(notebook, f"all {record['rows']} rollouts of {model} (the cache holds "
                                                          f"{len(frame)})"))
        return frame

    def judged(self, model: str, columns: list[str] | None = None) -> pd.DataFrame:
        """01's rollouts of ``model`` with every judge's verdict and each paper's label."""
        return self._read(self.results / f"01_judged_{model}.parquet", "01", columns)

    def table(self, name: str) -> pd.DataFrame:
        """A result table by its file name without extension, e.g. ``05_refusal_cliff``."""
        return self._read(self.results / f"{name}.csv", name[:2])

    def path(self, notebook: str, relative: str, folder: str = "cache") -> Path:
        """A file an earlier notebook wrote under the profile's cache (or results) folder; it must exist."""
        path = (self.cache if folder == "cache" else self.results) / relative
        if not path.exists():
            raise MissingArtifact(self._missing(notebook, relative))
        return path

    # ------------------------------------------------------------------ internals
    def _pointer(self, notebook: str, kind: str, model: str) -> Path:
        return self.index / f"{notebook}-{kind}-{model}.json"

    def _read(self, path: Path, notebook: str, columns=None) -> pd.DataFrame:
        if not path.exists():
            raise MissingArtifact(self._missing(notebook, path.name))
        return pd.read_parquet(path, columns=columns) if path.suffix == ".parquet" else pd.read_csv(path)

    def _missing(self, notebook: str, what: str) -> str:
        target = NOTEBOOK_FILES.get(notebook, notebook)
        model = f" MODEL={self.model}" if self.model else ""
        backend = " BACKEND=vllm" if self.backend == "vllm" else ""
        return (f"{what} not found for {self.run!r}: run {target} first "
                f"(make build/{self.run}/{target}.ipynb PROFILE={self.profile}{model}{backend})")
