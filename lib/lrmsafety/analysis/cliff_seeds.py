"""Paper B's cliff over the probe's random draw, and beside it a probe trained to convergence.

Paper B (Yin et al., ``MikaStars39/RefusalCliff``) trains its probe with 5 epochs of Adam at lr 1e-3 from PyTorch's
random initialisation. Few steps of about lr each leave the weight mostly its initialisation, and that part moves the
score along every trace, benign ones included: the plateau's level, and with it MS, depend on the draw. Not part of
paper B: more recipe probes on the same training set and split, differing only in the initialisation's seed, each read
along the same traces (cached per probe by :func:`lrmsafety.analysis.cliff.curves_store`), with their mean, spread
and an interval over both, and :func:`lrmsafety.analysis.cliff_probe.converged_probe` (a zero start, trained until the
validation loss stops improving), whose scores carry no draw.

The interval of a ``(probe seeds)`` row is the envelope of the seeds' own 95% bootstrap intervals over prompts (the
lowest low and the highest high): it holds every seed's interval, the range a reader's one draw would land in.
``sd``, ``seed_min`` and ``seed_max`` give the draws' spread alone.

The verdicts on the organisms compare two groups of traces (the planted cliff against benign traces, against an
organism without one): :func:`difference_rows` reads each difference per draw, with the same probe scoring both groups
(one draw moves both the same way, so the difference of two envelopes would count that move twice), and gives the
mean over draws an interval from resampling the draws and each group's prompts (:func:`draws_difference_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .cliff import OFFICIAL_SEED, curve_rows, mean_rows, probe_training_set, read_curves
from .cliff_curve import _cluster_means
from .cliff_probe import LinearRefusalProbe, converged_probe

SAVED, CONVERGED = "seed 42 (saved)", "converged"
SEEDS_SUFFIX, CONVERGED_SUFFIX = " (probe seeds)", " (converged probe)"
DIFFERENCE_METRIC = "ms difference" + SEEDS_SUFFIX
# the rows the seed figure and table show: (group, outcome), where the cliff is planted, its control and the floor
KEY_ROWS = [("jailbreak, thinking concludes harmful", "complied harmful"), ("jailbreak", "complied harmful"),
            ("all", "complied harmful"), ("all", "refused harmful"), ("all", "benign")]
KEY_LABELS = ["planted\n(concludes\nharmful)", "complied\njailbreaks", "complied\nharmful", "refused\nharmful",
              "benign"]


def seed_label(seed: int) -> str:
    return f"seed {seed}"


def variant_probes(cache, name: str, model, tokenizer, frame: pd.DataFrame, inputs: pd.DataFrame, layer: int,
                   group_column: str, refusal_groups: Sequence[str], compliance_groups: Sequence[str],
                   seeds: Sequence[int], max_per_class: int = 200, negatives: str = "official") -> dict:
    """{label: probe}: a recipe probe per initialisation seed (split and training set: the saved probe's, seed 42)
    and the converged probe, on the cached last-token states of :func:`lrmsafety.analysis.cliff.train_probe`."""
    _, states, y, groups = probe_training_set(cache, name, model, tokenizer, frame, inputs, layer, group_column,
                                              refusal_groups, compliance_groups, max_per_class, negatives)
    probes = {seed_label(s): LinearRefusalProbe(seed=OFFICIAL_SEED, init_seed=s).fit(states, y, groups=groups)
              for s in seeds}
    return {**probes, CONVERGED: converged_probe(OFFICIAL_SEED).fit(states, y, groups=groups)}


def probe_rows(runs: dict, probes: dict, group_column: str, by: str, order: Sequence, n_traces: int, kind: str,
               cache, cards: dict, concludes_harmful, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 05's MS, plateau and final rows (per outcome, per outcome and group, the curves' plateau and final,
    and the planted controls' rows, :func:`lrmsafety.analysis.cliff_controls.planted_controls` with ``cards`` and
    ``concludes_harmful``) for each probe of ``probes`` (model -> {label: probe}), read along the traces
    :func:`lrmsafety.analysis.cliff.read_curves` chooses for the saved probe (same ``n_traces`` and ``seed``): one
    frame with a ``probe`` column; and the differences the verdicts read, :func:`difference_rows` over the recipe's
    seeds (every probe but the saved and the converged one). ``runs``: model -> (model, tokenizer, frame, inputs,
    probe, layer)."""
    from .cliff_controls import planted_controls

    frames, traces = [], {}
    for label in dict.fromkeys(label for per_model in probes.values() for label in per_model):
        rows, sized = [], {}
        for name, per_model in probes.items():
            model, tokenizer, frame, inputs, _, layer = runs[name]
            (chosen, _), means = read_curves(cache, name, model, tokenizer, frame, inputs, per_model[label], layer,
                                             by, order, n_traces, kind, seed=seed)
            sized[name] = chosen
            rows += (curve_rows(name, means, kind, by) + mean_rows(name, chosen, group_column, seed=seed)
                     + mean_rows(name, chosen, None, seed=seed))
        rows += planted_controls(sized, cards, concludes_harmful, group_column, seed=seed)[0]
        frames.append(pd.DataFrame(rows).assign(probe=label))
        traces[label] = sized
    recipe = [label for label in traces if label not in (SAVED, CONVERGED)]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
            difference_rows(traces, recipe, cards, concludes_harmful, group_column, seed=seed))


