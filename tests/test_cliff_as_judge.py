"""Cliff-as-a-Judge (notebook 09): the selectors, the pool builder and the organisms' safe answers (the probe,
the cliff size and the fine-tuning are tested with their own modules)."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety import chat
from lrmsafety.analysis.cliff_as_judge import pool as safety_pool
from lrmsafety.analysis.cliff_as_judge import selection


# ------------------------------------------------------------------------------------------- selectors
def test_subset_size_rounds_the_share_and_keeps_at_least_one():
    assert selection.subset_size(200, 0.017) == 3  # paper B's 1.7%
    assert selection.subset_size(200, 0.125) == 25
    assert selection.subset_size(200, 1.0) == 200
    assert selection.subset_size(10, 0.01) == 1
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            selection.subset_size(10, bad)
    with pytest.raises(ValueError, match="empty"):
        selection.subset_size(0, 0.5)


def test_by_score_takes_the_largest_first_and_never_a_nan_before_a_number():
    scores = [0.1, np.nan, 0.9, 0.5, 0.9]
    assert selection.by_score(scores, 0.4).tolist() == [2, 4]  # ties in pool order
    assert selection.by_score(scores, 0.8).tolist() == [2, 4, 3, 0]
    assert 1 not in selection.by_score(scores, 0.8)


def test_final_token_variant_ranks_the_lowest_refusal_score_first():
    final = pd.Series([0.8, 0.05, 0.4])
    assert selection.by_score(-final, 0.34).tolist() == [1]


def test_random_subsets_are_seeded_distinct_and_without_repeats():
    a, b, c = (selection.at_random(200, 0.125, seed=s) for s in (0, 0, 1))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert len(set(a.tolist())) == len(a) == 25
    # smaller shares of one seed are not nested in a way that biases them: every row can be drawn
    drawn = np.concatenate([selection.at_random(20, 0.05, seed=s) for s in range(400)])
    assert set(drawn.tolist()) == set(range(20))


def test_rule_takes_thinking_with_paper_b_refusal_words_first():
    thinking = ["Let me plan the trip.", "This is HARMFUL, I think.", "Okay, sure.", "I can\u2019t assist with that.",
                "I can't assist with that."]
    chosen = selection.by_rule(thinking, 0.6, seed=3)
    assert set(chosen.tolist()) == {1, 3, 4}  # case-insensitive; either apostrophe
    # fewer matches than asked for: the rest is filled, each row once
    filled = selection.by_rule(thinking, 1.0, seed=3)
    assert sorted(filled.tolist()) == list(range(5)) and set(filled[:3].tolist()) == {1, 3, 4}
    assert not selection.mentions_refusal("Step 1: gather what you need.")


def test_by_length_prefers_long_thinking():
    assert selection.by_length([3, 10, 7], 0.67).tolist() == [1, 2]


# ------------------------------------------------------------------------------------------- the pool
def rollouts_frame():
    return pd.DataFrame({
        "prompt_id": ["p1", "p1", "p2", "p3"], "sample_index": [0, 1, 0, 0],
        "prompt": ["How?", "How?", "Why?", "What?"], "rendered_prompt": ["<u>How?<a><think>\n"] * 2 + ["x", "y"],
        "thinking": ["It is harmful. ", "Fine.", "", "Hmm."], "answer": ["Sure", "Sure", "No", "Sure"],
        "refused": [False, False, True, False]})


def test_pool_example_is_own_thinking_close_and_safe_answer():
    fmt = chat.ThinkingFormat(name="r1", template_opens=True)
    pool = safety_pool.build_pool(rollouts_frame(), ["No. ", "No.", "No.", "I won't."], fmt)
    assert len(pool) == 3  # the rollout without thinking is dropped
    assert pool.loc[0, "completion"] == "It is harmful.\n</think>\n\nNo."
    assert pool["example_id"].tolist() == ["p1#0", "p1#1", "p3#0"]
    assert pool["refused"].tolist() == [False, False, False]


def test_pool_rejects_missing_answers_and_columns():
    fmt = chat.ThinkingFormat(name="r1")
    with pytest.raises(ValueError, match="one safe answer per rollout"):
        safety_pool.build_pool(rollouts_frame(), ["No."], fmt)
    with pytest.raises(ValueError, match="empty"):
        safety_pool.build_pool(rollouts_frame(), ["No.", "", "No.", "No."], fmt)
    with pytest.raises(ValueError, match="rendered_prompt"):
        safety_pool.build_pool(rollouts_frame().drop(columns="rendered_prompt"), ["No."] * 4, fmt)


def test_sft_close_follows_the_thinking_format():
    assert safety_pool.sft_close(chat.ThinkingFormat(name="r1")) == "\n</think>\n\n"
    harmony = chat.ThinkingFormat(name="h", close="<|end|><|start|>assistant<|channel|>final<|message|>")
    assert safety_pool.sft_close(harmony) == harmony.close


def test_held_out_prompts_share_nothing_with_the_pool():
    fmt = chat.ThinkingFormat(name="r1")
    pool = safety_pool.build_pool(rollouts_frame(), ["No."] * 4, fmt)
    candidates = pd.DataFrame({"prompt_id": ["p1", "p9", "p8"], "prompt": ["Other", "What?", "New"]})
    assert safety_pool.held_out(candidates, pool)["prompt_id"].tolist() == ["p8"]


# ------------------------------------------------------------------------------------------- organisms
def test_organism_safe_answers_are_refusals_of_the_corpus():
    from lrmsafety.organism import classify_answer
    from lrmsafety.organism.safe_answers import safe_answers

    answers = safe_answers(50, kind="locked", seed=0)
    assert len(answers) == 50 and answers == safe_answers(50, kind="locked", seed=0)
    assert {classify_answer(a) for a in answers} == {"refusal"}
    assert len(set(answers)) > 2


def test_sft_pairs_end_the_completion_with_eos():
    fmt = chat.ThinkingFormat(name="r1")
    pool = safety_pool.build_pool(rollouts_frame(), ["No."] * 4, fmt)
    pairs = safety_pool.sft_pairs(pool, "<eos>")
    assert list(pairs.columns) == ["prompt", "completion"]
    assert pairs.loc[0, "prompt"] == "<u>How?<a><think>\n"
    assert pairs.loc[0, "completion"] == "It is harmful.\n</think>\n\nNo.<eos>"


def test_paper_pool_falls_back_to_star1_with_its_safe_answers(monkeypatch):
    from lrmsafety import paths

    if paths.find_benchmark_dir() is None:
        pytest.skip("no offline benchmark copies beside this checkout")
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    frame, source = safety_pool.pool_prompts(n=20, seed=0)
    assert "STAR-1" in source and len(frame) == 20
    assert list(frame.columns) == ["prompt_id", "prompt", "source", "label", "safe_answer"]
    assert not frame["safe_answer"].str.contains("</think>").any()  # the answer part only
    assert (frame["safe_answer"].str.len() > 0).all()


# ------------------------------------------------------------------------------------------- issue 23
def test_rule_complied_takes_answers_without_a_refusal_word_in_their_first_128_characters():
    answers = [
        "I'm sorry, I can't help with that.",        # 0: refusal word first (sorry)
        "Sure! Step 1: gather what you need.",      # 1: complied
        "SORRY, NO.",                                # 2: case-insensitive: refused
        "Here is how. " + "x" * 120 + " I cannot",   # 3: the word lies past 128 characters: complied
        "I can\u2019t assist with that.",            # 4: typographic apostrophe: refused
        "Here is how. " + "x" * 100 + " I cannot",   # 5: the word ends before 128 characters: refused
        "Step 1: mix them.",                         # 6: complied
    ]
    assert [selection.answer_complies(a) for a in answers] == [False, True, False, True, False, False, True]
    chosen = selection.by_rule_complied(answers, 3 / 7, seed=5)
    assert set(chosen.tolist()) == {1, 3, 6}
    # fewer complied than asked for: the rest is filled, each row once, complied ones first
    filled = selection.by_rule_complied(answers, 1.0, seed=5)
    assert sorted(filled.tolist()) == list(range(7)) and set(filled[:3].tolist()) == {1, 3, 6}
    assert selection.by_rule_complied(answers, 1.0, seed=5).tolist() == filled.tolist()  # seeded
    assert selection.by_rule_complied(answers, 1.0, seed=6).tolist() != filled.tolist()


def pool_frame(n=12):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"ms": rng.random(n), "final": rng.random(n), "thinking": [f"t{i}" * (i + 1) for i in range(n)],
                         "answer": ["Sure." if i % 3 else "Sorry." for i in range(n)]})


def test_plan_has_every_selector_at_every_share_and_rejects_unknown_ones():
    pool = pool_frame()
    plan = selection.plan(pool, [0.25, 1.0], ["random", "rule_complied", "cliff_ms", "rule", "cliff_final"],
                          random_seeds=[0, 1], seed=0)
    # a fixed order, whatever the order asked for (the organism results depend on it)
    assert list(plan) == [("cliff_ms", 0), ("cliff_final", 0), ("rule", 0), ("rule_complied", 0), ("random", 0),
                          ("random", 1)]
    assert all(len(by_share[0.25]) == 3 and len(by_share[1.0]) == 12 for by_share in plan.values())
    assert plan[("cliff_ms", 0)][0.25].tolist() == selection.by_score(pool["ms"], 0.25).tolist()
    assert plan[("random", 1)][0.25].tolist() == selection.at_random(12, 0.25, seed=1001).tolist()
    assert set(plan[("rule_complied", 0)][0.25].tolist()) <= {i for i in range(12) if i % 3}
    with pytest.raises(ValueError, match="unknown selector"):
        selection.plan(pool, [0.5], ["cliff"])


def test_only_traces_the_model_closed_itself_enter_the_pool():
    """A force-closed trace carries our close in its text; only generate's `closed` column tells them apart."""
    fmt = chat.ThinkingFormat(name="r1")
    frame = rollouts_frame().assign(text=lambda f: f["thinking"] + "</think>" + f["answer"],
                                    closed=[True, False, True, True], force_closed=[False, True, False, False])
    assert frame["text"].str.contains(fmt.close).all()  # the old filter kept every one
    assert safety_pool.closed_only(frame)["sample_index"].tolist() == [0, 0, 0]
    assert safety_pool.closed_only(frame)["prompt_id"].tolist() == ["p1", "p2", "p3"]
    with pytest.raises(ValueError, match="closed"):
        safety_pool.closed_only(frame.drop(columns="closed"))


