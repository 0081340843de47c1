"""The claims ledger (paper/claims.yaml) and the reproduction report in paper/<profile>/.

``load_ledger()`` validates the ledger; ``fill()`` looks up every measure in data/results/<profile>/ and gives it a
verdict; ``summary_figure()`` draws the headline rows published vs ours; ``write_report()`` writes index.md and a
self-contained index.html; ``render_notebooks()`` renders executed notebooks to HTML without progress-bar noise.
Nothing here types a number: values come from the result tables, published values from the ledger.
"""

from __future__ import annotations

import base64
import difflib
import html
import logging
import math
import os
import re
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from .paths import REPO_ROOT

LEDGER_PATH = REPO_ROOT / "paper" / "claims.yaml"
# notebooks of DESIGN.md not yet in notebooks/: a measure may name them, and renders "not measured" until they run
PLANNED_NOTEBOOKS = ("05_refusal_cliff", "06_refusal_heads", "08_interventions", "09_cliff_as_judge")
CONTROL_PROFILES = ("organism", "smoke")  # profiles whose models are the organisms: verdicts vs planted targets
VERDICTS = ("reproduced", "recovered", "differs", "no verdict", "not measured")


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
            return v, v, _fmt(v)
        if self.value is not None:
            return self.value, self.value, _fmt(self.value)
        if self.range is not None:
            return self.range[0], self.range[1], f"{_fmt(self.range[0])}–{_fmt(self.range[1])}"
        if self.above is not None:
            return self.above, math.inf, f"> {_fmt(self.above)}"
        if self.below is not None:
            return -math.inf, self.below, f"< {_fmt(self.below)}"
        return None, None, self.text or "–"


