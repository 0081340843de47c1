"""Linear probes on hidden states: paper A's first-token probe and refusal valley, paper B's refusal probe.

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

# --------------------------------------------------------------------------------------------- the classifier


class CappedPCA(TransformerMixin, BaseEstimator):
    """PCA whose size is min(max_components, n_samples - 1, n_features), decided when it is fitted.

    A fixed PCA(100) fails on small folds (smoke profiles, tiny models), so the cap is applied per fit.
    """

    def __init__(self, max_components: int = 100, random_state: int = 0):
        self.max_components = max_components
        self.random_state = random_state

    def fit(self, X, y=None):
        n, d = X.shape
        self.n_components_ = max(1, min(self.max_components, n - 1, d))
        self.pca_ = PCA(n_components=self.n_components_, random_state=self.random_state).fit(X)
        return self

    def transform(self, X):
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
    rng = np.random.default_rng(seed)
    n = len(labels)
    if groups is None:
        unit = np.arange(n)
    else:
        _, unit = np.unique(np.asarray(groups), return_inverse=True)
    n_units = unit.max() + 1
    out = np.full((n_boot, 2), np.nan)
    for b in range(n_boot):
        # A prompt drawn c times contributes all of its rows c times.
        mult = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)[unit]
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
    import warnings

    rows = []
    for layer, feats in sorted(features_by_layer.items()):
        with warnings.catch_warnings():
            # a layer whose states are all alike (the embedding of one shared first token) has no variance: PCA's
            # explained-variance ratio divides by 0; the probe then scores chance, which is the answer for that layer
            warnings.filterwarnings("ignore", "invalid value encountered in divide", RuntimeWarning)
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


# ------------------------------------------------------------------------------------ paper B's linear probe


class TooFewToTrain(ValueError):
    """Paper B's probe cannot be trained: a class is empty (in the candidates or in the training split)."""


class LinearRefusalProbe:
    """Paper B's probe: nn.Linear(d, 1) with BCE, Adam, batch 64, 5 epochs, 80/20 split; best validation epoch.

    After ``fit``, ``moved_`` = ‖w − w₀‖ / ‖w₀‖: how far the kept weight is from its random initialisation (Adam's
    steps are about lr each per coordinate, so in few dimensions the initialisation can be most of the weight)."""

    def __init__(self, lr: float = 1e-3, batch_size: int = 64, epochs: int = 5, val_fraction: float = 0.2,
                 seed: int = 42):
        self.lr, self.batch_size, self.epochs = lr, batch_size, epochs
        self.val_fraction, self.seed = val_fraction, seed
        self.model_ = None

    def fit(self, features, labels, groups=None) -> LinearRefusalProbe:
        """Train on an 80/20 split; with ``groups`` (prompt ids) the split is by prompt, so that samples of one
        prompt never sit on both sides (paper B has one rollout per prompt, where both splits coincide)."""
        import torch

        X = torch.as_tensor(np.asarray(features, dtype=np.float32))
        y = torch.as_tensor(_check_binary(labels).astype(np.float32))
        n, d = X.shape
        rng = np.random.default_rng(self.seed)
        if groups is None:
            order = rng.permutation(n)
            n_val = max(1, int(n * self.val_fraction))  # the official split: int(n * 0.2) rows
            val_rows, train_rows = order[:n_val], order[n_val:]
        else:
            codes, _ = pd.factorize(pd.Series(np.asarray(groups)))
            units = rng.permutation(codes.max() + 1)
            held = units[: max(1, int(len(units) * self.val_fraction))]
            val_rows, train_rows = np.flatnonzero(np.isin(codes, held)), np.flatnonzero(~np.isin(codes, held))
        if len(train_rows) == 0 or len(np.unique(y[torch.as_tensor(train_rows)].numpy())) < 2:
            raise TooFewToTrain(f"the probe's training split needs both classes; got {n} rows")
        val, train = torch.as_tensor(val_rows), torch.as_tensor(train_rows)
        self.val_rows_ = val_rows
        torch.manual_seed(self.seed)
        model = torch.nn.Linear(d, 1)
        initial = model.weight.detach().clone()
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        gen = torch.Generator().manual_seed(self.seed)
        best_acc, best_state, self.history_ = -1.0, None, []
        for epoch in range(self.epochs):
            model.train()
            perm = train[torch.randperm(len(train), generator=gen)]
            losses = []
            for start in range(0, len(perm), self.batch_size):
                idx = perm[start:start + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(model(X[idx]).squeeze(-1), y[idx])
                loss.backward()
                opt.step()
                losses.append(loss.item())
            model.eval()
            with torch.no_grad():
                acc = ((model(X[val]).squeeze(-1) >= 0).float() == y[val]).float().mean().item()  # sigmoid >= .5
            self.history_.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_accuracy": acc})
            if acc > best_acc:
                best_acc = acc
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
        self.model_, self.val_accuracy_ = model, best_acc
        self.moved_ = float((model.weight.detach() - initial).norm() / initial.norm())
        return self

    def _require_fit(self):
        if self.model_ is None:
            raise RuntimeError("LinearRefusalProbe is not fitted; call fit() first")

    def logits(self, features) -> np.ndarray:
        """Raw probe outputs for features of shape (..., d), e.g. (T, d) for every token of a trace."""
        import torch

        self._require_fit()
        with torch.no_grad():
            out = self.model_(torch.as_tensor(np.asarray(features, dtype=np.float32)))
        return out.squeeze(-1).numpy()

    def score(self, features) -> np.ndarray:
        """Sigmoid refusal probabilities, shape features.shape[:-1]."""
        return 1.0 / (1.0 + np.exp(-self.logits(features)))

    @property
    def direction(self) -> np.ndarray:
        self._require_fit()
        return self.model_.weight.detach().numpy()[0].copy()

    @property
    def bias(self) -> float:
        self._require_fit()
        return float(self.model_.bias.detach()[0])

    def save(self, path, metadata: dict | None = None):
        """The weights (and the best validation accuracy) as safetensors, for the notebooks that read the probe."""
        from .store import save_tensors

        self._require_fit()
        return save_tensors(path, {"weight": self.direction, "bias": np.array([self.bias], dtype=np.float32)},
                            {"val_accuracy": self.val_accuracy_, **(metadata or {})})

    @classmethod
    def load(cls, path) -> LinearRefusalProbe:
        import torch
        from safetensors import safe_open

        from .store import load_tensors

        tensors = load_tensors(path)
        probe = cls()
        probe.model_ = torch.nn.Linear(tensors["weight"].shape[0], 1)
        with torch.no_grad():
            probe.model_.weight.copy_(torch.as_tensor(tensors["weight"])[None])
            probe.model_.bias.copy_(torch.as_tensor(tensors["bias"]))
        with safe_open(str(path), "np") as handle:
            probe.metadata_ = handle.metadata() or {}
        probe.val_accuracy_ = float(probe.metadata_.get("val_accuracy", "nan"))
        return probe

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

    from .store import _atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(path, table.to_csv(index=False))
    _atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps({"inputs": digest}))
