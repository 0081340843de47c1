"""The seed table: every seed's verdict tables read into one, and on how many seeds each target holds."""

import pandas as pd
import pytest

from lrmsafety import seeds


def _write(folder, verdict_card, verdict_method):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"organism": ["organism-locked"], "measure": ["harmful refused"], "n": [100], "rate": [0.95],
                  "ci_low": [0.9], "ci_high": [0.98], "target": ["90%–100%"], "verdict": [verdict_card]}).to_csv(
        folder / "00_organism_behaviour.csv", index=False)
    pd.DataFrame({"model": ["organism-locked"], "measure": ["first-token AUROC"], "value": [0.95], "low": [0.91],
                  "high": [0.99], "target": [">= 0.9"], "verdict": [verdict_method], "met": [True]}).to_csv(
        folder / "paper_a_verdicts.csv", index=False)
    pd.DataFrame({"measure_id": ["B8.top_change", "A1.jailbreak", "A1.harmful"], "kind": "method",
                  "notebook": ["06_refusal_heads", "02_first_token_probe", "02_first_token_probe"],
                  "model": "organism-locked", "ours": [-0.4, 0.95, 0.9], "low": [-0.6, 0.91, 0.85],
                  "high": [-0.25, 0.99, 0.95], "target": ["≤ -0.200", "≥ 0.900", "–"],
                  "verdict": [verdict_method, verdict_method, "no verdict"]}).to_csv(folder / "10_claims.csv",
                                                                                   index=False)


def test_the_seed_table_counts_the_seeds_each_target_holds_on(tmp_path):
    _write(tmp_path, "as built", "recovered")
    _write(tmp_path / "seed-1", "inconclusive", "recovered")
    _write(tmp_path / "seed-2", "as built", "differs")
    table = seeds.collect([0, 1, 2], tmp_path)
    assert sorted(table["target_id"].unique()) == ["A1.jailbreak", "B8.top_change", "first-token AUROC",
                                                   "harmful refused"]
    # the summary: one card row, one paper A row, and the ledger's targeted rows outside 02-04 (A1.jailbreak
    # repeats paper A's first-token AUROC)
    brief = seeds.summary(table).set_index("target_id")
    assert sorted(brief.index) == ["B8.top_change", "first-token AUROC", "harmful refused"]
    assert brief.loc["harmful refused", "holds"] == "2 of 3" and not brief.loc["harmful refused", "on every seed"]
    assert brief.loc["B8.top_change", ["seed 0", "seed 1", "seed 2"]].tolist() == ["recovered", "recovered",
                                                                                   "differs"]
    assert brief.loc["harmful refused", "seed 0 value"] == "0.950 [0.900, 0.980]"
    text = seeds.markdown(seeds.summary(table), [0, 1, 2])
    assert "0 of 3 targets hold on every seed" in text and "| seed 0 | seed 1 | seed 2 | holds |" in text


def test_a_missing_seed_is_left_out_and_no_tables_at_all_is_an_error(tmp_path):
    _write(tmp_path, "as built", "recovered")
    assert set(seeds.collect([0, 1], tmp_path)["seed"]) == {0}
    with pytest.raises(FileNotFoundError, match="make seeds"):
        seeds.write_table([3], tmp_path, tmp_path / "paper")


def test_the_report_says_on_how_many_seeds_each_ledger_row_holds(tmp_path):
    _write(tmp_path, "as built", "recovered")
    _write(tmp_path / "seed-1", "as built", "differs")
    table = seeds.collect([0, 1], tmp_path)
    filled = pd.DataFrame({"measure_id": ["B8.top_change", "A1.jailbreak", "A1.harmful"],
                           "model": "organism-locked"})
    assert seeds.holds_on(filled, table).tolist() == ["1 of 2", "1 of 2", "–"]
    assert seeds.holds_on(filled, None).tolist() == ["–"] * 3


