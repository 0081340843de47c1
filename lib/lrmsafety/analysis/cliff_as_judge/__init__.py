"""Paper B's Cliff-as-a-Judge (notebook 09): `pool` builds the SFT pool from the model's own closed rollouts,
`selection` picks the training subsets (by cliff size, rule, length or at random), `study` runs the loop (one LoRA
adapter per distinct selection, held-out evaluation), `table` writes the table of ASR and ORR. The names of study
and table are re-exported."""

from __future__ import annotations

from . import pool, selection  # noqa: F401
from .study import (  # noqa: F401
    EPOCH_ARM,
    EVALUATED_COLUMNS,
    PUBLISHED,
    PUBLISHED_BASE_ASR,
    STYLES,
    Study,
    cliff_summary,
    compare,
    conditions,
    epoch_steps,
    figure,
    n_runs,
    no_probe,
    usable,
)
from .table import TABLE_COLUMNS, against_baseline, not_run, outcomes, pooled, rate_table  # noqa: F401
