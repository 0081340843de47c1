"""The organisms on several training seeds: one table of every planted target per organism and seed.

A control that holds for one training run only is a property of that checkpoint, not of the organism's design. The
seed lane (``make seeds SEEDS="0 1 2"``) trains each organism with each seed into ``data/models/seed-<s>/`` (seed 0
is the committed organisms in ``data/models/``), runs the organism profile's notebooks on each into
``<profile>/seed-<s>/`` folders, and then :func:`collect` reads every seed's three verdict tables:

    00_organism_behaviour.csv   the card: each organism behaves as built (00's 18 targets)
    paper_a_verdicts.csv        paper A's planted targets (04's 13)
    10_claims.csv               the claims ledger's other rows with a planted target (01's rates, 05's cliff
                                against its baselines, 06's heads, 08's SFT, 09's cliff vs random; nulls included)

into one long table (target x organism x seed: value, interval, verdict) and :func:`summary` counts on how many
seeds each target holds. Every verdict is the interval rule of :mod:`lrmsafety.verdicts`, as on seed 0.
:func:`pooled_cliff_as_judge` judges 09's cliff vs random selection once more over every organism seed's fine-tuning
runs together (each run an organism seed and a fine-tuning seed), and that pooled verdict is the one the target is
held to (:data:`POOLED_MEASURE`): one LoRA fine-tune of a few examples is noisy at this size, and one seed's
interval (0.11-0.16 either side at 48 held-out prompts) cannot settle a target 0.1 from zero; each seed's own
verdict is still shown beside it. :func:`combined_no_signal` judges paper A's "no signal" targets (the null
organism's probes, a permutation test per seed) by one test over the seeds together (:data:`NO_SIGNAL_TABLE`).

    python -m lrmsafety.seeds table --seeds 0 1 2    writes data/results/organism/seeds.csv, seeds_pooled.csv,
                                                     seeds_no_signal.csv and the same in paper/organism/, with
                                                     seeds.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .paths import REPO_ROOT, RESULTS_DIR

PROFILE = "organism"
TABLE = "seeds.csv"  # the long table's file name, in the results folder and in paper/<profile>/
POOLED_TABLE = "seeds_pooled.csv"  # pooled_cliff_as_judge's rows, beside it
NO_SIGNAL_TABLE = "seeds_no_signal.csv"  # combined_no_signal's rows, beside it
HOLDS = ("as built", "recovered")  # the verdicts that mean a target holds on a seed
# the ledger's rows from these notebooks repeat targets the two tables above already hold (00's card; paper A's
# targets of 02-04), so the seed table takes the ledger's other rows only
COVERED = ("00_organism", "02_first_token_probe", "03_lock_in", "04_deliberation")
COLUMNS = ["source", "target_id", "kind", "organism", "seed", "value", "low", "high", "target", "verdict", "covered"]


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _seed_folder(results_root: Path, seed: int) -> Path:
    """A seed's results: seed 0 (the committed organisms) in ``results_root``, seed s in its ``seed-<s>/``."""
    return results_root / f"seed-{seed}" if seed else results_root


def collect(seeds, results_root: Path = RESULTS_DIR / PROFILE) -> pd.DataFrame:
    """Every seed's targets in one long table (:data:`COLUMNS`), read from ``results_root`` (seed 0) and its
    ``seed-<s>/`` folders; a table missing on a seed leaves its targets out for that seed (the summary counts the
    seeds it read)."""
    frames = []
    for seed in seeds:
        where = _seed_folder(results_root, seed)
        card = _read(where / "00_organism_behaviour.csv")
        if card is not None:
            frames.append(pd.DataFrame({
                "source": "00 card", "target_id": card["measure"], "kind": "card", "organism": card["organism"],
                "seed": seed, "value": card["rate"], "low": card["ci_low"], "high": card["ci_high"],
                "target": card["target"], "verdict": card["verdict"]}))
        paper_a = _read(where / "paper_a_verdicts.csv")
        if paper_a is not None:
            frames.append(pd.DataFrame({
                "source": "04 paper A", "target_id": paper_a["measure"], "kind": "method",
                "organism": paper_a["model"], "seed": seed, "value": paper_a["value"], "low": paper_a["low"],
                "high": paper_a["high"], "target": paper_a["target"], "verdict": paper_a["verdict"]}))
        claims = _read(where / "10_claims.csv")
        if claims is not None:
            targeted = claims[claims["target"].notna() & (claims["target"] != "–")]
            frames.append(pd.DataFrame({
                "source": "10 ledger", "target_id": targeted["measure_id"], "kind": targeted["kind"],
                "organism": targeted["model"], "seed": seed, "value": targeted["ours"], "low": targeted["low"],
                "high": targeted["high"], "target": targeted["target"], "verdict": targeted["verdict"],
                "covered": targeted["notebook"].isin(COVERED)}))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(frames, ignore_index=True).reindex(columns=COLUMNS)  # "covered": the ledger's rows only
    return table.assign(covered=table["covered"].astype(object).fillna(False).astype(bool))