class Target(_Strict):
    min: float | None = None
    max: float | None = None

    def text(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{_fmt(self.min)}–{_fmt(self.max)}" if self.min != self.max else f"= {_fmt(self.min)}"
        return f"≥ {_fmt(self.min)}" if self.min is not None else f"≤ {_fmt(self.max)}"

    def met(self, value: float) -> bool:
        return (self.min is None or value >= self.min - 1e-12) and (self.max is None or value <= self.max + 1e-12)


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
    return "".join(parts).removeprefix(" > ")


def load_ledger(path: Path | str = LEDGER_PATH) -> Ledger:
    """Read and validate the ledger; every error names where it is and what to fix."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise LedgerError(f"{path} is not valid YAML (quote a value that holds ': ' or ', ' in braces):\n{err}") from None
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

def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3f}"


def _select(frame: pd.DataFrame, query: str | None, measure: Measure, table: str) -> pd.DataFrame:
    if not query:
        return frame
    try:
        return frame.query(query)
    except Exception as err:  # pandas raises UndefinedVariableError, KeyError, SyntaxError ...
        raise LedgerError(f"{measure.id}: select {query!r} does not run on {table} ({type(err).__name__}: {err}); "
                          f"its columns are {list(frame.columns)}: fix `select:` in the ledger") from None


def _estimate(rows: pd.DataFrame, measure: Measure) -> tuple[float, float | None, float | None, float | None]:
    """(value, low, high, n) of the selected rows of one model."""
    from .metrics import wilson_interval

    n = rows[measure.n].astype(float) if measure.n else None
    if len(rows) > 1:
        weights = n if n is not None and n.sum() > 0 else pd.Series(1.0, index=rows.index)
        values = rows[measure.value].astype(float)
        ok = values.notna()
        value = float((values[ok] * weights[ok]).sum() / weights[ok].sum()) if ok.any() else math.nan
        return value, None, None, float(n.sum()) if n is not None else None
    row = rows.iloc[0]
    value = float(row[measure.value])
    n_value = float(row[measure.n]) if measure.n and pd.notna(row[measure.n]) else None
    low = float(row[measure.low]) if measure.low and pd.notna(row[measure.low]) else None
    high = float(row[measure.high]) if measure.high and pd.notna(row[measure.high]) else None
    if low is None and measure.count and n_value:
        _, low, high = wilson_interval(int(row[measure.count]), int(n_value))
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
    picked = _select(mine, measure.select, measure, measure.table)
    if picked.empty:
        return {"reason": f"{measure.table} has no row for {model}" + (f" where {measure.select}" if measure.select
                                                                          else "")}
    if len(picked) > 1 and measure.aggregate is None:
        raise LedgerError(f"{measure.id}: select {measure.select!r} matches {len(picked)} rows of {measure.table} "
                          f"for {model}: narrow `select:` or set `aggregate: mean`")
    value, low, high, n = _estimate(picked, measure)
    if measure.minus:
        base = _select(mine, measure.minus, measure, measure.table)
        if base.empty:
            return {"reason": f"{measure.table} has no row for {model} where {measure.minus}"}
        value, low, high = value - _estimate(base, measure)[0], None, None
    if math.isnan(value):
        reason = picked["reason"].dropna().astype(str).str.cat(sep="; ") if "reason" in picked else ""
        return {"reason": f"{measure.table}: no value for {model}" + (f" ({reason})" if reason else "")}
    return {"ours": value, "low": low, "high": high, "n": n}


def _verdict(measure: Measure, model: str, ours: float, control: bool) -> tuple[str, str, str]:
    """(verdict, reason, target text) for a measured value."""
    if control:
        target = measure.targets.get(model)
        if target is None:
            return "no verdict", "no planted target for this organism: shown for reference", "–"
        met = target.met(ours)
        return ("recovered" if met else "differs",
                f"{_fmt(ours)} {'meets' if met else 'misses'} the planted target {target.text()}", target.text())
    if measure.published is None:
        return "no verdict", "nothing published to compare with", "–"
    low, high, text = measure.published.for_model(model)
    if low is None:
        return "no verdict", "published without a number", "–"
    tol = measure.tolerance
    inside = low - tol <= ours <= high + tol
    if measure.published.above is not None and model not in measure.published.per_model:
        inside = ours > low - tol
    if measure.published.below is not None and model not in measure.published.per_model:
        inside = ours < high + tol
    scope = "this model's value" if model in measure.published.per_model else "the published value (any model)"
    return ("reproduced" if inside else "differs",
            f"{_fmt(ours)} {'within' if inside else 'outside'} {tol:g} of {scope} {text}", "–")


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
            rows.append({**base, "measure_id": claim.id, "what": "–", "model": "–", "verdict": "not measured",
                         "reason": reason})
            continue
        for measure in measures:
            for model in models:
                published = measure.published.for_model(model) if measure.published else (None, None, "–")
                row = {**base, "measure_id": measure.id, "what": measure.what, "label": measure.label or measure.what,
                       "notebook": measure.notebook, "table": measure.table, "model": model,
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
                    verdict, reason, target = _verdict(measure, model, found["ours"], control)
                    row.update(found, verdict=verdict, reason=reason, target=target)
                else:
                    target = measure.targets[model].text() if model in measure.targets else "–"
                    row.update(verdict="not measured", reason=found["reason"], target=target)
                rows.append(row)
    columns = ["paper", "claim_id", "checklist", "claim", "measure_id", "what", "label", "notebook", "table", "model",
               "published", "published_low", "published_high", "source", "confidence", "target", "ours", "low",
               "high", "n", "verdict", "reason", "headline"]
    return pd.DataFrame(rows).reindex(columns=columns)


# ---------------------------------------------------------------- the summary figure

def _short_title(paper: str, ledger: Ledger) -> str:
    quoted = re.search(r'"([^"]+)"', ledger.papers[paper])
    return f"{paper} · {quoted.group(1) if quoted else ledger.papers[paper]}"


def model_colors(models: list[str]) -> dict[str, str]:
    import seaborn as sns

    from .plots import PALETTE

    palette = sns.color_palette("colorblind", len(models)).as_hex()
    return {m: PALETTE.get(m.removeprefix("organism-"), palette[i]) for i, m in enumerate(models)}


def summary_figure(filled: pd.DataFrame, ledger: Ledger, models: list[str], control: bool):
    """Published (grey) vs ours (a dot per model, 95% CI) for the headline rows of A, B and C; planted targets
    (light bars) on the organism profile; 'not measured' where a table is missing."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    head = filled[filled["headline"].fillna(False).astype(bool)]
    colors = model_colors(models)
    labels = {p: list(dict.fromkeys(head[head["paper"] == p]["label"])) for p in ("A", "B", "C")}
    height = max(2.4, 0.62 * max(len(v) for v in labels.values()) + 1.2)
    fig, axes = plt.subplots(1, 3, figsize=(13, height))
    offsets = {m: (i - (len(models) - 1) / 2) * 0.22 for i, m in enumerate(models)}
    for ax, paper in zip(axes, ("A", "B", "C")):
        rows = head[head["paper"] == paper]
        finite = pd.concat([rows[c] for c in ("ours", "low", "high", "published_low", "published_high")])
        finite = pd.to_numeric(finite, errors="coerce")
        finite = finite[finite.abs() < math.inf].dropna()
        xmin = min(0.0, finite.min() - 0.05) if len(finite) else 0.0
        xmax = max(1.0, finite.max() + 0.05) if len(finite) else 1.0
        for y, label in enumerate(labels[paper]):
            measure = rows[rows["label"] == label]
            first = measure.iloc[0]
            lo, hi = first["published_low"], first["published_high"]
            if pd.notna(lo):
                lo, hi = max(float(lo), xmin), min(float(hi), xmax)
                if hi - lo > 1e-9:
                    ax.barh(y, hi - lo, left=lo, height=0.8, color="0.9", zorder=0)
                else:
                    ax.plot(lo, y, marker="D", color="0.45", ms=7, zorder=2)
            for _, r in measure.iterrows():
                yy = y + offsets[r["model"]]
                if control and r["target"] not in (None, "–") and isinstance(r["target"], str):
                    target = ledger_target(ledger, r["measure_id"], r["model"])
                    t_lo = xmin if target.min is None else target.min
                    t_hi = xmax if target.max is None else target.max
                    ax.barh(yy, max(t_hi - t_lo, 0.01), left=t_lo, height=0.15, color=colors[r["model"]],
                            alpha=0.35, zorder=1)
                if pd.notna(r["ours"]):
                    err = ([[r["ours"] - r["low"]], [r["high"] - r["ours"]]] if pd.notna(r["low"]) else None)
                    ax.errorbar(r["ours"], yy, xerr=err, fmt="o", color=colors[r["model"]], ms=6, capsize=2,
                                zorder=3)
                else:
                    ax.text(xmin + 0.02 * (xmax - xmin), yy, "not measured", va="center", fontsize=7,
                            color=colors[r["model"]], style="italic", zorder=3)
        ax.set_yticks(range(len(labels[paper])), [textwrap.fill(s, 26) for s in labels[paper]], fontsize=8)
        ax.set_ylim(len(labels[paper]) - 0.5, -0.5)
        ax.set_xlim(xmin, xmax)
        ax.set_title(_short_title(paper, ledger), fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    handles = [Patch(color="0.9", label="published (range or bound)"),
               Line2D([], [], marker="D", color="0.45", ls="", label="published (value)")]
    if control:
        handles.append(Patch(color="0.5", alpha=0.35, label="planted target (model colour)"))
    handles += [Line2D([], [], marker="o", color=colors[m], ls="", label=m) for m in models]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("Published vs ours" + (" (organisms: controls with planted targets)" if control else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    return fig


def ledger_target(ledger: Ledger, measure_id: str, model: str) -> Target:
    return next(m for c in ledger.claims for m in c.measures if m.id == measure_id).targets[model]


# ---------------------------------------------------------------- the report: Markdown source and HTML

def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ci(row) -> str:
    return f"{_fmt(row['low'])}–{_fmt(row['high'])}" if pd.notna(row["low"]) else "–"


def _n(row) -> str:
    return f"{int(row['n']):,}" if pd.notna(row.get("n")) else "–"


def verdict_counts(filled: pd.DataFrame) -> dict[str, int]:
    counts = filled["verdict"].value_counts()
    return {v: int(counts[v]) for v in VERDICTS if v in counts}


def markdown_report(filled: pd.DataFrame, ledger: Ledger, profile: str, figure: str | None,
                    figures: dict[str, list[str]], notebooks: list[str], tables_read: dict[str, int]) -> str:
    """The report as Markdown; figure paths are relative to paper/<profile>/."""
    control = profile in CONTROL_PROFILES
    out = [f"# Reproduction report · profile `{profile}`", ""]
    if control:
        out += ["> **These are controls, not the papers' models.** On this profile every notebook runs on the "
                "repository's own small reasoning models (the organisms), built with a known, planted behaviour. "
                "A verdict says whether the paper's method **recovered** what was planted (or **differs** from the "
                "planted target); the papers' published values are shown beside ours for reference only, never "
                "compared. What was planted:", ">"]
        out += [f"> - `{name}`: {text}" for name, text in ledger.organisms.items()]
    else:
        out += ["Each model is compared with the papers' published values: **reproduced** when our estimate lies "
                "within the ledger's tolerance of the model's own published value (or of the published range over "
                "the papers' models when this model was not in the paper), else **differs**."]
    counts = verdict_counts(filled)
    out += ["", "**Verdicts:** " + " · ".join(f"{n} {v}" for v, n in counts.items()) +
            " (one per claim, measure and model; `paper/claims.yaml` lists them).", ""]
    if figure:
        out += [f"![Published vs ours: the headline numbers of papers A, B and C]({figure})", ""]
    out += ["## Claims at a glance", "", "| claim | checklist | what the paper claims | verdicts on this profile |",
            "|---|---|---|---|"]
    for claim in ledger.claims:
        rows = filled[filled["claim_id"] == claim.id]
        measured = rows[rows["verdict"] != "not measured"]
        glance = " · ".join(f"{n} {v}" for v, n in verdict_counts(rows).items())
        if measured.empty:
            glance = f"not measured: {rows['reason'].iloc[0]}"
        out.append(f"| [{claim.id}](#{claim.id.lower()}) | {claim.checklist} | {_cell(claim.claim)} | {_cell(glance)} |")
    out.append("")
    shown = set()
    for paper, title in ledger.papers.items():
        out += [f"## {paper} · {title}", ""]
        part = filled[filled["paper"] == paper]
        caveats = []
        for claim in [c for c in ledger.claims if c.paper == paper]:
            rows = part[part["claim_id"] == claim.id]
            out += [f'<a id="{claim.id.lower()}"></a>**{claim.id}** (checklist {claim.checklist}). {claim.claim}', ""]
            out += ["| measure | model | published | source | planted target | ours | 95% CI | n | verdict | reason |",
                    "|---|---|---|---|---|---|---|---|---|---|"]
            previous = (None, None)
            for _, r in rows.iterrows():
                source = f"{r['source']} [{r['confidence']}]" if isinstance(r["source"], str) else "–"
                published = r["published"] if isinstance(r["published"], str) else "–"
                what = r["what"]
                if r["measure_id"] == previous[0]:  # the measure's cells once, then a line per further model
                    what = source = ""
                    published = "" if published == previous[1] else published
                previous = (r["measure_id"], r["published"] if isinstance(r["published"], str) else "–")
                out.append("| " + " | ".join(_cell(x) for x in (
                    what, r["model"], published, source, r["target"] if isinstance(r["target"], str) else "–",
                    _fmt(r["ours"]), _ci(r), _n(r), f"**{r['verdict']}**", r["reason"])) + " |")
            out.append("")
            if claim.caveat:
                caveats.append(f"- {claim.id}: {claim.caveat}")
        paper_figures = [f for nb in dict.fromkeys(part["notebook"].dropna()) for f in figures.get(nb, [])
                         if f not in shown]
        shown.update(paper_figures)
        if paper_figures:
            out += ["**Figures** (from the notebooks that measure these claims)", ""]
            out += [f"![{Path(f).stem}]({f})" for f in paper_figures] + [""]
        if caveats:
            out += ["**Caveats**", ""] + caveats + [""]
    out += ["## Executed notebooks", ""]
    out += [f"- [{Path(nb).stem}]({nb})" for nb in notebooks] or ["- none rendered: run `make all` first"]
    out += ["", "## How this page is made", "",
            f"Notebook `10_report` fills `paper/claims.yaml` (published values, sources, tolerances, planted targets "
            f"and the table row that measures each claim) from `data/results/{profile}/`. Nothing on this page is "
            "typed by hand; a claim whose table is missing is listed as not measured, with the reason. Tables read: "
            + (", ".join(f"`{t}` ({n} rows)" for t, n in tables_read.items()) or "none") + ".", ""]
    return "\n".join(out)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;font-size:13px;margin:.4em 0 1.2em}
th,td{border:1px solid #ddd;padding:3px 6px;vertical-align:top}th{background:#f3f3f3}blockquote{background:#fff7e0;
border-left:4px solid #e0a800;margin:1em 0;padding:.5em 1em}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}
td strong{white-space:nowrap}table:has(th:nth-child(10)) td:nth-child(n+3):nth-child(-n+8){white-space:nowrap}.v-recovered,.v-reproduced{color:#17692d}.v-differs{color:#b3261e}
.v-not-measured,.v-no-verdict{color:#666}"""


def html_report(markdown: str, base: Path, title: str) -> str:
    """Self-contained HTML: images inlined as data URIs (each still linked to its file), styles inline."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)

    def inline(match):
        src, alt = match.group(1), match.group(2)
        data = base64.b64encode((base / src).read_bytes()).decode()
        return f'<a href="{src}"><img src="data:image/png;base64,{data}" alt="{alt}"></a>'

    body = re.sub(r'<img src="([^"]+\.png)" alt="([^"]*)"\s*/?>', inline, body)
    for verdict in VERDICTS:
        body = body.replace(f"<strong>{verdict}</strong>",
                            f'<strong class="v-{verdict.replace(" ", "-")}">{verdict}</strong>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}</body></html>\n")


def linked_paths(html_text: str) -> list[str]:
    """Relative paths the HTML links to or loads (not data URIs, anchors or web addresses)."""
    paths = re.findall(r'(?:href|src)="([^"#]+)"', html_text)
    return [p for p in paths if not re.match(r"^(data:|https?:|mailto:)", p)]


# ---------------------------------------------------------------- executed notebooks to HTML

_PROGRESS = re.compile(r"\r|\d+%\|")


def strip_progress(notebook) -> int:
    """Remove progress-bar outputs (tqdm's carriage-return streams, widget views) in place; returns how many."""
    removed = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            stream_bar = output.get("output_type") == "stream" and _PROGRESS.search(output.get("text", ""))
            widget = "application/vnd.jupyter.widget-view+json" in output.get("data", {})
            if stream_bar or widget:
                removed += 1
            else:
                kept.append(output)
        cell.outputs = kept
    return removed


def render_notebooks(executed_dir: Path, out_dir: Path, skip: tuple[str, ...] = ("10_report",)) -> list[Path]:
    """Render every executed notebook of a profile to HTML in out_dir, outputs kept, progress bars stripped."""
    import nbformat
    from nbconvert import HTMLExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="classic")
    exporter.log.setLevel(logging.ERROR)  # its alt-text notices are about our figures' outputs, not actionable
    written = []
    for path in sorted(Path(executed_dir).glob("[0-9][0-9]_*.ipynb")):
        if path.stem in skip or "." in path.stem:  # pipeline leftovers: NN_x.source.ipynb, NN_x.ipynb.partial
            continue
        notebook = nbformat.read(path, as_version=4)
        strip_progress(notebook)
        body, _ = exporter.from_notebook_node(notebook)
        target = out_dir / f"{path.stem}.html"
        target.write_text(body)
        written.append(target)
    return written


def notebook_figures(figure_folder: Path, notebooks: list[str], relative_to: Path) -> dict[str, list[str]]:
    """The PNG figures each notebook wrote (named after its number), as paths relative to the report."""

    found = {}
    for nb in notebooks:
        pngs = sorted(p for p in Path(figure_folder).glob(f"{nb[:3]}*.png") if not p.stem.startswith("10_"))
        found[nb] = [os.path.relpath(p, relative_to) for p in pngs]
    return found


def write_report(filled: pd.DataFrame, ledger: Ledger, profile: str, out_dir: Path, figure_folder: Path,
                 summary_png: Path | None, notebook_pages: list[Path], tables_read: dict[str, int]) -> Path:
    """Write out_dir/index.md (the source) and out_dir/index.html (self-contained); returns the HTML path."""

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = notebook_figures(figure_folder, list(dict.fromkeys(filled["notebook"].dropna())), out_dir)
    summary = os.path.relpath(summary_png, out_dir) if summary_png else None
    pages = [os.path.relpath(p, out_dir) for p in notebook_pages]
    markdown = markdown_report(filled, ledger, profile, summary, figures, pages, tables_read)
    (out_dir / "index.md").write_text(markdown)
    target = out_dir / "index.html"
    target.write_text(html_report(markdown, out_dir, f"lrmsafety reproduction report ({profile})"))
    return target


def tables_read(filled: pd.DataFrame, results_dir: Path) -> dict[str, int]:
    """The result tables the ledger names that exist on this profile, with their row counts."""
    names = sorted(set(filled["table"].dropna()))
    return {t: len(pd.read_csv(results_dir / t)) for t in names if (results_dir / t).exists()}
