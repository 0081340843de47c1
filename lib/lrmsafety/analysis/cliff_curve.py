"""Paper B's refusal-score curves: sigmoid(probe) read along a trace, the mean curve per group, cliff sizes, figures.

Paper B (Yin et al., "Refusal Falls off a Cliff"; official code ``MikaStars39/RefusalCliff``, ``test_prober`` in
src/lens/prober.py) reads its probe at every token of template + thinking + close, right-aligns the traces in tokens
with zero padding, averages them and interpolates the mean (cubic) to 100 points (:func:`official_curve`). Where we
depart: ``"resampled"`` curves (each trace from its first thinking token interpolated to 100 points, then averaged)
are our default; the bands are ours (95% bootstrap over prompts; the official curve has none). MS = plateau − score
at the last token is the paper's cliff size (the official ranking uses the final score alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import intervals

OUTCOMES = ("refused harmful", "complied harmful", "benign", "refused benign")
# the official figure's "Normal Prompts" line (RefusalCliff fig/run.sh, curve annotations; its "Safe Plateau" line is
# the ledger's B7.plateau), per model, over the official mean curve
NORMAL_PROMPTS_LEVELS = {"R1-7B": 0.02, "R1-8B": 0.03}
FIGURE_MODELS = {"R1-7B": "deepseek-r1-distill-qwen-7b", "R1-8B": "deepseek-r1-distill-llama-8b"}


def published_levels() -> dict[str, dict[str, float]]:
    """The official figure's horizontal lines, label -> {model: level}: "Safe Plateau" (the claims ledger's
    B7.plateau per model) and "Normal Prompts" (:data:`NORMAL_PROMPTS_LEVELS`)."""
    from .. import ledger

    plateau = {short: ledger.published("B7.plateau", name)[0] for short, name in FIGURE_MODELS.items()}
    return {"Safe Plateau": plateau, "Normal Prompts": dict(NORMAL_PROMPTS_LEVELS)}


def resample(curve: np.ndarray, n_points: int = 100) -> np.ndarray:
    """One trace's scores linearly interpolated to n_points from its first to its last position: every trace ends
    at its last token, so the curves are right-aligned in relative position."""
    curve = np.asarray(curve, dtype=float)
    if len(curve) == 0:
        raise ValueError("empty score curve")
    if len(curve) == 1:
        return np.repeat(curve, n_points)
    return np.interp(np.linspace(0, len(curve) - 1, n_points), np.arange(len(curve)), curve)


def right_aligned(curves: Sequence[np.ndarray], width: int | None = None, fill: float = np.nan) -> np.ndarray:
    """(items, width) each trace's last ``width`` scores, right-aligned in tokens (column -1 = the last token);
    ``fill`` before a short trace starts. ``width`` None: the longest trace."""
    width = max(len(c) for c in curves) if width is None else width
    out = np.full((len(curves), width), fill, dtype=float)
    for i, curve in enumerate(curves):
        tail = np.asarray(curve, dtype=float)[-width:]
        out[i, width - len(tail):] = tail
    return out


def right_aligned_tail(curves: Sequence[np.ndarray], n_last: int) -> np.ndarray:
    """(items, n_last) the last n_last scores of each trace in token offsets (-n_last+1 .. 0); NaN before a short
    trace starts (the official code pads with zeros, which pulls short traces' average down)."""
    return right_aligned(curves, n_last)


def to_points(curve: np.ndarray, n_points: int = 100) -> np.ndarray:
    """Paper B's ``test_prober`` normalisation of a mean curve: ``interp1d(kind="cubic")`` from its positions
    ``linspace(0, L-1, L)`` to ``linspace(0, L-1, n_points)``; a curve of exactly ``n_points`` is kept as it is.
    Below 4 positions (too few for a cubic) linear, and a single position is repeated. Several curves: one per row
    of a 2-D array."""
    curve = np.asarray(curve, dtype=float)
    length = curve.shape[-1]
    if length == n_points:
        return curve.copy()
    x, new = np.linspace(0, length - 1, length), np.linspace(0, length - 1, n_points)
    if length == 1:
        return np.repeat(curve, n_points, axis=-1)
    if length < 4:
        return np.apply_along_axis(lambda c: np.interp(new, x, c), -1, curve)
    from scipy.interpolate import interp1d

    return interp1d(x, curve, kind="cubic", axis=-1, bounds_error=False, fill_value="extrapolate")(new)


def official_curve(curves: Sequence[np.ndarray], clusters: Sequence | None = None, n_points: int = 100,
                   n_boot: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paper B's mean refusal-score curve (``test_prober``): each trace's scores at every token of template +
    thinking + close, right-aligned in tokens with **zero** padding before short traces, averaged over traces, and
    the mean (length = the longest trace) interpolated to ``n_points`` (:func:`to_points`). Returns (mean, low,
    high); the band (ours; the official curve has none) resamples ``clusters`` (prompts) and is interpolated the
    same way (each resample's mean curve, then the 2.5 and 97.5 percentiles). Without clusters, low = high = mean."""
    matrix = right_aligned(curves, fill=0.0)
    if clusters is None:
        mean = to_points(matrix.mean(axis=0), n_points)
        return mean, mean.copy(), mean.copy()
    mean, boots = _cluster_means(matrix, clusters, n_boot, seed)
    low, high = np.quantile(to_points(boots, n_points), [0.025, 0.975], axis=0)
    return to_points(mean, n_points), low, high


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


def _cluster_means(matrix: np.ndarray, clusters: Sequence, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The NaN-aware mean over rows and (n_boot, columns) means over resamples of whole clusters."""
    matrix = np.asarray(matrix, dtype=float)
    codes, _ = pd.factorize(pd.Series(list(clusters)))
    n = codes.max() + 1
    sums = np.zeros((n, matrix.shape[1]))
    counts = np.zeros((n, matrix.shape[1]))
    np.add.at(sums, codes, np.nan_to_num(matrix))
    np.add.at(counts, codes, ~np.isnan(matrix))
    boots = np.empty((n_boot, matrix.shape[1]))
    for b, drawn in enumerate(intervals.bootstrap_draws(n, n_boot, seed)):  # the package's one resampling
        weight = np.bincount(drawn, minlength=n)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            boots[b] = (weight * sums).sum(0) / (weight * counts).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums.sum(0) / counts.sum(0), boots


def bootstrap_curve(matrix: np.ndarray, clusters: Sequence, n_boot: int = 500, seed: int = 0,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve over items (NaN-aware) and its percentile band from resampling whole clusters (prompts)."""
    mean, boots = _cluster_means(matrix, clusters, n_boot, seed)
    alpha = (1 - level) / 2
    low, high = np.nanquantile(boots, [alpha, 1 - alpha], axis=0)
    return mean, low, high




# ------------------------------------------------------------------------------------------------ model passes


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
    with store.writing():  # one writer at a time
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


def prompt_scores(model, tokenizer, inputs: pd.DataFrame, probe, layer: int, batch_size: int = 16) -> list[np.ndarray]:
    """sigmoid(probe) at every token of each rollout's rendered prompt (``token_ids[:start]``), once per distinct
    prompt. The model is causal, so these are the scores the same positions get inside the whole trace: prepended
    to :func:`score_curves`' curves they give the official curve's template + thinking + close."""
    from .activations import map_states_along

    prompts = [tuple(ids[:start]) for ids, start in zip(inputs["token_ids"], inputs["start"])]
    distinct = list(dict.fromkeys(prompts))
    scores = map_states_along(model, tokenizer, [list(p) for p in distinct], [0] * len(distinct), layer,
                              probe.score, batch_size=batch_size, progress=False)
    by_prompt = dict(zip(distinct, scores))
    return [by_prompt[p] for p in prompts]


def group_curves(chosen: pd.DataFrame, traces: Sequence[np.ndarray], full: Sequence[np.ndarray] | None, by: str,
                 order: Sequence, kind: str = "official", seed: int = 0) -> dict:
    """{group: (mean, low, high, n)} one 100-point mean curve per value of ``chosen[by]`` (in ``order``).
    ``kind="official"``: :func:`official_curve` of ``full`` (scores over template + thinking + close);
    ``"resampled"``: each of ``traces`` (from the first thinking token) through :func:`resample`, then the
    NaN-aware mean. Bands: 95% bootstrap over ``chosen["prompt_id"]``."""
    if kind not in ("official", "resampled"):
        raise ValueError(f"curve kind must be 'official' or 'resampled', not {kind!r}")
    out = {}
    for group in [g for g in order if g in set(chosen[by])]:
        mask = (chosen[by] == group).to_numpy()
        ids = chosen.loc[mask, "prompt_id"]
        if kind == "official":
            mean, low, high = official_curve([f for f, m in zip(full, mask) if m], ids, seed=seed)
        else:
            mean, low, high = bootstrap_curve(np.stack([resample(t) for t, m in zip(traces, mask) if m]), ids,
                                              seed=seed)
        out[group] = (mean, low, high, int(mask.sum()))
    return out


def plot_curves(curves: dict, mean_curves: dict, by: str, kind: str, published: dict | None = None, tail: int = 8,
                seed: int = 0):
    """Notebook 05's figure, one row per model: the 100-point mean curve per group (:func:`group_curves`, with its
    band) and the last ``tail`` tokens right-aligned (0 = the last token before the answer). ``curves``: model ->
    (rows with ``prompt_id`` and ``by``, their score traces from the first thinking token); ``published``: label ->
    {model: level}, drawn as horizontal lines."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(curves), 2, figsize=(10, 3.0 * len(curves)), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1]})
    for (name, (chosen, traces)), (ax, zoom) in zip(curves.items(), axes):
        for group, (mean, low, high, n) in mean_curves[name].items():
            line, = ax.plot(np.arange(len(mean)), mean, label=f"{group} (n = {n})")
            ax.fill_between(np.arange(len(mean)), low, high, color=line.get_color(), alpha=0.2)
            mask = (chosen[by] == group).to_numpy()
            last, low, high = bootstrap_curve(right_aligned_tail([t for t, m in zip(traces, mask) if m], tail),
                                              chosen.loc[mask, "prompt_id"], seed=seed)
            zoom.plot(np.arange(-tail + 1, 1), last, marker="o", ms=3, color=line.get_color())
            zoom.fill_between(np.arange(-tail + 1, 1), low, high, color=line.get_color(), alpha=0.2)
        for (label, values), style in zip((published or {}).items(), [":", "--", "-."]):
            for value in values.values():
                ax.axhline(value, color="grey", lw=0.8, ls=style)
            ax.text(len(mean) - 1, max(values.values()) + 0.02, f"published {label}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in values.items()), fontsize=7, color="grey", ha="right")
        ax.set(title=name, ylabel="refusal score", ylim=(-0.02, 1.02), xlabel={
            "official": "position over template + thinking + close (0-99)",
            "resampled": "position in the thinking (%)"}[kind])
        ax.legend(fontsize=7, loc="upper left")
        zoom.axvline(0, color="black", lw=0.8, ls="--")
        zoom.set(title="last tokens (0 = last before the answer)", xlabel="tokens from the end", ylim=(-0.02, 1.02))
    fig.tight_layout()
    return fig


def plot_sizes(sized: dict[str, pd.DataFrame]):
    """Box plots of MS and the plateau per outcome, one box per model in its colour, each outcome's boxes centred on
    its label (``sized``: model -> rows with ``outcome``, ``ms`` and ``plateau``)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from ..plots import model_colour

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    both = pd.concat([rows.assign(model=name) for name, rows in sized.items()])
    order = [g for g in OUTCOMES if g in set(both["outcome"])]
    slot = 0.8 / len(sized)  # the models share 80% of each outcome's unit, centred on it
    for ax, metric, title in zip(axes, ["ms", "plateau"], ["cliff size MS", "plateau (max over the thinking)"]):
        for k in range(1, len(order), 2):  # every other outcome shaded, so that each group reads as one
            ax.axvspan(k - 0.5, k + 0.5, color="0.94", zorder=0)
        for i, name in enumerate(sized):
            rows = both[both["model"] == name]
            ax.boxplot([rows.loc[rows["outcome"] == g, metric].dropna() for g in order], showfliers=False,
                       positions=np.arange(len(order)) + (i - (len(sized) - 1) / 2) * slot, widths=0.85 * slot,
                       patch_artist=True, manage_ticks=False, boxprops={"facecolor": model_colour(name)},
                       medianprops={"color": "black"})
        ax.set_xticks(range(len(order)), [o.replace(" ", "\n") for o in order], fontsize=8)
        ax.set(title=title, xlim=(-0.5, len(order) - 0.5), ylim=(-1.02 if metric == "ms" else -0.02, 1.02))
        ax.grid(False, axis="x")
    axes[0].legend([Patch(color=model_colour(name)) for name in sized], list(sized), fontsize=7, loc="lower left")
    return fig
