"""Linear probes on hidden states: paper A's first-token probe (Table 1) and refusal valley (methods.md section 1).

Paper A's classifier (StandardScaler -> PCA(100) -> logistic regression, C = 0.03, balanced), its Youden thresholds
and its 500-resample intervals. Where we depart: folds are split by prompt (StratifiedGroupKFold; paper A's are by
row, which callers can still ask for with one group per row) and PCA is capped at the fold's size. Intervals resample
prompts over fixed out-of-fold scores (intervals.bootstrap_draws), as paper A's do.
Labels are 1 = refusal, 0 = compliance throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..intervals import bootstrap_draws

# --------------------------------------------------------------------------------------------- the classifier


class CappedPCA(TransformerMixin, BaseEstimator):
    """PCA whose size is min(max_components, n_samples - 1, n_features), decided when it is fitted.

    A fixed PCA(100) fails on small folds (smoke profiles, tiny models), so the cap is applied per fit. Rows that
    are all alike (a layer's states at one shared first token, such as the embedding layer) have no direction to
    keep: every component is 0 then (PCA would divide by their total variance, 0, for its explained-variance ratio).
    """

    def __init__(self, max_components: int = 100, random_state: int = 0):
        self.max_components = max_components
        self.random_state = random_state

    def fit(self, X, y=None):
        n, d = X.shape
        self.n_components_ = max(1, min(self.max_components, n - 1, d))
        varies = bool(np.ptp(np.asarray(X), axis=0).any())
        self.pca_ = PCA(n_components=self.n_components_, random_state=self.random_state).fit(X) if varies else None
        return self

    def transform(self, X):
        if self.pca_ is None:
            return np.zeros((len(X), self.n_components_))
        return self.pca_.transform(X)


def first_token_probe_pipeline(max_components: int = 100, C: float = 0.03) -> Pipeline:
    """StandardScaler -> PCA(<=100) -> LogisticRegression(C=0.03, balanced), as in paper A's Table 1."""
    return make_pipeline(
        StandardScaler(),
        CappedPCA(max_components=max_components),
        LogisticRegression(C=C, class_weight="balanced", max_iter=5000),
    )


def state_a_pipeline(C: float = 1.0) -> Pipeline:
    """Paper A's "State A" probe on the prompt-only state: standardized L2 logistic regression, C = 1."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))


def tfidf_token_pipeline() -> Pipeline:
    # Character n-grams: a first token is one short string (often whitespace or punctuation), which a word
    # tokenizer would turn into an empty document.
    return make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), lowercase=False),
        LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000),
    )


def _positive_scores(model, X) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.decision_function(X)


def youden_threshold(labels, scores) -> float:
    """The score threshold maximizing TPR - FPR (ties: the highest such threshold); predict 1 when score >= it.

    Paper A's rule (pipeline/representations/compute_kshop_bestpipe.py, ``youden``: ``thr[argmax(tpr - fpr)]`` over
    sklearn's ROC thresholds): when no threshold beats chance (TPR - FPR <= 0 everywhere, e.g. identical scores), the
    best point is the ROC curve's first one, whose threshold is +inf: predict 0 for every row (balanced accuracy 0.5).
    Callers compare ``score >= threshold``, which is False for every finite score. (Paper A returns 0.5 when the
    labels hold one class; we raise, and our callers skip such folds.)
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    if len(np.unique(labels)) < 2:
        raise ValueError("Youden threshold needs both classes")
    # drop_intermediate=False lists every threshold; the maximum of TPR - FPR and its first (highest-threshold)
    # position are the same as on sklearn's default, thinned curve, which keeps the ends of every straight run
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    # roc_curve's first point predicts nothing; its threshold is +inf (sklearn >= 1.3; max score + 1 before)
    return float("inf") if best == 0 else float(thr[best])


# ------------------------------------------------------------------------------------------ cross-validation


@dataclass
class ProbeCV:
    """Out-of-fold results of a cross-validated probe."""

    labels: np.ndarray
    groups: np.ndarray
    scores: np.ndarray  # out-of-fold scores
    predictions: np.ndarray  # out-of-fold 0/1 predictions at the fold's training Youden threshold
    folds: np.ndarray  # fold id of each row
    thresholds: np.ndarray  # per fold
    train_scores: np.ndarray = field(repr=False)  # (n_folds, n): in-sample scores, NaN on held-out rows
    threshold_from: str = "out_of_fold"  # which training-fold scores chose the Youden thresholds

    def threshold_scores(self, k: int) -> np.ndarray:
        """The scores of fold k's training rows that its Youden threshold is chosen on (NaN elsewhere)."""
        if self.threshold_from == "in_sample":
            return self.train_scores[k]
        return np.where(self.folds != k, self.scores, np.nan)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"group": self.groups, "label": self.labels, "score": self.scores,
             "prediction": self.predictions, "fold": self.folds}
        )


