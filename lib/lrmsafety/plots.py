"""One figure style for every notebook, one colour per model in every figure, and save_figure() into
figures/<profile>/."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from .paths import figures_dir

# Colours that mean a model, in every figure. The controls (the catalogue's local models, in its order: locked,
# deliberative, null) take the colour-blind palette's first three, which is also the theme's cycle. The catalogue's
# other reasoners follow, each its own colour as far as the list goes: the papers' models first (paper A's, then B's,
# then C's, each in catalogue order), so that models drawn together, such as paper A's Table 2 beside ours, get the
# most distinct ones. Grey stays free for reference lines and published values; pale colours are too faint on white.
CONTROL_COLOURS = ["#0173b2", "#de8f05", "#029e73"]
OTHER_COLOURS = ["#d55e00", "#cc78bc", "#56b4e9", "#ca9161", "#591e71", "#001c7f", "#8c0800", "#b8850a", "#006374",
                 "#a23582", "#592f0d", "#12711c", "#fbafe4", "#b1400d"]


@functools.cache
def _catalogue_colours() -> dict[str, str]:
    from .catalogue import ENTRIES

    reasoners = [spec for spec in ENTRIES if spec.role == "reasoner"]
    controls = [spec.name for spec in reasoners if spec.hf_id.startswith("organism")]
    others = sorted((spec for spec in reasoners if spec.name not in controls),
                    key=lambda spec: min(spec.papers, default="~"))  # stable: catalogue order within a paper
    rest = controls[len(CONTROL_COLOURS):] + [spec.name for spec in others]
    return dict(zip(controls, CONTROL_COLOURS)) | {name: OTHER_COLOURS[i % len(OTHER_COLOURS)]
                                                   for i, name in enumerate(rest)}


def model_colour(name: str) -> str:
    """The model's colour: fixed for the catalogue's models; any other name gets one from a hash of the name, the
    same in every figure and run."""
    known = _catalogue_colours()
    return known[name] if name in known else OTHER_COLOURS[zlib.crc32(name.encode()) % len(OTHER_COLOURS)]


def model_colours(names: Iterable[str]) -> dict[str, str]:
    """{name: colour} in the given order, for seaborn's ``palette=`` or a legend."""
    return {name: model_colour(name) for name in names}


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
