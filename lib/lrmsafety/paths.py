"""Where things live: the repository's folders and the benchmark data directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
CACHE_DIR = DATA_DIR / "cache"
# The organisms' training seed ($LRMSAFETY_ORGANISM_SEED, set by `make all SEED=<s>` and `make seeds`): seed 0 is
# the committed organisms in data/models/; another seed's live in data/models/seed-<s>/ and its runs write their
# results, figures and report under <profile>/seed-<s>/ (lrmsafety.seeds).
ORGANISM_SEED = int(os.environ.get("LRMSAFETY_ORGANISM_SEED") or 0)
# the organisms; $LRMSAFETY_MODELS_DIR points elsewhere (the tests train smoke-size organisms into a temporary one)
MODELS_DIR = Path(os.environ.get("LRMSAFETY_MODELS_DIR",
                                 DATA_DIR / "models" / (f"seed-{ORGANISM_SEED}" if ORGANISM_SEED else "")))
RESULTS_DIR = DATA_DIR / "results"
# the profiles; $LRMSAFETY_PARAMS_DIR points elsewhere (the vLLM lane runs a profile of its own from a temporary one)
PARAMS_DIR = Path(os.environ.get("LRMSAFETY_PARAMS_DIR", REPO_ROOT / "params"))
FIGURES_DIR = REPO_ROOT / "figures"

# The offline benchmark copies sit in ../shared/data beside a development checkout; readers get them online.
_SHARED_DATA_CANDIDATES = (REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "shared" / "data")


def find_benchmark_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The folder that holds offline benchmark copies, or None when there is none (then loaders go online).

    Order: the explicit argument, $LRMSAFETY_DATA_DIR, data/raw/ of this repository, ../shared/data.
    """
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"benchmark data directory {path} does not exist; pass an existing folder, or None to load online"
            )
        return path
    env = os.environ.get("LRMSAFETY_DATA_DIR")
    if env:
        return find_benchmark_dir(env)
    for candidate in (DATA_DIR / "raw", *_SHARED_DATA_CANDIDATES):
        if candidate.is_dir() and any(candidate.iterdir()):
            return candidate
    return None


def figures_dir(profile: str) -> Path:
    path = FIGURES_DIR / profile
    path.mkdir(parents=True, exist_ok=True)
    return path
