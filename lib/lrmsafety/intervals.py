"""Confidence intervals: the package's one bootstrap draw over prompts (:func:`bootstrap_draws`: clusters drawn with
replacement from ``numpy.random.default_rng(seed)``, resample b in row b), the intervals built on it, and two closed
forms.

    bootstrap_ci          any statistic of a frame, whole prompts resampled (Safe@K sees a prompt drawn twice as two)
    pooled_rate_ci        sum k / sum n over prompts: the same interval as bootstrap_ci on the rows, vectorized
    paired_difference_ci  two pooled rates on the same prompts (and, optionally, several random draws of one)
    runs_difference_ci    two arms of repeated runs (fine-tuning seeds) on the same prompts: a two-level bootstrap
    wilson_interval       Wilson's score interval for one proportion
    difference_interval   a difference from the two estimates' own intervals (MOVER)

The rates themselves are in :mod:`lrmsafety.metrics`; the verdicts that read these intervals in
:mod:`lrmsafety.verdicts`. Probes (``analysis.probes``), the cliff curves and Cliff-as-a-Judge draw their resamples
from :func:`bootstrap_draws` too, so that every interval of a run is reproducible from its seed alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """A KeyError naming what is missing from a tidy frame and what it has (here and in :mod:`lrmsafety.metrics`)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} needs columns {list(columns)}; missing {missing} (have {list(frame.columns)})")


def bootstrap_draws(n_clusters: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_clusters) cluster indices drawn with replacement: row b is resample b. Every bootstrap interval of
    the package draws its resamples here; the draws equal n_boot successive ``rng.integers(0, n, n)`` calls."""
    return np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))


def bootstrap_ci(
    frame: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    cluster: str = "prompt_id",
) -> tuple[float, float, float]:
    """(estimate, low, high): a percentile bootstrap that resamples whole clusters (prompts) with replacement.

    Samples of one prompt are correlated, so resampling rows would understate the uncertainty. A prompt drawn
    twice gets a fresh id in the resample, so per-prompt statistics (Safe@K) see two prompts, not one with 2K
    samples. Resamples where the statistic is NaN are ignored.
    """
    require_columns(frame, [cluster], "bootstrap_ci")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    estimate = float(statistic(frame))
    codes, _ = pd.factorize(frame[cluster], sort=False)
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    if n_clusters == 0:
        return estimate, float("nan"), float("nan")
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_clusters + 1))
    members = [order[bounds[i] : bounds[i + 1]] for i in range(n_clusters)]
    values = np.empty(n_boot)
    for b, draw in enumerate(bootstrap_draws(n_clusters, n_boot, seed)):
        rows = np.concatenate([members[c] for c in draw])
        new_ids = np.repeat(np.arange(n_clusters), [len(members[c]) for c in draw])
        sample = frame.iloc[rows].reset_index(drop=True)
        sample[cluster] = new_ids
        values[b] = statistic(sample)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return estimate, float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return estimate, float(low), float(high)


def paired_difference_ci(a_k, a_n, b_k, b_n, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                         ) -> tuple[float, float, float]:
    """(sum a_k / sum a_n - sum b_k / sum b_n, low, high): two pooled rates on the same prompts (aligned arrays, one
    entry per prompt), with a percentile bootstrap that draws the same prompts for both: the interval of a paired
    difference, narrower than two independent intervals combined when the conditions agree prompt by prompt. ``a_k``
    and ``a_n`` may be (draws x prompts), one row per random draw of condition A (random head sets): each resample
    then also draws A's draws with replacement, so the interval holds the draws' spread as well as the prompts'."""
    a_k, a_n = np.asarray(a_k, dtype=float), np.asarray(a_n, dtype=float)
    b_k, b_n = np.asarray(b_k, dtype=float), np.asarray(b_n, dtype=float)
    if not a_k.shape == a_n.shape or a_k.shape[-1:] != b_k.shape or b_k.shape != b_n.shape or b_k.ndim != 1 \
            or a_k.ndim > 2:
        raise ValueError("a_k, a_n, b_k and b_n must be aligned on the same prompts (a: one row per draw or 1-D)")
    if a_n.sum() == 0 or b_n.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    draws = bootstrap_draws(len(b_k), n_boot, seed)
    if a_k.ndim == 2:  # the draws' resampling: its own stream, so that the prompts' draws are those of the 1-D case
        picked = np.random.default_rng([seed, 1]).integers(0, len(a_k), size=(n_boot, len(a_k)))
        a_hits, a_tot = (x[picked[:, :, None], draws[:, None, :]].sum((1, 2)) for x in (a_k, a_n))
    else:
        a_hits, a_tot = a_k[draws].sum(1), a_n[draws].sum(1)
    b_tot = b_n[draws].sum(1)
    ok = (a_tot > 0) & (b_tot > 0)
    diffs = a_hits[ok] / a_tot[ok] - b_k[draws].sum(1)[ok] / b_tot[ok]
    alpha = (1 - level) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float(a_k.sum() / a_n.sum() - b_k.sum() / b_n.sum()), float(low), float(high)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """(rate, low, high): Wilson's score interval for a binomial proportion (sound near 0 and 1, unlike the
    normal approximation)."""
    from scipy.stats import norm

    if n == 0:
        return float("nan"), float("nan"), float("nan")
    z = norm.ppf(0.5 + level / 2)
    rate = successes / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return rate, max(0.0, centre - half), min(1.0, centre + half)


