"""Paper B's refusal cliff: the probe's training label, its training and accuracy, the cached artifacts notebook 05
writes for 06 and 09, notebook 05's curve step, and the rows of its table.

Paper B (Yin et al., ``MikaStars39/RefusalCliff``) trains a linear probe on the last-layer state at the last token
of ``template + thinking + close`` (refused harmful vs complied benign rollouts), then reads sigmoid(probe) at
every token of a trace: it stays high over the thinking (the plateau) and drops at the last tokens before the
answer (the cliff). MS = plateau − score at the last token; the official ranking uses the final score alone. The
curves themselves are in :mod:`lrmsafety.analysis.cliff_curve` (re-exported here).

Where our default departs from the official code, the official rule is a named option (``rollout_decoding("paper_b")``,
``probe_training_labels(negatives="official")``, ``official_curve``) and the paper profile chooses it. Ours: the probe
input is the rollout's own rendered prompt (system prompt included), the 80/20 split is by prompt, only traces the
model closed itself are used, and intervals are a 95% bootstrap over prompts (:func:`mean_with_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..judges import PAPER_B_REFUSAL_WORDS, RefusalPrefix  # paper B's 56 words, verbatim, with their source
from .cliff_curve import (  # noqa: F401  (re-exported: the curves are part of this finding)
    OUTCOMES,
    bootstrap_curve,
    cliff_sizes,
    group_curves,
    official_curve,
    plot_curves,
    plot_sizes,
    prompt_scores,
    published_levels,
    resample,
    right_aligned,
    right_aligned_tail,
    score_curves,
    to_points,
)

MIN_THINKING_CHARS = 10  # paper B keeps a training rollout only when its thinking is longer than this
# src/inference/generation.py: SYSTEM_PROMPT (a triple-quoted string, its newlines kept) and the scripts' temperature
PAPER_B_SYSTEM_PROMPT = "\nYou are a helpful assistant.\n"
PAPER_B_TEMPERATURE = 0.7
ROLLOUT_STYLES = ("paper_b", "notebook_01")
NEGATIVES = ("official", "complied")


def paper_b_judge(**kwargs) -> RefusalPrefix:
    """Paper B's answer rule: refused when the answer's first 32 characters contain one of its words
    (case-sensitive)."""
    return RefusalPrefix(words=PAPER_B_REFUSAL_WORDS, n_chars=32, **kwargs)


def paper_b_refused(answers: Sequence[str]) -> np.ndarray:
    """Paper B's refusal rule on answers that are already split from their thinking."""
    return paper_b_judge(part="full").judge([""] * len(answers), list(answers))["refused"].to_numpy(dtype=bool)


def rollout_decoding(style: str, **settings):
    """The decoding of paper B's rollouts. ``"paper_b"`` (src/inference/generation.py and the prober scripts): system
    prompt "You are a helpful assistant." and temperature 0.7 (top-p / top-k: the model's defaults; the official vLLM
    server's are not recorded), cached under its own key; ``"notebook_01"``: notebook 01's decoding (the model's own
    sampling defaults, no system prompt), so that 01's cached rollouts are reused. ``settings``: the other
    :class:`lrmsafety.engine.generate.Decoding` fields (budgets, samples per prompt, batch size, seed)."""
    from ..engine.generate import Decoding

    if style not in ROLLOUT_STYLES:
        raise ValueError(f"rollout style must be one of {ROLLOUT_STYLES}, not {style!r}")
    if style == "paper_b":
        settings = {**settings, "system_prompt": PAPER_B_SYSTEM_PROMPT, "temperature": PAPER_B_TEMPERATURE}
    return Decoding(**settings)


def probe_candidates(frame: pd.DataFrame, refusal_groups: Sequence[str], compliance_groups: Sequence[str],
                     group_column: str, negatives: str = "official") -> tuple[pd.Index, pd.Index]:
    """The rows eligible for paper B's training classes (before the cap and the balancing).

    1 (``collect_refusal``): rollouts of ``refusal_groups`` that paper B's rule calls refused and whose thinking is
    longer than 10 characters. 0 with ``negatives="official"`` (``collect_non_refusal``, whose
    ``any(w not in answer[:32] for w in words)`` holds for every answer): every rollout of ``compliance_groups`` whose
    thinking is longer than 10 characters, refused or not; ``"complied"``: only those the rule calls complied, any
    thinking length. ``frame`` needs ``refused`` (paper B's rule), ``thinking`` and ``group_column``."""
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, not {negatives!r}")
    for column in ("refused", "thinking", group_column):
        if column not in frame.columns:
            raise ValueError(f"probe_training_labels needs a {column!r} column")
    thought = frame["thinking"].str.len() > MIN_THINKING_CHARS
    refused = frame["refused"].astype(bool)
    positive = frame.index[frame[group_column].isin(refusal_groups) & refused & thought]
    in_compliance = frame[group_column].isin(compliance_groups)
    negative = frame.index[in_compliance & (thought if negatives == "official" else ~refused)]
    return positive, negative