POOLED_MEASURE = "B9.cliff_vs_random"


def pooled_cliff_as_judge(seeds, results_root: Path = RESULTS_DIR / PROFILE) -> pd.DataFrame:
    """09's selectors against random selection with the fine-tuning runs of every organism seed pooled (a run is an
    organism seed and a fine-tuning seed; 09_heldout_outcomes.csv of each seed), with the two-level bootstrap of
    ``intervals.runs_difference_ci``; the rows of the claims ledger's B9.cliff_vs_random, with its targets and
    verdict."""
    from . import ledger, verdicts
    from .analysis.cliff_as_judge import against_baseline

    frames = []
    for seed in seeds:
        outcomes = _read(_seed_folder(results_root, seed) / "09_heldout_outcomes.csv")
        if outcomes is not None:
            frames.append(outcomes.assign(organism_seed=seed))
    if not frames:
        return pd.DataFrame()
    rows = pd.DataFrame(against_baseline(pd.concat(frames), run=("organism_seed", "seed")))
    measure = ledger.measure_of(ledger.load_ledger(), POOLED_MEASURE)
    rows = rows.query(measure.select).copy()
    targets = [measure.targets.get(model) for model in rows["model"]]
    rows["target"] = [t.text() if t else "–" for t in targets]
    rows["verdict"] = [verdicts.word(verdicts.placement(lo, hi, t.min, t.max), "method") if t else "–"
                       for lo, hi, t in zip(rows["low"], rows["high"], targets)]
    return rows.assign(seeds=" ".join(str(s) for s in sorted({f["organism_seed"].iloc[0] for f in frames})))


def pooled_verdicts(pooled: pd.DataFrame | None) -> dict:
    """The verdict :data:`POOLED_MEASURE` is held to, per organism: {organism: (verdict, "0 1 2")} from
    :func:`pooled_cliff_as_judge`'s rows ({} without any)."""
    if pooled is None or pooled.empty:
        return {}
    return {r["model"]: (r["verdict"], str(r["seeds"])) for _, r in pooled.iterrows()}


def _pooled_holds(verdict: str, pooled_seeds: str, alone: str | None) -> str:
    """The ``holds`` text of a target held to its pooled verdict, each seed's own count beside it."""
    return f"pooled over seeds {pooled_seeds}: {verdict}" + (f" ({alone} alone)" if alone else "")


def combined_no_signal(seeds, results_root: Path = RESULTS_DIR / PROFILE) -> pd.DataFrame:
    """Paper A's "no signal" targets (:data:`lrmsafety.analysis.paper_a_measures.PAPER_A_TARGETS`: the null
    organism's first-token and State A AUROC, each seed judged by its permutation p >= 0.05) over the seeds
    together: Fisher's combination of the seeds' permutation p-values (scipy's ``combine_pvalues``: -2 sum ln p
    against chi-square with 2k degrees of freedom; the seeds' runs are independent) tests "no signal on any seed" at
    the same level.

    Why not "p >= 0.05 on every seed": a test at level 0.05 rejects on 1 in 20 truly null seeds, so a null
    target held seed by seed fails by chance with probability 1 - 0.95^k at k seeds (0.14 at 3), for each
    measure; the combined test keeps the stated 0.05. Each seed's own verdict stays beside it. One row per organism
    and measure: model, measure, seeds, p_values (in seed order), statistic, value (the combined p), target,
    verdict."""
    from scipy.stats import combine_pvalues

    from .analysis.paper_a_measures import NO_SIGNAL, PAPER_A_TARGETS

    found: dict = {}
    for seed in seeds:
        measures = _read(_seed_folder(results_root, seed) / "paper_a_measures.csv")
        if measures is None:
            continue
        for model, targets in PAPER_A_TARGETS.items():
            for measure, (kind, level) in targets.items():
                row = measures[(measures["model"] == model) & (measures["measure"] == measure)]
                if kind == NO_SIGNAL and len(row) and pd.notna(row["perm_p"].iloc[0]):
                    found.setdefault((model, measure, level), []).append((seed, float(row["perm_p"].iloc[0])))
    rows = []
    for (model, measure, level), by_seed in found.items():
        statistic, combined = combine_pvalues([p for _, p in by_seed], method="fisher")
        rows.append({"model": model, "measure": measure, "seeds": " ".join(str(s) for s, _ in by_seed),
                     "p_values": " ".join(f"{p:.3f}" for _, p in by_seed), "statistic": float(statistic),
                     "value": float(combined), "target": f"Fisher's combined p >= {level}",
                     "verdict": "recovered" if combined >= level else "differs"})
    return pd.DataFrame(rows, columns=["model", "measure", "seeds", "p_values", "statistic", "value", "target",
                                       "verdict"])


