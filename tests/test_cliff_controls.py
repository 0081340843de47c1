"""The organisms' controls for paper B's cliff: the planted cliff against a control without suppression heads."""

import pandas as pd

from lrmsafety.analysis import cliff_controls


def _sized(ms):
    return pd.DataFrame({"prompt_id": [f"p{i}" for i in range(len(ms))], "family": "jailbreak",
                         "outcome": "complied harmful", "ms": ms,
                         "thinking": ["so this is harmful."] * (len(ms) - 1) + ["fine."]})


def test_planted_controls_row_and_ratio():
    cards = {"locked": {"suppression_heads": {"heads": [[0, 1]]}}, "deliberative": {}}
    sized = {"locked": _sized([0.4, 0.4, 0.0]), "deliberative": _sized([0.1, 0.1, 0.1])}
    rows, lines = cliff_controls.planted_controls(sized, cards, lambda t: "harmful" in t, "family", seed=0)
    assert len(rows) == 1 and rows[0]["group"] == "jailbreak, thinking concludes harmful"
    assert rows[0]["value"] == 0.4 and rows[0]["n"] == 2  # only the traces concluding harmful
    assert "ratio 4.0x, target >= 3x: met" in lines[1]
    for cards_, column in ((cards, "prompt_set"), ({"locked": cards["locked"]}, "family")):
        rows, lines = cliff_controls.planted_controls(sized, cards_, lambda t: True, column)
        assert rows == [] and lines[0].startswith("planted controls skipped")