def probe_training_labels(frame: pd.DataFrame, refusal_groups: Sequence[str], compliance_groups: Sequence[str],
                          group_column: str, max_per_class: int = 200, seed: int = 42,
                          negatives: str = "official") -> pd.Series:
    """Paper B's training set: the rows of :func:`probe_candidates`, at most ``max_per_class`` each, then balanced
    (as the official code); 1 = refusal, 0 = compliance, NaN = not used. Raises
    :class:`lrmsafety.analysis.probes.TooFewToTrain` (with the counts) when a class is empty."""
    from .cliff_probe import TooFewToTrain

    positive, negative = probe_candidates(frame, refusal_groups, compliance_groups, group_column, negatives)
    n = min(len(positive), len(negative), max_per_class)
    if n < 1:
        kind = "rollouts with a thinking over 10 characters" if negatives == "official" else "compliances"
        raise TooFewToTrain(f"too few training rollouts: {len(positive)} refusals in {list(refusal_groups)}, "
                            f"{len(negative)} {kind} in {list(compliance_groups)} (of {len(frame)} rollouts)")
    rng = np.random.default_rng(seed)
    labels = pd.Series(np.nan, index=frame.index)
    labels[rng.choice(positive, n, replace=False)] = 1.0
    labels[rng.choice(negative, n, replace=False)] = 0.0
    return labels


def label_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """``refused`` (paper B's rule on the answer) and ``outcome`` (refused / complied harmful, benign, refused benign)
    for rollouts with the prompts' ``label`` (harmful / benign)."""
    refused = paper_b_refused(frame["answer"])
    benign = (frame["label"] == "benign").to_numpy()
    return frame.assign(refused=refused, outcome=np.where(benign, np.where(refused, "refused benign", "benign"),
                                                          np.where(refused, "refused harmful", "complied harmful")))


def trace_until_answer(text: str, close: str) -> tuple[str, int]:
    """The generated text up to the answer's first character (thinking + close + the whitespace after it), and the
    character offset where the close marker starts. Paper B's probe input ends with ``"\\n</think>\\n\\n"``."""
    at = text.find(close)
    if at < 0:
        raise ValueError(f"the trace has no close marker {close!r}; keep only rollouts whose thinking closed")
    end = at + len(close)
    while end < len(text) and text[end].isspace():
        end += 1
    return text[:end], at



def probe_inputs(tokenizer, frame: pd.DataFrame, close: str) -> pd.DataFrame:
    """Token ids of ``rendered_prompt + thinking + close`` (up to the answer) for each rollout, the index of the
    first thinking token (``start``) and how many thinking tokens precede the close (``n_thinking``)."""
    from .activations import rollout_token_ids

    cut = [trace_until_answer(text, close) for text in frame["text"]]
    ids, starts = rollout_token_ids(tokenizer, frame["rendered_prompt"], [c[0] for c in cut])
    n_thinking = [len(tokenizer(text[:at], add_special_tokens=False)["input_ids"]) for text, (_, at)
                  in zip(frame["text"], cut)]
    n_thinking = [max(1, min(n, len(i) - s - 1)) for n, i, s in zip(n_thinking, ids, starts)]
    return pd.DataFrame({"token_ids": ids, "start": starts, "n_thinking": n_thinking}, index=frame.index)




# ------------------------------------------------------------------------------------------------ cached artifacts
# The names notebook 05 writes under a profile's cache (and its probe under the run's artifacts) and 06 and 09 read:
# built here only, never in a notebook.


def probe_path(folder, model: str) -> Path:
    """Notebook 05's refusal probe for ``model`` (06 scores the heads with it, 09 reads the pool's cliffs), in the
    run's artifacts folder (``S.index``): the file is named by the model only, and runs whose rollouts differ (the
    vLLM backend's) each keep their own."""
    return Path(folder) / f"refusal_probe-{model}.safetensors"


