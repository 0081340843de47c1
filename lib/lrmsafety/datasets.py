"""The benchmark catalogue: for each prompt set the papers use, where its offline copy lives, how its prompts and
labels are read, and its Hugging Face copy (:mod:`lrmsafety.data` loads them into one frame)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd


@dataclass(frozen=True)
class OnlineSource:
    """The Hugging Face copy of a dataset."""

    repo: str
    prompt_column: str
    config: str | None = None
    split: str = "train"
    renames: Mapping[str, str] = field(default_factory=dict)  # hub column -> offline column, where they differ
    keep_rows: Callable[[pd.DataFrame], pd.Series] | None = None  # mask applied before ids are assigned
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one dataset. Paths are relative to the data directory; ``{option}`` placeholders are filled in."""

    name: str
    description: str
    files: tuple[str, ...]
    format: str  # csv, json (a list of objects) or jsonl
    prompt_column: str
    label: str | Callable[[pd.DataFrame, str], pd.Series]  # a constant, or from the raw frame and its file
    columns: Mapping[str, str] = field(default_factory=dict)  # upstream column -> output column, kept if present
    options: Mapping[str, tuple] = field(default_factory=dict)  # option -> allowed values; the first is the default
    id_prefix: str = "{name}"  # also filled with {name}, {stem} (file stem) and the options
    row_filter: Callable[[pd.DataFrame, Mapping[str, Any]], pd.Series] | None = None  # mask, after ids are assigned
    online: OnlineSource | None = None


def _xstest_label(raw: pd.DataFrame, where: str) -> pd.Series:
    return raw["label"].map({"safe": "benign", "unsafe": "harmful"})


def _label_from_file_name(raw: pd.DataFrame, where: str) -> pd.Series:
    stem = Path(where).stem
    label = "harmful" if stem.startswith("harmful") else "benign" if stem.startswith("harmless") else None
    return pd.Series(label, index=raw.index, dtype=object)


def _wildjailbreak_label(raw: pd.DataFrame, where: str) -> pd.Series:
    # The offline copy is all adversarial_harmful; the hub's eval config also has 210 adversarial_benign rows.
    if "data_type" not in raw.columns:
        return pd.Series("harmful", index=raw.index)
    return raw["data_type"].map(lambda kind: "benign" if "benign" in str(kind) else "harmful")


def _harmbench_standard(raw: pd.DataFrame, options: Mapping[str, Any]) -> pd.Series:
    # Contextual rows need their ContextString and copyright rows ask for lyrics: not plain refusal probes.
    if not options["standard_only"] or "FunctionalCategory" not in raw.columns:
        return pd.Series(True, index=raw.index)
    return raw["FunctionalCategory"] == "standard"


_SPECS = (
    DatasetSpec(
        "strongreject", "StrongREJECT forbidden prompts (313, harmful)",
        ("strongreject/strongreject_dataset.csv",), "csv", "forbidden_prompt", "harmful",
        columns={"category": "category", "source": "upstream_source"},
        online=OnlineSource("walledai/StrongREJECT", "prompt"),
    ),
    DatasetSpec(
        "advbench", "AdvBench harmful behaviors (520, harmful) with their 'Sure, here is' targets",
        ("advbench/harmful_behaviors.csv",), "csv", "goal", "harmful",
        columns={"target": "target"},
        online=OnlineSource("walledai/AdvBench", "prompt"),
    ),
    DatasetSpec(
        "advbench_strings", "AdvBench harmful strings (574, harmful): toxic strings to elicit verbatim",
        ("advbench/harmful_strings.csv",), "csv", "target", "harmful",
    ),
    DatasetSpec(
        "xstest", "XSTest v2 (450): 250 safe-but-scary prompts (benign) + 200 unsafe contrasts (harmful)",
        ("xstest/xstest_prompts.csv",), "csv", "prompt", _xstest_label,
        columns={"id": "upstream_id", "type": "type", "focus": "focus", "note": "note"},
        online=OnlineSource("Paul/XSTest", "prompt"),
    ),
    DatasetSpec(
        "harmbench", "HarmBench text behaviors (harmful); standard_only=True keeps the 200 plain requests",
        ("harmbench/harmbench_behaviors_text_{split}.csv",), "csv", "Behavior", "harmful",
        columns={"BehaviorID": "BehaviorID", "SemanticCategory": "SemanticCategory",
                 "FunctionalCategory": "FunctionalCategory", "Tags": "Tags", "ContextString": "ContextString"},
        options={"split": ("all", "test", "val"), "standard_only": (True, False)},
        id_prefix="{name}-{split}",
        row_filter=_harmbench_standard,
        online=OnlineSource("walledai/HarmBench", "prompt", config="standard",
                            renames={"category": "SemanticCategory"}),
    ),
    DatasetSpec(
        "jailbreakbench", "JailbreakBench JBB-Behaviors, harmful split (100)",
        ("jailbreakbench/behaviors.csv",), "csv", "Goal", "harmful",
        columns={"Target": "Target", "Behavior": "Behavior", "Category": "Category", "Source": "Source"},
        online=OnlineSource("JailbreakBench/JBB-Behaviors", "Goal", config="behaviors", split="harmful"),
    ),
    DatasetSpec(
        "or_bench", "OR-Bench-Hard-1K (1,319, benign but borderline: over-refusal)",
        ("or_bench/or_bench.jsonl",), "jsonl", "prompt", "benign",
        columns={"id": "upstream_id", "category": "category"},
        online=OnlineSource("bench-llm/or-bench", "prompt", config="or-bench-hard-1k"),
    ),
    DatasetSpec(
        "wildjailbreak", "WildJailbreak eval, adversarial-harmful (2,000 jailbreak-wrapped, harmful)",
        ("wildjailbreak/wildjailbreak.jsonl",), "jsonl", "prompt", _wildjailbreak_label,
        columns={"id": "upstream_id", "data_type": "data_type", "vanilla": "vanilla"},
        # The hub's TSV needs these arguments (per its dataset card).
        online=OnlineSource("allenai/wildjailbreak", "adversarial", config="eval",
                            load_kwargs={"delimiter": "\t", "keep_default_na": False}),
    ),
    DatasetSpec(
        "star1", "STAR-1 questions (1,000, harmful or borderline) with their safe reasoning responses",
        ("star1/STAR-1.json",), "json", "question", "harmful",
        columns={"id": "upstream_id", "category": "category", "source": "upstream_source", "response": "response"},
        online=OnlineSource("UCSC-VLAA/STAR-1", "question"),
    ),
    DatasetSpec(
        "alpaca", "Alpaca instructions without input (31,323, benign)",
        ("alpaca/alpaca_noinput_instructions.json",), "json", "instruction", "benign",
        online=OnlineSource("tatsu-lab/alpaca", "instruction",
                            keep_rows=lambda raw: raw["input"].fillna("").str.strip() == ""),
    ),
    DatasetSpec(
        "refusal_direction", "Arditi et al. harmful + harmless splits (label from the file name); split=train|val|test",
        ("refusal_direction_splits/harmful_{split}.json", "refusal_direction_splits/harmless_{split}.json"),
        "json", "instruction", _label_from_file_name,
        columns={"category": "category"},
        options={"split": ("train", "val", "test")},
        id_prefix="{name}-{stem}",
    ),
)
DATASETS: Mapping[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}
_ALIASES = {"jbb": "jailbreakbench", "refusal_direction_splits": "refusal_direction", "star_1": "star1",
            "orbench": "or_bench", "strong_reject": "strongreject"}
