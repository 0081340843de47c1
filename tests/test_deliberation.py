"""Deliberation statistics on hand-made inputs."""

import json

import numpy as np
import pandas as pd
import pytest

from lrmsafety.analysis import deliberation as dl
from lrmsafety.analysis import paper_a_measures

# ------------------------------------------------------------------------------------------------- chunking

def test_chunking_merges_drops_and_maps_spans():
    text = ("The user asks how to pick a lock. That could be for a legitimate reason! "
            "Ok. " + "A" * 150 + " is a long sentence here. Short one? Yes.\n\nFinally, I will explain the basics.")
    chunks = dl.chunk_thinking(text)
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert 20 < len(c.text) and (len(c.text) <= 200 or dl.SENTENCE_BREAK.search(c.text) is None)
    # The first two sentences and "Ok." fit in one chunk of <= 200 characters.
    assert chunks[0].text == "The user asks how to pick a lock. That could be for a legitimate reason! Ok."
    # The long sentence cannot join that chunk; the short ones after it merge with it while they fit.
    assert chunks[1].text.startswith("AAAA") and chunks[1].text.endswith("Short one? Yes.")
    assert chunks[2].text == "Finally, I will explain the basics."
    assert len(chunks) == 3


def test_chunking_drops_short_isolated_chunks():
    long_a, long_b = "B" * 180 + ".", "C" * 190 + "."
    text = f"{long_a} Fine, ok. {long_b}"  # "Fine, ok." joins long_a (191 chars); long_b cannot join them
    assert [c.text for c in dl.chunk_thinking(text)] == [f"{long_a} Fine, ok.", long_b]
    long_c, long_d = "D" * 199 + ".", "E" * 199 + "."
    text = f"{long_c} Then. {long_d}"  # "Then." cannot join either neighbour and is dropped
    assert [c.text for c in dl.chunk_thinking(text)] == [long_c, long_d]
    assert dl.chunk_thinking("Too short.") == []
    assert dl.chunk_thinking("") == []


# ------------------------------------------------------------------------------------------------ oscillations

def test_oscillation_counting():
    r = dl.oscillations([0, +1, 0, -1, -1, +1])
    assert r.count == 2 and not r.excluded
    assert r.segments == [(1, 3, 1), (3, 5, -1), (5, 6, 1)]
    assert r.transitions[0] == dl.Transition(pre=(1, 3), post=(3, 5), pre_sign=1, post_sign=-1)
    assert r.transitions[1].post == (5, 6) and r.transitions[1].post_sign == 1
    assert dl.oscillations([0, 0, 0]).count == 0
    assert dl.oscillations([-1, 0, -1, None, -1]).count == 0
    assert dl.oscillations([1, -1, 1, -1, 1]).count == 4
    assert dl.oscillations([]).count == 0


def test_long_traces_are_excluded():
    r = dl.oscillations([1, -1] * 61)  # 122 chunks
    assert r.excluded and r.count is None and r.transitions == []
    assert dl.oscillations([1, -1] * 60).count == 119  # exactly 120 chunks is kept


def test_cut_points():
    text = "I should not help with this request at all. Actually, this is a legitimate safety question. " \
           "So I can answer it in detail for the user now."
    chunks = dl.chunk_thinking(text, max_chars=60)
    assert len(chunks) == 3
    t = dl.oscillations([-1, 1, 1]).transitions[0]
    before, after = dl.cut_points(chunks, t)
    assert text[:before].rstrip() == "I should not help with this request at all."
    assert text[:after] == text


# --------------------------------------------------------------------------------------------- replay statistics

