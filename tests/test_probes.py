"""Probes on synthetic data whose answers are known by construction."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety.analysis import cliff_probe, nulls, probes


def make_data(n_prompts=60, per_prompt=4, d=40, shift=0.0, seed=0):
    """Rollout labels, prompt ids and Gaussian features shifted by `shift` along one direction for refusals."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_prompts), per_prompt)
    # Prompts lean to one class, as real prompts do, but rollouts of a prompt can disagree.
    lean = rng.uniform(0.1, 0.9, n_prompts)[groups]
    labels = (rng.uniform(size=len(groups)) < lean).astype(int)
    direction = np.zeros(d)
    direction[0] = 1.0
    X = rng.normal(size=(len(groups), d)) + shift * np.outer(2 * labels - 1, direction)
    return X, labels, groups


def test_separable_features_give_high_auroc():
    X, y, g = make_data(shift=3.0)
    cv = probes.cross_validated_probe(X, y, g)
    m = probes.probe_metrics(cv.labels, cv.scores, cv.predictions, cv.groups, n_boot=100)
    assert m["auroc"] > 0.95 and m["bacc"] > 0.85
    assert m["auroc_lo"] <= m["auroc"] <= m["auroc_hi"]


def test_noise_gives_chance_auroc():
    X, y, g = make_data(shift=0.0, seed=1)
    cv = probes.cross_validated_probe(X, y, g)
    assert abs(probes.auroc(cv.labels, cv.scores) - 0.5) < 0.15


def test_group_split_never_shares_a_prompt():
    X, y, g = make_data(seed=2)
    cv = probes.cross_validated_probe(X, y, g)
    per_prompt = pd.Series(cv.folds).groupby(g).nunique()
    assert (per_prompt == 1).all()
    assert set(cv.folds) == set(range(5)) and not np.isnan(cv.scores).any()
    # Predictions are the held-out scores at that fold's training threshold.
    np.testing.assert_array_equal(cv.predictions, cv.scores >= cv.thresholds[cv.folds])
    # Training scores exist exactly on the training rows of each fold.
    for k in range(5):
        assert np.isnan(cv.train_scores[k, cv.folds == k]).all()
        assert not np.isnan(cv.train_scores[k, cv.folds != k]).any()


def test_unstratifiable_folds_name_class_counts():
    X, y, g = make_data(seed=3)
    y = np.zeros_like(y)
    y[g < 3] = 1  # refusals in only 3 prompts
    with pytest.raises(ValueError, match=r"class 1: \d+ rows in 3 prompts"):
        probes.cross_validated_probe(X, y, g)


def test_youden_threshold_hand_example():
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.9]
    # thresholds: 0.9 -> J=1/3, 0.7 -> 2/3, 0.6 -> 2/3-1/4, 0.5 -> 1-1/4 = 0.75 (best), 0.3 -> 0.5
    assert probes.youden_threshold(labels, scores) == 0.5


def _paper_a_youden(y, s):
    """Paper A's own rule, verbatim (compute_kshop_bestpipe.py, commit 975d2d2)."""
    from sklearn.metrics import roc_curve

    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, s)
    return float(thr[int(np.argmax(tpr - fpr))])


def test_youden_threshold_without_signal_predicts_nothing():
    labels = np.array([0, 1] * 10)
    for scores in (np.full(20, 0.492), np.where(labels == 1, 0.1, 0.9)):  # identical; perfectly wrong way round
        t = probes.youden_threshold(labels, scores)
        assert t == np.inf == _paper_a_youden(labels, scores)
        predictions = (scores >= t).astype(int)
        assert not predictions.any() and probes.balanced_accuracy(labels, predictions) == 0.5


def test_youden_threshold_separable_and_as_paper_a_on_random_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert probes.youden_threshold(labels, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == 0.7  # the lowest positive score
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(4, 40))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(rng.normal(size=n) + rng.normal() * y, 1)  # rounded: ties in the scores
        assert probes.youden_threshold(y, s) == _paper_a_youden(y, s)


