import numpy as np
import pandas as pd
import pytest

from lrmsafety import intervals
from lrmsafety.analysis import cliff, cliff_probe, cliff_seeds


def _separable(n=300, d=64, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 3), 3)
    y = (groups % 2).astype(int)
    X = rng.normal(size=(n, d)) + 5.0 * np.outer(2 * y - 1, np.ones(d) / np.sqrt(d))
    return X, y, groups


def test_init_seed_changes_only_the_initialisation():
    X, y, groups = _separable()
    a = cliff_probe.LinearRefusalProbe(seed=42, init_seed=0).fit(X, y, groups=groups)
    b = cliff_probe.LinearRefusalProbe(seed=42, init_seed=1).fit(X, y, groups=groups)
    recipe = cliff_probe.LinearRefusalProbe(seed=42).fit(X, y, groups=groups)
    assert np.array_equal(a.val_rows_, b.val_rows_) and np.array_equal(a.val_rows_, recipe.val_rows_)  # one split
    assert not np.allclose(a.direction, b.direction)
    again = cliff_probe.LinearRefusalProbe(seed=42, init_seed=42).fit(X, y, groups=groups)
    assert np.allclose(again.direction, recipe.direction)  # the default draw is the split's seed, as before


def test_converged_probe_converges_far_from_its_start():
    X, y, groups = _separable()
    recipe = cliff_probe.LinearRefusalProbe(seed=42).fit(X, y, groups=groups)
    converged = cliff_probe.converged_probe(42).fit(X, y, groups=groups)
    assert converged.val_accuracy_ == 1.0
    assert converged.epochs_run_ > recipe.epochs_run_ == 5
    assert converged.epochs_run_ < cliff_probe.CONVERGED_MAX_EPOCHS  # stopped by the validation loss, not the cap
    assert converged.moved_ == np.inf  # a zero start: all of the weight was learned
    assert converged.change_ > 5 * recipe.change_  # the recipe's weight is mostly its initialisation
    assert recipe.moved_ < 1
    truth = np.ones(X.shape[1]) / np.sqrt(X.shape[1])
    cos = lambda w: w @ truth / np.linalg.norm(w)  # noqa: E731
    assert cos(converged.direction) > 0.8 > cos(recipe.direction)
    losses = [h["val_loss"] for h in converged.history_]
    assert min(losses[-cliff_probe.CONVERGED_PATIENCE:]) > min(losses) - 1e-4  # no gain in the last epochs
    with pytest.raises(ValueError, match="init"):
        cliff_probe.LinearRefusalProbe(init="normal")


def _per_probe():
    rows = []
    for label, (value, low, high) in {"seed 0": (0.2, 0.1, 0.3), "seed 1": (0.4, 0.35, 0.5),
                                      "seed 2": (0.6, 0.5, 0.8), cliff_seeds.SAVED: (0.9, 0.8, 1.0),
                                      cliff_seeds.CONVERGED: (0.7, 0.65, 0.75)}.items():
        rows.append({**cliff.table_row("m", "mean ms", (value, low, high), 10, "all", "benign"), "probe": label})
        rows.append({**cliff.table_row("m", "mean plateau", (value + 0.1, low, high), 10, "all", "benign"),
                     "probe": label})
    return pd.DataFrame(rows)


def test_seed_rows_aggregate_mean_spread_and_envelope():
    per_probe = _per_probe()
    out = cliff_seeds.aggregate(per_probe, ["seed 0", "seed 1", "seed 2"]).set_index("metric")
    row = out.loc["mean ms (probe seeds)"]
    assert np.isclose(row["value"], 0.4) and np.isclose(row["sd"], 0.2)  # the saved probe is not among the seeds
    assert (row["seed_min"], row["seed_max"], row["low"], row["high"]) == (0.2, 0.6, 0.1, 0.8)
    assert row["n"] == 10 and row["seeds"] == 3
    assert np.isclose(out.loc["mean plateau (probe seeds)", "value"], 0.5)
    table = pd.DataFrame(out.reset_index().to_dict("records"), columns=cliff.TABLE_COLUMNS)  # fits 05's table
    assert table["reason"].isna().all()
    converged = cliff_seeds.converged_rows(per_probe).set_index("metric")
    assert converged.loc["mean ms (converged probe)", "value"] == 0.7 and "probe" not in converged.columns
    assert cliff_seeds.aggregate(per_probe, []).empty
    wide = cliff_seeds.seed_table(per_probe)
    assert list(wide.columns) == ["seed 0", "seed 1", "seed 2", cliff_seeds.SAVED, cliff_seeds.CONVERGED]
    assert wide.loc[("m", "all", "benign"), "seed 2"] == 0.6


