"""The claims ledger (paper/claims.yaml): validated when loaded, then filled from a profile's result tables.

``load_ledger()`` validates it (:mod:`lrmsafety.ledger_schema`: the fields, and errors that name where they are and
what to fix); ``fill()`` looks each measure up in data/results/<profile>/ and gives it a verdict by its 95% interval
(:mod:`lrmsafety.verdicts`): against the planted targets on the organisms (controls), against the published value
widened by the ledger's tolerance on real models. A difference between two rows (``minus``, ``minus_model``) gets
its interval from the two rows' intervals (:func:`intervals.difference_interval`). Nothing here types a number.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import verdicts
from .intervals import difference_interval
from .ledger_schema import CONTROL_PROFILES, LEDGER_PATH, VERDICTS, Ledger, LedgerError, Measure, Target, load_ledger
from .paths import REPO_ROOT


def _select(frame: pd.DataFrame, query: str | None, measure: Measure, table: str) -> pd.DataFrame:
    if not query:
        return frame
    try:
        return frame.query(query)
    except Exception as err:  # pandas raises UndefinedVariableError, KeyError, SyntaxError ...
        raise LedgerError(f"{measure.id}: select {query!r} does not run on {table} ({type(err).__name__}: {err}); "
                          f"its columns are {list(frame.columns)}: fix `select:` in the ledger") from None


def _estimate(rows: pd.DataFrame, measure: Measure) -> tuple[float, float | None, float | None, float | None]:
    """(value, low, high, n) of the selected rows of one model. Several rows (``aggregate: mean``, e.g. random
    draws on the same prompts) give their n-weighted mean, and as its interval the same mean of their bounds: the
    interval of the mean when the rows' errors move together (the same prompts), wider than it otherwise."""
    from .intervals import wilson_interval

    n = rows[measure.n].astype(float) if measure.n else None

    def bounds(row) -> tuple[float | None, float | None]:
        low = float(row[measure.low]) if measure.low and pd.notna(row[measure.low]) else None
        high = float(row[measure.high]) if measure.high and pd.notna(row[measure.high]) else None
        n_row = float(row[measure.n]) if measure.n and pd.notna(row[measure.n]) else None
        if low is None and measure.count and n_row and pd.notna(row[measure.count]):
            _, low, high = wilson_interval(int(row[measure.count]), int(n_row))
        return low, high

    if len(rows) > 1:
        weights = n if n is not None and n.sum() > 0 else pd.Series(1.0, index=rows.index)
        values = rows[measure.value].astype(float)
        ok = values.notna()
        if not ok.any():
            return math.nan, None, None, float(n.sum()) if n is not None else None
        w = weights[ok] / weights[ok].sum()
        value = float((values[ok] * w).sum())
        spans = [bounds(row) for _, row in rows[ok].iterrows()]
        low = high = None
        if all(lo is not None and hi is not None for lo, hi in spans):
            low = float(sum(lo * wi for (lo, _), wi in zip(spans, w)))
            high = float(sum(hi * wi for (_, hi), wi in zip(spans, w)))
        return value, low, high, float(n.sum()) if n is not None else None
    row = rows.iloc[0]
    value = float(row[measure.value])
    n_value = float(row[measure.n]) if measure.n and pd.notna(row[measure.n]) else None
    low, high = bounds(row)
    return value, low, high, n_value