def _check_binary(labels) -> np.ndarray:
    labels = np.asarray(labels).astype(int)
    if not set(np.unique(labels)) <= {0, 1}:
        raise ValueError(f"labels must be 0/1, got values {sorted(set(np.unique(labels)))}")
    return labels


def group_folds(labels, groups, n_splits: int = 5, seed: int = 42) -> np.ndarray:
    """Fold id per row from StratifiedGroupKFold: every row of a prompt lands in the same fold."""
    labels, groups = _check_binary(labels), np.asarray(groups)
    counts = {c: (int((labels == c).sum()), len(np.unique(groups[labels == c]))) for c in (0, 1)}
    if min(n_prompts for _, n_prompts in counts.values()) < n_splits:
        desc = ", ".join(f"class {c}: {r} rows in {p} prompts" for c, (r, p) in counts.items())
        raise ValueError(f"cannot stratify {n_splits} folds by prompt ({desc}); each class needs >= {n_splits} prompts")
    folds = np.full(len(labels), -1)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[test] = k
    for k in range(n_splits):
        train_classes = np.unique(labels[folds != k])
        if len(train_classes) < 2:
            raise ValueError(f"fold {k}: its training rows hold only class {train_classes.tolist()}")
    return folds


def cross_validated_probe(
    features,
    labels,
    groups,
    n_splits: int = 5,
    seed: int = 42,
    pipeline_factory: Callable[[], Pipeline] = first_token_probe_pipeline,
    threshold_from: str = "out_of_fold",
) -> ProbeCV:
    """K-fold CV split by prompt: out-of-fold scores and predictions at each fold's training Youden threshold.

    ``threshold_from="out_of_fold"`` (paper A's code) picks fold k's threshold on the out-of-fold scores of the
    rows in the other folds; "in_sample" on the scores fold k's own model gives its training rows (optimistic:
    a model separates its training rows better than new ones).
    """
    if threshold_from not in ("out_of_fold", "in_sample"):
        raise ValueError(f"threshold_from must be 'out_of_fold' or 'in_sample', got {threshold_from!r}")
    labels = _check_binary(labels)
    groups = np.asarray(groups)
    X = features if isinstance(features, np.ndarray) else np.asarray(features, dtype=object)
    if len(X) != len(labels) or len(groups) != len(labels):
        raise ValueError(f"lengths differ: features {len(X)}, labels {len(labels)}, groups {len(groups)}")
    folds = group_folds(labels, groups, n_splits, seed)
    n = len(labels)
    scores, preds = np.full(n, np.nan), np.zeros(n, dtype=int)
    thresholds = np.full(n_splits, np.nan)
    train_scores = np.full((n_splits, n), np.nan)
    for k in range(n_splits):
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        model = pipeline_factory().fit(X[train], labels[train])
        train_scores[k, train] = _positive_scores(model, X[train])
        scores[test] = _positive_scores(model, X[test])
    cv = ProbeCV(labels, groups, scores, preds, folds, thresholds, train_scores, threshold_from)
    for k in range(n_splits):
        train, test = folds != k, folds == k
        thresholds[k] = youden_threshold(labels[train], cv.threshold_scores(k)[train])
        preds[test] = (scores[test] >= thresholds[k]).astype(int)
    return cv


def probe_ready(frame: pd.DataFrame, n_splits: int = 5, label: str = "refused") -> bool:
    """The prompt-split probe needs both outcomes in at least n_splits prompts each."""
    prompts_per_class = frame.groupby(label)["prompt_id"].nunique()
    return len(prompts_per_class) == 2 and prompts_per_class.min() >= n_splits


def group_masks(frame: pd.DataFrame, group_column: str) -> dict:
    """Paper A's groups as row masks for group_metrics: harmful; benign as {subset: mask}, macro-averaged over its
    subsets (those with fewer than 20 refusals dropped); and one group per value of ``group_column``."""
    benign = {value: (frame[group_column] == value).to_numpy()
              for value in sorted(frame.loc[frame["label"] == "benign", group_column].unique())}
    named = {"harmful": (frame["label"] == "harmful").to_numpy(), "benign": benign}
    for value in sorted(frame[group_column].unique()):
        named[f"{group_column}={value}"] = (frame[group_column] == value).to_numpy()
    return named


# ----------------------------------------------------------------------------------------------------- metrics