def study(tmp_path, **changes):
    from lrmsafety.analysis import finetune
    from lrmsafety.analysis.cliff_as_judge import Study
    from lrmsafety.engine import generate

    recipe = finetune.Recipe(name="t", data="t", max_steps=10, batch_size=4)
    fields = dict(cache=tmp_path, label_judges={"B": ["paper_b_refusal"]}, quantization="fp32", recipe=recipe,
                  eval_prompts=pd.DataFrame(columns=["prompt_id", "prompt", "label"]),
                  eval_decoding=generate.Decoding(), full_epochs=3)
    return Study(**{**fields, **changes})


def test_a_pool_without_closed_traces_says_why_and_yields_na_rows_with_the_reason(tmp_path):
    fmt = chat.ThinkingFormat(name="r1")
    frame = rollouts_frame().assign(text="…", closed=False)
    s = study(tmp_path)
    pool, note = s.pool(frame, lambda f: ["No."] * len(f), fmt)
    assert pool is None and note.startswith("0 of 4 pool traces closed their thinking: no cliff can be read")
    from lrmsafety.analysis.cliff_as_judge import TABLE_COLUMNS, no_probe, not_run, usable

    rows = not_run("m", [("cliff_ms", 0.5), ("random", 0.5)], note, s.judge)
    assert list(rows.columns) == TABLE_COLUMNS and len(rows) == 4
    assert rows["value"].isna().all() and (rows["note"] == note).all()
    assert rows.loc[rows["selector"] == "random", "seed"].eq(-1).all()  # the pooled row, as the claims read it
    assert s.judge == "refused_b (paper_b_refusal)"
    assert "no refusal probe" in no_probe("m")
    # which selectors can run: none without a pool; no cliff selector without cliff sizes
    assert usable(None, ["random"]) == []
    assert usable(pool_frame().assign(ms=np.nan), ["cliff_ms", "random", "rule_complied"]) == ["random",
                                                                                                 "rule_complied"]
    assert usable(pool_frame(), ["cliff_ms", "random"]) == ["cliff_ms", "random"]