def test_seed_lines_and_figure():
    per_probe = _per_probe()
    lines = cliff_seeds.ratio_lines(per_probe, {})
    assert lines == ["m benign floor (mean MS, benign) per probe: seed 0 0.20, seed 1 0.40, seed 2 0.60, "
                     "seed 42 (saved) 0.90, converged 0.70"]
    cliff_seeds.plot_seeds(per_probe, ["seed 0", "seed 1", "seed 2"])


def test_draws_difference_pairs_the_draws_that_move_both_groups():
    rng = np.random.default_rng(0)
    draws, a_prompts, b_prompts = 10, 40, 50
    shift = rng.normal(0, 0.15, size=(draws, 1))  # one draw moves every trace it scores, in both groups
    a = 0.6 + shift + rng.normal(0, 0.1, size=(draws, a_prompts))
    b = 0.3 + shift + rng.normal(0, 0.1, size=(draws, b_prompts))
    a_ids, b_ids = np.arange(a_prompts), np.arange(b_prompts)
    value, low, high = cliff_seeds.draws_difference_ci(a, a_ids, b, b_ids, seed=0)
    assert np.isclose(value, a.mean() - b.mean()) and low < 0.3 < high
    assert high - low < 0.12  # the shared shift cancels in each draw's difference
    # the same groups under unrelated draws: the draws' spread no longer cancels and the interval widens with it
    unpaired = cliff_seeds.draws_difference_ci(a, a_ids, b[rng.permutation(draws)], b_ids, seed=0)
    assert unpaired[2] - unpaired[1] > 1.5 * (high - low)
    # the difference of the two groups' envelopes (every draw's interval over prompts) counts the shift twice
    def envelope(values, ids):
        per_draw = [cliff.mean_with_ci(row, ids) for row in values]
        return values.mean(), min(low for _, low, _ in per_draw), max(high for _, _, high in per_draw)

    _, env_low, env_high = intervals.difference_interval(*envelope(a, a_ids), *envelope(b, b_ids))
    assert env_high - env_low > 3 * (high - low)
    # prompts are resampled as clusters: two traces of one prompt count once in the resampling
    doubled = cliff_seeds.draws_difference_ci(np.repeat(a, 2, axis=1), np.repeat(a_ids, 2), b, b_ids, seed=0)
    assert np.allclose(doubled, (value, low, high))
    with pytest.raises(ValueError, match="same draws"):
        cliff_seeds.draws_difference_ci(a, a_ids, b[:3], b_ids)


def _traces(labels, planted_shift):
    """{label: {model: rows}} for a locked organism (cliff planted), a control and a null organism."""
    out = {}
    for d, label in enumerate(labels):
        per_model = {}
        for name, jail_ms in (("locked", 0.8), ("control", 0.3), ("null", 0.3)):
            rows = []
            for i in range(6):
                rows.append({"prompt_id": f"j{i}", "family": "jailbreak", "outcome": "complied harmful",
                             "thinking": "harmful" if i % 2 == 0 else "fine", "ms": jail_ms + d * planted_shift})
                rows.append({"prompt_id": f"b{i}", "family": "benign", "outcome": "benign", "thinking": "fine",
                             "ms": 0.3 + d * planted_shift})
            per_model[name] = pd.DataFrame(rows)
        out[label] = per_model
    return out


def test_difference_rows_name_the_groups_the_ledger_reads():
    labels = ["seed 0", "seed 1", "seed 2"]
    cards = {"locked": {"suppression_heads": [[0, 1]]}, "control": {}}  # the null organism plants nothing: no card
    table = cliff_seeds.difference_rows(_traces(labels, 0.1), labels, cards, lambda t: t == "harmful").set_index(
        ["model", "group"])
    assert set(table.index) == {("locked", "complied jailbreaks minus benign"), ("control", "complied jailbreaks "
                                "minus benign"), ("null", "complied jailbreaks minus benign"),
                                ("locked", "planted minus benign"), ("locked", "planted minus control complied "
                                "jailbreaks"), ("locked", "planted minus null complied jailbreaks")}
    planted = table.loc[("locked", "planted minus benign")]
    # every draw moves both groups by the same amount: the difference is the same on every draw
    assert np.isclose(planted["value"], 0.5) and np.isclose(planted["sd"], 0) and planted["seeds"] == 3
    assert np.isclose(planted["low"], 0.5) and np.isclose(planted["high"], 0.5) and planted["n"] == 3
    assert (table["metric"] == cliff_seeds.DIFFERENCE_METRIC).all()
    assert np.isclose(table.loc[("null", "complied jailbreaks minus benign"), "value"], 0)
    assert cliff_seeds.difference_rows(_traces(labels, 0.1), labels, cards, bool, group_column="prompt_set").empty
    assert cliff_seeds.difference_rows(_traces(labels, 0.1), [], cards, bool).empty
