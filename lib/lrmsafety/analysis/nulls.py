"""The permutation null of the whole first-token probe pipeline: prompts' label vectors exchanged, the pipeline
refitted on fixed folds, and each group's AUROC compared with its null distribution. And the null level of the
refusal valley's J(t) (:func:`separation_null`).

Labels are 1 = refusal, 0 = compliance throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .probes import CappedPCA, _check_binary, _positive_scores, auroc, first_token_probe_pipeline, group_folds

# ------------------------------------------------------------------------- permutation null of the whole pipeline


def permute_prompt_labels(labels, groups, rng: np.random.Generator, strata=None) -> np.ndarray:
    """Labels with whole prompts' label vectors exchanged between prompts.

    A prompt's rows keep their within-prompt pattern (its samples are correlated); prompts swap only with prompts of
    the same row count and, when `strata` (one value per row, constant within a prompt) is given, the same stratum,
    so that e.g. a family's refusal rate is kept and only the link between features and labels inside it is broken.
    """
    labels, groups = _check_binary(labels), np.asarray(groups)
    strata = np.zeros(len(labels), dtype=int) if strata is None else np.asarray(strata)
    if len(groups) != len(labels) or len(strata) != len(labels):
        raise ValueError(f"lengths differ: labels {len(labels)}, groups {len(groups)}, strata {len(strata)}")
    prompts, inverse = np.unique(groups, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == k) for k in range(len(prompts))]
    bins: dict = {}
    for k, rows in enumerate(rows_of):
        stratum = strata[rows]
        if (stratum != stratum[0]).any():
            raise ValueError(f"prompt {prompts[k]!r} spans several strata; strata must be constant within a prompt")
        bins.setdefault((stratum[0], len(rows)), []).append(k)
    out = labels.copy()
    for members in bins.values():
        for k, donor in zip(members, rng.permutation(members)):
            out[rows_of[k]] = labels[rows_of[donor]]
    return out


def _group_aurocs(labels, scores, masks: Mapping[str, np.ndarray]) -> dict:
    return {name: auroc(labels[mask], scores[mask]) for name, mask in masks.items()}


_UNSUPERVISED = (StandardScaler, CappedPCA, PCA)


class _FixedFoldScorer:
    """Out-of-fold scores for many label vectors on one fold partition. Steps before the final estimator that never
    see the labels (scaler, PCA) are fitted once per fold: refitting them per permutation would give the same result."""

    def __init__(self, features, folds, pipeline_factory):
        self.X, self.folds, self.factory = features, folds, pipeline_factory
        template = pipeline_factory()
        self.cached = isinstance(template, Pipeline) and all(isinstance(step, _UNSUPERVISED)
                                                             for _, step in template.steps[:-1])
        self.parts = []
        for k in np.unique(folds):
            train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            if self.cached:
                prefix = pipeline_factory()[:-1].fit(self.X[train])
                self.parts.append((train, test, prefix.transform(self.X[train]), prefix.transform(self.X[test])))
            else:
                self.parts.append((train, test, self.X[train], self.X[test]))

    def scores(self, labels) -> np.ndarray:
        out = np.full(len(labels), np.nan)
        for train, test, x_train, x_test in self.parts:
            if len(np.unique(labels[train])) < 2:
                raise ValueError("a fold's training rows hold a single class")
            model = self.factory()
            model = (model.steps[-1][1] if self.cached else model).fit(x_train, labels[train])
            out[test] = _positive_scores(model, x_test)
        return out


def _null_aurocs(scorer, permutations, masks):
    """AUROCs per group for each permuted label vector; None for a permutation that left a fold one-class."""
    out = []
    for permuted in permutations:
        try:
            out.append(_group_aurocs(permuted, scorer.scores(permuted), masks))
        except ValueError:
            out.append(None)
    return out


def permutation_test(features, labels, groups, named_groups: Mapping[str, np.ndarray] | None = None,
                     n_permutations: int = 199, strata=None, seed: int = 0, n_splits: int = 5, cv_seed: int = 42,
                     pipeline_factory: Callable[[], Pipeline] = first_token_probe_pipeline,
                     alternative: str = "greater", n_jobs: int = 1, cache_path=None) -> pd.DataFrame:
    """The out-of-fold AUROC of the whole cross-validated probe against its prompt-level permutation null.

    Each permutation exchanges whole prompts' labels (within `strata`, see permute_prompt_labels), then refits the
    classifier of every fold and scores out of fold, exactly as for the real labels: the null includes the variance
    of fitting, which a bootstrap of fixed out-of-fold scores does not. The folds (split by prompt, stratified on the
    real labels) are the same for the real and the permuted labels. p = (1 + #{null >= observed}) / (1 + valid
    permutations): the smallest p is 1 / (n_permutations + 1), so 199 permutations resolve p = 0.005.
    `alternative="two-sided"` compares |AUROC - 0.5|. One row per named group (boolean masks; "pooled" = all rows).

    The permutations are drawn up front from `seed`, so `n_jobs` (worker processes) changes the speed, not the
    result. With `cache_path` the table is stored beside a hash of every input and served from there while the
    inputs are the same (a rerun of the notebook refits nothing).
    """
    if alternative not in ("greater", "two-sided"):
        raise ValueError(f"alternative must be 'greater' or 'two-sided', not {alternative!r}")
    if n_permutations < 1:
        raise ValueError("n_permutations must be >= 1 (199 resolve p < 0.01)")
    labels, groups = _check_binary(labels), np.asarray(groups)
    X = features if isinstance(features, np.ndarray) else np.asarray(features, dtype=object)
    if len(X) != len(labels) or len(groups) != len(labels):
        raise ValueError(f"lengths differ: features {len(X)}, labels {len(labels)}, groups {len(groups)}")
    masks = {name: np.asarray(mask, dtype=bool) for name, mask in dict(named_groups or {}).items()}
    masks.setdefault("pooled", np.ones(len(labels), dtype=bool))
    if cache_path is not None:
        digest = _inputs_digest(X, labels, groups, strata, masks, pipeline_factory(),
                                (n_permutations, seed, n_splits, cv_seed, alternative))
        cached = _read_cached_table(cache_path, digest)
        if cached is not None:
            return cached
    scorer = _FixedFoldScorer(X, group_folds(labels, groups, n_splits, cv_seed), pipeline_factory)
    observed = _group_aurocs(labels, scorer.scores(labels), masks)
    rng = np.random.default_rng(seed)
    permutations = [permute_prompt_labels(labels, groups, rng, strata) for _ in range(n_permutations)]
    if n_jobs == 1:
        draws_per_permutation = _null_aurocs(scorer, permutations, masks)
    else:
        from joblib import Parallel, delayed

        chunks = np.array_split(np.arange(n_permutations), max(1, 4 * (n_jobs if n_jobs > 0 else 2)))
        parts = Parallel(n_jobs=n_jobs)(delayed(_null_aurocs)(scorer, [permutations[i] for i in chunk], masks)
                                        for chunk in chunks if len(chunk))
        draws_per_permutation = [values for part in parts for values in part]
    failed = sum(values is None for values in draws_per_permutation)  # a fold's training rows were one class
    null = {name: [values[name] for values in draws_per_permutation if values is not None] for name in masks}
    rows = []
    for name, value in observed.items():
        draws = np.asarray(null[name], dtype=float)
        draws = draws[np.isfinite(draws)]
        distance = (lambda a: np.abs(a - 0.5)) if alternative == "two-sided" else (lambda a: a)
        hits = distance(draws) >= distance(value) - 1e-12
        p = (1 + hits.sum()) / (1 + len(draws)) if np.isfinite(value) and len(draws) else float("nan")
        rows.append({"group": name, "auroc": value, "null_mean": draws.mean() if len(draws) else np.nan,
                     "null_low": np.percentile(draws, 2.5) if len(draws) else np.nan,
                     "null_high": np.percentile(draws, 97.5) if len(draws) else np.nan,
                     "perm_p": float(p), "n_permutations": len(draws), "failed_permutations": failed,
                     "n": int(masks[name].sum())})
    table = pd.DataFrame(rows)
    if cache_path is not None:
        _write_cached_table(cache_path, digest, table)
    return table


def separation_null(states, labels, permutations: int, seed: int = 0, quantile: float = 0.95,
                    chunk: int = 32) -> np.ndarray:
    """Per position, the ``quantile`` of J(t) (:func:`probes.separation_curve`) over ``permutations`` shuffles of
    the labels among the items: how high J reaches by chance at these class sizes and this many features, where
    the states carry nothing about the outcome. Same standardization as the curve; because the standardized states
    are centred, one class's mean fixes the other's, so each chunk of permutations is one matrix product."""
    X = np.asarray(states, dtype=np.float64)
    labels = _check_binary(labels).astype(bool)
    if X.ndim != 3 or len(X) != len(labels):
        raise ValueError(f"states must be (items, positions, features) with one label per item, got {X.shape}")
    n, positions, d = X.shape
    n_r = int(labels.sum())
    n_c = n - n_r
    if n_r == 0 or n_c == 0:
        raise ValueError("separation null needs both classes")
    sd = X.std(axis=0)
    Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    squares = (Z ** 2).sum(axis=-1)  # (items, positions)
    total = squares.sum(axis=0)
    Z = Z.reshape(n, positions * d)
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, permutations, chunk):
        masks = np.stack([rng.permutation(labels) for _ in range(min(chunk, permutations - start))]).astype(float)
        mean_sq = ((masks @ Z / n_r).reshape(len(masks), positions, d) ** 2).sum(axis=-1)  # ||mu_r||^2
        num = (1 + n_r / n_c) ** 2 * mean_sq  # mu_c = -(n_r / n_c) mu_r
        within_r = masks @ squares
        den = within_r / n_r - mean_sq + (total - within_r) / n_c - (n_r / n_c) ** 2 * mean_sq
        draws.append(np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0))
    return np.nanquantile(np.concatenate(draws), quantile, axis=0)


def _inputs_digest(X, labels, groups, strata, masks, pipeline, settings) -> str:
    import hashlib

    digest = hashlib.sha256()
    for array in (X, labels, groups, strata, *masks.values()):
        array = np.asarray(array if array is not None else [])
        digest.update(repr((array.shape, str(array.dtype))).encode())
        digest.update(repr(array.tolist()).encode() if array.dtype == object else np.ascontiguousarray(array).tobytes())
    digest.update(repr((sorted(masks), repr(pipeline), settings)).encode())
    return digest.hexdigest()[:16]


def _read_cached_table(path, digest: str) -> pd.DataFrame | None:
    import json
    from pathlib import Path

    path = Path(path)
    meta = path.with_suffix(path.suffix + ".json")
    if not (path.exists() and meta.exists()) or json.loads(meta.read_text()).get("inputs") != digest:
        return None
    return pd.read_csv(path)


def _write_cached_table(path, digest: str, table: pd.DataFrame) -> None:
    """The table, then the hash of its inputs, each written atomically: a crash leaves a mismatch, never a wrong hit."""
    import json
    from pathlib import Path

    from ..store import _atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(path, table.to_csv(index=False))
    _atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps({"inputs": digest}))
