"""Paper A's first-token study (Ri, Panigrahi, Arora, Table 1 and the "refusal valley"; methods.md section 1): the
mechanics of notebook 02 around the probes of :mod:`.probes` and the permutation null of :mod:`.nulls`.

    probe_frame(rollouts, judged, prompts, group_column)   notebook 01's rollouts with paper A's label (refused_a)
    skipped_row(name, frame)                               the NA row of a model whose probe cannot be split by prompt
    probe_rows(name, frame, first, prompt_state, ...)      the probe tables: first token (prompt folds, row folds)
                                                           and State A per intent
    controls(name, frame, tokenizer, first, seed)          TF-IDF of the first token's text, shuffled labels
    permutation_rows(name, frame, ..., cache)              the prompt-level permutation null of both features
    probe_table(tables, skipped, nulls)                    all of them in one table (02_first_token_probe.csv)
    valley_curves(cache, name, model, tokenizer, ...)      J(t) along the thinking per pool (harmful, benign), with
                                                           its null under shuffled outcomes
    sweep_figure(sweep, models), valley_figure(valley, models)   the notebook's two figures

Where we depart from paper A: folds are split by prompt (paper A's by row: reported once beside it as
"first token, row folds"); beside paper A's bootstrap intervals, a permutation test of the whole cross-validated
pipeline (whole prompts' labels exchanged within their family, every fold refitted) judges "no signal".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import activations, nulls, probes

COLUMNS = ["model", "feature", "group", "auroc", "auroc_lo", "auroc_hi", "bacc", "bacc_lo", "bacc_hi", "n", "n_pos",
           "reason"]
NULL_COLUMNS = ["model", "feature", "group", "perm_p", "null_low", "null_high", "n_permutations"]
CONTROL_COLUMNS = ["model", "control", "auroc", "auroc_lo", "auroc_hi", "n"]
FIRST, STATE_A = "first thinking token", "State A (last prompt token)"


def probe_frame(rollouts: pd.DataFrame, judged: pd.DataFrame, prompts: pd.DataFrame, group_column: str):
    """Rollouts with paper A's label as ``refused`` (01: the guard majority) and the prompts' ``label`` and group;
    rollouts without a label or without thinking are left out."""
    judged = judged[["prompt_id", "sample_index", "refused_a"]].rename(columns={"refused_a": "refused"})
    frame = rollouts.merge(judged, on=["prompt_id", "sample_index"]).merge(
        prompts[["prompt_id", "label", group_column]], on="prompt_id")
    return frame[frame["refused"].notna() & (frame["thinking"].str.len() > 0)].reset_index(drop=True)


def skipped_row(name: str, frame: pd.DataFrame) -> dict:
    """The table's row for a model whose probe cannot be fitted (too few prompts of an outcome): NA, with why."""
    reason = ("too few prompts of each outcome to split 5 folds by prompt: "
              f"{frame.groupby('refused')['prompt_id'].nunique().to_dict()}")
    return {"model": name, "feature": "first thinking token", "group": "pooled", "n": len(frame),
            "n_pos": int(frame["refused"].sum()), "reason": reason}


def _labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame["refused"].astype(int).to_numpy(), frame["prompt_id"].to_numpy()


