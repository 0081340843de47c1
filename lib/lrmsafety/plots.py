"""One figure style for every notebook, and save_figure() into figures/<profile>/."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from .paths import figures_dir

PALETTE = {"refusal": "#3b6ea8", "compliance": "#d1603d", "locked": "#3b6ea8", "deliberative": "#d1603d",
           "null": "#7f7f7f"}


def set_theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=1.0)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight"})


def save_figure(fig, name: str, profile: str) -> Path:
    """Write the figure as PNG and PDF into figures/<profile>/ and return the PNG path."""
    folder = figures_dir(profile)
    png = folder / f"{name}.png"
    fig.savefig(png)
    fig.savefig(folder / f"{name}.pdf", metadata={"CreationDate": None})  # no timestamp: reruns do not churn git
    return png