def auroc(labels, scores) -> float:
    """AUROC by the Mann-Whitney rank sum (ties count half); NaN with a single class."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def balanced_accuracy(labels, predictions) -> float:
    labels, predictions = np.asarray(labels).astype(bool), np.asarray(predictions).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float((predictions[labels].mean() + (~predictions[~labels]).mean()) / 2)


def _bootstrap(labels, scores, predictions, groups, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, 2) AUROC and BAcc over resamples of prompts (of rows when groups is None)."""
    n = len(labels)
    if groups is None:
        unit = np.arange(n)
    else:
        _, unit = np.unique(np.asarray(groups), return_inverse=True)
    n_units = unit.max() + 1
    out = np.full((n_boot, 2), np.nan)
    for b, draw in enumerate(bootstrap_draws(n_units, n_boot, seed)):  # the package's one bootstrap (intervals)
        # A prompt drawn c times contributes all of its rows c times.
        mult = np.bincount(draw, minlength=n_units)[unit]
        idx = np.repeat(np.arange(n), mult)
        out[b] = auroc(labels[idx], scores[idx]), balanced_accuracy(labels[idx], predictions[idx])
    return out


def _summarize(point: tuple[float, float], boots: np.ndarray, n: int, n_pos: int) -> dict:
    lo, hi = np.full(2, np.nan), np.full(2, np.nan)
    for j in range(2):
        ok = boots[:, j][np.isfinite(boots[:, j])]  # resamples with a single class give NaN and are skipped
        if len(ok):
            lo[j], hi[j] = np.percentile(ok, [2.5, 97.5])
    return {"auroc": float(point[0]), "auroc_lo": float(lo[0]), "auroc_hi": float(hi[0]),
            "bacc": float(point[1]), "bacc_lo": float(lo[1]), "bacc_hi": float(hi[1]),
            "n": n, "n_pos": n_pos, "n_neg": n - n_pos}


def probe_metrics(labels, scores, predictions, groups=None, n_boot: int = 500, seed: int = 0) -> dict:
    """AUROC and balanced accuracy with 95% percentile-bootstrap CIs (resampling prompts when groups are given)."""
    labels = _check_binary(labels)
    scores, predictions = np.asarray(scores, dtype=float), np.asarray(predictions).astype(int)
    point = (auroc(labels, scores), balanced_accuracy(labels, predictions))
    boots = _bootstrap(labels, scores, predictions, groups, n_boot, seed)
    return _summarize(point, boots, len(labels), int(labels.sum()))