def pooled_rate_ci(k, n, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(sum k / sum n, low, high): a pooled rate over clusters (k events of n samples per prompt) with a percentile
    bootstrap that resamples prompts, vectorized; the same interval as bootstrap_ci on the rows, far faster."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if k.shape != n.shape or k.ndim != 1 or (k > n).any() or (k < 0).any():
        raise ValueError("k and n must be 1-D arrays of equal length with 0 <= k <= n per cluster")
    if n.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    draws = bootstrap_draws(len(k), n_boot, seed)
    totals = n[draws].sum(1)
    rates = k[draws].sum(1)[totals > 0] / totals[totals > 0]
    alpha = (1 - level) / 2
    low, high = np.quantile(rates, [alpha, 1 - alpha])
    return float(k.sum() / n.sum()), float(low), float(high)


def difference_interval(a: float, a_low: float, a_high: float, b: float, b_low: float, b_high: float
                        ) -> tuple[float, float, float]:
    """(a - b, low, high): the 95% interval of a difference from the two estimates' own intervals (MOVER: Newcombe
    1998, Zou & Donner 2008). Exact in coverage for independent estimates (two organisms, two prompt sets); for
    estimates on the same prompts, which are positively correlated, it is wider than needed (conservative). Any
    input NaN gives NaN bounds."""
    values = np.array([a, a_low, a_high, b, b_low, b_high], dtype=float)
    d = float(a - b)
    if np.isnan(values).any():
        return d, float("nan"), float("nan")
    low = d - np.sqrt((a - a_low) ** 2 + (b_high - b) ** 2)
    high = d + np.sqrt((a_high - a) ** 2 + (b - b_low) ** 2)
    return d, float(low), float(high)


def runs_difference_ci(a_runs, b_runs, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                       ) -> tuple[float, float, float]:
    """(mean of A - mean of B, low, high) for two arms of repeated runs (e.g. fine-tuning seeds) evaluated on the
    same prompts: each arm a (runs x prompts) array of per-prompt outcomes, NaN where a prompt was not judged.
    Each resample draws prompts (the same for both arms) and, within each arm, its runs, both with replacement: the
    interval holds the prompts' sampling and the run-to-run noise (a two-level bootstrap)."""
    a, b = np.atleast_2d(np.asarray(a_runs, dtype=float)), np.atleast_2d(np.asarray(b_runs, dtype=float))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two arms must hold the same prompts (columns): {a.shape[1]} vs {b.shape[1]}")
    estimate = float(np.nanmean(a) - np.nanmean(b))
    if a.shape[1] == 0:
        return float("nan"), float("nan"), float("nan")
    prompts = bootstrap_draws(a.shape[1], n_boot, seed)
    rng = np.random.default_rng([seed, 1])  # the runs' draws: their own stream, fixed by the seed
    a_runs_drawn = rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    b_runs_drawn = rng.integers(0, b.shape[0], size=(n_boot, b.shape[0]))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only unjudged prompts: NaN, dropped below
        mean_a = np.nanmean(a[a_runs_drawn[:, :, None], prompts[:, None, :]], axis=(1, 2))
        mean_b = np.nanmean(b[b_runs_drawn[:, :, None], prompts[:, None, :]], axis=(1, 2))
    diffs = (mean_a - mean_b)[~np.isnan(mean_a - mean_b)]
    if diffs.size == 0:
        return estimate, float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return estimate, float(low), float(high)
