"""Verdicts that follow intervals: an estimate meets a target only when its whole 95% interval lies inside it.

One rule for every verdict of the repository (the organisms' card in 00, paper A's planted targets in 04, the
claims ledger in 10): the interval inside the target meets it; the interval wholly outside misses it; an interval
across a bound, or no interval at all, is inconclusive: more prompts (or seeds) decide, the point estimate does not.

    placement(low, high, target_low, target_high)  "inside" | "outside" | "across" | "no interval"
    word(placement, vocabulary)                     the verdict in a table's own words (VOCABULARIES)
"""

from __future__ import annotations

import math

INSIDE, OUTSIDE, ACROSS, NO_INTERVAL = "inside", "outside", "across", "no interval"
# the words each kind of verdict uses for inside / outside / across (and no interval): the organism card checks how
# an organism was built; a method on an organism recovers what was planted; on a real model it reproduces a paper
VOCABULARIES = {
    "card": ("as built", "not as built", "inconclusive"),
    "method": ("recovered", "differs", "inconclusive"),
    "paper": ("reproduced", "differs", "inconclusive"),
}
_EPS = 1e-12  # a bound equal to the target's edge is inside (rates of exactly 0 against a target of at most 0)


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def placement(low, high, target_low=None, target_high=None) -> str:
    """Where the interval [low, high] lies against the target [target_low, target_high] (None: unbounded)."""
    if _missing(low) or _missing(high):
        return NO_INTERVAL
    lo = -math.inf if _missing(target_low) else float(target_low)
    hi = math.inf if _missing(target_high) else float(target_high)
    if low >= lo - _EPS and high <= hi + _EPS:
        return INSIDE
    if high < lo - _EPS or low > hi + _EPS:
        return OUTSIDE
    return ACROSS


def word(where: str, vocabulary: str) -> str:
    """The verdict for a placement, in the words of ``vocabulary`` (a key of VOCABULARIES)."""
    inside, outside, unsure = VOCABULARIES[vocabulary]
    return {INSIDE: inside, OUTSIDE: outside}.get(where, unsure)


def fmt(x) -> str:
    """A number as the verdicts and the report print it (three decimals; "–" for none)."""
    return "–" if _missing(x) else f"{x:.3f}"


def explain(where: str, value: float, low, high, target_text: str) -> str:
    """One line saying why: the interval against the target text."""
    if where == NO_INTERVAL:
        return f"{fmt(value)} has no interval: it cannot be judged against {target_text}"
    span = f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"
    return {INSIDE: f"{span} lies inside {target_text}", OUTSIDE: f"{span} lies outside {target_text}",
            ACROSS: f"{span} crosses the bound of {target_text}: a narrower interval would decide"}[where]