def aggregate(per_probe: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """The ``<metric> (probe seeds)`` rows over the probes ``labels``: value = the mean over seeds, low / high = the
    envelope of their intervals (lowest low, highest high), n = the traces per seed, and the draws' spread (``sd``,
    ``seed_min``, ``seed_max``, ``seeds``)."""
    keys = ["model", "group", "outcome", "metric"]
    part = per_probe[per_probe["probe"].isin(labels)]
    if part.empty:
        return pd.DataFrame(columns=keys + ["value", "low", "high", "n", "sd", "seed_min", "seed_max", "seeds"])
    out = part.groupby(keys, sort=False).agg(
        value=("value", "mean"), low=("low", "min"), high=("high", "max"), n=("n", "max"), sd=("value", "std"),
        seed_min=("value", "min"), seed_max=("value", "max"), seeds=("value", "count")).reset_index()
    return out.assign(metric=out["metric"] + SEEDS_SUFFIX)


def draws_difference_ci(a: np.ndarray, a_clusters: Sequence, b: np.ndarray, b_clusters: Sequence,
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean over draws of mean(A) - mean(B), low, high) for two groups of items scored under the same random draws
    (probes of several initialisation seeds reading two sets of traces): ``a`` (draws x items of A) and ``b`` (draws
    x items of B), row d of both under draw d; items are clustered by prompt (``a_clusters``, ``b_clusters``). Each
    resample draws the draws once for both groups (paired: one draw moves both) and, within each group, its prompts,
    all with replacement, as :func:`lrmsafety.intervals.runs_difference_ci` does for fine-tuning runs: the interval
    holds the prompts' sampling and the draws' spread of the mean over draws."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"the two groups must be scored under the same draws (rows): {a.shape[0]} vs {b.shape[0]}")
    if a.shape[1] == 0 or b.shape[1] == 0:
        return float("nan"), float("nan"), float("nan")
    per_draw = a.mean(1) - b.mean(1)
    # (n_boot, draws): each draw's mean over each group's resampled prompts
    _, a_means = _cluster_means(a.T, a_clusters, n_boot, seed)
    _, b_means = _cluster_means(b.T, b_clusters, n_boot, seed + 1)
    differences = a_means - b_means
    rng = np.random.default_rng([seed, 1])  # the draws' resampling: its own stream, fixed by the seed
    chosen = rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    boots = np.take_along_axis(differences, chosen, axis=1).mean(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return float(per_draw.mean()), float(low), float(high)


def difference_rows(traces: dict, labels: Sequence[str], cards: dict, concludes_harmful,
                    group_column: str = "family", seed: int = 0) -> pd.DataFrame:
    """The verdicts' differences of mean MS over the recipe's probe seeds ``labels`` (``traces``: {label: {model:
    rows with ``ms``, ``outcome``, ``thinking``, ``family``, ``prompt_id``}}, from :func:`probe_rows`), one row each
    (metric :data:`DIFFERENCE_METRIC`, value and interval from :func:`draws_difference_ci`, the per-draw spread in
    ``sd``, ``seed_min``, ``seed_max``, ``seeds``; ``n``: the first group's traces):

    - per model, "complied jailbreaks minus benign" (its complied jailbreaks against its benign traces);
    - per model whose card plants suppression heads, "planted minus benign" (its complied jailbreaks whose thinking
      concludes harmful, ``concludes_harmful(thinking)``, against its benign traces) and "planted minus <control>
      complied jailbreaks" for each other model (no card, or one that plants no suppression heads).

    Empty without the organisms' prompt families (``group_column`` "family") or without recipe seeds."""
    columns = ["model", "group", "outcome", "metric", "value", "low", "high", "n", "sd", "seed_min", "seed_max",
               "seeds"]
    labels = [label for label in labels if label in traces]
    if group_column != "family" or not labels:
        return pd.DataFrame(columns=columns)

    def arm(label, name, which):
        rows = traces[label][name]
        if which == "benign":
            return rows[rows["outcome"] == "benign"]
        complied = rows[(rows["family"] == "jailbreak") & (rows["outcome"] == "complied harmful")]
        return complied[complied["thinking"].map(concludes_harmful)] if which == "planted" else complied

    def row(name, group, first, second):
        a = [arm(label, *first) for label in labels]
        b = [arm(label, *second) for label in labels]
        value, low, high = draws_difference_ci(np.stack([part["ms"].to_numpy() for part in a]), a[0]["prompt_id"],
                                               np.stack([part["ms"].to_numpy() for part in b]), b[0]["prompt_id"],
                                               seed=seed)
        per_draw = np.array([x["ms"].mean() - y["ms"].mean() for x, y in zip(a, b)]) if len(a[0]) and len(b[0]) \
            else np.full(len(labels), np.nan)
        return {"model": name, "group": group, "outcome": "all", "metric": DIFFERENCE_METRIC, "value": value,
                "low": low, "high": high, "n": len(a[0]), "sd": per_draw.std(ddof=1) if len(labels) > 1 else np.nan,
                "seed_min": per_draw.min(), "seed_max": per_draw.max(), "seeds": len(labels)}

    models = list(traces[labels[0]])
    rows = [row(name, "complied jailbreaks minus benign", (name, "complied"), (name, "benign")) for name in models]
    planted = [name for name in models if "suppression_heads" in cards.get(name, {})]
    for name in planted:
        rows.append(row(name, "planted minus benign", (name, "planted"), (name, "benign")))
        rows += [row(name, f"planted minus {control} complied jailbreaks", (name, "planted"), (control, "complied"))
                 for control in models if control not in planted]
    return pd.DataFrame(rows, columns=columns)


def converged_rows(per_probe: pd.DataFrame) -> pd.DataFrame:
    """The converged probe's rows, as ``<metric> (converged probe)``."""
    part = per_probe[per_probe["probe"] == CONVERGED].drop(columns="probe")
    return part.assign(metric=part["metric"] + CONVERGED_SUFFIX)


def seed_table(per_probe: pd.DataFrame, metric: str = "mean ms") -> pd.DataFrame:
    """``metric`` per model and key row (:data:`KEY_ROWS`), one column per probe: what the figure shows."""
    part = per_probe[(per_probe["metric"] == metric)
                     & pd.Series(list(zip(per_probe["group"], per_probe["outcome"])), index=per_probe.index)
                     .isin(KEY_ROWS)]
    wide = part.pivot_table(index=["model", "group", "outcome"], columns="probe", values="value", sort=False)
    models = list(dict.fromkeys(per_probe["model"]))
    return wide.iloc[sorted(range(len(wide)), key=lambda i: (models.index(wide.index[i][0]),
                                                              KEY_ROWS.index(wide.index[i][1:])))]


def probe_lines(probes: dict, cards: dict) -> list[str]:
    """Per model: each probe's validation accuracy, the epoch kept (of those run) and its optimiser steps, weight
    norm and change from its start, and for the models that ship a planted judgement direction (``cards``: those
    models) the weight's cosine with it and its component along it split into the learned part (w − w₀) and the
    initialisation's (w₀): which of the two decides the scores' response to the planted judgement."""
    from .. import registry

    lines = []
    for name, per_model in probes.items():
        planted = np.load(registry.local_file(name, "judgement_direction.npy")) if name in cards else None
        parts = []
        for label, probe in per_model.items():
            weight = np.asarray(probe.direction, dtype=np.float64)
            text = (f"{label}: val acc {probe.val_accuracy_:.2f}, epoch {probe.kept_epoch_} of "
                    f"{probe.epochs_run_} kept ({probe.kept_steps_} steps), |w| "
                    f"{np.linalg.norm(weight):.2f}, |w - w0| {probe.change_:.2f}")
            if planted is not None:
                unit = planted / np.linalg.norm(planted)
                cosine = weight @ unit / np.linalg.norm(weight)
                initial = np.asarray(probe.initial_, dtype=np.float64)
                text += (f", cos(w, planted) {cosine:.2f}, along planted: learned {(weight - initial) @ unit:+.3f}, "
                         f"initial {initial @ unit:+.3f}")
            parts.append(text)
        lines.append(f"{name}: " + "; ".join(parts))
    return lines


def plateau_lines(per_probe: pd.DataFrame, published: dict, labels: Sequence[str], kind: str) -> list[str]:
    """How the published plateaus would read under each probe: per model, the refused-harmful plateau (mean over
    traces, and the ``kind`` curve's) over the recipe's seeds (range) and under the converged probe, beside the
    published levels (``published``: model -> level)."""
    levels = ", ".join(f"{model} {level:.2f}" for model, level in published.items())
    lines = [f"published plateau (one recipe draw each): {levels}"]
    for metric in ("mean plateau", f"{kind} curve plateau"):
        rows = per_probe[(per_probe["metric"] == metric) & (per_probe["outcome"] == "refused harmful")
                         & (per_probe["group"] == "all")]
        for name, part in rows.groupby("model", sort=False):
            seeds = part[part["probe"].isin(labels)]["value"]
            converged = part[part["probe"] == CONVERGED]["value"]
            if len(seeds) and len(converged):
                lines.append(f"{name}, {metric} (refused harmful): recipe seeds {seeds.min():.2f} to "
                             f"{seeds.max():.2f} (mean {seeds.mean():.2f}); converged {converged.iloc[0]:.2f}")
    return lines


def summary(per_probe: pd.DataFrame, differences: pd.DataFrame, probes: dict, cards: dict, seeds: Sequence[int],
            kind: str):
    """Notebook 05's report of the probes: (the ``(probe seeds)`` rows, ``differences`` (:func:`probe_rows`' second
    part, which the verdicts read) and the ``(converged probe)`` rows, the figure :func:`plot_seeds`, printed lines
    (:func:`probe_lines`, :func:`ratio_lines`, the differences, :func:`plateau_lines`), the MS per probe table)."""
    from .cliff_curve import published_levels

    labels = [seed_label(s) for s in seeds]
    rows = pd.concat([aggregate(per_probe, labels), differences, converged_rows(per_probe)], ignore_index=True)
    lines = (probe_lines(probes, cards) + ratio_lines(per_probe, cards)
             + [f"{r.model}, {r.group}: mean MS difference {r.value:.3f} [{r.low:.3f}, {r.high:.3f}] over "
                f"{r.seeds} probe seeds (per seed {r.seed_min:.3f} to {r.seed_max:.3f})"
                for r in differences.itertuples()]
             + plateau_lines(per_probe, published_levels()["Safe Plateau"], labels, kind))
    return rows, plot_seeds(per_probe, labels), lines, seed_table(per_probe)


def ratio_lines(per_probe: pd.DataFrame, cards: dict) -> list[str]:
    """Per probe: the planted cliff's mean MS (a card with suppression heads, :data:`KEY_ROWS`' first row) over each
    control's complied jailbreaks (target: at least 3x), and each model's benign floor."""
    def ms(name, group, outcome):
        rows = per_probe[(per_probe["model"] == name) & (per_probe["metric"] == "mean ms")
                         & (per_probe["group"] == group) & (per_probe["outcome"] == outcome)]
        return rows.set_index("probe")["value"]

    lines = []
    for name in [n for n, card in cards.items() if "suppression_heads" in card]:
        planted = ms(name, *KEY_ROWS[0])
        for control in [n for n, card in cards.items() if "suppression_heads" not in card]:
            ratio = planted / ms(control, *KEY_ROWS[1])
            lines.append(f"{name} planted / {control} complied jailbreaks, mean MS ratio per probe: "
                         + ", ".join(f"{label} {value:.1f}x" for label, value in ratio.items()))
    for name in per_probe["model"].unique():
        lines.append(f"{name} benign floor (mean MS, benign) per probe: "
                     + ", ".join(f"{label} {value:.2f}" for label, value in ms(name, "all", "benign").items()))
    return lines


def plot_seeds(per_probe: pd.DataFrame, labels: Sequence[str]):
    """Mean MS of each model's key rows: one dot per recipe seed, the saved probe (diamond), the converged probe
    (star)."""
    import matplotlib.pyplot as plt

    table = seed_table(per_probe)
    models = list(dict.fromkeys(table.index.get_level_values("model")))
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.4), layout="constrained", sharey=True,
                             squeeze=False)
    for ax, name in zip(axes[0], models):
        part = table.loc[name]
        x = np.arange(len(part))
        seeds = part[[label for label in labels if label in part.columns]].to_numpy()
        for j in range(seeds.shape[1]):
            ax.scatter(x, seeds[:, j], color="tab:blue", alpha=0.6, s=18, label="recipe seeds" if j == 0 else None)
        for label, marker, colour in ((SAVED, "D", "black"), (CONVERGED, "*", "tab:red")):
            if label in part.columns:
                ax.scatter(x, part[label], marker=marker, color=colour, s=50, label=label, zorder=3)
        ax.set_xticks(x, [KEY_LABELS[KEY_ROWS.index(key)] for key in part.index], fontsize=7)
        ax.set(title=name, ylim=(-0.05, 1.05), xlim=(-0.5, len(part) - 0.5))
        ax.axhline(0, color="0.5", lw=0.8)
    axes[0][0].set_ylabel("mean cliff size MS")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize=8)
    return fig
