"""Paper B's refusal cliff: the probe's training label, refusal-score curves along a trace, and cliff sizes.

Paper B (Yin et al., ``MikaStars39/RefusalCliff``) trains a linear probe on the last-layer state at the last token
of ``template + thinking + close`` (refused harmful vs complied benign rollouts), then reads sigmoid(probe) at
every token of a trace: it stays high over the thinking (the plateau) and drops at the last tokens before the
answer (the cliff). MS = plateau − score at the last token; the official ranking uses the final score alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .judges import PAPER_B_REFUSAL_WORDS, RefusalPrefix  # paper B's 56 words, verbatim, with their source

MIN_THINKING_CHARS = 10  # paper B keeps a refusal for training only when its thinking is longer than this


def paper_b_judge(**kwargs) -> RefusalPrefix:
    """Paper B's answer rule: refused when the answer's first 32 characters contain one of its words (case-sensitive)."""
    return RefusalPrefix(words=PAPER_B_REFUSAL_WORDS, n_chars=32, **kwargs)


def paper_b_refused(answers: Sequence[str]) -> np.ndarray:
    """Paper B's refusal rule on answers that are already split from their thinking."""
    return paper_b_judge(part="full").judge([""] * len(answers), list(answers))["refused"].to_numpy(dtype=bool)


def probe_training_labels(frame: pd.DataFrame, refusal_groups: Sequence[str], compliance_groups: Sequence[str],
                          group_column: str, max_per_class: int = 200, seed: int = 42) -> pd.Series:
    """Paper B's training set: 1 = refused rollouts of ``refusal_groups`` with a thinking longer than 10 characters,
    0 = complied rollouts of ``compliance_groups``; at most ``max_per_class`` each, then balanced (as the official
    code). ``frame`` needs ``refused`` (paper B's rule), ``thinking`` and ``group_column``; NaN = not used."""
    for column in ("refused", "thinking", group_column):
        if column not in frame.columns:
            raise ValueError(f"probe_training_labels needs a {column!r} column")
    in_refusal = frame[group_column].isin(refusal_groups)
    in_compliance = frame[group_column].isin(compliance_groups)
    positive = frame.index[in_refusal & frame["refused"] & (frame["thinking"].str.len() > MIN_THINKING_CHARS)]
    negative = frame.index[in_compliance & ~frame["refused"]]
    n = min(len(positive), len(negative), max_per_class)
    if n < 1:
        raise ValueError(f"too few training rollouts: {len(positive)} refusals in {list(refusal_groups)}, "
                         f"{len(negative)} compliances in {list(compliance_groups)}; raise n_prompts or "
                         "samples_per_prompt, or choose other groups")
    rng = np.random.default_rng(seed)
    labels = pd.Series(np.nan, index=frame.index)
    labels[rng.choice(positive, n, replace=False)] = 1.0
    labels[rng.choice(negative, n, replace=False)] = 0.0
    return labels


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


# ------------------------------------------------------------------------------------------------ cliff curves


def resample(curve: np.ndarray, n_points: int = 100) -> np.ndarray:
    """One trace's scores linearly interpolated to n_points from its first to its last position: every trace ends
    at its last token, so the curves are right-aligned in relative position."""
    curve = np.asarray(curve, dtype=float)
    if len(curve) == 0:
        raise ValueError("empty score curve")
    if len(curve) == 1:
        return np.repeat(curve, n_points)
    return np.interp(np.linspace(0, len(curve) - 1, n_points), np.arange(len(curve)), curve)


def right_aligned_tail(curves: Sequence[np.ndarray], n_last: int) -> np.ndarray:
    """(items, n_last) the last n_last scores of each trace in token offsets (-n_last+1 .. 0); NaN before a short
    trace starts (the official code pads with zeros, which pulls short traces' average down)."""
    out = np.full((len(curves), n_last), np.nan)
    for i, curve in enumerate(curves):
        tail = np.asarray(curve, dtype=float)[-n_last:]
        out[i, n_last - len(tail):] = tail
    return out


def cliff_sizes(curves: Sequence[np.ndarray], thinking_lengths: Sequence[int]) -> pd.DataFrame:
    """Per trace: plateau = max score over the thinking tokens (the first ``thinking_lengths[i]`` positions of the
    curve), final = score at the last token before the answer, MS = plateau − final (paper B's cliff size)."""
    rows = []
    for curve, n_think in zip(curves, thinking_lengths):
        curve = np.asarray(curve, dtype=float)
        if not 0 < n_think <= len(curve):
            raise ValueError(f"thinking length {n_think} outside a curve of {len(curve)} positions")
        plateau, final = float(curve[:n_think].max()), float(curve[-1])
        rows.append({"plateau": plateau, "final": final, "ms": plateau - final})
    return pd.DataFrame(rows, columns=["plateau", "final", "ms"])


def bootstrap_curve(matrix: np.ndarray, clusters: Sequence, n_boot: int = 500, seed: int = 0,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve over items (NaN-aware) and its percentile band from resampling whole clusters (prompts)."""
    matrix = np.asarray(matrix, dtype=float)
    codes, _ = pd.factorize(pd.Series(list(clusters)))
    n = codes.max() + 1
    sums = np.zeros((n, matrix.shape[1]))
    counts = np.zeros((n, matrix.shape[1]))
    np.add.at(sums, codes, np.nan_to_num(matrix))
    np.add.at(counts, codes, ~np.isnan(matrix))
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, matrix.shape[1]))
    for b in range(n_boot):
        weight = np.bincount(rng.integers(0, n, n), minlength=n)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            boots[b] = (weight * sums).sum(0) / (weight * counts).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.sum(0) / counts.sum(0)
    alpha = (1 - level) / 2
    low, high = np.nanquantile(boots, [alpha, 1 - alpha], axis=0)
    return mean, low, high


# ------------------------------------------------------------------------------------------------ model passes


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


def score_curves(model, tokenizer, inputs: pd.DataFrame, probe, layer: int, store=None,
                 batch_size: int = 16) -> list[np.ndarray]:
    """sigmoid(probe) at every position from the first thinking token to the last token before the answer.

    With a :class:`lrmsafety.store.TableStore` (key prompt_id, sample_index; ``inputs`` carries both), finished
    batches are kept and a rerun reads them back."""
    from .activations import map_states_along

    if store is None:
        return map_states_along(model, tokenizer, list(inputs["token_ids"]), list(inputs["start"]), layer,
                                probe.score, batch_size=batch_size)
    keys = list(zip(inputs["prompt_id"], inputs["sample_index"]))
    pending = set(store.pending(keys))
    todo = inputs[[k in pending for k in keys]]
    for begin in range(0, len(todo), batch_size * 8):
        part = todo.iloc[begin:begin + batch_size * 8]
        curves = map_states_along(model, tokenizer, list(part["token_ids"]), list(part["start"]), layer,
                                  probe.score, batch_size=batch_size, progress=False)
        store.append(pd.DataFrame({"prompt_id": part["prompt_id"].to_numpy(),
                                   "sample_index": part["sample_index"].to_numpy(),
                                   "curve": [c.astype(np.float32).tolist() for c in curves]}))
    done = store.read().set_index(["prompt_id", "sample_index"])["curve"]
    return [np.asarray(done.loc[k], dtype=float) for k in keys]


def mean_with_ci(values, clusters, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of per-row values, the interval from resampling whole clusters (prompts); vectorized,
    so it is cheap enough for one interval per group and metric."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean, low, high = bootstrap_curve(values[:, None], clusters, n_boot=n_boot, seed=seed)
    return float(mean[0]), float(low[0]), float(high[0])