def probe_rows(name: str, frame: pd.DataFrame, first: np.ndarray, prompt_state: np.ndarray, group_column: str) -> list:
    """The probe at the first thinking token (folds by prompt; and by row, paper A's split), and paper A's State A
    (the last prompt token; standardized L2 logistic regression, C = 1) per intent, and per family from one fit on
    every prompt: one table each, per group."""
    labels, groups = _labels(frame)
    masks = probes.group_masks(frame, group_column)
    cv = probes.cross_validated_probe(first, labels, groups)
    tables = [probes.group_metrics(cv, masks).assign(model=name, feature=FIRST)]
    by_row = probes.cross_validated_probe(first, labels, np.arange(len(labels)))
    tables.append(probes.group_metrics(by_row, masks).assign(model=name, feature="first token, row folds"))
    for intent in ("harmful", "benign"):
        rows = (frame["label"] == intent).to_numpy()
        if not probes.probe_ready(frame[rows]):
            continue
        state_a = probes.cross_validated_probe(prompt_state[rows], labels[rows], groups[rows],
                                               pipeline_factory=probes.state_a_pipeline)
        tables.append(probes.group_metrics(state_a, {intent: np.ones(rows.sum(), dtype=bool)}).query(
            "group == @intent").assign(model=name, feature=STATE_A))
    # per family: State A fitted on every prompt, the pipeline its permutation null refits (permutation_rows), so
    # that each family's AUROC, interval and p-value describe one probe
    families = {g: m for g, m in masks.items() if g.startswith(f"{group_column}=")}
    if probes.probe_ready(frame):
        state_a = probes.cross_validated_probe(prompt_state, labels, groups, pipeline_factory=probes.state_a_pipeline)
        tables.append(probes.group_metrics(state_a, families).query("group in @families").assign(
            model=name, feature=STATE_A))
    return tables


def controls(name: str, frame: pd.DataFrame, tokenizer, first: np.ndarray, seed: int) -> list[dict]:
    """Paper A's TF-IDF control on the first token's text, and the probe on shuffled labels."""
    labels, groups = _labels(frame)
    first_text = [tokenizer.decode(ids[:1]) for ids in
                  (tokenizer(t, add_special_tokens=False)["input_ids"] for t in frame["text"])]
    return [{"model": name, **probes.tfidf_first_token_control(first_text, labels, groups)},
            {"model": name, **probes.shuffled_label_control(first, labels, groups, seed=seed)}]


def permutation_rows(name: str, frame: pd.DataFrame, first: np.ndarray, prompt_state: np.ndarray, group_column: str,
                     n_permutations: int, seed: int, cache) -> list:
    """The permutation null of both features (whole prompts' labels exchanged within their ``group_column`` value),
    one boolean mask per group: the benign macro-average's subsets are pooled, single-class groups left out."""
    labels, groups = _labels(frame)
    named = {k: v if isinstance(v, np.ndarray) else (frame["label"] == k).to_numpy()
             for k, v in probes.group_masks(frame, group_column).items()}
    named = {k: v for k, v in named.items() if len(np.unique(labels[v])) == 2}
    out = []
    for feature, slug, states, factory in ((FIRST, "first_token", first, probes.first_token_probe_pipeline),
                                           (STATE_A, "state_a", prompt_state, probes.state_a_pipeline)):
        test = nulls.permutation_test(states, labels, groups, named, n_permutations,
                                      strata=frame[group_column].to_numpy(), seed=seed, pipeline_factory=factory,
                                      n_jobs=-1, cache_path=cache / f"permutations-{name}-{slug}.csv")
        out.append(test.assign(model=name, feature=feature))
    return out


def probe_table(tables: list, skipped: list[dict], null_tables: list) -> pd.DataFrame:
    """Every probe row (a model whose probe could not be fitted keeps an NA row with the reason) with its permutation
    null; groups only the null run holds (e.g. State A per family) take the null run's own AUROC and n."""
    tables = tables + ([pd.DataFrame(skipped, columns=COLUMNS)] if skipped else [])
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    null = (pd.concat(null_tables, ignore_index=True) if null_tables
            else pd.DataFrame(columns=NULL_COLUMNS + ["auroc", "n"]))
    table = table.merge(null[NULL_COLUMNS + ["auroc", "n"]], on=["model", "feature", "group"], how="outer",
                        suffixes=("", "_perm"))
    table["auroc"] = table["auroc"].fillna(table.pop("auroc_perm"))
    table["n"] = table["n"].fillna(table.pop("n_perm"))
    return table