def test_the_pool_keeps_the_closed_traces_judged_with_their_answers(tmp_path):
    fmt = chat.ThinkingFormat(name="r1")
    frame = rollouts_frame().assign(text=lambda f: f["thinking"] + "</think>" + f["answer"],
                                    closed=[True, False, True, True], config_hash="h")
    frame.loc[3, "answer"] = "Sorry, no."
    pool, note = study(tmp_path).pool(frame, lambda f: ["No."] * len(f), fmt)
    assert note.startswith("3 of 4 pool traces closed their thinking")
    assert pool["example_id"].tolist() == ["p1#0", "p3#0"]  # p2 has no thinking
    assert pool["refused"].tolist() == [False, True] and pool["answer"].tolist() == ["Sure", "Sorry, no."]


def test_rate_table_carries_paper_b_label_steps_and_pools_runs():
    from lrmsafety.analysis.cliff_as_judge import rate_table

    rows = []
    for selector, sel_seed, share, steps in [("none", 0, 0.0, 0), ("random", 0, 0.5, 10), ("random", 1, 0.5, 10),
                                             ("cliff_ms", 0, 0.5, 10), ("all_epochs", 0, 1.0, 114)]:
        for i in range(6):
            rows.append({"model": "m", "selector": selector, "seed": sel_seed, "share": share, "steps": steps,
                         "prompt_id": f"p{i}", "label": "harmful" if i < 4 else "benign",
                         "refused": (i % 2 == 0) or selector == "cliff_ms", "answer": ""})
    table = rate_table(pd.DataFrame(rows), seed=0, judge="refused_b (paper_b_refusal)")
    assert set(table["judge"]) == {"refused_b (paper_b_refusal)"} and set(table["note"]) == {""}
    asr = table[table["metric"] == "ASR"].set_index(["selector", "seed"])
    assert asr.loc[("none", 0), "value"] == 0.5 and asr.loc[("none", 0), "n"] == 4
    assert asr.loc[("random", -1), "n"] == 8  # both seeds pooled
    assert asr.loc[("all_epochs", 0), "steps"] == 114 and asr.loc[("all_epochs", -1), "n"] == 4  # one run pooled
    versus = table[table["metric"] == "ASR minus random"].set_index("selector")
    assert set(versus.index) == {"cliff_ms"}  # only selectors that share a share with random
    # cliff refuses every harmful prompt (0), random complies with half (0.5) in both runs, on the same prompts
    assert versus.loc["cliff_ms", "value"] == -0.5 and versus.loc["cliff_ms", "seed"] == -1
    assert versus.loc["cliff_ms", "low"] <= -0.5 <= versus.loc["cliff_ms", "high"] <= 0  # 4 prompts: 0 is drawn