def _lookup(measure: Measure, model: str, results_dir: Path, tables: dict) -> dict:
    """Our value for one measure and model, or why there is none."""
    path = results_dir / measure.table
    if measure.table not in tables:
        if not path.exists():
            where = (f"notebook {measure.notebook} is not in the repository yet"
                     if not (REPO_ROOT / "notebooks" / f"{measure.notebook}.py").exists()
                     else f"{measure.notebook} has not written it on this profile")
            tables[measure.table] = f"{measure.table} missing: {where}"
        else:
            tables[measure.table] = pd.read_csv(path)
    frame = tables[measure.table]
    if isinstance(frame, str):
        return {"reason": frame}
    absent = [c for c in (measure.value, measure.low, measure.high, measure.n, measure.count, measure.model_column)
              if c and c not in frame.columns]
    if absent:
        raise LedgerError(f"{measure.id}: {measure.table} has no column {absent}; its columns are "
                          f"{list(frame.columns)}: fix the measure's column names in the ledger")
    mine = frame[frame[measure.model_column] == model]
    if measure.minus_model and not (frame[measure.model_column] == measure.minus_model).any():
        return {"reason": f"{measure.table} has no row for {measure.minus_model}, the model this measure subtracts"}
    picked = _select(mine, measure.select, measure, measure.table)
    if picked.empty:
        return {"reason": f"{measure.table} has no row for {model}" + (f" where {measure.select}" if measure.select
                                                                          else "")}
    if len(picked) > 1 and measure.aggregate is None:
        raise LedgerError(f"{measure.id}: select {measure.select!r} matches {len(picked)} rows of {measure.table} "
                          f"for {model}: narrow `select:` or set `aggregate: mean`")
    value, low, high, n = _estimate(picked, measure)
    if measure.minus:
        other = measure.minus_model or model
        base = _select(frame[frame[measure.model_column] == other], measure.minus, measure, measure.table)
        if base.empty:
            return {"reason": f"{measure.table} has no row for {other} where {measure.minus}"}
        b, b_low, b_high, _ = _estimate(base, measure)
        nan = lambda x: math.nan if x is None else x  # noqa: E731
        value, low, high = difference_interval(value, nan(low), nan(high), b, nan(b_low), nan(b_high))
        low, high = (None, None) if math.isnan(low) else (low, high)
    if math.isnan(value):
        reason = picked["reason"].dropna().astype(str).str.cat(sep="; ") if "reason" in picked else ""
        return {"reason": f"{measure.table}: no value for {model}" + (f" ({reason})" if reason else "")}
    return {"ours": value, "low": low, "high": high, "n": n}


def _verdict(measure: Measure, model: str, ours: float, low, high, control: bool) -> tuple[str, str, str]:
    """(verdict, reason, target text) for a measured value, by where its 95% interval lies (lrmsafety.verdicts)."""
    if control:
        target = measure.targets.get(model)
        if target is None:
            return "no verdict", "no planted target for this organism: shown for reference", "–"
        where = verdicts.placement(low, high, target.min, target.max)
        return (verdicts.word(where, measure.kind),
                verdicts.explain(where, ours, low, high, f"the planted target {target.text()}"), target.text())
    if measure.published is None:
        return "no verdict", "nothing published to compare with", "–"
    p_low, p_high, text = measure.published.for_model(model)
    if p_low is None:
        return "no verdict", "published without a number", "–"
    tol = measure.tolerance
    scope = "this model's value" if model in measure.published.per_model else "the published value (any model)"
    target = f"{scope} {text}" + (f" widened by {tol:g}" if tol else "")
    where = verdicts.placement(low, high, p_low - tol, p_high + tol)
    return verdicts.word(where, "paper"), verdicts.explain(where, ours, low, high, target), "–"