def _group_predictions(cv: ProbeCV, mask: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions of the rows in mask, thresholded at the group's own Youden point on training folds."""
    preds = cv.predictions.copy()
    for k in range(len(cv.thresholds)):
        train = mask & (cv.folds != k)
        test = mask & (cv.folds == k)
        if test.any() and len(np.unique(cv.labels[train])) == 2:
            preds[test] = cv.scores[test] >= youden_threshold(cv.labels[train], cv.threshold_scores(k)[train])
    return preds


def group_metrics(
    cv: ProbeCV,
    named_groups: Mapping[str, np.ndarray | Mapping[str, np.ndarray]] | None = None,
    n_boot: int = 500,
    seed: int = 0,
    min_positives: int = 20,
) -> pd.DataFrame:
    """Metrics per named group of rows (a boolean mask each; 'pooled' = all rows when not named).

    A group given as {subset name: mask} is macro-averaged over its subsets, dropping subsets with fewer than
    `min_positives` refusals (paper A's benign = benign / PHTest / ORFuzz). BAcc uses each group's own Youden
    threshold chosen on its training folds. A group with a single class gets NaN and a reason.
    """
    n = len(cv.labels)
    named_groups = dict(named_groups or {})
    named_groups.setdefault("pooled", np.ones(n, dtype=bool))
    rows = []
    for name, spec in named_groups.items():
        subsets = spec if isinstance(spec, Mapping) else {name: spec}
        macro = isinstance(spec, Mapping)
        used, points, boots, reasons, n_rows, n_pos = [], [], [], [], 0, 0
        for sub, mask in subsets.items():
            mask = np.asarray(mask, dtype=bool)
            y = cv.labels[mask]
            if len(np.unique(y)) < 2:
                reasons.append(f"{sub}: single class ({len(y)} rows, {int(y.sum())} refusals)")
                continue
            if macro and y.sum() < min_positives:
                reasons.append(f"{sub}: {int(y.sum())} refusals < {min_positives}")
                continue
            preds = _group_predictions(cv, mask)[mask]
            points.append((auroc(y, cv.scores[mask]), balanced_accuracy(y, preds)))
            # Same seed per subset is fine: subsets are disjoint, so the resamples are independent in effect.
            boots.append(_bootstrap(y, cv.scores[mask], preds, cv.groups[mask], n_boot, seed))
            used.append(sub)
            n_rows, n_pos = n_rows + len(y), n_pos + int(y.sum())
        if points:
            row = _summarize(tuple(np.mean(points, axis=0)), np.mean(boots, axis=0), n_rows, n_pos)
        else:
            row = _summarize((np.nan, np.nan), np.full((1, 2), np.nan), 0, 0)
        row.update(group=name, subsets=",".join(used), reason="; ".join(reasons))
        rows.append(row)
    cols = ["group", "auroc", "auroc_lo", "auroc_hi", "bacc", "bacc_lo", "bacc_hi", "n", "n_pos", "n_neg"]
    frame = pd.DataFrame(rows)
    return frame[cols + ["subsets", "reason"]]


# ---------------------------------------------------------------------------------------------------- controls


def tfidf_first_token_control(texts: Sequence[str], labels, groups, n_splits: int = 5, seed: int = 42,
                              n_boot: int = 500) -> dict:
    """Paper A's control: TF-IDF of the first thinking token's text -> logistic regression, same CV by prompt."""
    cv = cross_validated_probe(np.asarray(list(texts), dtype=object), labels, groups, n_splits, seed,
                               pipeline_factory=tfidf_token_pipeline)
    return probe_metrics(cv.labels, cv.scores, cv.predictions, cv.groups, n_boot=n_boot) | {"control": "tfidf"}


def shuffled_label_control(features, labels, groups, seed: int = 0, n_splits: int = 5, cv_seed: int = 42,
                           n_boot: int = 500, pipeline_factory=first_token_probe_pipeline) -> dict:
    """The same probe trained and scored on permuted labels; its AUROC should sit near 0.5."""
    permuted = np.random.default_rng(seed).permutation(_check_binary(labels))
    cv = cross_validated_probe(features, permuted, groups, n_splits, cv_seed, pipeline_factory)
    return probe_metrics(cv.labels, cv.scores, cv.predictions, cv.groups, n_boot=n_boot) | {"control": "shuffled"}


def layer_sweep(features_by_layer: Mapping[int, np.ndarray], labels, groups, n_splits: int = 5, seed: int = 42,
                n_boot: int = 500, pipeline_factory=first_token_probe_pipeline) -> pd.DataFrame:
    """The probe at every layer (same folds for all layers): one row per layer with AUROC, BAcc and CIs."""
    rows = []
    for layer, feats in sorted(features_by_layer.items()):
        # a layer whose states are all alike (the embedding of one shared first token) scores chance (CappedPCA)
        cv = cross_validated_probe(feats, labels, groups, n_splits, seed, pipeline_factory)
        rows.append({"layer": layer} | probe_metrics(cv.labels, cv.scores, cv.predictions, cv.groups, n_boot=n_boot))
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------------- refusal valley


def separation_curve(states, labels) -> np.ndarray:
    """J(t) = ||mu_r - mu_c||^2 / (sigma^2_r + sigma^2_c) per position, for states of shape (items, positions, d).

    Each position's features are standardized over all items; sigma^2 is the total within-class variance
    (summed over features). NaN where the denominator is 0.
    """
    X = np.asarray(states, dtype=np.float64)
    labels = _check_binary(labels).astype(bool)
    if X.ndim != 3 or len(X) != len(labels):
        raise ValueError(f"states must be (items, positions, features) with one label per item, got {X.shape}")
    if labels.all() or not labels.any():
        raise ValueError("separation curve needs both classes")
    sd = X.std(axis=0)
    # A constant feature carries no separation; leaving it at 0 rather than dividing by 0.
    Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    r, c = Z[labels], Z[~labels]
    num = ((r.mean(axis=0) - c.mean(axis=0)) ** 2).sum(axis=-1)
    den = r.var(axis=0).sum(axis=-1) + c.var(axis=0).sum(axis=-1)
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def resample_positions(per_item_states: Sequence[np.ndarray], n_points: int = 100) -> np.ndarray:
    """Traces of different lengths (T_i, d) -> (items, n_points, d) at evenly spaced relative positions (nearest)."""
    out = []
    for i, s in enumerate(per_item_states):
        s = np.asarray(s)
        if s.ndim != 2 or len(s) == 0:
            raise ValueError(f"item {i}: expected a non-empty (T, d) array, got shape {s.shape}")
        out.append(s[np.rint(np.linspace(0, len(s) - 1, n_points)).astype(int)])
    return np.stack(out)
