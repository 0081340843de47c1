"""Paper B's refusal cliff on the organisms, whose answer is known: models that ship a planted judgement direction
and a card (``organism_card.json``). A card that plants suppression heads (``organism-locked``) should show a cliff on
its complied jailbreaks whose thinking concludes harmful; one whose conclusion agrees with its answer
(``organism-deliberative``) is the control. Not part of paper B (Yin et al.): our check that the cliff analysis of
:mod:`lrmsafety.analysis.cliff` finds what was planted. The analysis itself never reads the cards; how a thinking's
conclusion is read comes from the caller (the organism package, which the analysis never imports).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .cliff import mean_with_ci, table_row


def planted_cards(models: Sequence[str]) -> dict[str, dict]:
    """{model: its card's ``planted`` section} for the models whose folder ships a planted judgement direction and
    a card (the organisms); empty for real models. The analysis above never reads them."""
    import json

    from .. import registry

    return {name: json.loads(registry.local_file(name, "organism_card.json").read_text())["planted"]
            for name in models if registry.local_file(name, "judgement_direction.npy") is not None}


def planted_controls(sized: dict[str, pd.DataFrame], cards: dict[str, dict], concludes_harmful,
                     group_column: str = "family", seed: int = 0) -> tuple[list[dict], list[str]]:
    """The organisms' known answer: for each model whose card plants suppression heads, the mean MS of its complied
    jailbreaks whose thinking concludes harmful (``concludes_harmful(thinking)``; a table row, group "jailbreak,
    thinking concludes harmful"), and beside it each control's (a card without them) complied jailbreaks with the
    ratio (target: at least 3x). ``sized``: model -> the rows :func:`lrmsafety.analysis.cliff.read_curves` chose,
    with ``ms``, ``outcome``, ``thinking`` and the organisms' prompt families (``group_column`` "family"). Returns
    (rows, printed lines); no row, and why, without both kinds of model or without the families.
    """
    with_cliff = [name for name, card in cards.items() if "suppression_heads" in card]
    controls = [name for name, card in cards.items() if "suppression_heads" not in card]
    if not (with_cliff and controls and group_column == "family"):
        return [], ["planted controls skipped: they need a model with planted suppression heads, a planted control "
                    "without them, and the organisms' prompt families"]

    def complied_jailbreaks(name):
        chosen = sized[name]
        return chosen[(chosen["family"] == "jailbreak") & (chosen["outcome"] == "complied harmful")]

    rows, lines = [], []
    for name in with_cliff:
        part = complied_jailbreaks(name)
        part = part[part["thinking"].map(concludes_harmful)]
        (l_ms, l_lo, l_hi) = estimate = mean_with_ci(part["ms"], part["prompt_id"], seed=seed)
        rows.append(table_row(name, "mean ms", estimate, len(part), "jailbreak, thinking concludes harmful",
                              "complied harmful"))
        lines.append(f"{name}, complied jailbreaks concluding harmful: mean MS {l_ms:.3f} [{l_lo:.3f}, {l_hi:.3f}] "
                     f"(n = {len(part)})")
        for control in controls:
            part = complied_jailbreaks(control)
            d_ms, d_lo, d_hi = mean_with_ci(part["ms"], part["prompt_id"], seed=seed)
            ratio = l_ms / d_ms if d_ms > 0 else float("inf")
            lines.append(f"{control}, complied jailbreaks: mean MS {d_ms:.3f} [{d_lo:.3f}, {d_hi:.3f}] "
                         f"(n = {len(part)}); ratio {ratio:.1f}x, target >= 3x: {'met' if ratio >= 3 else 'NOT met'}")
    return rows, lines


def planted_direction_lines(cards: dict, sized: dict[str, pd.DataFrame], probes: dict) -> list[str]:
    """Is the probe informative along the thinking? Per model with a planted judgement direction: the cosine between
    the probe's weight and that direction, how far the weight moved from its random start, and the mean plateau
    and MS per outcome; a note when the weights are mostly their initialisation."""
    from .. import registry

    lines = []
    for name in cards:
        direction = np.load(registry.local_file(name, "judgement_direction.npy"))
        weight = np.asarray(probes[name].direction, dtype=np.float64)
        cosine = float(weight @ direction / np.linalg.norm(weight) / np.linalg.norm(direction))
        lines.append(f"{name}: cos(probe weight, planted judgement direction) = {cosine:.3f}; the weight moved "
                     f"{probes[name].moved_:.2f}x its initial norm (d = {len(weight)}); mean plateau / MS per outcome: "
                     f"{sized[name].groupby('outcome')[['plateau', 'ms']].mean().round(3).to_dict('index')}")
    if cards and max(probes[name].moved_ for name in cards) < 0.5:
        lines.append("The weight is mostly its random initialisation: that part moves the score along every trace, "
                     "benign ones included, so MS has a floor (its value on benign traces above, where nothing flips); "
                     "the planted cliff shows as MS above that floor and as the drop at 0 in the zoom.")
    return lines