def test_probe_without_signal_predicts_nothing_out_of_fold():
    from sklearn.dummy import DummyClassifier

    X, y, g = make_data(seed=1)
    cv = probes.cross_validated_probe(X, y, g, pipeline_factory=lambda: DummyClassifier(strategy="uniform"))
    assert np.isinf(cv.thresholds).all() and not cv.predictions.any()
    table = probes.group_metrics(cv, {"all": np.ones(len(y), bool)}, n_boot=20)
    assert table["bacc"].eq(0.5).all()


def test_capped_pca_on_small_folds():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 300)), np.array([0, 1] * 10)
    pipe = probes.first_token_probe_pipeline().fit(X, y)
    assert pipe.named_steps["cappedpca"].n_components_ == 19
    assert pipe.named_steps["logisticregression"].C == 0.03


def test_probe_metrics_perfect_and_by_prompt():
    y = np.array([0, 0, 1, 1] * 10)
    scores = y + 0.01 * np.arange(40) / 40  # every refusal scores above every compliance
    m = probes.probe_metrics(y, scores, y, groups=np.repeat(np.arange(20), 2), n_boot=50)
    assert m["auroc"] == 1.0 and m["auroc_lo"] == 1.0 and m["bacc_hi"] == 1.0
    assert (m["n"], m["n_pos"], m["n_neg"]) == (40, 20, 20)


def test_group_metrics_single_class_and_macro():
    X, y, g = make_data(n_prompts=80, shift=2.0, seed=4)
    cv = probes.cross_validated_probe(X, y, g)
    only_neg = y == 0
    halves = {"a": g < 40, "b": g >= 40}
    tiny = {"a": g < 40, "tiny": (g == 45)}  # one prompt: fewer than 20 refusals
    res = probes.group_metrics(
        cv, {"harmful": g < 40, "negatives": only_neg, "benign": halves, "macro_tiny": tiny}, n_boot=50
    ).set_index("group")
    assert list(res.index) == ["harmful", "negatives", "benign", "macro_tiny", "pooled"]
    assert np.isnan(res.loc["negatives", "auroc"]) and "single class" in res.loc["negatives", "reason"]
    assert res.loc["pooled", "auroc"] > 0.9 and res.loc["pooled", "n"] == len(y)
    assert res.loc["benign", "subsets"] == "a,b"
    assert res.loc["macro_tiny", "subsets"] == "a" and "tiny" in res.loc["macro_tiny", "reason"]
    assert np.isclose(res.loc["macro_tiny", "auroc"], res.loc["harmful", "auroc"])


def test_tfidf_control_on_label_independent_tokens():
    rng = np.random.default_rng(5)
    _, y, g = make_data(seed=5)
    tokens = rng.choice(["Okay", " Alright", "\n", "Hmm", "So", "The"], size=len(y))
    m = probes.tfidf_first_token_control(tokens, y, g, n_boot=20)
    assert abs(m["auroc"] - 0.5) < 0.15
    # Sanity: a token that spells out the label is found.
    informative = np.where(y == 1, "I", "Okay")
    assert probes.tfidf_first_token_control(informative, y, g, n_boot=20)["auroc"] > 0.95


def test_shuffled_label_control_is_near_chance():
    X, y, g = make_data(shift=3.0, seed=6)
    m = probes.shuffled_label_control(X, y, g, seed=0, n_boot=20)
    assert abs(m["auroc"] - 0.5) < 0.15


def test_layer_sweep_finds_informative_layer():
    X, y, g = make_data(shift=2.0, seed=7)
    rng = np.random.default_rng(7)
    frame = probes.layer_sweep({3: rng.normal(size=X.shape), 1: X}, y, g, n_boot=20)
    assert list(frame["layer"]) == [1, 3]
    assert {"auroc", "auroc_lo", "auroc_hi"} <= set(frame.columns)
    assert frame.loc[0, "auroc"] > 0.9 and abs(frame.loc[1, "auroc"] - 0.5) < 0.15