def activation_path(cache, model: str, rows: pd.DataFrame) -> Path:
    """The cached last-layer states at the last token before the answer of ``rows`` (rollouts with ``prompt_id``,
    ``sample_index`` and ``config_hash``), keyed by the rows and their rollout configurations."""
    from ..store import config_hash

    key = config_hash({"model": model, "rows": list(zip(rows["prompt_id"], rows["sample_index"])),
                       "rollouts": sorted(set(rows["config_hash"])), "position": "before_answer"})
    return Path(cache) / f"activations-{model}-cliff-{key}.safetensors"


def curves_store(cache, model: str, probe, rollouts: pd.DataFrame, layer: int):
    """The :class:`lrmsafety.store.TableStore` of score curves (:func:`score_curves`) read with ``probe`` at
    ``layer`` on ``rollouts`` (their ``config_hash``), keyed by prompt_id and sample_index."""
    from ..store import TableStore, text_hash

    config = {"probe": text_hash(str(probe.direction.tolist())), "rollouts": sorted(set(rollouts["config_hash"])),
              "layer": layer}
    return TableStore(cache, f"cliff-curves-{model}", config, key=["prompt_id", "sample_index"])


def last_token_states(cache, name: str, model, tokenizer, rows: pd.DataFrame, inputs: pd.DataFrame,
                      layer: int) -> np.ndarray:
    """(rows, hidden) the state at ``layer`` at the last token of each row's ``inputs`` (:func:`probe_inputs`),
    cached at :func:`activation_path`."""
    from .activations import cached_hidden_states

    ids = list(inputs.loc[rows.index, "token_ids"])
    return cached_hidden_states(activation_path(cache, name, rows), model, tokenizer, ids, [[-1]] * len(rows),
                                [layer], batch_size=32, progress=False)[layer][:, 0, :]


# ------------------------------------------------------------------------------------------------ notebook 05's steps


def check_groups(prompts: pd.DataFrame, group_column: str, groups: Sequence[str]) -> None:
    """Raise when a group the probe names (``probe_*_groups``, ``heldout_groups``) is not among the prompts'."""
    missing = set(groups) - set(prompts[group_column])
    if missing:
        raise ValueError(f"groups {sorted(missing)} are not in the prompts' {group_column!r} column "
                         f"{sorted(prompts[group_column].unique())}: fix probe_*_groups / heldout_groups")


OFFICIAL_SEED = 42  # paper B's code samples its training set and initialises its probe with this seed


def probe_training_set(cache, name: str, model, tokenizer, frame: pd.DataFrame, inputs: pd.DataFrame, layer: int,
                       group_column: str, refusal_groups: Sequence[str], compliance_groups: Sequence[str],
                       max_per_class: int = 200, negatives: str = "official"):
    """The probe's training rows (paper B's labels, sampled with :data:`OFFICIAL_SEED`) and their cached last-token
    states: (rows, states, labels as 0/1, the rows' prompt ids), shared by the saved probe and its variants."""
    labels = probe_training_labels(frame, refusal_groups, compliance_groups, group_column, max_per_class,
                                   seed=OFFICIAL_SEED, negatives=negatives)
    train = frame[labels.notna()]
    states = last_token_states(cache, name, model, tokenizer, train, inputs, layer)
    return train, states, labels[train.index].astype(int), train["prompt_id"]


def train_probe(cache, name: str, model, tokenizer, frame: pd.DataFrame, close: str, layer: int, group_column: str,
                refusal_groups: Sequence[str], compliance_groups: Sequence[str], heldout_groups: Sequence[str],
                max_per_class: int = 200, negatives: str = "official", seed: int = 0, probe_folder=None):
    """Paper B's probe on ``frame`` (rollouts the model closed itself, with ``refused`` from :func:`label_outcomes`):
    its labels and its training (seed 42, as the official code), saved at :func:`probe_path` in ``probe_folder``
    (None: ``cache``); its accuracy on the
    validation split and on ``heldout_groups`` (label: paper B's rule), intervals over prompts (``seed``). Returns
    (probe, inputs, the two accuracy rows, a summary line). When it cannot be trained: the probe file is removed (no
    stale probe for 06 and 09) and :class:`lrmsafety.analysis.cliff_probe.TooFewToTrain` raised."""
    from .cliff_probe import LinearRefusalProbe, TooFewToTrain

    try:
        inputs = probe_inputs(tokenizer, frame, close)
        train, train_states, labels, groups = probe_training_set(
            cache, name, model, tokenizer, frame, inputs, layer, group_column, refusal_groups, compliance_groups,
            max_per_class, negatives)
        probe = LinearRefusalProbe(seed=OFFICIAL_SEED).fit(train_states, labels, groups=groups)
    except TooFewToTrain:
        probe_path(probe_folder or cache, name).unlink(missing_ok=True)
        raise
    probe.save(probe_path(probe_folder or cache, name), {"model": name, "layer": layer})
    val = train.iloc[probe.val_rows_]
    val = val.assign(correct=(probe.score(train_states[probe.val_rows_]) >= 0.5) == labels[val.index].astype(bool))
    held = frame[frame[group_column].isin(heldout_groups)]
    held = held.assign(correct=(probe.score(last_token_states(cache, name, model, tokenizer, held, inputs, layer))
                                >= 0.5) == held["refused"].to_numpy())
    rows = [table_row(name, metric, mean_with_ci(part["correct"], part["prompt_id"], seed=seed), len(part))
            for metric, part in (("probe validation accuracy", val), ("probe held-out accuracy", held))]
    v, h = rows
    line = (f"{name}: {int((labels == 1).sum())} refusals vs {int((labels == 0).sum())} label-0 rollouts; validation "
            f"accuracy {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}] (n = {len(val)}); held-out "
            f"{list(heldout_groups)}: {h['value']:.3f} [{h['low']:.3f}, {h['high']:.3f}] (n = {len(held)}, "
            f"{held['refused'].mean():.0%} refused); epochs: {[round(e['val_accuracy'], 3) for e in probe.history_]}; "
            f"the weight moved {probe.moved_:.2f}x its initial norm from its random start")
    return probe, inputs, rows, line