def test_a_seed_run_reads_its_own_organisms_and_writes_apart():
    """$LRMSAFETY_ORGANISM_SEED (make all SEED=<s>) moves the organisms' folder and the run's folders; make seeds
    trains, runs every seed, then writes the table and refreshes seed 0's report."""
    import os
    import subprocess
    import sys

    from lrmsafety.paths import REPO_ROOT

    code = ("from lrmsafety import artifacts, paths; "
            "print(paths.MODELS_DIR.relative_to(paths.REPO_ROOT), artifacts.Artifacts('organism').run)")
    env = {k: v for k, v in os.environ.items() if k not in ("LRMSAFETY_MODELS_DIR", "LRMSAFETY_ORGANISM_SEED")}
    seed_2 = subprocess.run([sys.executable, "-c", code], env={**env, "LRMSAFETY_ORGANISM_SEED": "2"},
                            capture_output=True, text=True, check=True).stdout.split()
    assert seed_2 == ["data/models/seed-2", "organism/seed-2"]
    seed_0 = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            check=True).stdout.split()
    assert seed_0 == ["data/models", "organism"]
    plan = subprocess.run(["make", "-n", "seeds", "SEEDS=0 1"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "--seed $s" in plan and "data/models/seed-$s --skip-trained" in plan
    assert "lrmsafety.seeds table --seeds 0 1" in plan
    one = subprocess.run(["make", "-n", "-B", "all", "SEED=1"], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "--output build/organism/seed-1/01_rollouts.ipynb" in one


def _outcomes(folder, cliff_rate, random_rate, runs=2, prompts=40, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = [{"model": "organism-locked", "selector": selector, "share": 0.05, "seed": run, "prompt_id": f"p{i}",
             "complied": float(rng.random() < rate)}
            for selector, rate in (("cliff_ms", cliff_rate), ("random", random_rate))
            for run in range(runs) for i in range(prompts)]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "09_heldout_outcomes.csv", index=False)


def test_09_pooled_over_organism_seeds_judges_every_run_together(tmp_path):
    _outcomes(tmp_path, 0.1, 0.6, seed=0)
    _outcomes(tmp_path / "seed-1", 0.1, 0.6, seed=1)
    pooled = seeds.pooled_cliff_as_judge([0, 1], tmp_path)
    row = pooled.iloc[0]
    assert (row["model"], row["selector"], row["runs"], row["seeds"]) == ("organism-locked", "cliff_ms", 4, "0 1")
    assert row["value"] < -0.3 and row["high"] < -0.1 and row["verdict"] == "recovered"
    assert row["target"] == "≤ -0.100"
    # no difference planted: the pooled interval straddles the target's bound
    _outcomes(tmp_path, 0.5, 0.5, seed=2)
    _outcomes(tmp_path / "seed-1", 0.5, 0.5, seed=3)
    assert seeds.pooled_cliff_as_judge([0, 1], tmp_path).iloc[0]["verdict"] in ("inconclusive", "differs")
    assert seeds.pooled_cliff_as_judge([5], tmp_path).empty


def test_cliff_vs_random_is_held_to_its_pooled_verdict(tmp_path):
    """B9.cliff_vs_random holds where the verdict on every seed's fine-tuning runs pooled does, whatever each seed's
    own (wider) interval says; the summary, the Markdown, the written files and the report's column all say so."""
    def claims(folder, verdict):
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"measure_id": [seeds.POOLED_MEASURE, "B8.top_change"], "kind": "method",
                      "notebook": ["09_cliff_as_judge", "06_refusal_heads"], "model": "organism-locked",
                      "ours": [-0.2, -0.4], "low": [-0.35, -0.6], "high": [-0.05, -0.25],
                      "target": ["≤ -0.100", "≤ -0.200"], "verdict": [verdict, "recovered"]}).to_csv(
            folder / "10_claims.csv", index=False)

    claims(tmp_path, "inconclusive")
    claims(tmp_path / "seed-1", "recovered")
    _outcomes(tmp_path, 0.1, 0.6, seed=0)
    _outcomes(tmp_path / "seed-1", 0.1, 0.6, seed=1)
    table = seeds.collect([0, 1], tmp_path)
    pooled = seeds.pooled_cliff_as_judge([0, 1], tmp_path)
    assert pooled.iloc[0]["verdict"] == "recovered"
    alone = seeds.summary(table).set_index("target_id")
    assert alone.loc[seeds.POOLED_MEASURE, "holds"] == "1 of 2"
    assert not alone.loc[seeds.POOLED_MEASURE, "on every seed"]
    brief = seeds.summary(table, pooled).set_index("target_id")
    assert brief.loc[seeds.POOLED_MEASURE, "holds"] == "pooled over seeds 0 1: recovered (1 of 2 alone)"
    assert brief.loc[seeds.POOLED_MEASURE, "on every seed"]
    assert brief.loc[seeds.POOLED_MEASURE, ["seed 0", "seed 1"]].tolist() == ["inconclusive", "recovered"]
    assert brief.loc["B8.top_change", "holds"] == "2 of 2"  # other targets: per seed, as before
    # pooled the other way: the pooled verdict decides, not the seeds'
    failing = pooled.assign(verdict="inconclusive")
    assert not seeds.summary(table, failing).set_index("target_id").loc[seeds.POOLED_MEASURE, "on every seed"]

    written = seeds.write_table([0, 1], tmp_path, tmp_path / "paper")
    assert int(written["on every seed"].sum()) == 2
    assert (tmp_path / "paper" / seeds.POOLED_TABLE).exists() and (tmp_path / seeds.POOLED_TABLE).exists()
    text = (tmp_path / "paper" / "seeds.md").read_text()
    assert "2 of 2 targets hold on every seed" in text and "pooled over seeds 0 1: recovered" in text
    committed = seeds.committed_table("", tmp_path / "paper", name=seeds.POOLED_TABLE)
    filled = pd.DataFrame({"measure_id": [seeds.POOLED_MEASURE, "B8.top_change"], "model": "organism-locked"})
    assert seeds.holds_on(filled, table, committed).tolist() == [
        "pooled over seeds 0 1: recovered (1 of 2 alone)", "2 of 2"]
    assert seeds.holds_on(filled, table).tolist() == ["1 of 2", "2 of 2"]
    # without 09's outcomes there are no pooled rows: no pooled file (a stale one goes), and the report reads none
    for folder in (tmp_path, tmp_path / "seed-1"):
        (folder / "09_heldout_outcomes.csv").unlink()
    assert int(seeds.write_table([0, 1], tmp_path, tmp_path / "paper")["on every seed"].sum()) == 1
    assert not (tmp_path / "paper" / seeds.POOLED_TABLE).exists() and not (tmp_path / seeds.POOLED_TABLE).exists()
    assert seeds.committed_table("", tmp_path / "paper", name=seeds.POOLED_TABLE) is None


def test_a_retrained_organism_makes_the_organism_runs_notebooks_stale(tmp_path):
    """The organisms' weights are make prerequisites of every notebook of a run that loads them (profiles inheriting
    organism), so `make organism` or a new seed's checkpoints run the notebooks again; the paper profile's are not."""
    import subprocess

    from lrmsafety.paths import REPO_ROOT

    for kind in ("locked", "null"):
        (tmp_path / f"organism-{kind}").mkdir()
        (tmp_path / f"organism-{kind}" / "model.safetensors").write_bytes(b"")

    def prerequisites(profile):
        database = subprocess.run(["make", "-n", "-p", "all", f"PROFILE={profile}", f"LRMSAFETY_MODELS_DIR={tmp_path}"],
                                  cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
        line = next(li for li in database.splitlines() if li.startswith(f"build/{profile}/01_rollouts.ipynb:"))
        return line.split(":", 1)[1].split()

    for profile in ("organism", "smoke"):
        assert {str(tmp_path / f"organism-{k}" / "model.safetensors") for k in ("locked", "null")} <= set(
            prerequisites(profile)), profile
    assert not [p for p in prerequisites("paper") if p.endswith("model.safetensors")]


def _measures(folder, p_first, p_state_a):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"measure": ["first-token AUROC", "State A AUROC", "first-token AUROC"],
                  "value": [0.55, 0.52, 0.97], "low": [0.45, 0.42, 0.94], "high": [0.65, 0.62, 1.0],
                  "perm_p": [p_first, p_state_a, 0.005],
                  "model": ["organism-null", "organism-null", "organism-locked"]}).to_csv(
        folder / "paper_a_measures.csv", index=False)
    pd.DataFrame({"model": "organism-null", "measure": ["first-token AUROC", "State A AUROC"], "value": [0.55, 0.52],
                  "low": [0.45, 0.42], "high": [0.65, 0.62], "target": "permutation p >= 0.05",
                  "verdict": ["recovered" if p >= 0.05 else "differs" for p in (p_first, p_state_a)],
                  "met": [p >= 0.05 for p in (p_first, p_state_a)]}).to_csv(folder / "paper_a_verdicts.csv",
                                                                             index=False)


