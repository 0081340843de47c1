"""The table of notebook 09: ASR and ORR per condition, and each selector against random selection.

    rate_table(evaluated, seed, judge)    ASR and ORR per condition: Wilson per run, a bootstrap over prompts of each
                                          condition's pooled runs (seed -1), each selector minus random, and each
                                          cliff selector minus complied traces taken at random (rule_complied), over
                                          runs and prompts (intervals.runs_difference_ci)
    pooled(table)                         the rows the figure and the claims read
    outcomes(evaluated)                   per held-out harmful prompt and run: complied or not (the seed lane pools
                                          them over the organisms' training seeds)
    not_run(model, conditions, reason)    the table's rows for conditions that could not run, NA with the reason
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ... import intervals

TABLE_COLUMNS = ["model", "selector", "share", "seed", "metric", "value", "low", "high", "n", "steps", "judge", "note"]


def _rates(frame: pd.DataFrame, keys: dict, seed: int) -> list[dict]:
    rows = []
    for metric, label, outcome in [("ASR", "harmful", False), ("ORR", "benign", True)]:
        part = frame[(frame["label"] == label) & frame["refused"].notna()]
        hits = int((part["refused"].astype(bool) == outcome).sum())
        if part["seed"].nunique() > 1:
            value, low, high = intervals.bootstrap_ci(part, lambda f, o=outcome: float((f["refused"] == o).mean()),
                                                      n_boot=500, seed=seed)
        else:
            value, low, high = intervals.wilson_interval(hits, len(part))
        steps = part["steps"].iloc[0] if "steps" in part and len(part) else np.nan
        rows.append({**keys, "metric": metric, "value": value, "low": low, "high": high, "n": len(part),
                     "steps": steps})
    return rows


def rate_table(evaluated: pd.DataFrame, seed: int = 0, judge: str = "refused_b") -> pd.DataFrame:
    """ASR (harmful answered) and ORR (benign refused) per model, selector, run seed and share, with Wilson
    intervals over held-out prompts; each condition's runs pooled as ``seed = -1`` (a bootstrap over prompts of
    the pooled samples when there are several); and each selector's ASR minus random selection's at the same
    share (metric "ASR minus random", seed -1), with a two-level bootstrap over prompts and runs
    (:func:`lrmsafety.intervals.runs_difference_ci`): the interval the verdict on a selector is judged by. Where
    ``rule_complied`` ran, each cliff selector's ASR minus its ASR as well ("ASR minus rule_complied"): MS is the
    thinking's peak minus the final score, and a refused trace's final score is its peak, so a cliff selector takes
    complied traces first on any model; against complied traces taken at random, what the cliff adds beyond the
    outcome is left. ``judge`` names the label (paper B's) in every row."""
    records = []
    for (name, selector, run_seed, share), part in evaluated.groupby(["model", "selector", "seed", "share"]):
        records += _rates(part, {"model": name, "selector": selector, "share": share, "seed": run_seed}, seed)
    for (name, selector, share), part in evaluated.groupby(["model", "selector", "share"]):
        records += _rates(part, {"model": name, "selector": selector, "share": share, "seed": -1}, seed)
    records += _against_baselines(evaluated, seed)
    table = pd.DataFrame(records, columns=TABLE_COLUMNS)
    return table.assign(judge=judge, note="")


def outcomes(evaluated: pd.DataFrame, judge: str = "refused_b") -> pd.DataFrame:
    """One row per held-out harmful prompt and run (model, selector, share, seed): ``complied`` 1/0, NaN where the
    judge gave no label, and the judge's label name; the inputs of "ASR minus random", saved so that runs can be
    pooled across result folders."""
    harmful = evaluated[evaluated["label"] == "harmful"]
    return harmful.assign(complied=1.0 - harmful["refused"].astype(float), judge=judge)[
        ["model", "selector", "share", "seed", "prompt_id", "complied", "judge"]].reset_index(drop=True)


CLIFF_SELECTORS = ("cliff_ms", "cliff_final")


def against_baseline(complied: pd.DataFrame, seed: int = 0, run: Sequence[str] = ("seed",),
                     baseline: str = "random", selectors: Sequence[str] | None = None) -> list[dict]:
    """Each selector's ASR (of ``selectors``, default all) minus the ``baseline`` selector's per model and share
    (rows of :func:`outcomes`; metric "ASR minus <baseline>"), its runs the distinct values of the ``run`` columns,
    with a two-level bootstrap over prompts and runs."""
    rows = []
    keyed = complied.assign(run=complied[list(run)].astype(str).agg("/".join, axis=1))
    for (name, share), part in keyed.groupby(["model", "share"]):
        runs = {sel: frame.pivot_table(index="run", columns="prompt_id", values="complied", dropna=False)
                for sel, frame in part.groupby("selector")}
        if baseline not in runs:
            continue
        for selector, table in runs.items():
            if selector == baseline or (selectors is not None and selector not in selectors):
                continue
            prompts = table.columns.intersection(runs[baseline].columns)
            value, low, high = intervals.runs_difference_ci(table[prompts].to_numpy(),
                                                            runs[baseline][prompts].to_numpy(), seed=seed)
            rows.append({"model": name, "selector": selector, "share": share, "seed": -1,
                         "metric": f"ASR minus {baseline}", "value": value, "low": low, "high": high,
                         "n": len(prompts), "runs": len(table)})
    return rows


def _against_baselines(evaluated: pd.DataFrame, seed: int) -> list[dict]:
    """ASR of every selector minus random selection's, and of the cliff selectors minus rule_complied's, per model
    and share, over the runs of each (seed -1)."""
    harmful = evaluated[evaluated["label"] == "harmful"]
    steps = harmful.groupby(["model", "selector", "share"])["steps"].first()
    complied = outcomes(evaluated)
    rows = against_baseline(complied, seed) + against_baseline(complied, seed, baseline="rule_complied",
                                                           selectors=CLIFF_SELECTORS)
    for row in rows:
        row.pop("runs")
        row["steps"] = steps.get((row["model"], row["selector"], row["share"]), np.nan)
    return rows


def pooled(table: pd.DataFrame, report: Callable[[str], None] = print) -> pd.DataFrame:
    """The rows the figure and the claims read (every condition's runs pooled, ``seed = -1``); the conditions that
    could not run are reported, one line per reason."""
    rows = table[table["seed"] == -1]
    for note, part in rows[rows["note"] != ""].groupby("note"):
        report(f"NA ({', '.join(sorted(set(part['model'])))}; {', '.join(dict.fromkeys(part['selector']))}): {note}")
    return rows


def not_run(model: str, conditions: Sequence[tuple[str, float]], reason: str, judge: str = "refused_b") -> pd.DataFrame:
    """NA rows (ASR and ORR) for (selector, share) conditions that could not run, each with the reason, as pooled
    rows (seed -1), which the claims read."""
    rows = [{"model": model, "selector": sel, "share": share, "seed": -1, "metric": metric,
             "value": np.nan, "low": np.nan, "high": np.nan, "n": 0, "steps": np.nan, "judge": judge, "note": reason}
            for sel, share in conditions for metric in ("ASR", "ORR")]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