def train_models(P, S, prompts: pd.DataFrame, group_column: str, decoding) -> tuple[dict, list[dict], dict, list]:
    """Notebook 05's first step for each of ``P.models``: its rollouts (generated by ``P.backend``'s generator or
    cached, published for 06), paper B's labels, and the probe (:func:`train_probe`, saved in ``S.index``) on the
    rollouts that closed their thinking themselves. Returns (model -> (model, tokenizer, frame, inputs, probe,
    layer), table rows, model -> why it has no probe, lines)."""
    from ..engine import backends, generate
    from .cliff_probe import TooFewToTrain

    runs, rows, untrained, lines = {}, [], {}, []
    for name in P.models:
        generator, tokenizer, spec = backends.load_generator(name, P.backend, P.quantization, P.kv_tokens)
        rollouts = generate.rollouts(generator, tokenizer, spec, prompts, decoding, cache_root=S.cache,
                                     progress=False)
        # the probe reads hidden states: on the vLLM backend the engine closes and the transformers model loads
        model, tokenizer, spec = backends.transformers_model((generator, tokenizer, spec), name, P.quantization,
                                                             P.kv_tokens)
        del generator
        S.publish_rollouts("05", name, rollouts)  # 06 scores the heads on the traces its probe was trained on
        everything = label_outcomes(rollouts.merge(prompts[["prompt_id", "label", group_column]], on="prompt_id"))
        rows += rollout_rows(name, everything, group_column, seed=P.seed)
        frame = everything[everything["closed"].astype(bool)].reset_index(drop=True)
        lines.append(f"{name}: {len(frame)} of {len(everything)} rollouts closed their thinking themselves; the "
                     f"{len(everything) - len(frame)} force-closed ones are dropped (their last tokens are our close)")
        layer = model.config.get_text_config().num_hidden_layers  # paper B: the last layer, hidden_states[L]
        try:
            probe, inputs, accuracy, line = train_probe(
                S.cache, name, model, tokenizer, frame, spec.thinking_format.close, layer, group_column,
                P.probe_refusal_groups, P.probe_compliance_groups, P.heldout_groups, P.probe_max_per_class,
                negatives=P.probe_negatives, seed=P.seed, probe_folder=S.index)
        except TooFewToTrain as error:
            untrained[name] = f"the probe cannot be trained: {error}"
            lines.append(f"{name}: {untrained[name]}; no probe and no curves for this model")
            continue
        rows += accuracy
        runs[name] = (model, tokenizer, frame, inputs, probe, layer)
        lines.append(line)
    return runs, rows, untrained, lines


