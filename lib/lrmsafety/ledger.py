"""The claims ledger (paper/claims.yaml): validated when loaded, then filled from a profile's result tables.

``load_ledger()`` validates it, and every error names where it is and what to fix; ``fill()`` looks each measure
up in data/results/<profile>/ and gives it a verdict by its 95% interval (:mod:`lrmsafety.verdicts`): against the
planted targets on the organisms (controls), against the published value widened by the ledger's tolerance on real
models. A difference between two rows (``minus``, ``minus_model``) gets its interval from the two rows' intervals
(:func:`intervals.difference_interval`). Nothing here types a number.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from . import verdicts
from .intervals import difference_interval
from .paths import REPO_ROOT
from .verdicts import fmt

LEDGER_PATH = REPO_ROOT / "paper" / "claims.yaml"
# notebooks of DESIGN.md not yet in notebooks/: a measure may name them, and renders "not measured" until they run
PLANNED_NOTEBOOKS: tuple[str, ...] = ()  # notebooks a ledger row may name before they exist
CONTROL_PROFILES = ("organism", "smoke")  # profiles whose models are the organisms: verdicts vs planted targets
VERDICTS = ("reproduced", "recovered", "as built", "differs", "not as built", "inconclusive", "no verdict",
            "not measured")


class LedgerError(ValueError):
    """A ledger that does not validate, or that does not fit the result table it names."""


def known_notebooks() -> list[str]:
    return sorted({p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")} | set(PLANNED_NOTEBOOKS))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Published(_Strict):
    value: float | None = None
    range: tuple[float, float] | None = None
    above: float | None = None
    below: float | None = None
    per_model: dict[str, float] = {}
    text: str | None = None
    source: str | None = None
    confidence: Literal["code", "secondary"] | None = None

    @model_validator(mode="after")
    def _sourced(self):
        kinds = [k for k in ("value", "range", "above", "below") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"give one of value / range / above / below, not {kinds}")
        if not (self.source and self.confidence):
            raise ValueError("a published value needs `source:` (where the number comes from) and "
                             "`confidence: code` or `confidence: secondary`")
        if not (kinds or self.per_model or self.text):
            raise ValueError("published names no value: give value, range, above, below, per_model or text")
        return self

    def for_model(self, model: str) -> tuple[float | None, float | None, str]:
        """(low, high, text) of the published value for this model: its own value, else the general one."""
        if model in self.per_model:
            v = self.per_model[model]
            return v, v, fmt(v)
        if self.value is not None:
            return self.value, self.value, fmt(self.value)
        if self.range is not None:
            return self.range[0], self.range[1], f"{fmt(self.range[0])}–{fmt(self.range[1])}"
        if self.above is not None:
            return self.above, math.inf, f"> {fmt(self.above)}"
        if self.below is not None:
            return -math.inf, self.below, f"< {fmt(self.below)}"
        return None, None, self.text or "–"


class Target(_Strict):
    min: float | None = None
    max: float | None = None

    def text(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{fmt(self.min)}–{fmt(self.max)}" if self.min != self.max else f"= {fmt(self.min)}"
        return f"≥ {fmt(self.min)}" if self.min is not None else f"≤ {fmt(self.max)}"


class Measure(_Strict):
    id: str
    what: str
    label: str | None = None
    notebook: str
    table: str
    select: str | None = None
    model_column: str = "model"
    value: str
    low: str | None = None
    high: str | None = None
    n: str | None = None
    count: str | None = None
    aggregate: Literal["mean"] | None = None
    minus: str | None = None
    minus_model: str | None = None
    # what a row checks on the organisms: "card", that an organism behaves as it was built (its refusal rates, what
    # its thinking concludes); "method", that a paper's method recovers what was planted. The report counts them apart
    kind: Literal["method", "card"] = "method"
    published: Published | None = None
    tolerance: float = 0.0
    targets: dict[str, Target] = {}
    profiles: list[str] | None = None
    headline: list[str] = []

    @field_validator("notebook")
    @classmethod
    def _known_notebook(cls, name):
        known = known_notebooks()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown notebook {name!r}{hint} Known: {', '.join(known)}")
        return name

    @field_validator("table")
    @classmethod
    def _csv(cls, name):
        if not name.endswith(".csv") or "/" in name:
            raise ValueError(f"table {name!r} must be a CSV file name in data/results/<profile>/, e.g. 01_metrics.csv")
        return name

    @model_validator(mode="after")
    def _minus_model_needs_minus(self):
        if self.minus_model and not self.minus:
            raise ValueError("minus_model names whose rows `minus:` selects: give `minus:` too")
        return self

    def applies_to(self, profile: str) -> bool:
        return self.profiles is None or profile in self.profiles


class Claim(_Strict):
    id: str
    paper: Literal["A", "B", "C"]
    checklist: int
    claim: str
    caveat: str | None = None
    not_measured_because: str | None = None
    measures: list[Measure] = []

    @model_validator(mode="after")
    def _measured_or_explained(self):
        if not self.measures and not self.not_measured_because:
            raise ValueError("a claim without measures needs `not_measured_because:` (why nothing measures it)")
        return self


class Ledger(_Strict):
    papers: dict[Literal["A", "B", "C"], str]
    organisms: dict[str, str] = {}
    claims: list[Claim]

    @model_validator(mode="after")
    def _complete(self):
        ids = [c.id for c in self.claims] + [m.id for c in self.claims for m in c.measures]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"ids must be unique; repeated: {duplicates}")
        from .registry import REGISTRY

        for measure in (m for c in self.claims for m in c.measures):
            named = (list(measure.published.per_model if measure.published else []) + list(measure.targets)
                     + ([measure.minus_model] if measure.minus_model else []))
            for name in named:
                if name not in REGISTRY:
                    close = difflib.get_close_matches(name.lower(), list(REGISTRY), n=1)
                    raise ValueError(f"{measure.id} names model {name!r}, which is not in the registry"
                                     + (f"; did you mean {close[0]!r}?" if close else " (lrmsafety.registry)"))
        missing = sorted(set(range(1, 15)) - {c.checklist for c in self.claims})
        if missing:
            raise ValueError(f"checklist items {missing} of methods.md have no claim: add one (with "
                             "`not_measured_because:` if nothing measures it)")
        return self


def _where(raw: dict, loc: tuple) -> str:
    """'claims[3] (A4) > measures[0] (A4.locked) > published' from a pydantic error location."""
    parts, node = [], raw
    for key in loc:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
        label = f"[{key}]" if isinstance(key, int) else f" > {key}"
        if isinstance(key, int) and isinstance(node, dict) and "id" in node:
            label += f" ({node['id']})"
        parts.append(label)
    return "".join(parts).removeprefix(" > ") or "the ledger"


def load_ledger(path: Path | str = LEDGER_PATH) -> Ledger:
    """Read and validate the ledger; every error names where it is and what to fix."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise LedgerError(f"{path} is not valid YAML (quote a value that holds ': ' or ', ' in braces):"
                          f"\n{err}") from None
    try:
        return Ledger.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            message = e["msg"].removeprefix("Value error, ")
            if e["type"] == "missing":
                message = f"missing required field {e['loc'][-1]!r}"
            elif e["type"] == "extra_forbidden":
                message = f"unknown field {e['loc'][-1]!r} (see the field list at the top of {path.name})"
            lines.append(f"  {_where(raw, e['loc'])}: {message}")
        raise LedgerError(f"{path} does not validate:\n" + "\n".join(lines)) from None


# ---------------------------------------------------------------- filling the ledger from the result tables

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