def fill(ledger: Ledger, results_dir: Path, profile: str, models: list[str], strict: bool = True) -> pd.DataFrame:
    """One row per claim × measure × model with published, ours, CI, n, verdict and its reason.

    strict: a measure whose columns or select do not fit its (existing) table raises LedgerError; otherwise the
    row is "not measured" with that message (tiny profiles whose tables may lack a column, e.g. no oscillations).
    """
    control = profile in CONTROL_PROFILES
    tables: dict = {}
    rows = []
    for claim in ledger.claims:
        base = {"paper": claim.paper, "claim_id": claim.id, "checklist": claim.checklist, "claim": claim.claim}
        measures = [m for m in claim.measures if m.applies_to(profile)]
        if not measures:
            reason = claim.not_measured_because or f"no measure of this claim applies to the {profile} profile"
            rows.append({**base, "measure_id": claim.id, "kind": "method", "what": "–", "model": "–",
                         "verdict": "not measured", "reason": reason, "headline": False})
            continue
        for measure in measures:
            for model in models:
                published = measure.published.for_model(model) if measure.published else (None, None, "–")
                row = {**base, "measure_id": measure.id, "kind": measure.kind, "what": measure.what,
                       "label": measure.label or measure.what, "notebook": measure.notebook, "table": measure.table,
                       "model": model,
                       "published": published[2], "published_low": published[0], "published_high": published[1],
                       "source": measure.published.source if measure.published else None,
                       "confidence": measure.published.confidence if measure.published else None,
                       "headline": profile in measure.headline}
                try:
                    found = _lookup(measure, model, results_dir, tables)
                except LedgerError as err:
                    if strict:
                        raise
                    found = {"reason": f"the ledger does not fit the table: {err}"}
                if "ours" in found:
                    verdict, reason, target = _verdict(measure, model, found["ours"], found["low"], found["high"],
                                                       control)
                    row.update(found, verdict=verdict, reason=reason, target=target)
                else:
                    target = measure.targets[model].text() if model in measure.targets else "–"
                    row.update(verdict="not measured", reason=found["reason"], target=target)
                rows.append(row)
    columns = ["paper", "claim_id", "checklist", "claim", "measure_id", "kind", "what", "label", "notebook", "table",
               "model", "published", "published_low", "published_high", "source", "confidence", "target", "ours", "low",
               "high", "n", "verdict", "reason", "headline"]
    return pd.DataFrame(rows).reindex(columns=columns)


def measure_of(ledger: Ledger, measure_id: str) -> Measure:
    """The ledger's measure of that id; a LedgerError names the file where there is none."""
    measure = next((m for c in ledger.claims for m in c.measures if m.id == measure_id), None)
    if measure is None:
        raise LedgerError(f"no measure {measure_id!r} in {LEDGER_PATH}")
    return measure


def target_of(ledger: Ledger, measure_id: str, model: str) -> Target:
    return measure_of(ledger, measure_id).targets[model]


def verdict_counts(filled: pd.DataFrame, kind: str | None = None) -> dict[str, int]:
    """How many rows have each verdict; ``kind`` ("card" or "method") counts those rows only."""
    if kind is not None:
        filled = filled[filled["kind"] == kind]
    counts = filled["verdict"].value_counts()
    return {v: int(counts[v]) for v in VERDICTS if v in counts}


def tables_read(filled: pd.DataFrame, results_dir: Path) -> dict[str, int]:
    """The result tables the ledger names that exist on this profile, with their row counts."""
    names = sorted(set(filled["table"].dropna()))
    return {t: len(pd.read_csv(results_dir / t)) for t in names if (results_dir / t).exists()}


BOARD_COLUMNS = ["measure_id", "what", "model", "published", "target", "ours", "low", "high", "n", "verdict"]


def board(notebook: str, profile: str, models: list[str], results_dir: Path | None = None) -> pd.DataFrame:
    """A notebook's rows of the claims ledger: our number beside the published one (or, on the organisms, the
    planted target) with the ledger's verdict. Notebooks show this instead of judging their own numbers."""
    from .paths import RESULTS_DIR

    filled = fill(load_ledger(), results_dir or RESULTS_DIR / profile, profile, models, strict=False)
    return filled[filled["notebook"] == notebook][BOARD_COLUMNS].reset_index(drop=True)


def published(measure_id: str, model: str | None = None) -> tuple[float | None, float | None, str]:
    """A measure's published value as (low, high, text), for drawing it beside ours; ``model`` picks a per-model
    value where the paper gives one."""
    measure = measure_of(load_ledger(), measure_id)
    if measure.published is None:
        return None, None, "–"
    return measure.published.for_model(model or "")