def read_curves(cache, name: str, model, tokenizer, frame: pd.DataFrame, inputs: pd.DataFrame, probe, layer: int,
                by: str, order: Sequence, n_traces: int, kind: str = "official", seed: int = 0):
    """Up to ``n_traces`` rollouts of ``frame`` per value of ``frame[by]`` (sampled with ``seed``), their score curves
    from the first thinking token (cached in :func:`curves_store`) and cliff sizes, and one mean curve per group
    (:func:`group_curves`; ``kind="official"``: each prompt's own scores prepended). Returns ((the chosen rows with
    plateau, final and ms, their traces), {group: (mean, low, high, n)})."""
    chosen = pd.concat([rows.sample(min(n_traces, len(rows)), random_state=seed) for _, rows in frame.groupby(by)])
    part = inputs.loc[chosen.index].assign(prompt_id=chosen["prompt_id"], sample_index=chosen["sample_index"])
    traces = score_curves(model, tokenizer, part, probe, layer, store=curves_store(cache, name, probe, frame, layer))
    full = ([np.concatenate(pair) for pair in zip(prompt_scores(model, tokenizer, part, probe, layer), traces)]
            if kind == "official" else None)
    sized = chosen.join(cliff_sizes(traces, part["n_thinking"]).set_index(chosen.index))
    return (sized, traces), group_curves(chosen, traces, full, by, order, kind, seed=seed)


# ------------------------------------------------------------------------------------------------ the table

# sd, seed_min, seed_max, seeds: the spread over probe seeds of the "(probe seeds)" rows (analysis.cliff_seeds)
TABLE_COLUMNS = ["model", "group", "outcome", "metric", "value", "low", "high", "n", "reason", "sd", "seed_min",
                 "seed_max", "seeds"]


def table_row(model, metric: str, estimate=(np.nan, np.nan, np.nan), n: int = 0, group="all", outcome="all",
              reason: str | None = None) -> dict:
    """One row of notebook 05's table; NA values carry their ``reason``."""
    value, low, high = estimate
    return {"model": model, "group": group, "outcome": outcome, "metric": metric, "value": value, "low": low,
            "high": high, "n": n, "reason": reason}


def mean_rows(model, frame: pd.DataFrame, group_column: str | None, metrics=("ms", "plateau", "final"),
              seed: int = 0) -> list[dict]:
    """``mean <metric>`` rows (mean and 95% CI over prompts) per outcome, and per outcome and ``group_column``
    value when given (else group "all")."""
    by = ["outcome"] + ([group_column] if group_column else [])
    rows = []
    for key, part in frame.groupby(by):
        key = key if isinstance(key, tuple) else (key,)
        group = key[1] if group_column else "all"
        rows += [table_row(model, f"mean {metric}", mean_with_ci(part[metric], part["prompt_id"], seed=seed),
                           len(part), group, key[0]) for metric in metrics]
    return rows


def curve_rows(model, curves: dict, kind: str, by: str = "outcome") -> list[dict]:
    """``<kind> curve plateau`` (the maximum of a :func:`group_curves` curve before its last 5 of 100 points, which
    the official figure script shades as the cliff) and ``<kind> curve final`` (its last point) per curve group;
    ``by``: "outcome", or the prompt-group column the curves are grouped by."""
    rows = []
    for group, (mean, low, high, n) in curves.items():
        where = {"outcome": group} if by == "outcome" else {"group": group}
        at = int(np.argmax(mean[:-5]))
        rows += [table_row(model, f"{kind} curve plateau", (mean[at], low[at], high[at]), n, **where),
                 table_row(model, f"{kind} curve final", (mean[-1], low[-1], high[-1]), n, **where)]
    return rows


def untrained_rows(model, reason: str) -> list[dict]:
    """NA rows, with the reason, for the probe's accuracies and the per-outcome MS, plateau and final score."""
    return ([table_row(model, metric, reason=reason) for metric in ("probe validation accuracy",
                                                                    "probe held-out accuracy")]
            + [table_row(model, f"mean {m}", outcome=o, reason=reason) for o in OUTCOMES
               for m in ("ms", "plateau", "final")])


def rollout_rows(model, frame: pd.DataFrame, group_column: str, seed: int = 0) -> list[dict]:
    """Per prompt group: the share of rollouts whose thinking the model closed itself, and paper B's label (share
    refused) on those."""
    rows = []
    for group, part in frame.groupby(group_column):
        closed = part[part["closed"].astype(bool)]
        rows += [table_row(model, "closed by the model", mean_with_ci(part["closed"].astype(float),
                                                                      part["prompt_id"], seed=seed), len(part), group),
                 table_row(model, "refused (paper B's rule)", mean_with_ci(closed["refused"].astype(float),
                           closed["prompt_id"], seed=seed), len(closed), group,
                           reason=None if len(closed) else "no rollout closed its thinking")]
    return rows


def mean_with_ci(values, clusters, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of per-row values, the interval from resampling whole clusters (prompts); vectorized,
    so it is cheap enough for one interval per group and metric."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean, low, high = bootstrap_curve(values[:, None], clusters, n_boot=n_boot, seed=seed)
    return float(mean[0]), float(low[0]), float(high[0])

