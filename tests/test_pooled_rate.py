"""intervals.pooled_rate_ci: the pooled rate and a prompt-resampling interval."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety import intervals


def test_pooled_rate_matches_the_row_bootstrap():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 5, size=40)
    k = rng.binomial(n, 0.3)
    value, low, high = intervals.pooled_rate_ci(k, n, n_boot=2000, seed=1)
    assert value == pytest.approx(k.sum() / n.sum()) and low < value < high
    rows = pd.DataFrame({"prompt_id": np.repeat(np.arange(40), n),
                         "hit": np.concatenate([[1] * a + [0] * (b - a) for a, b in zip(k, n)])})
    _, row_low, row_high = intervals.bootstrap_ci(rows, lambda f: f["hit"].mean(), n_boot=2000, seed=1)
    assert abs(low - row_low) < 0.03 and abs(high - row_high) < 0.03


def test_pooled_rate_rejects_bad_counts():
    with pytest.raises(ValueError, match="0 <= k <= n"):
        intervals.pooled_rate_ci([3], [2])
