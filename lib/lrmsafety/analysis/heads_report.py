"""What notebook 06 shows of paper B's refusal heads (Yin et al., "Refusal Falls off a Cliff"; ``MikaStars39/
RefusalCliff``): the published ASR beside ours, the head-score heat maps, ASR and ORR by share of heads ablated, and,
on the organisms, where the heads their card plants fall in our ranking (not part of paper B: a check with a known
answer; the analysis in :mod:`lrmsafety.analysis.heads` never reads the card). Paper B's published ASRs come from
its figure script ``fig/draw_comparison_bar_chart.py``, not confirmed against the paper; it reports no ORR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .heads import head_count

# fig/draw_comparison_bar_chart.py (not confirmed against the paper): ASR without ablation; the ablated ASRs beside
# it (top and random 3%) are the claims ledger's B8.top and B8.random
PUBLISHED_BASELINE_ASR = {"deepseek-r1-distill-qwen-7b": .34, "skywork-or1-7b": .35,
                          "deepseek-r1-distill-llama-8b": .19, "deepseek-r1-distill-qwen-14b": .16}


def published_asr() -> pd.DataFrame:
    """Paper B's ASR per model: without ablation, and with the top or a random 3% of heads ablated."""
    from .. import ledger

    return pd.DataFrame([{"model": name, "baseline": base, "top 3%": ledger.published("B8.top", name)[0],
                          "random 3%": ledger.published("B8.random", name)[0]}
                         for name, base in PUBLISHED_BASELINE_ASR.items()])


def planted_head_lines(models: Sequence[str], scores: dict, shares: Sequence[float]) -> list[str]:
    """Where the heads an organism's card plants (``planted.suppression_heads``) fall in the ranking of its head
    scores (the analysis never reads the card), and why the organism profile adds a 4% share."""
    import json

    from .. import registry

    lines = []
    for name in models:
        if not (path := registry.local_file(name, "organism_card.json")):
            continue
        planted = [tuple(h) for h in json.loads(path.read_text()).get("planted", {}).get("suppression_heads", {})
                   .get("heads", [])]
        ranks = ({(int(r.layer), int(r.head)): int(r.rank) for r in scores[name].itertuples()}
                 if scores.get(name) is not None else {})
        lines.append(f"{name}: planted heads {planted or 'none'}"
                     + (f" at ranks {[ranks.get(h) for h in planted]} of {len(ranks)}" if planted else ""))
        if len(planted) == 2 and ranks and 0.04 in shares:  # why the organism profile adds a 4% share
            lines.append(f"  two heads were planted here; of {len(ranks)} heads 3% (and 1.5%) is "
                         f"{head_count(len(ranks), 0.03)[0]}, too few to remove both, so the profile adds 4% "
                         f"(k = {head_count(len(ranks), 0.04)[0]}), the share the target below is judged at")
    return lines


def plot_scores(scored: dict[str, pd.DataFrame]):
    """Heat maps of each model's head scores (layer x head), symmetric around 0."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scored), figsize=(4.2 * len(scored), 3.2), squeeze=False)
    for ax, (name, scores) in zip(axes[0], scored.items()):
        grid = scores.pivot(index="layer", columns="head", values="score").sort_index()
        bound = float(np.abs(grid.to_numpy()).max()) or 1.0
        image = ax.imshow(grid.to_numpy(), cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        ax.set(title=name, xlabel="head", ylabel="layer")
        fig.colorbar(image, ax=ax, shrink=0.8, label="write along w/‖w‖")
    fig.tight_layout()
    return fig


def plot_ablation(summary: pd.DataFrame, models: Sequence[str], shares: Sequence[float], rules: Sequence,
                  published: tuple[float, float] | None = None):
    """ASR and ORR by share of heads ablated, one row per model: top heads (95% interval) and random sets (sd over
    draws) per rescaling rule, the unablated level dashed; ``published``: paper B's (top, random) 3% ASR of
    R1-Distill-Qwen-7B, drawn a little left of 3% so that ours stays visible."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), 2, figsize=(9, 3.0 * len(models)), squeeze=False)
    for name, row in zip(models, axes):
        for ax, metric in zip(row, ["ASR", "ORR"]):
            part = summary[(summary["model"] == name) & (summary["metric"] == metric)]
            ax.axhline(part[part["selection"] == "none"]["value"].iloc[0], color="grey", lw=1, ls="--",
                       label="no ablation")
            for i, rule in enumerate(r or "none" for r in rules):
                for kind, marker in (("top", "o"), ("random", "s")):
                    sel = part[(part["selection"] == kind) & (part["rescale"] == rule)].sort_values("share")
                    x = 100 * sel["share"] * (1 + 0.04 * i)  # a small offset keeps the two rules apart
                    err = (sel["sd"].fillna(0) if kind == "random" else
                           [sel["value"] - sel["low"], sel["high"] - sel["value"]])
                    ax.errorbar(x, sel["value"], yerr=err, marker=marker, ls="-" if i == 0 else ":", capsize=2,
                                color="C0" if kind == "top" else "C1", label=f"{kind}, rescale {rule}")
            if metric == "ASR" and published is not None:
                ax.plot([2.85, 2.85], list(published), "kx", ms=7, label="published R1-Qwen-7B (top, random 3%)")
            ax.set(xlabel="heads ablated (% of all)", ylabel=metric, ylim=(-0.02, 1.02), title=name)
            ax.set_xticks([100 * s for s in shares], [f"{100 * s:g}%" for s in shares])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.07 / len(models) ** 0.5, 1, 1))
    return fig