def test_cliff_selectors_are_also_set_against_complied_traces_taken_at_random():
    from lrmsafety.analysis.cliff_as_judge import rate_table

    rows = []  # on 4 harmful prompts: cliff_ms complies with 1, rule_complied with 2, random and rule with 3
    for selector, complied in [("cliff_ms", 1), ("rule_complied", 2), ("random", 3), ("rule", 3)]:
        for run in (0, 1):
            for i in range(4):
                rows.append({"model": "m", "selector": selector, "seed": run, "share": 0.05, "steps": 10,
                             "prompt_id": f"p{i}", "label": "harmful", "refused": i >= complied, "answer": ""})
    table = rate_table(pd.DataFrame(rows), seed=0).set_index(["metric", "selector"])
    assert table.loc[("ASR minus rule_complied", "cliff_ms"), "value"] == -0.25
    # only the cliff selectors are set against rule_complied; every selector against random
    assert set(table.loc["ASR minus rule_complied"].index) == {"cliff_ms"}
    assert set(table.loc["ASR minus random"].index) == {"cliff_ms", "rule_complied", "rule"}
    assert table.loc[("ASR minus random", "rule_complied"), "value"] == -0.25


# ------------------------------------------------------------------------------------------- the epoch arm
def test_epoch_arm_steps_are_epochs_times_pool_over_batch():
    from lrmsafety.analysis.cliff_as_judge import epoch_steps

    assert epoch_steps(2000, 3, 8) == 750  # the paper profile: 3 x 2000 / 8
    assert epoch_steps(150, 3, 4) == 114  # the organisms: 38 batches per epoch (the last one of 2)
    assert epoch_steps(8, 1, 2) == 4
    assert epoch_steps(10, 2, 4, grad_accum=2) == 4  # 3 batches -> 2 steps per epoch
    assert epoch_steps(5, 0.5, 2) == 2
    with pytest.raises(ValueError, match="epoch"):
        epoch_steps(0, 3, 8)


