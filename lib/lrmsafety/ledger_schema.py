"""The claims ledger's schema (paper/claims.yaml): its fields, validated when loaded.

``load_ledger()`` reads the file into :class:`Ledger` (claims, each with its measures; a measure's published value,
planted targets and result table); every error names where it is and what to fix. Filling the ledger from the result
tables is :mod:`lrmsafety.ledger`'s.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

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