def _combined_holds(test, alone: str) -> str:
    """The ``holds`` text of a target held to :func:`combined_no_signal`'s test, each seed's own count beside it."""
    return f"combined over seeds {test['seeds']}: {test['verdict']} (Fisher's p = {test['value']:.3f}; {alone} alone)"


def summary(table: pd.DataFrame, pooled: pd.DataFrame | None = None,
            no_signal: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per target and organism: the seed-0 value and verdict, each seed's verdict, and on how many of the
    seeds read it holds (``holds``: "k of n"); the ledger's rows that repeat the card's or paper A's are left out.
    With ``pooled`` (:func:`pooled_cliff_as_judge`), :data:`POOLED_MEASURE` holds where its pooled verdict does
    (``holds``: "pooled over seeds 0 1 2: recovered (1 of 3 alone)"). With ``no_signal``
    (:func:`combined_no_signal`), paper A's no-signal targets hold where the seeds' combined test does."""
    rows = []
    verdicts = pooled_verdicts(pooled)
    combined = {} if no_signal is None else {(r["model"], r["measure"]): r for _, r in no_signal.iterrows()}
    table = table[~table["covered"]]
    for (source, target_id, organism), part in table.groupby(["source", "target_id", "organism"], sort=False):
        part = part.sort_values("seed")
        held = part["verdict"].isin(HOLDS)
        first = part.iloc[0]
        row = {"source": source, "target_id": target_id, "kind": first["kind"], "organism": organism,
               "target": first["target"], "seed 0 value": _value(part[part["seed"] == 0])}
        row.update({f"seed {s}": v for s, v in zip(part["seed"], part["verdict"])})
        row.update({"holds": f"{int(held.sum())} of {len(part)}", "on every seed": bool(held.all())})
        if target_id == POOLED_MEASURE and organism in verdicts:
            verdict, pooled_seeds = verdicts[organism]
            row.update({"holds": _pooled_holds(verdict, pooled_seeds, row["holds"]),
                        "on every seed": verdict in HOLDS})
        if source == "04 paper A" and (organism, target_id) in combined:
            test = combined[(organism, target_id)]
            row.update({"holds": _combined_holds(test, row["holds"]),
                        "on every seed": test["verdict"] in HOLDS})
        rows.append(row)
    return pd.DataFrame(rows)


def _value(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "–"
    r = rows.iloc[0]
    fmt = lambda x: "–" if pd.isna(x) else f"{x:.3f}"  # noqa: E731
    return f"{fmt(r['value'])} [{fmt(r['low'])}, {fmt(r['high'])}]"


def markdown(summary_table: pd.DataFrame, seeds, pooled: pd.DataFrame | None = None,
             no_signal: pd.DataFrame | None = None) -> str:
    """The seed table as Markdown (paper/organism/seeds.md), with the count of targets that hold on every seed."""
    every = int(summary_table["on every seed"].sum()) if len(summary_table) else 0
    seed_columns = [c for c in summary_table.columns if c.startswith("seed ") and c != "seed 0 value"]
    out = [f"# The organisms' planted targets over training seeds {', '.join(map(str, seeds))}", "",
           f"{every} of {len(summary_table)} targets hold on every seed read (a target holds on a seed when its 95% "
           "interval lies inside it: `as built` for the card, `recovered` for a method; "
           f"{POOLED_MEASURE} holds where its verdict on every seed's fine-tuning runs pooled does, and paper A's "
           "no-signal targets where the seeds' permutation tests combined do, below). Seed 0 "
           "is the committed organisms; the others are trained by `make seeds` and not committed. Written by "
           "`python -m lrmsafety.seeds table`.", "",
           "| source | measure | kind | organism | target | seed 0: value [95% CI] | " +
           " | ".join(seed_columns) + " | holds |", "|" + "---|" * (7 + len(seed_columns))]
    for _, r in summary_table.iterrows():
        cells = [r["source"], r["target_id"], r["kind"], r["organism"], r["target"], r["seed 0 value"],
                 *[r[c] if isinstance(r[c], str) else "–" for c in seed_columns], r["holds"]]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    if pooled is not None and len(pooled):
        out += ["", f"## {POOLED_MEASURE} over the organism seeds' fine-tuning runs together", "",
                "| organism | selector | share | seeds | runs | value [95% CI] | target | verdict |", "|" + "---|" * 8]
        out += [f"| {r['model']} | {r['selector']} | {r['share']:g} | {r['seeds']} | {r['runs']} | "
                f"{r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {r['target']} | {r['verdict']} |"
                for _, r in pooled.iterrows()]
    if no_signal is not None and len(no_signal):
        out += ["", "## Paper A's no-signal targets over the seeds together", "",
                "Each seed's permutation test rejects on 1 in 20 truly null seeds, so a null target held seed by seed "
                "would fail by chance on some; Fisher's combination of the seeds' p-values tests \"no signal on any "
                "seed\" at the same level 0.05 (`lrmsafety.seeds.combined_no_signal`).", "",
                "| organism | measure | seeds | permutation p per seed | Fisher's statistic | combined p | target | "
                "verdict |", "|" + "---|" * 8]
        out += [f"| {r['model']} | {r['measure']} | {r['seeds']} | {r['p_values']} | {r['statistic']:.2f} | "
                f"{r['value']:.3f} | {r['target']} | {r['verdict']} |" for _, r in no_signal.iterrows()]
    return "\n".join(out) + "\n"


def _write_beside(frame: pd.DataFrame, name: str, folders) -> None:
    """``frame`` as ``name`` in each folder; none where it is empty (an empty file would not read back), and a stale
    one goes."""
    for folder in folders:
        if frame.empty:
            (folder / name).unlink(missing_ok=True)
        else:
            frame.to_csv(folder / name, index=False)


def write_table(seeds, results_root: Path = RESULTS_DIR / PROFILE, paper_dir: Path = REPO_ROOT / "paper" / PROFILE
                ) -> pd.DataFrame:
    """Collect and summarize; write the long table to data/results/organism/seeds.csv and paper/organism/seeds.csv
    (committed: the report reads it, so a clone without the other seeds' runs renders the same report), the pooled
    rows of :func:`pooled_cliff_as_judge` beside it (seeds_pooled.csv) and the summary to paper/organism/seeds.md."""
    table = collect(seeds, results_root)
    if table.empty:
        raise FileNotFoundError(f"no seed's verdict tables under {results_root}: run `make seeds` (or `make all` on "
                                "the organism profile for seed 0) first")
    paper_dir.mkdir(parents=True, exist_ok=True)
    for folder in (results_root, paper_dir):
        table.to_csv(folder / TABLE, index=False)
    read = sorted(table["seed"].unique())  # the seeds with a table
    pooled = pooled_cliff_as_judge(read, results_root)
    _write_beside(pooled, POOLED_TABLE, (results_root, paper_dir))
    no_signal = combined_no_signal(read, results_root)
    _write_beside(no_signal, NO_SIGNAL_TABLE, (results_root, paper_dir))
    brief = summary(table, pooled, no_signal)
    (paper_dir / "seeds.md").write_text(markdown(brief, read, pooled, no_signal))
    return brief


def committed_table(profile: str, paper_root: Path = REPO_ROOT / "paper", name: str = TABLE
                    ) -> pd.DataFrame | None:
    """The seed table the report reads (paper/<profile>/seeds.csv; ``name`` :data:`POOLED_TABLE`: its pooled rows),
    or None where ``make seeds`` has not written it."""
    path = paper_root / profile / name
    return pd.read_csv(path) if path.exists() else None


def holds_on(filled: pd.DataFrame, table: pd.DataFrame | None, pooled: pd.DataFrame | None = None) -> pd.Series:
    """For each row of the filled ledger (lrmsafety.ledger.fill): on how many seeds of ``table`` its target holds
    ("2 of 3"), "–" where the table has no row for it (or there is no table); :data:`POOLED_MEASURE` with its
    pooled verdict where ``pooled`` has one ("pooled over seeds 0 1 2: recovered (1 of 3 alone)")."""
    if table is None:
        return pd.Series("–", index=filled.index)
    ledger_rows = table[table["source"] == "10 ledger"]
    counts = ledger_rows.assign(held=ledger_rows["verdict"].isin(HOLDS)).groupby(["target_id", "organism"]).agg(
        held=("held", "sum"), seeds=("seed", "nunique"))
    text = {key: f"{int(r['held'])} of {int(r['seeds'])}" for key, r in counts.iterrows()}
    for organism, (verdict, pooled_seeds) in pooled_verdicts(pooled).items():
        key = (POOLED_MEASURE, organism)
        text[key] = _pooled_holds(verdict, pooled_seeds, text.get(key))
    return pd.Series([text.get((m, model), "–") for m, model in zip(filled["measure_id"], filled["model"])],
                     index=filled.index)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lrmsafety.seeds", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="the seed table from every seed's verdict tables")
    table.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    brief = write_table(args.seeds)
    print(f"{int(brief['on every seed'].sum())} of {len(brief)} targets hold on every seed; "
          f"written: data/results/{PROFILE}/seeds.csv, {POOLED_TABLE} and {NO_SIGNAL_TABLE}, the same in "
          f"paper/{PROFILE}/, and seeds.md")


if __name__ == "__main__":
    main()