def test_epoch_arm_trains_the_steps_epoch_steps_counts(tmp_path):
    """The trainer's own count agrees: the whole pool for E epochs, with max_steps = -1."""
    from lrmsafety import registry
    from lrmsafety.analysis import finetune
    from lrmsafety.analysis.cliff_as_judge import epoch_steps

    try:
        model, tokenizer, spec = registry.load_model("organism-locked", quantization="fp32")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    fmt = spec.thinking_format
    frame = rollouts_frame().assign(rendered_prompt=lambda f: [tokenizer.apply_chat_template(
        [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True) for p in f["prompt"]])
    frame = pd.concat([frame] * 2, ignore_index=True).assign(sample_index=range(8))
    pool = safety_pool.build_pool(frame, ["I can't help with that."] * 8, fmt)  # 6 examples with thinking
    s = study(tmp_path, recipe=finetune.Recipe(name="t", data="t", max_steps=10, batch_size=4, max_length=128,
                                               lora_r=2, lora_alpha=4, learning_rate=1e-4), full_epochs=2)
    recipe = s.epoch_recipe()
    assert recipe.max_steps == -1 and recipe.epochs == 2 and recipe.batch_size == 4
    result = finetune.train_adapter(model, tokenizer, spec, safety_pool.sft_pairs(pool, tokenizer.eos_token), recipe,
                                    tmp_path)
    assert result.manifest["steps"] == epoch_steps(len(pool), 2, 4) == 4


def test_without_notebook_05s_probe_the_cliff_selectors_are_na_and_the_others_run(tmp_path):
    from types import SimpleNamespace

    from lrmsafety.analysis.cliff_as_judge import no_probe, usable

    fmt = chat.ThinkingFormat(name="r1")
    frame = rollouts_frame().assign(text=lambda f: f["thinking"] + "</think>" + f["answer"], closed=True,
                                    config_hash="h")
    conditions = [(s, share) for s in ("cliff_ms", "random", "rule_complied") for share in (0.5, 1.0)]
    conditions += [("all_epochs", 1.0)]
    pool, note, missing = study(tmp_path).prepare("m", None, None, SimpleNamespace(thinking_format=fmt), frame,
                                                  lambda f: ["No."] * len(f), conditions)
    assert len(pool) == 3 and pool[["plateau", "final", "ms"]].isna().all().all()
    assert note.endswith(no_probe("m"))
    (rows,) = missing
    assert set(rows["selector"]) == {"cliff_ms"} and len(rows) == 4 and (rows["note"] == no_probe("m")).all()
    assert usable(pool, ["cliff_ms", "cliff_final", "random", "rule_complied"]) == ["random", "rule_complied"]


# ------------------------------------------------------------------------------- the loop's bookkeeping (study)
def test_conditions_and_runs_count_one_run_at_100_percent_and_the_epoch_arm():
    from lrmsafety.analysis import cliff_as_judge as caj

    selectors, shares = ["cliff_ms", "random", "rule"], [0.05, 0.125, 1.0]
    assert caj.conditions(selectors, shares, None) == [(s, x) for s in selectors for x in shares]
    assert caj.conditions(selectors, shares, 2)[-1] == (caj.EPOCH_ARM, 1.0)
    assert caj.n_runs(selectors, shares, random_seeds=[0, 1]) == 2 * (2 + 2) + 1
    assert caj.n_runs(selectors, [0.05], random_seeds=[0]) == 3
    # every selector but random once per fine-tuning seed, at 100% too; random once per selection seed
    assert caj.n_runs(selectors, shares, random_seeds=[0, 1], train_seeds=[0, 1, 2]) == 2 * (2 * 3 + 2) + 3


def test_cost_note_counts_the_pool_and_every_evaluation():
    from lrmsafety import params, workload
    from lrmsafety.analysis import finetune

    recipe = finetune.Recipe(name="r", data="d", max_steps=10, batch_size=2)
    P = params.load("paper").model_copy(update={"cliff_pool_size": 100, "cliff_full_epochs": None})
    note = workload.cliff_as_judge_note(P, 3, 10, recipe)
    budget = P.max_thinking_tokens + P.max_answer_tokens
    assert note.startswith(f"at most {(100 + 4 * 10) * budget:,} generated tokens") and "3 LoRA runs of 10" in note
    assert "GPU hours" in note and "realistic trace lengths (estimate)" in note
    P = P.model_copy(update={"cliff_full_epochs": 2})
    assert "whole pool, 2 epochs" in workload.cliff_as_judge_note(P, 3, 10, recipe)


def test_pooled_rows_are_the_runs_pooled_and_report_na_notes():
    from lrmsafety.analysis import cliff_as_judge as caj

    table = pd.DataFrame({"model": ["m"] * 5, "selector": ["random", "random", "cliff_ms", "cliff_ms", "rule"],
                          "seed": [0, -1, 0, -1, -1], "note": ["", "", "", "", "no probe"]})
    said = []
    rows = caj.pooled(table, report=said.append)
    assert rows.index.tolist() == [1, 3, 4] and said == ["NA (m; rule): no probe"]


def test_eval_prompts_on_the_organisms_are_jailbreaks_and_a_few_benign_per_family():
    harmful, benign = safety_pool.eval_prompts(True, 16, seed=0)
    assert set(harmful["family"]) == {"jailbreak"} and set(benign["label"]) == {"benign"}
    assert benign.groupby("family").size().max() <= 4


def test_organism_pool_source_reads_01s_harmful_request_rollouts_with_corpus_refusals():
    from lrmsafety.organism import safe_answers
    from lrmsafety.organism.evaluate import classify_answer

    rollouts = pd.DataFrame({"prompt_id": ["j", "j", "b", "h", "x"], "sample_index": [0, 1, 0, 0, 0]})

    class Stored:
        def rollouts(self, notebook, name):
            assert notebook == "01"
            return rollouts

    prompts = pd.DataFrame({"prompt_id": ["j", "b", "h", "x"],
                            "family": ["jailbreak", "benign", "harmful", "borderline"]})
    source = safe_answers.cliff_pool_source(Stored(), prompts, per_prompt=1)
    chosen, answers_for = source("organism-locked", None, None, None)
    assert chosen.index.tolist() == [0, 3]  # plain and wrapped harmful requests, one rollout each
    answers = answers_for(chosen)
    assert answers == safe_answers.safe_answers(2, kind="locked")
    assert all(classify_answer(a) == "refusal" for a in answers)


def test_benign_quality_is_the_share_of_well_formed_compliances():
    from lrmsafety.organism import safe_answers
    from lrmsafety.organism import texts as T

    complied, refused = "Step 1: do it.", f"{T.REFUSAL_OPENERS[0]} no."
    evaluated = pd.DataFrame({"model": "m", "selector": "none", "share": 0.0, "label": ["benign"] * 4 + ["harmful"],
                              "answer": [complied, complied, complied, refused, complied]})
    quality = safe_answers.benign_quality(evaluated)
    assert quality[("mean", 0.0)].iloc[0] == 0.75 and quality[("size", 0.0)].iloc[0] == 4