def test_separation_curve_planted_positions():
    rng = np.random.default_rng(8)
    n, T, d = 200, 50, 8
    labels = np.array([0, 1] * (n // 2))
    states = rng.normal(size=(n, T, d))
    states[labels == 1, 10:20, :2] += 3.0
    J = probes.separation_curve(states, labels)
    assert J.shape == (T,)
    # Expected there: 2 * (3/1.80)^2 / (2 * (6 + 2/3.25)) = 0.42 (the 6 noise features stay in the variance).
    assert J[10:20].min() > 0.3
    assert np.delete(J, np.arange(10, 20)).max() < 0.05
    # Scale invariance: standardization removes per-feature units.
    scaled = states * np.arange(1, d + 1)
    np.testing.assert_allclose(probes.separation_curve(scaled, labels), J, rtol=1e-9)


def test_resample_positions():
    traces = [np.arange(10)[:, None] * np.ones((1, 3)), np.arange(250)[:, None] * np.ones((1, 3))]
    out = probes.resample_positions(traces, n_points=100)
    assert out.shape == (2, 100, 3)
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 9 and out[1, -1, 0] == 249
    assert np.all(np.diff(out[1, :, 0]) > 0) and np.all(np.diff(out[0, :, 0]) >= 0)
    with pytest.raises(ValueError):
        probes.resample_positions([np.zeros((0, 3))])


def test_linear_refusal_probe_learns_separable_set():
    rng = np.random.default_rng(9)
    n, d = 1000, 32  # 5 epochs of batch 64 need a few hundred rows to converge
    y = np.array([0, 1] * (n // 2))
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    X = rng.normal(size=(n, d)) + 4.0 * np.outer(2 * y - 1, direction)
    probe = cliff_probe.LinearRefusalProbe().fit(X, y)
    assert probe.val_accuracy_ > 0.95
    assert len(probe.history_) == 5
    assert probe.val_accuracy_ == max(h["val_accuracy"] for h in probe.history_)
    val = np.random.default_rng(42).permutation(n)[: n // 5]  # the probe's own 80/20 split
    assert np.isclose(((probe.score(X[val]) > 0.5) == y[val]).mean(), probe.val_accuracy_)  # best weights restored
    p = probe.score(X)
    assert p.shape == (n,) and ((p > 0.5) == y).mean() > 0.95
    w = probe.direction
    assert w.shape == (d,) and w @ direction / np.linalg.norm(w) > 0.5
    assert probe.score(X[:7][None]).shape == (1, 7)  # per-token scoring of a (1, T, d) trace


def test_youden_threshold_from_out_of_fold_scores_of_the_training_folds():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] + rng.normal(scale=1.0, size=120) > 0).astype(int)
    groups = np.arange(120) // 2
    cv = probes.cross_validated_probe(X, y, groups)
    assert cv.threshold_from == "out_of_fold"
    for k in range(5):
        train = cv.folds != k
        # paper A: each fold's threshold is the Youden point of the OTHER folds' out-of-fold scores
        assert cv.thresholds[k] == probes.youden_threshold(y[train], cv.scores[train])
        assert ((cv.scores[~train] >= cv.thresholds[k]) == cv.predictions[~train]).all()
    in_sample = probes.cross_validated_probe(X, y, groups, threshold_from="in_sample")
    np.testing.assert_allclose(in_sample.scores, cv.scores)  # same models, only the thresholds differ
    for k in range(5):
        assert in_sample.thresholds[k] == probes.youden_threshold(y[cv.folds != k],
                                                                  in_sample.train_scores[k, cv.folds != k])
    with pytest.raises(ValueError, match="threshold_from"):
        probes.cross_validated_probe(X, y, groups, threshold_from="test")
# --- permutation null of the whole cross-validated pipeline ----------------------------------------------------------
def _clustered_null(seed, n_prompts=40, k=5, d=8):
    """Features and labels that share prompts but not information: both carry a per-prompt random effect."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_prompts), k)
    X = np.repeat(rng.normal(size=(n_prompts, d)), k, axis=0) + rng.normal(size=(n_prompts * k, d))
    y = (rng.random(n_prompts * k) < np.repeat(rng.uniform(0.1, 0.9, n_prompts), k)).astype(int)
    return X, y, groups


class _RidgeScorer(probes.BaseEstimator):
    """A closed-form linear scorer: 8,000 refits in a test take a second (sklearn's own estimators, a minute)."""

    def fit(self, X, y):
        A = np.c_[X, np.ones(len(X))]
        self.w_ = np.linalg.solve(A.T @ A + 10.0 * np.eye(A.shape[1]), A.T @ (2.0 * y - 1))
        return self

    def decision_function(self, X):
        return np.c_[X, np.ones(len(X))] @ self.w_


def _fast_probe():
    return probes.make_pipeline(probes.StandardScaler(), _RidgeScorer())


def test_permute_prompt_labels_moves_whole_prompts_within_strata():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 4)
    strata = np.repeat(np.arange(30) % 3, 4)
    labels = (rng.random(120) < strata / 2).astype(int)
    permuted = nulls.permute_prompt_labels(labels, groups, np.random.default_rng(1), strata)
    blocks = {tuple(labels[groups == g]) for g in range(30)}
    assert all(tuple(permuted[groups == g]) in blocks for g in range(30))  # rows of a prompt move together
    for s in range(3):  # each stratum keeps its labels
        assert permuted[strata == s].sum() == labels[strata == s].sum()
    assert not np.array_equal(permuted, labels)
    with pytest.raises(ValueError, match="constant within a prompt"):
        nulls.permute_prompt_labels(labels, groups, rng, np.arange(120) % 2)


def test_permutation_test_is_calibrated_on_null_data_and_detects_signal():
    # Null data (40 prompts x 5 samples): p <= 0.05 in about 5% of seeds (here at most 6 of 40: P < 0.005 if the
    # level is 5%), and p is about uniform. The same features with the labels planted in them give p at its minimum.
    p_values = []
    for seed in range(40):
        X, y, groups = _clustered_null(seed)
        table = nulls.permutation_test(X, y, groups, n_permutations=39, seed=seed, pipeline_factory=_fast_probe)
        p_values.append(table.set_index("group").loc["pooled", "perm_p"])
    p_values = np.array(p_values)
    assert (p_values <= 0.05).sum() <= 6
    assert 0.35 < p_values.mean() < 0.65
    X, _, groups = _clustered_null(0)
    y = (X[:, 0] + np.random.default_rng(0).normal(size=len(X)) > 0).astype(int)
    table = nulls.permutation_test(X, y, groups, n_permutations=39, pipeline_factory=_fast_probe)
    assert table.set_index("group").loc["pooled", "perm_p"] == pytest.approx(1 / 40)


def test_permutation_test_reports_groups_and_checks_input():
    X, y, groups = _clustered_null(3)
    half = groups < 20
    table = nulls.permutation_test(X, y, groups, {"first half": half}, n_permutations=5, pipeline_factory=_fast_probe)
    assert list(table["group"]) == ["first half", "pooled"] and (table["n_permutations"] == 5).all()
    cv = probes.cross_validated_probe(X, y, groups, pipeline_factory=_fast_probe)
    assert table.set_index("group").loc["pooled", "auroc"] == pytest.approx(probes.auroc(y, cv.scores))
    with pytest.raises(ValueError, match="alternative"):
        nulls.permutation_test(X, y, groups, alternative="less")


def test_permutation_test_is_the_same_in_parallel_and_served_from_its_cache(tmp_path):
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(30), 4)
    y = np.repeat(rng.integers(0, 2, 30), 4)
    X = rng.normal(size=(120, 6)) + y[:, None] * 0.5
    serial = nulls.permutation_test(X, y, groups, n_permutations=19, pipeline_factory=_fast_probe)
    parallel = nulls.permutation_test(X, y, groups, n_permutations=19, pipeline_factory=_fast_probe, n_jobs=2,
                                       cache_path=tmp_path / "null.csv")
    pd.testing.assert_frame_equal(serial, parallel)
    cached = nulls.permutation_test(X, y, groups, n_permutations=19, pipeline_factory=_fast_probe,
                                     cache_path=tmp_path / "null.csv")
    pd.testing.assert_frame_equal(serial, cached, check_dtype=False)
    # other inputs are not served the cached table
    other = nulls.permutation_test(X[::-1].copy(), y, groups, n_permutations=19, pipeline_factory=_fast_probe,
                                    cache_path=tmp_path / "null.csv")
    assert not np.isclose(other["auroc"].iloc[0], serial["auroc"].iloc[0])


def test_layer_sweep_of_a_layer_without_variance_is_chance_without_warnings():
    import warnings

    y = np.array([0, 1] * 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # executed notebooks carry no library warnings
        sweep = probes.layer_sweep({0: np.ones((60, 32))}, y, np.arange(60) // 2, n_boot=10)
    assert sweep.loc[0, "auroc"] == 0.5


# ------------------------------------------------------------------ notebook 02's inputs (probe_ready, group_masks)
def test_probe_bootstrap_keeps_its_draws():
    """probes' intervals draw from intervals.bootstrap_draws: the same resamples as successive rng.integers calls."""
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 40), rng.random(40)
    preds, groups = (scores > 0.5).astype(int), np.repeat(np.arange(20), 2)
    boots = probes._bootstrap(labels, scores, preds, groups, n_boot=25, seed=3)
    draw_rng, expected = np.random.default_rng(3), []
    for _ in range(25):
        idx = np.repeat(np.arange(40), np.bincount(draw_rng.integers(0, 20, 20), minlength=20)[groups])
        expected.append((probes.auroc(labels[idx], scores[idx]), probes.balanced_accuracy(labels[idx], preds[idx])))
    np.testing.assert_array_equal(boots, np.array(expected))


def test_probe_ready_needs_both_outcomes_in_enough_prompts():
    frame = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(10)], "refused": [True] * 5 + [False] * 5})
    assert probes.probe_ready(frame)
    assert not probes.probe_ready(frame, n_splits=6)
    assert not probes.probe_ready(frame.assign(refused=True))


