"""What notebook 06 shows: the published ASR from the claims ledger, and its figures on tiny inputs."""

import matplotlib
import pandas as pd

from lrmsafety import ledger
from lrmsafety.analysis import heads_report

matplotlib.use("Agg")


def test_published_asr_reads_the_ledger():
    table = heads_report.published_asr().set_index("model")
    assert table.loc["deepseek-r1-distill-qwen-7b"].tolist() == [0.34, 0.16, 0.34]
    assert table.loc["skywork-or1-7b", "top 3%"] == ledger.published("B8.top", "skywork-or1-7b")[0]


def test_figures_build():
    scores = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "score": [-0.5, 0.1, 0.2, 0.0]})
    assert len(heads_report.plot_scores({"m": scores}).axes) == 2  # the map and its colour bar
    summary = pd.DataFrame({"model": "m", "metric": ["ASR", "ASR", "ASR", "ORR", "ORR", "ORR"],
                            "selection": ["none", "top", "random"] * 2, "share": [0.0, 0.1, 0.1] * 2,
                            "rescale": ["none", "batch", "batch"] * 2, "value": [0.5, 0.1, 0.4] * 2,
                            "low": [0.3, 0.0, 0.2] * 2, "high": [0.7, 0.2, 0.6] * 2, "sd": [None, None, 0.1] * 2})
    fig = heads_report.plot_ablation(summary, ["m"], [0.1], ["batch"], published=(0.16, 0.34))
    assert len(fig.axes) == 2


def test_planted_head_lines_only_for_models_with_a_card():
    scores = pd.DataFrame({"layer": [3, 4, 0], "head": [5, 2, 0], "score": [-1.0, -0.5, 0.0], "rank": [0, 1, 2]})
    lines = heads_report.planted_head_lines(["organism-locked", "deepseek-r1-distill-qwen-7b"],
                                            {"organism-locked": scores}, [0.1])
    assert len(lines) == 1 and lines[0].startswith("organism-locked: planted heads")
