"""Benchmark prompt loaders: every dataset into one tidy frame.

Columns: ``prompt_id``, ``prompt``, ``source`` (dataset name), ``label`` ("harmful" or "benign"), then the
dataset's own category columns. Files come from ``paths.find_benchmark_dir()`` (the offline copies); where there
are none, loaders fetch the Hugging Face copy with the ``datasets`` library (``pip install "lrmsafety[online]"``).

    >>> frame = load_dataset("xstest")
    >>> frame = load_datasets(["strongreject", "xstest", "alpaca"], limit=200)
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from . import paths
from .datasets import _ALIASES, DATASETS, DatasetSpec, OnlineSource  # noqa: F401 (DATASETS, OnlineSource re-exported)

log = logging.getLogger(__name__)

LABELS = ("harmful", "benign")
BASE_COLUMNS = ("prompt_id", "prompt", "source", "label")


class DatasetError(ValueError):
    """A dataset could not be loaded; the message says which file or name, and how to fix it."""


def list_datasets() -> list[str]:
    """The dataset names, in registry order; ``DATASETS[name].description`` says what each holds."""
    return list(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of ``name`` (case, hyphens and a few aliases forgiven), or a DatasetError suggesting close names."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key in DATASETS:
        return DATASETS[key]
    close = difflib.get_close_matches(key, list(DATASETS) + list(_ALIASES), n=3, cutoff=0.5)
    close = list(dict.fromkeys(_ALIASES.get(c, c) for c in close))
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise DatasetError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASETS)}")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    *,
    online: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """One dataset as a tidy frame. ``limit`` keeps a seeded random sample (in file order; ids unchanged).

    ``data_dir`` None looks where ``paths.find_benchmark_dir`` looks and goes online when nothing is found;
    ``online=True`` goes to the Hugging Face hub directly. ``options`` are dataset-specific (see ``DATASETS``).
    """
    spec = get_spec(name)
    options = _check_options(spec, options)
    root = None if online else _data_root(data_dir)
    if root is None:
        frame = _load_online(spec, options)
    else:
        frames = [_load_file(spec, root, template, options) for template in spec.files]
        frame = pd.concat(frames, ignore_index=True)
    if limit is not None:
        if limit < 0:
            raise DatasetError(f"limit must be a non-negative integer or None, got {limit}")
        if limit < len(frame):
            # Sort back so that a sample keeps the file's order: a smaller limit is not a reshuffled set.
            frame = frame.sample(n=limit, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


def load_datasets(
    names: str | Iterable[str],
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    *,
    online: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    dedupe: bool = True,
) -> pd.DataFrame:
    """Several datasets in one frame; ``limit`` applies per dataset, ``options`` maps name -> its options.

    With ``dedupe``, a prompt seen before in the combined frame (exact match after collapsing whitespace) is
    dropped, so the first dataset named keeps it: the sets overlap (JBB and StrongREJECT reuse AdvBench and
    HarmBench prompts; refusal_direction's harmful test split repeats 10 of its own prompts).
    """
    names = [names] if isinstance(names, str) else list(names)
    specs = list(dict.fromkeys(get_spec(name).name for name in names))
    options = {get_spec(name).name: dict(opts) for name, opts in (options or {}).items()}
    frames = [load_dataset(name, data_dir, limit, seed, online=online, **options.get(name, {})) for name in specs]
    frame = pd.concat(frames, ignore_index=True, sort=False)
    if dedupe and len(frame):
        duplicated = frame["prompt"].map(lambda text: " ".join(text.split())).duplicated(keep="first")
        if duplicated.any():
            per_source = frame.loc[duplicated, "source"].value_counts().to_dict()
            log.info("dropped %d duplicate prompts (kept the first occurrence); per dataset: %s",
                     int(duplicated.sum()), per_source)
        frame = frame[~duplicated].reset_index(drop=True)
    return frame


def _check_options(spec: DatasetSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    allowed = ", ".join(f"{k} ({'|'.join(map(str, v))})" for k, v in spec.options.items()) or "none"
    for key, value in given.items():
        if key not in spec.options:
            raise DatasetError(f"{spec.name}: unknown option {key!r}; its options: {allowed}")
        if value not in spec.options[key]:
            raise DatasetError(f"{spec.name}: option {key}={value!r} is not one of {spec.options[key]}")
    return {key: given.get(key, values[0]) for key, values in spec.options.items()}


def _data_root(data_dir: str | os.PathLike | None) -> Path | None:
    try:
        return paths.find_benchmark_dir(data_dir)
    except FileNotFoundError as err:  # an explicit folder or $LRMSAFETY_DATA_DIR that does not exist
        raise DatasetError(f"{err} (set by data_dir or $LRMSAFETY_DATA_DIR)") from err


def _load_file(spec: DatasetSpec, root: Path, template: str, options: Mapping[str, Any]) -> pd.DataFrame:
    relative = template.format(**options)
    path = root / relative
    if not path.is_file():
        online = f", or load online with online=True ({spec.online.repo})" if spec.online else ""
        raise DatasetError(
            f"{spec.name}: file {relative} not found in the data directory {root}. Fix: set LRMSAFETY_DATA_DIR "
            f"or pass data_dir= to a folder holding {relative} (see data/README.md){online}"
        )
    raw = _read(path, spec.format)
    prefix = spec.id_prefix.format(name=spec.name, stem=path.stem, **options)
    return _tidy(spec, raw, str(path), prefix, options)


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        try:
            # Strings throughout, and only empty cells missing: a prompt such as "None" or "NA" stays text.
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: not a readable CSV file ({err})") from err
    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                records.append(_parse_json(line, path, number))
    elif fmt == "json":
        records = _parse_json(text, path, None)
        if not isinstance(records, list):
            raise DatasetError(f"{path}: expected a JSON list of objects, found {type(records).__name__}")
    else:
        raise DatasetError(f"{path}: unknown format {fmt!r}; use csv, json or jsonl")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DatasetError(f"{path}: item {index}: expected a JSON object per row, found {type(record).__name__}")
    return pd.DataFrame.from_records(records)


def _parse_json(text: str, path: Path, line: int | None) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: line {line or err.lineno}: malformed JSON ({err.msg})") from err
    if line is not None and not isinstance(value, dict):
        raise DatasetError(f"{path}: line {line}: expected a JSON object, found {type(value).__name__}")
    return value


def _load_online(spec: DatasetSpec, options: Mapping[str, Any]) -> pd.DataFrame:
    if spec.online is None:
        raise DatasetError(
            f"{spec.name} has no online source; it exists only as offline files ({', '.join(spec.files)}). "
            "Set LRMSAFETY_DATA_DIR or pass data_dir= to a folder holding them (see data/README.md)"
        )
    try:
        import datasets  # only the online path needs it
    except ImportError as err:
        raise ImportError(
            f'loading {spec.name!r} online needs the Hugging Face `datasets` library: pip install "lrmsafety[online]" '
            "(or set LRMSAFETY_DATA_DIR to a folder with the offline copies)"
        ) from err
    source = spec.online
    defaults = {key: values[0] for key, values in spec.options.items()}
    if dict(options) != defaults:
        log.warning("%s: options %s apply to the offline files; the hub copy is loaded as is", spec.name, options)
    log.info("loading %s from the Hugging Face hub (%s, config %s, split %s)",
             spec.name, source.repo, source.config, source.split)
    raw = datasets.load_dataset(source.repo, source.config, split=source.split, **source.load_kwargs).to_pandas()
    if source.keep_rows is not None:
        raw = raw[source.keep_rows(raw)]
    raw = raw.rename(columns={**source.renames, source.prompt_column: spec.prompt_column})
    # Hub row order need not match the offline files, so hub ids get their own prefix.
    return _tidy(spec, raw.reset_index(drop=True), f"hf://{source.repo}", f"{spec.name}-hf", options)


def _tidy(spec: DatasetSpec, raw: pd.DataFrame, where: str, prefix: str, options: Mapping[str, Any]) -> pd.DataFrame:
    if spec.prompt_column not in raw.columns:
        raise DatasetError(
            f"{where}: missing the prompt column {spec.prompt_column!r} of dataset {spec.name}; "
            f"columns present: {list(raw.columns)}. Is this the right file?"
        )
    raw = raw.reset_index(drop=True)
    # Ids come from the row order in the file, before filtering or sampling, so a row keeps its id across options.
    width = max(4, len(str(max(len(raw) - 1, 0))))
    frame = pd.DataFrame({
        "prompt_id": [f"{prefix}-{i:0{width}d}" for i in range(len(raw))],
        "prompt": raw[spec.prompt_column].map(_clean_prompt).astype("str"),
        "source": spec.name,
        "label": _labels(spec, raw, where),
    })
    for upstream, column in spec.columns.items():
        if upstream in raw.columns:
            frame[column] = raw[upstream].map(_flatten).astype("str")
    if spec.row_filter is not None:
        frame = frame[spec.row_filter(raw, options).to_numpy(dtype=bool)]
    empty = frame["prompt"].isna()
    if empty.any():
        log.warning("%s: dropped %d rows with an empty prompt", where, int(empty.sum()))
        frame = frame[~empty]
    return frame


def _labels(spec: DatasetSpec, raw: pd.DataFrame, where: str) -> pd.Series:
    if isinstance(spec.label, str):
        return pd.Series(spec.label, index=raw.index, dtype="str")
    labels = spec.label(raw, where)
    bad = labels[~labels.isin(LABELS)]
    if len(bad):
        row = bad.index[0]
        raise DatasetError(
            f"{where}: cannot decide harmful/benign for {len(bad)} rows of {spec.name} (first: row {row}, "
            f"values {str(raw.loc[row].to_dict())[:300]})"
        )
    return labels.astype("str")


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _clean_prompt(value: Any) -> str | None:
    if _missing(value):
        return None
    text = str(value).strip()
    return text or None


def _flatten(value: Any) -> str | None:
    # One scalar per cell keeps the frame easy to filter and to write as parquet (STAR-1 categories are lists).
    if isinstance(value, np.ndarray):  # list cells of a hub dataset arrive as arrays
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if _missing(value):
        return None
    return str(value)


ORGANISM_PROMPTS = "organism"


def profile_prompts(params, prompt_sets: Iterable[str] | None = None) -> pd.DataFrame:
    """A profile's prompts (``params``: :func:`lrmsafety.params.load`): ``prompt_sets`` or the profile's own, with
    its ``n_prompts``, ``data_dir`` and ``seed``."""
    return load_prompt_sets(prompt_sets or params.prompt_sets, n_prompts=params.n_prompts, data_dir=params.data_dir,
                            seed=params.seed)


def load_prompt_sets(names: Iterable[str], n_prompts: int | None = None, data_dir=None, seed: int = 0,
                     split: str = "test") -> pd.DataFrame:
    """The prompts a notebook runs on: benchmark datasets, or ``"organism"`` for the organisms' own held-out
    prompt families (``n_prompts`` per family; a ``family`` column says which)."""
    names = list(names)
    frames = []
    if ORGANISM_PROMPTS in names:
        from .registry import prompt_source

        frames.append(prompt_source(ORGANISM_PROMPTS)(n_per_family=n_prompts or 200, seed=seed, split=split))
        names.remove(ORGANISM_PROMPTS)
    if names:
        frames.append(load_datasets(names, data_dir, limit=n_prompts, seed=seed))
    return pd.concat(frames, ignore_index=True, sort=False)


def group_column(prompts: pd.DataFrame) -> str:
    """The column that splits a prompt frame into its families (organism prompts) or datasets."""
    return "family" if "family" in prompts.columns else "source"


def sample_per_group(prompts: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to n prompts of each family or dataset, seeded: notebooks 03 and 04 study the same prompts this way
    (04 reads 03's cached traces)."""
    column = group_column(prompts)
    return pd.concat([rows.sample(min(n, len(rows)), random_state=seed) for _, rows in prompts.groupby(column)],
                     ignore_index=True)


def ablation_prompts(prompts: pd.DataFrame, attack_groups: Iterable[str], benign_groups: Iterable[str], n: int,
                     seed: int = 0) -> pd.DataFrame:
    """The prompts notebook 06 ablates on: up to n of each attack group and of each benign group, seeded, with a
    ``role`` column (attack, benign)."""
    column = group_column(prompts)
    return pd.concat([sample_per_group(prompts[prompts[column].isin(list(groups))], n, seed=seed).assign(role=role)
                      for role, groups in (("attack", attack_groups), ("benign", benign_groups))], ignore_index=True)


def harmful_sample(prompts: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """The prompts notebook 07 decodes four ways: the harmful ones, up to n of each family or dataset (None: all)."""
    harmful = prompts[prompts["label"] == "harmful"].reset_index(drop=True)
    return sample_per_group(harmful, n, seed=seed).reset_index(drop=True) if n else harmful