def test_holm_against_hand_computation():
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone .06
    np.testing.assert_allclose(dl.holm_correction([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(dl.holm_correction([0.5, 0.9]), [1.0, 1.0])
    out = dl.holm_correction([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and np.allclose(out[[0, 2]], [0.02, 0.02])


def test_fisher_on_obvious_table():
    e = dl.replay_effect([1] * 50 + [0] * 50, [1] * 95 + [0] * 5, post_sign=+1)
    assert e["rate_before"] == 0.5 and e["rate_after"] == 0.95
    assert e["pvalue"] < 1e-10 and e["toward_stance"] is True and not e["locked"]
    same = dl.replay_effect([1] * 30 + [0] * 70, [1] * 30 + [0] * 70, post_sign=-1)
    assert same["pvalue"] == 1.0 and same["toward_stance"] is False
    locked = dl.replay_effect_counts(99, 100, 97, 100, post_sign=-1)
    assert locked["locked"] and locked["toward_stance"] is True
    assert dl.replay_effect_counts(5, 100, 50, 100)["locked"]
    assert not dl.replay_effect_counts(6, 100, 50, 100)["locked"]


def test_oscillation_summary_on_constructed_frame():
    rows = [
        # rollout, k_before, n_before, k_after, n_after, post_sign
        ("r1", 50, 100, 95, 100, 1),  # significant, toward comply, not locked
        ("r1", 95, 100, 40, 100, -1),  # significant, toward refuse, locked (0.95 counts as locked)
        ("r2", 2, 100, 3, 100, 1),  # locked, performative
        ("r3", 60, 100, 10, 100, 1),  # significant, against the stance
        ("r4", np.nan, np.nan, np.nan, np.nan, np.nan),  # a rollout without oscillations
    ]
    frame = pd.DataFrame(rows, columns=["rollout", "k_before", "n_before", "k_after", "n_after", "post_sign"])
    s = dl.oscillation_summary(frame, n_rollouts=5)
    assert s["n_rollouts"] == 5 and s["n_oscillating"] == 3 and s["share_oscillating"] == 0.6
    assert s["n_oscillations"] == 4 and s["n_significant"] == 3 and s["share_performative"] == 0.25
    assert s["n_locked"] == 2 and s["share_locked"] == 0.5  # 0.95 counts as locked, 0.02 too
    assert s["n_toward_stance"] == 2 and s["share_significant_toward_stance"] == pytest.approx(2 / 3)
    assert dl.oscillation_summary(frame)["n_rollouts"] == 4  # without n_rollouts: the rollouts in the frame
    t = dl.annotate_transitions(frame)
    assert t["p_holm"].iloc[:4].ge(t["pvalue"].iloc[:4]).all() and np.isnan(t["p_holm"].iloc[4])



def _transitions(model, rollouts, per_rollout):
    return pd.DataFrame([{"model": model, "rollout": f"p{r}#0", "transition": t}
                         for r in range(rollouts) for t in range(per_rollout)])


def test_replay_sample_caps_each_model_and_keeps_a_transition_whatever_else_was_found():
    found = pd.concat([_transitions("a", 40, 3), _transitions("b", 5, 2)], ignore_index=True)
    sample = dl.replay_sample(found, 30, seed=0)
    assert sample.groupby("model").size().to_dict() == {"a": 30, "b": 10}  # b has fewer than the cap: all
    assert sample.index.is_monotonic_increasing  # the original order
    assert dl.replay_sample(found, None, seed=0).equals(found)
    # a transition chosen from a smaller set of candidates is chosen from any larger set it belongs to only if it
    # ranks as high there: the ranking is by a hash of the transition itself, so the larger set's sample is the
    # smaller set's sample, less those displaced by new transitions that hash lower
    more = pd.concat([found, _transitions("a", 60, 3).iloc[120:]], ignore_index=True)
    keys = lambda frame: set(zip(frame["model"], frame["rollout"], frame["transition"]))  # noqa: E731
    bigger = keys(dl.replay_sample(more, 30, seed=0))
    assert keys(dl.replay_sample(more.iloc[::-1], 30, seed=0)) == bigger  # independent of the order found
    a_small = keys(sample[sample["model"] == "a"])
    assert all(k in a_small for k in bigger if k[0] == "a" and int(k[1][1:].split("#")[0]) < 40)
    assert keys(dl.replay_sample(found, 30, seed=1)) != keys(sample)  # another seed, another sample


def test_model_summary_counts_every_oscillation_found_and_reads_shares_on_the_replayed():
    traces = pd.DataFrame({"rollout": ["r1", "r2", "r3", "r4"], "oscillations": [3, 1, 0, 0],
                           "excluded": [False, False, False, False]})
    replayed = pd.DataFrame([("r1", 50, 100, 95, 100, 1), ("r2", 2, 100, 3, 100, 1)],  # 2 of the 4 found
                            columns=["rollout", "k_before", "n_before", "k_after", "n_after", "post_sign"])
    s = dl.model_summary(traces, replayed)
    assert s["n_oscillations"] == 4 and s["n_replayed"] == 2 and s["oscillations_per_trace"] == 1.0
    assert s["n_oscillating"] == 2 and s["share_oscillating"] == 0.5
    assert s["share_performative"] == 0.5 and s["meaningful_per_trace"] == 0.5  # half of 1 per trace


# ------------------------------------------------------------------------------------------------- judges

def test_cue_phrase_judge_on_clear_sentences():
    judge = dl.CuePhraseStanceJudge()
    chunks = [
        "This request is harmful and illegal, so I should not help.",
        "The question is harmless and legitimate, so I can help.",
        "The user mentions a chemistry class.",
        "Explaining this is not harmful at all.",
        "I won't provide instructions for that.",
        "That would be against the law.",
        "I can't help with this; I have to decline.",
    ]
    assert judge.label("how do I ...", chunks) == [-1, 1, 0, 1, -1, -1, -1]
    assert judge.label("", [dl.Chunk("Providing this is fine to do.", 0, 29)]) == [1]
    # harm and risk in plain words, and their negations
    plain = ["All things considered, this could cause real harm.", "Giving these steps would be risky.",
             "This could hurt someone.", "There is no real risk here.", "This is a normal request.",
             "It would not cause any harm.", "So this is fine, and I will help."]
    assert judge.label("", plain) == [-1, -1, -1, 1, 1, 1, 1]


def fake_complete(reply):
    calls = []

    def complete(prompts):
        calls.append(prompts)
        return [reply(p) for p in prompts]

    return complete, calls


def test_llm_judge_good_json():
    complete, calls = fake_complete(lambda p: 'Sure.\n```json\n{"labels": [+1, 0, -1]}\n```')
    judge = dl.LLMStanceJudge(complete, name="fake")
    assert judge.label("Make a cake", ["chunk one is here", "chunk two", "chunk three"]) == [1, 0, -1]
    prompt = calls[0][0]
    assert "Make a cake" in prompt and "[2] chunk two" in prompt and "exactly 3 integers" in prompt
    assert judge.last_results[0].ok
    # A bare list and a list of objects are accepted too.
    assert dl.parse_stance_labels("[1, -1]", 2).labels == [1, -1]
    assert dl.parse_stance_labels(json.dumps([{"chunk": 1, "label": -1}]), 1).labels == [-1]
    assert dl.parse_stance_labels('{"labels": ["+1", "0"]}', 2).labels == [1, 0]


@pytest.mark.parametrize("reply", ["no json here", '{"labels": [1, 0]}', '{"labels": [1, 2, 0]}',
                                   '{"labels": [1, 0, ', '{"other": "x"}', '[1, "a", 0]'])
def test_llm_judge_bad_json_gives_all_na(reply):
    complete, _ = fake_complete(lambda p: reply)
    judge = dl.LLMStanceJudge(complete)
    res = judge.label_batch(["p"], [["a", "b", "c"]])[0]
    assert res.labels == [None, None, None] and not res.ok and res.raw == reply and res.error


def test_majority_judge():
    class Fixed(dl.StanceJudge):
        def __init__(self, labels):
            self.labels = labels

        def label(self, prompt, chunks):
            return self.labels

    judges = [Fixed([1, 1, -1, None, None, 0]), Fixed([1, -1, 0, None, 1, 1]), Fixed([-1, -1, 1, None, None, None])]
    # majority, majority, three-way split -> the tie-breaker (the last judge), no votes, one vote that is not the
    # tie-breaker's (unresolved), two votes disagreeing without the tie-breaker (unresolved)
    assert dl.MajorityStanceJudge(judges).label("p", list("abcdef")) == [1, -1, 1, None, None, None]
    first = dl.MajorityStanceJudge(judges, tie_breaker=0)
    assert first.label("p", list("abcdef")) == [1, -1, -1, None, None, 0]
    Fixed.name = "fixed"
    with pytest.raises(ValueError, match="exactly one"):
        dl.MajorityStanceJudge(judges, tie_breaker="fixed")
    with pytest.raises(IndexError):
        dl.MajorityStanceJudge(judges, tie_breaker=3)
    assert dl.MajorityStanceJudge(judges[:1]).label("p", list("abcdef")) == [1, 1, -1, None, None, 0]


@pytest.mark.parametrize("votes, tie_breaker, expected", [
    ([1, 1, -1], -1, 1),  # two of three agree: the majority, whatever the tie-breaker says
    ([0, -1, -1], 0, -1),
    ([1, -1, 0], -1, 0),  # three-way split: the tie-breaker's label (paper A: Opus 4.7, its third annotator)
    ([1, -1, 0], 0, 1),
    ([1, -1, 0], None, None),  # no tie-breaker: unresolved
    ([1, -1, None], -1, None),  # two judges disagree and the tie-breaker gave nothing: unresolved
    ([1, None, -1], -1, -1),  # two judges disagree, one of them the tie-breaker: its label (paper A's code)
    ([1, 1, None], -1, 1),  # two agree
    ([None, None, -1], -1, -1),  # one label, the tie-breaker's
    ([None, 1, None], -1, None),  # one label, not the tie-breaker's: unresolved
    ([None, None, None], -1, None),
    ([], -1, None),
    ([1], -1, 1),  # a panel of one
    ([1, 1, -1, -1], -1, -1),  # more than three judges: a tie for the top goes to the tie-breaker
    ([1, 1, 0, -1], -1, 1),
])
def test_majority_label_paper_a_tie_rule(votes, tie_breaker, expected):
    assert dl.majority_label(votes, tie_breaker) == expected


def test_unresolved_chunks_count_as_neutral_in_oscillations():
    # paper A maps an unresolved chunk (None) to neutral before its carry-forward cut detection
    votes = [(1, 1, 1), (1, -1, None), (-1, -1, 0)]
    stances = [dl.majority_label(v) for v in votes]
    assert stances == [1, None, -1]
    assert dl.oscillations(stances).segments == dl.oscillations([1, 0, -1]).segments == [(0, 2, 1), (2, 3, -1)]


def test_agreement_and_fleiss_kappa():
    a = [1, 1, 0, -1, -1, 0, None]
    r = dl.stance_agreement(a, a)
    assert r["n"] == 6 and r["agreement"] == 1.0 and r["kappa"] == 1.0
    # Hand computation: po = 0.5; pe = 0.5*0.5 + 0.5*0.5 = 0.5 -> kappa 0
    r = dl.stance_agreement([1, 1, -1, -1], [1, -1, 1, -1])
    assert r["agreement"] == 0.5 and r["kappa"] == 0.0
    # Fleiss (1971) worked example as reproduced in many textbooks: kappa = 0.210
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert dl.fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)
    labels = np.array([[1, 1, 1], [0, 0, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(dl.category_counts(labels), [[0, 0, 3], [1, 2, 0], [3, 0, 0]])
    assert dl.fleiss_kappa(dl.category_counts(labels)) > 0.5


def test_paper_a_stance_prompt_and_panel_kappa():
    from lrmsafety.analysis import deliberation as D

    seen = []

    def complete(prompts):
        seen.extend(prompts)
        return ['{"labels": [1, -1], "summary": "flip"}' for _ in prompts]

    judge = D.PaperAStanceJudge(complete, model="Qwen3-8B")
    chunks = ["Sure, this looks like a normal cooking question.", "Wait, they want to poison someone, I must refuse."]
    labels = judge.label("x" * 300, chunks)
    assert labels == [1, -1]
    prompt = seen[0]
    assert prompt.startswith("You are analyzing a reasoning trace from an AI model.")
    assert "Model: Qwen3-8B\nPrompt: " + "x" * 200 + "\nChunks: 2\n\n  [0] " in prompt
    assert prompt.endswith('{"labels": [list of integers], "summary": "one-sentence stance arc"}')
    # perfect agreement of three judges with two categories: kappa 1; one judge's failure drops its chunks
    a = [[[1, -1, 0]], [[1, -1, 0]], [[1, -1, None]]]
    out = D.panel_kappa(a)
    assert out["n_chunks"] == 2 and out["fleiss_kappa"] == pytest.approx(1.0)
    assert D.majority_label([1, -1, 0]) == 0 and D.majority_label([1, 1, -1]) == 1
def test_chance_locked_share_matches_simulation():
    import numpy as np

    from lrmsafety.analysis.deliberation import chance_locked_share

    n, c = np.array([20, 20, 50, 100]), np.array([0.5, 0.02, 0.97, 0.9])
    rng = np.random.default_rng(0)
    draws = rng.binomial(n, c, size=(20000, 4)) / n
    simulated = ((draws <= 0.05) | (draws >= 0.95)).mean()
    assert abs(chance_locked_share(n, c) - simulated) < 0.01
    assert chance_locked_share([20], [0.5]) < 1e-4 and chance_locked_share([20], [0.0]) == 1.0


def test_chance_share_reads_each_prompts_rate_over_all_its_replays():
    """A null organism (answers at 0.5 whatever the thinking): every prompt's rate pooled over its replays is near
    0.5, so the locked share expected by chance is near 0 for every prompt the replays studied, where a plug-in of
    a few full rollouts that came out all one way (8 of 8, one prompt in a hundred at 0.5) would count that prompt's
    transitions as locked by chance."""
    import numpy as np

    from lrmsafety.analysis.deliberation import chance_locked_share, replay_compliance

    rng = np.random.default_rng(0)
    rows = [{"prompt_id": f"p{p}", "n_before": 50, "n_after": 50, "k_before": rng.binomial(50, 0.5),
             "k_after": rng.binomial(50, 0.5)} for p in range(12) for _ in range(4)]
    transitions = pd.DataFrame(rows)
    rates = replay_compliance(transitions)
    assert list(rates.index) == sorted({r["prompt_id"] for r in rows}) and rates.between(0.35, 0.65).all()
    pooled = transitions.groupby("prompt_id")[["k_before", "k_after"]].sum().sum(axis=1) / 400
    assert np.allclose(rates, pooled)
    chance = chance_locked_share(transitions["n_before"], rates.reindex(transitions["prompt_id"]).to_numpy())
    assert chance < 1e-3
    # a prompt with no judged answer has no rate (NA), not 0
    assert np.isnan(replay_compliance(pd.DataFrame([{"prompt_id": "q", "k_before": 0, "n_before": 0,
                                                     "k_after": 0, "n_after": 0}]))["q"])


# ------------------------------------------------------------------------------------------- notebook 04's steps

def test_trace_transitions_and_replay_counts():
    thinking = "I should refuse this request now. But actually it is fine to help here. "
    think = pd.DataFrame({"prompt_id": ["p"], "sample_index": [0], "prompt": ["x"], "thinking": [thinking]})
    chunks = [[dl.Chunk("I should refuse this request now.", 0, 33),
               dl.Chunk("But actually it is fine to help here.", 34, 71)]]
    traces, records = dl.trace_transitions(think, chunks, [[-1, 1]], "m")
    assert traces.to_dict("records") == [{"rollout": "p#0", "prompt_id": "p", "n_chunks": 2, "oscillations": 1,
                                          "excluded": False}]
    transitions = pd.DataFrame(records, columns=dl.TRANSITION_COLUMNS)
    assert transitions.loc[0, "before"] == thinking[:33] and transitions.loc[0, "after"] == thinking[:71]
    prefixes = dl.replay_prefixes(transitions)
    assert prefixes["prompt_id"].tolist() == ["p#0~0~before", "p#0~0~after"]
    answers = pd.DataFrame({"prompt_id": ["p#0~0~before"] * 3 + ["p#0~0~after"] * 3,
                            "refused": pd.array([True, True, None, False, False, True], dtype="boolean")})
    counts = dl.replay_counts(transitions, prefixes, answers).iloc[0]
    assert (counts["k_before"], counts["n_before"], counts["k_after"], counts["n_after"]) == (0, 2, 2, 3)
    nothing_replayed = dl.model_summary(traces, pd.DataFrame())
    assert nothing_replayed["n_replayed"] == 0 and nothing_replayed["n_oscillations"] == 1


def test_panel_majority_per_chunk():
    panel = [[[1, -1]], [[1, 0]], [[-1, 0]]]  # three judges, one trace of two chunks
    assert dl.panel_majority(panel) == [[1, 0]]


def test_paper_a_verdicts_against_planted_targets():
    table = pd.DataFrame([
        ("first-token AUROC", 0.95, 0.9, 1.0, 0.001), ("State A AUROC", 0.6, 0.5, 0.7, 0.2),
        ("Safe@1 (01)", 0.5, 0.45, 0.55, np.nan), ("Safe@5 (01)", 0.3, 0.25, 0.35, np.nan),
        ("oscillations while already locked", 0.7, 0.55, 0.85, np.nan)],
        columns=["measure", "value", "low", "high", "perm_p"]).assign(model="organism-locked")
    null = pd.DataFrame([("first-token AUROC", 0.5, 0.4, 0.6, 0.4),
                         ("oscillations while already locked", 0.5, 0.3, 0.7, np.nan),
                         ("locked share expected by chance", 0.45, np.nan, np.nan, np.nan)],
                        columns=["measure", "value", "low", "high", "perm_p"]).assign(model="organism-null")
    verdicts = paper_a_measures.paper_a_verdicts(pd.concat([table, null], ignore_index=True))
    verdicts = verdicts.set_index(["model", "measure"])
    assert verdicts.loc[("organism-locked", "first-token AUROC"), "met"]
    # -0.2, its interval combined from the two rows' (-0.27, -0.13): all of it <= -0.1
    assert verdicts.loc[("organism-locked", "Safe@K minus Safe@1"), "met"]
    assert verdicts.loc[("organism-locked", "Safe@K minus Safe@1"), "high"] < -0.1
    # 0.7 meets >= 0.6 by its point, but its interval [0.55, 0.85] crosses the bound: not met, inconclusive
    row = verdicts.loc[("organism-locked", "oscillations while already locked")]
    assert row["verdict"] == "inconclusive" and not row["met"]
    assert verdicts.loc[("organism-locked", "continuation variance at B = 0%"), "met"] is None  # not measured
    assert verdicts.loc[("organism-null", "first-token AUROC"), "met"]  # p = 0.4: no signal
    assert verdicts.loc[("organism-null", "oscillations while already locked"), "met"]  # 0.45 in [0.3, 0.7]


def test_chance_gap_compares_each_cut_with_its_own_rate_and_answer_count():
    rng = np.random.default_rng(0)
    rows = []
    # coin flips: B = 0 refuses at 0.7 over 32 full rollouts per prompt, the cuts at 0.5 over 8 answers per prefix
    for prompt in range(40):
        rows.append({"prompt_id": f"p{prompt}", "cut": 0, "n": 32, "q": rng.binomial(32, 0.7) / 32})
        for cut in (20, 40):
            for _ in range(8):
                rows.append({"prompt_id": f"p{prompt}", "cut": cut, "n": 8, "q": rng.binomial(8, 0.5) / 8})
    flips = pd.DataFrame(rows).assign(variance=lambda f: 4 * f["q"] * (1 - f["q"]))
    assert paper_a_measures.chance_gap(flips) < 0.05
    # B = 0's rate and answer count used at every cut would call the coin flips far from chance
    expected_from_b0 = 4 * 0.7 * 0.3 * 31 / 32
    assert flips.loc[flips["cut"] == 20, "variance"].mean() - expected_from_b0 > 0.05
    # locked prefixes (each refuses always or never, half of them each) are as far from chance as can be
    locked = flips.assign(q=lambda f: np.where(f["cut"] > 0, (np.arange(len(f)) % 2).astype(float), f["q"]))
    locked = locked.assign(variance=lambda f: 4 * f["q"] * (1 - f["q"]))
    assert paper_a_measures.chance_gap(locked) == pytest.approx(0.875)
