"""lrmsafety.intervals: the one bootstrap draw, the intervals built on it and the closed forms."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety import intervals


# ------------------------------------------------------------------------- the one bootstrap draw (bootstrap_draws)
def test_bootstrap_draws_equal_successive_draws_of_one_generator():
    rng = np.random.default_rng(7)
    successive = np.stack([rng.integers(0, 13, 13) for _ in range(40)])
    np.testing.assert_array_equal(intervals.bootstrap_draws(13, 40, seed=7), successive)
    assert intervals.bootstrap_draws(5, 0).shape == (0, 5)


def _old_bootstrap_ci(frame, statistic, n_boot, seed):
    """bootstrap_ci as it was before bootstrap_draws: its numbers must not change."""
    codes, _ = pd.factorize(frame["prompt_id"], sort=False)
    n = int(codes.max()) + 1
    members = [np.flatnonzero(codes == c) for c in range(n)]
    rng, values = np.random.default_rng(seed), []
    for _ in range(n_boot):
        draw = rng.integers(0, n, size=n)
        sample = frame.iloc[np.concatenate([members[c] for c in draw])].reset_index(drop=True)
        sample["prompt_id"] = np.repeat(np.arange(n), [len(members[c]) for c in draw])
        values.append(statistic(sample))
    return np.quantile(values, [0.025000000000000022, 0.975])


def test_bootstrap_ci_and_pooled_rate_ci_keep_their_numbers():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"prompt_id": rng.integers(0, 9, 60).astype(str), "x": rng.random(60)})
    _, low, high = intervals.bootstrap_ci(frame, lambda f: f["x"].mean(), n_boot=50, seed=4)
    np.testing.assert_array_equal([low, high], _old_bootstrap_ci(frame, lambda f: f["x"].mean(), 50, 4))
    k, n = np.array([1.0, 0, 3, 2]), np.array([2.0, 1, 4, 2])
    draws = np.random.default_rng(5).integers(0, 4, size=(30, 4))
    rates = k[draws].sum(1) / n[draws].sum(1)
    expected = tuple(np.quantile(rates, [0.025000000000000022, 0.975]))
    assert intervals.pooled_rate_ci(k, n, n_boot=30, seed=5)[1:] == expected


def test_difference_interval_combines_the_two_intervals():
    d, low, high = intervals.difference_interval(0.6, 0.5, 0.7, 0.2, 0.1, 0.35)
    assert d == pytest.approx(0.4)
    assert low == pytest.approx(0.4 - np.hypot(0.1, 0.15)) and high == pytest.approx(0.4 + np.hypot(0.1, 0.1))
    assert np.isnan(intervals.difference_interval(0.6, np.nan, 0.7, 0.2, 0.1, 0.3)[1])


def test_paired_difference_is_narrower_than_two_independent_intervals():
    rng = np.random.default_rng(0)
    base = rng.random(60) < 0.5
    flipped = base.copy()
    flipped[:6] = ~flipped[:6]  # the condition changes six prompts' outcomes, the rest agree
    ones = np.ones(60)
    d, low, high = intervals.paired_difference_ci(flipped, ones, base, ones, n_boot=2000, seed=0)
    assert d == pytest.approx(flipped.mean() - base.mean()) and low <= d <= high
    _, a_low, a_high = intervals.wilson_interval(int(flipped.sum()), 60)
    _, b_low, b_high = intervals.wilson_interval(int(base.sum()), 60)
    _, m_low, m_high = intervals.difference_interval(flipped.mean(), a_low, a_high, base.mean(), b_low, b_high)
    assert high - low < 0.5 * (m_high - m_low)


def test_paired_difference_over_random_draws_holds_their_spread():
    rng = np.random.default_rng(1)
    base = (rng.random(30) < 0.5).astype(float)
    ones = np.ones(30)
    draws = np.stack([base.copy() for _ in range(5)])
    draws[3, base == 0] = (rng.random(int((base == 0).sum())) < 0.4)  # two of five draws raise the rate, three agree
    draws[4, base == 0] = (rng.random(int((base == 0).sum())) < 0.4)
    pooled = intervals.paired_difference_ci(draws.sum(0), ones * 5, base, ones, seed=0)  # the draws taken as fixed
    d, low, high = intervals.paired_difference_ci(draws, np.ones_like(draws), base, ones, seed=0)
    assert d == pytest.approx(pooled[0]) == pytest.approx(draws.mean() - base.mean())
    assert high - low > pooled[2] - pooled[1] and low <= d <= high
    # one draw as a row: the 1-D interval, resample for resample
    assert intervals.paired_difference_ci(draws[3:4], np.ones((1, 30)), base, ones, seed=0) == \
        intervals.paired_difference_ci(draws[3], ones, base, ones, seed=0)
    with pytest.raises(ValueError, match="aligned"):
        intervals.paired_difference_ci(draws[:, :20], np.ones((5, 20)), base, ones)




def test_runs_difference_holds_run_to_run_noise():
    prompts = 40
    steady = np.tile(np.r_[np.ones(20), np.zeros(20)], (3, 1))  # three runs that agree: 0.5
    noisy = np.array([np.r_[np.ones(n), np.zeros(prompts - n)] for n in (4, 20, 36)])  # 0.1, 0.5, 0.9
    d, low, high = intervals.runs_difference_ci(steady, steady * 0, n_boot=1000, seed=0)
    _, n_low, n_high = intervals.runs_difference_ci(noisy, steady * 0, n_boot=1000, seed=0)
    assert d == 0.5 and n_high - n_low > 1.5 * (high - low)  # the runs' spread widens the interval
    again = intervals.runs_difference_ci(noisy, steady * 0, n_boot=1000, seed=0)
    assert again == intervals.runs_difference_ci(noisy, steady * 0, n_boot=1000, seed=0)  # fixed by the seed