def test_the_null_organisms_no_signal_targets_are_held_to_the_seeds_combined_test(tmp_path):
    """One seed's permutation test rejecting (p = 0.010) does not fail a null target that the seeds' combined test
    keeps; a signal on every seed does; each seed's own verdict stays beside it, in the summary and seeds.md."""
    _measures(tmp_path, 0.325, 0.36)
    _measures(tmp_path / "seed-1", 0.89, 0.945)
    _measures(tmp_path / "seed-2", 0.01, 0.025)
    combined = seeds.combined_no_signal([0, 1, 2], tmp_path).set_index("measure")
    assert list(combined.index) == ["first-token AUROC", "State A AUROC"]  # the locked organism's has no such target
    first = combined.loc["first-token AUROC"]
    assert first["p_values"] == "0.325 0.890 0.010" and first["seeds"] == "0 1 2"
    assert first["value"] == pytest.approx(0.0692, abs=1e-4) and first["verdict"] == "recovered"
    table = seeds.collect([0, 1, 2], tmp_path)
    alone = seeds.summary(table).set_index("target_id")
    assert alone.loc["first-token AUROC", "holds"] == "2 of 3" and not alone.loc["first-token AUROC", "on every seed"]
    brief = seeds.summary(table, no_signal=seeds.combined_no_signal([0, 1, 2], tmp_path)).set_index("target_id")
    assert brief.loc["first-token AUROC", "holds"] == ("combined over seeds 0 1 2: recovered (Fisher's p = 0.069; "
                                                       "2 of 3 alone)")
    assert brief.loc["first-token AUROC", "on every seed"]
    assert brief.loc["first-token AUROC", ["seed 0", "seed 1", "seed 2"]].tolist() == ["recovered", "recovered",
                                                                                      "differs"]
    written = seeds.write_table([0, 1, 2], tmp_path, tmp_path / "paper")
    assert int(written["on every seed"].sum()) == 2
    assert (tmp_path / "paper" / seeds.NO_SIGNAL_TABLE).exists() and (tmp_path / seeds.NO_SIGNAL_TABLE).exists()
    assert "| organism-null | first-token AUROC | 0 1 2 | 0.325 0.890 0.010 |" in (
        tmp_path / "paper" / "seeds.md").read_text()
    # a signal on every seed: the combined test rejects, whatever the count
    for folder in (tmp_path, tmp_path / "seed-1", tmp_path / "seed-2"):
        _measures(folder, 0.04, 0.5)
    combined = seeds.combined_no_signal([0, 1, 2], tmp_path).set_index("measure")
    assert combined.loc["first-token AUROC", "verdict"] == "differs"
    assert combined.loc["State A AUROC", "verdict"] == "recovered"
    # no measures: no rows, and no stale file
    for folder in (tmp_path, tmp_path / "seed-1", tmp_path / "seed-2"):
        (folder / "paper_a_measures.csv").unlink()
    assert seeds.combined_no_signal([0, 1, 2], tmp_path).empty
    seeds.write_table([0, 1, 2], tmp_path, tmp_path / "paper")
    assert not (tmp_path / "paper" / seeds.NO_SIGNAL_TABLE).exists()