def test_group_masks_macro_average_benign_subsets_and_name_every_family():
    frame = pd.DataFrame({"label": ["harmful", "benign", "benign", "harmful"],
                          "family": ["jailbreak", "orbench", "phtest", "harmful"]})
    masks = probes.group_masks(frame, "family")
    assert masks["harmful"].tolist() == [True, False, False, True]
    assert list(masks["benign"]) == ["orbench", "phtest"] and masks["benign"]["phtest"].tolist() == [0, 0, 1, 0]
    assert masks["family=jailbreak"].tolist() == [True, False, False, False]


def test_separation_null_is_the_quantile_of_shuffled_curves():
    from lrmsafety.analysis import nulls

    rng = np.random.default_rng(3)
    labels = np.array([1] * 30 + [0] * 50)
    states = rng.normal(size=(80, 6, 5)) * np.arange(1, 6)
    states[:, :, 4] = 2.0  # a constant feature is left out, as in the curve
    states[labels == 1, 3:, :2] += 2.0
    null = nulls.separation_null(states, labels, permutations=40, seed=5, chunk=7)
    shuffles = np.random.default_rng(5)
    brute = [probes.separation_curve(states, shuffles.permutation(labels)) for _ in range(40)]
    np.testing.assert_allclose(null, np.quantile(brute, 0.95, axis=0), rtol=1e-9)
    J = probes.separation_curve(states, labels)
    assert (J[3:] > null[3:]).all() and (J[:3] < 2 * null[:3]).all()  # the planted positions clear the null