def valley_curves(cache, name: str, model, tokenizer, frame: pd.DataFrame, layer: int, close: str, n_rollouts: int,
                  seed: int, permutations: int = 199, report=print) -> pd.DataFrame:
    """J(t) at 100 evenly spaced positions of the thinking (first thinking token to the last before the close), per
    pool (harmful, benign), on a sample of ``n_rollouts`` rollouts, as paper A's code; beside it the 95th percentile
    of J(t) over ``permutations`` shuffles of the outcomes among the pool's rollouts (:func:`nulls.separation_null`).
    One row per model, pool and position: ``position`` (%), ``J``, ``null``."""
    subset = frame.sample(min(n_rollouts, len(frame)), random_state=seed).reset_index(drop=True)
    # the generated text up to the close: the states of a causal model there do not depend on what follows
    subset["text"] = [t[: t.find(close)] if close in t else t for t in subset["text"]]
    states = activations.rollout_states(cache, name, model, tokenizer, subset, activations.evenly_spaced(100),
                                        [layer], "valley-thinking")
    curves = []
    for pool in ("harmful", "benign"):
        rows = (subset["label"] == pool).to_numpy()
        if subset.loc[rows, "refused"].nunique() == 2:
            labels = subset.loc[rows, "refused"].astype(int).to_numpy()
            curve = probes.separation_curve(states[layer][rows], labels)
            null = nulls.separation_null(states[layer][rows], labels, permutations, seed=seed)
            curves.append(pd.DataFrame({"model": name, "pool": pool, "position": np.linspace(0, 100, len(curve)),
                                        "J": curve, "null": null}))
        else:
            report(f"{name}, {pool}: one outcome only among {rows.sum()} rollouts, no J(t)")
    return pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
        columns=["model", "pool", "position", "J", "null"])


def sweep_figure(sweep: pd.DataFrame, models: list[str]):
    """The pooled out-of-fold AUROC per layer with its interval, one line per model in its colour."""
    import matplotlib.pyplot as plt

    from ..plots import model_colour

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name in [m for m in models if m in set(sweep["model"])]:
        rows = sweep[sweep["model"] == name]
        ax.plot(rows["layer"], rows["auroc"], marker="o", label=name, color=model_colour(name))
        ax.fill_between(rows["layer"], rows["auroc_lo"], rows["auroc_hi"], alpha=0.2, color=model_colour(name))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="layer (hidden_states index)", ylabel="AUROC (pooled, out of fold)", ylim=(0.3, 1.02),
           title="First-thinking-token probe per layer")
    if len(sweep):
        ax.legend(fontsize=8)
    return fig


def valley_figure(valley: pd.DataFrame, models: list[str]):
    """J(t) along the thinking, one panel per model (harmful solid, benign dashed, in the model's colour) with the
    shuffled-outcome null of each pool in grey. Log scale: J runs from ~0.01 by chance to hundreds where the
    thinking's conclusion is written, and both ends matter."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..plots import model_colour

    shown = [m for m in models if m in set(valley["model"])] or ["no model"]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.4 * len(shown) + 2.4, 3.2), sharey=True, squeeze=False,
                             layout="constrained")
    styles = {"harmful": "-", "benign": "--"}
    for ax, name in zip(axes[0], shown):
        for pool, rows in valley[valley["model"] == name].groupby("pool"):
            ax.plot(rows["position"], rows["J"], color=model_colour(name), ls=styles[pool])
            ax.plot(rows["position"], rows["null"], color="0.55", lw=1, ls=styles[pool])
        if name == "no model":
            ax.text(0.5, 0.5, "no model has both outcomes", transform=ax.transAxes, ha="center", color="grey")
        ax.set_title(name, fontsize=10)
        ax.set_yscale("log")
    handles = [Line2D([], [], color="black", ls=styles["harmful"]), Line2D([], [], color="black", ls=styles["benign"]),
               Line2D([], [], color="0.55", lw=1)]
    fig.legend(handles, ["harmful prompts", "benign prompts", "null: 95th percentile\nof J, outcomes shuffled"],
               loc="outside right upper", fontsize=8, frameon=False)
    fig.supxlabel("position along the thinking (%)", fontsize=10)
    axes[0][0].set_ylabel("J(t), log scale")
    fig.suptitle("Refusal valley: separation of refusals and compliances along the thinking", fontsize=10)
    return fig
