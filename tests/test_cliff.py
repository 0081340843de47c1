"""Paper B's refusal cliff: the label rule with the official word list, the probe, curves and cliff sizes."""

import numpy as np
import pandas as pd
import pytest

from lrmsafety.analysis import cliff, cliff_probe


def test_official_word_list_and_rule():
    assert len(cliff.PAPER_B_REFUSAL_WORDS) == 56  # duplicates ("responsible") kept, as in the official list
    answers = [
        "I\u2019m sorry, but I can\u2019t help with that.",  # typographic apostrophe: "I’m sorry"
        "Sure, here is a plan. Step 1: gather. Sorry, no.",  # "Sorry" after the first 32 characters
        "I can't assist with that.",  # straight apostrophe: the official list only has "I can’t assist"
        "Here's how to stay safe online.",  # a broad word ("safe") inside the first 32 characters
        "HARMFUL request",  # case-sensitive: "harmful" does not match "HARMFUL"
    ]
    assert cliff.paper_b_refused(answers).tolist() == [True, False, False, True, False]


def test_probe_training_labels_follow_paper_b():
    frame = pd.DataFrame({
        "family": ["harmful"] * 4 + ["benign"] * 4,
        "refused": [True, True, True, False, False, False, True, False],
        "thinking": ["x" * 11, "x" * 11, "short", "x" * 20, "ok", "x" * 11, "x" * 12, "ok"],
    })
    # label 1: refused harmful with a thinking longer than 10 characters, under either rule for label 0
    for negatives in ("official", "complied"):
        labels = cliff.probe_training_labels(frame, ["harmful"], ["benign"], "family", negatives=negatives)
        assert set(labels[labels == 1].index) == {0, 1}
    # official label 0 (collect_non_refusal keeps every answer): thinking longer than 10 characters, refused or not
    positive, negative = cliff.probe_candidates(frame, ["harmful"], ["benign"], "family", negatives="official")
    assert list(positive) == [0, 1] and list(negative) == [5, 6]
    # "complied": the rows the rule calls complied, any thinking length
    _, negative = cliff.probe_candidates(frame, ["harmful"], ["benign"], "family", negatives="complied")
    assert list(negative) == [4, 5, 7]
    labels = cliff.probe_training_labels(frame, ["harmful"], ["benign"], "family", negatives="complied")
    assert set(labels[labels == 0].index) <= {4, 5, 7} and (labels == 0).sum() == 2  # balanced to 2 per class
    capped = cliff.probe_training_labels(frame, ["harmful"], ["benign"], "family", max_per_class=1)
    assert (capped == 1).sum() == 1 and (capped == 0).sum() == 1
    with pytest.raises(cliff_probe.TooFewToTrain, match="0 refusals"):  # a ValueError, with the counts
        cliff.probe_training_labels(frame, ["borderline"], ["benign"], "family")
    with pytest.raises(ValueError, match="negatives"):
        cliff.probe_candidates(frame, ["harmful"], ["benign"], "family", negatives="all")


def test_paper_b_rollouts_have_their_own_decoding_and_cache_key():
    from lrmsafety.engine import generate

    settings = {"samples_per_prompt": 2, "max_thinking_tokens": 8, "max_answer_tokens": 4, "seed": 0}
    ours, official = cliff.rollout_decoding("notebook_01", **settings), cliff.rollout_decoding("paper_b", **settings)
    assert ours == generate.Decoding(**settings)  # notebook 01's decoding: its cached rollouts are reused
    assert official.system_prompt == "\nYou are a helpful assistant.\n" and official.temperature == 0.7
    assert generate.decoding_config(ours) != generate.decoding_config(official)  # cached apart from 01's
    with pytest.raises(ValueError, match="rollout style"):
        cliff.rollout_decoding("greedy", **settings)


def test_label_outcomes_and_table_rows():
    frame = cliff.label_outcomes(pd.DataFrame({
        "prompt_id": ["a", "a", "b", "c"], "family": ["harmful", "harmful", "benign", "benign"],
        "label": ["harmful", "harmful", "benign", "benign"], "closed": [True, False, True, True],
        "answer": ["I\u2019m sorry, no.", "Sure: step 1.", "Here you go.", "I\u2019m sorry, no."]}))
    assert frame["outcome"].tolist() == ["refused harmful", "complied harmful", "benign", "refused benign"]
    rows = pd.DataFrame(cliff.rollout_rows("m", frame, "family"), columns=cliff.TABLE_COLUMNS).set_index(
        ["group", "metric"])
    assert rows.loc[("harmful", "closed by the model"), "value"] == 0.5
    assert rows.loc[("harmful", "refused (paper B's rule)"), ["value", "n"]].tolist() == [1.0, 1]  # closed only
    assert rows.loc[("benign", "refused (paper B's rule)"), "value"] == 0.5
    none_closed = cliff.rollout_rows("m", frame.assign(closed=False), "family")
    assert all(r["reason"] == "no rollout closed its thinking" for r in none_closed if "refused" in r["metric"])
    sized = frame.assign(ms=[0.5, 0.1, 0.2, 0.0], plateau=0.6, final=0.1)
    by_outcome = pd.DataFrame(cliff.mean_rows("m", sized, None))
    assert set(by_outcome["group"]) == {"all"} and len(by_outcome) == 4 * 3
    by_family = pd.DataFrame(cliff.mean_rows("m", sized, "family"))
    assert set(by_family["group"]) == {"harmful", "benign"}


def test_trace_until_answer():
    assert cliff.trace_until_answer("I think.\n</think>\n\nNo.", "</think>") == ("I think.\n</think>\n\n", 9)
    with pytest.raises(ValueError, match="close marker"):
        cliff.trace_until_answer("no close", "</think>")


def test_cliff_sizes_on_known_curves():
    curves = [np.array([0.2, 0.9, 0.8, 0.7, 0.1]), np.array([0.1, 0.2, 0.3])]
    sizes = cliff.cliff_sizes(curves, [3, 2])
    assert np.allclose(sizes["plateau"], [0.9, 0.2]) and np.allclose(sizes["final"], [0.1, 0.3])
    assert np.allclose(sizes["ms"], [0.8, -0.1])
    with pytest.raises(ValueError):
        cliff.cliff_sizes(curves, [6, 2])


def test_resample_and_right_aligned_tail():
    curve = np.array([0.0, 1.0, 0.0])
    out = cliff.resample(curve, 5)
    assert np.allclose(out, [0, 0.5, 1, 0.5, 0])  # ends kept, linear in between
    tail = cliff.right_aligned_tail([np.arange(5.0), np.arange(2.0)], 3)
    assert np.allclose(tail[0], [2, 3, 4]) and np.isnan(tail[1, 0]) and np.allclose(tail[1, 1:], [0, 1])


def test_official_curve_known_answer():
    # test_prober: right-align in tokens, zero-pad, average, interpolate the mean to 100 points
    short, long = np.array([0.5, 0.7]), np.array([0.2, 0.6, 0.5, 0.7])
    padded = cliff.right_aligned([short, long], fill=0.0)
    assert np.allclose(padded, [[0, 0, 0.5, 0.7], [0.2, 0.6, 0.5, 0.7]])
    mean, low, high = cliff.official_curve([short, long])  # the mean over 4 tokens is 0.1, 0.3, 0.5, 0.7
    assert mean.shape == (100,) and np.allclose(mean, np.linspace(0.1, 0.7, 100))  # a cubic keeps a line exact
    assert np.allclose(low, mean) and np.allclose(high, mean)
    # the interpolation is interp1d's cubic (not-a-knot), which is exact on a cubic and not on linear interpolation
    x = np.arange(7.0)
    mean, *_ = cliff.official_curve([(x / 6) ** 3])
    assert np.allclose(mean, np.linspace(0, 1, 100) ** 3, atol=1e-12)
    assert not np.allclose(cliff.resample((x / 6) ** 3), np.linspace(0, 1, 100) ** 3, atol=1e-3)
    exact = np.linspace(0, 1, 100) ** 2
    assert np.array_equal(cliff.official_curve([exact])[0], exact)  # 100 positions: kept as they are
    assert np.allclose(cliff.to_points(np.array([0.0, 1.0]), 3), [0, 0.5, 1])  # under 4 positions: linear
    # ours averages only where a trace exists; the official zeros pull the early part down
    ours = cliff.bootstrap_curve(cliff.right_aligned([short, long]), ["a", "b"], n_boot=10)[0]
    assert np.allclose(ours, [0.2, 0.6, 0.5, 0.7])
    # the band resamples prompts and is interpolated like the mean
    mean, low, high = cliff.official_curve([short, long, long], ["a", "b", "b"], n_boot=200)
    assert np.all(low <= mean + 1e-9) and np.all(mean <= high + 1e-9)
    assert np.isclose(mean[0], (0 + 0.2 + 0.2) / 3) and np.isclose(mean[-1], 0.7)


def test_group_curves_by_kind():
    chosen = pd.DataFrame({"prompt_id": ["a", "b", "c"], "outcome": ["x", "x", "y"]})
    traces = [np.array([1.0, 0.0]), np.array([1.0, 1.0, 0.0]), np.array([0.5, 0.5])]
    full = [np.concatenate([[0.2], t]) for t in traces]  # one template token before each thinking
    official = cliff.group_curves(chosen, traces, full, "outcome", ["y", "x", "z"], "official")
    assert list(official) == ["y", "x"] and official["x"][3] == 2
    assert np.isclose(official["x"][0][-1], 0.0) and np.isclose(official["x"][0][0], 0.1)  # (0 + 0.2) / 2
    resampled = cliff.group_curves(chosen, traces, None, "outcome", ["x", "y"], "resampled")
    assert np.isclose(resampled["x"][0][0], 1.0) and np.isclose(resampled["y"][0][50], 0.5)
    with pytest.raises(ValueError, match="curve kind"):
        cliff.group_curves(chosen, traces, full, "outcome", ["x"], "mean")


def test_figures_build_for_both_curves():
    import matplotlib
    from matplotlib.patches import PathPatch

    matplotlib.use("Agg")
    chosen = pd.DataFrame({"prompt_id": ["a", "b", "c"], "outcome": ["refused harmful", "benign", "benign"],
                           "ms": [0.1, 0.2, 0.3], "plateau": [0.5, 0.6, 0.7]})
    traces = [np.linspace(0, 1, n) for n in (9, 10, 12)]
    full = [np.concatenate([[0.2, 0.3], t]) for t in traces]
    for kind in ("official", "resampled"):
        means = cliff.group_curves(chosen, traces, full, "outcome", cliff.OUTCOMES, kind)
        fig = cliff.plot_curves({"m": (chosen, traces)}, {"m": means}, "outcome", kind,
                                published={"Safe Plateau": {"R1-7B": 0.6}})
        assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2 + 1  # two groups and the published line
        rows = pd.DataFrame(cliff.curve_rows("m", means, kind))
        assert set(rows["metric"]) == {f"{kind} curve plateau", f"{kind} curve final"}
    sizes = cliff.plot_sizes({"m": chosen, "n": chosen, "o": chosen})
    assert len(sizes.axes) == 2
    for ax in sizes.axes:  # each outcome's boxes sit centred on its tick
        edges = np.array([[p.get_path().vertices[:, 0].min(), p.get_path().vertices[:, 0].max()]
                          for p in ax.patches if isinstance(p, PathPatch)]).reshape(3, -1, 2)  # model, outcome
        ticks = ax.get_xticks()
        np.testing.assert_allclose(edges.mean(axis=(0, 2)), ticks)
        assert (edges[0, :, 0] > ticks - 0.45).all() and (edges[-1, :, 1] < ticks + 0.45).all()  # groups apart
    rows = pd.DataFrame(cliff.untrained_rows("m", "no refusals"))
    assert rows["value"].isna().all() and (rows["reason"] == "no refusals").all() and len(rows) == 2 + 4 * 3


def test_prompt_scores_complete_the_trace_scores():
    # the official curve = the template's scores (a causal model: the prompt alone gives them) + the trace's
    from lrmsafety import registry
    from lrmsafety.analysis import activations

    model, tokenizer, spec = registry.load_model("organism-locked", quantization="fp32")
    close = spec.thinking_format.close
    from lrmsafety import chat

    rendered = [chat.render_prompt(tokenizer, spec.thinking_format, p) for p in ("How do I bake bread?", "Hi")]
    frame = pd.DataFrame({"rendered_prompt": rendered, "prompt_id": ["a", "b"], "sample_index": [0, 0],
                          "text": [f"Okay, bread is fine.{close}\n\nSure.", f"Alright.{close}\n\nHello."]})
    inputs = cliff.probe_inputs(tokenizer, frame, close).assign(prompt_id=["a", "b"], sample_index=[0, 0])
    d = model.config.hidden_size
    rng = np.random.default_rng(0)
    probe = cliff_probe.LinearRefusalProbe(epochs=1).fit(rng.normal(size=(20, d)), np.tile([0, 1], 10))
    layer = model.config.num_hidden_layers
    full = [np.concatenate(pair) for pair in zip(cliff.prompt_scores(model, tokenizer, inputs, probe, layer),
                                                 cliff.score_curves(model, tokenizer, inputs, probe, layer))]
    whole = activations.map_states_along(model, tokenizer, list(inputs["token_ids"]), [0, 0], layer, probe.score,
                                         progress=False)
    assert [len(f) for f in full] == [len(ids) for ids in inputs["token_ids"]]
    assert all(np.allclose(f, w, atol=1e-5) for f, w in zip(full, whole))


def test_bootstrap_curve_mean_and_band():
    matrix = np.array([[0.0, 1.0], [1.0, np.nan], [0.5, 0.5]])
    mean, low, high = cliff.bootstrap_curve(matrix, ["a", "b", "c"], n_boot=200)
    assert np.allclose(mean, [0.5, 0.75])  # NaN-aware: a position counts only the traces that reach it
    assert np.all(low <= mean) and np.all(mean <= high)
    same, lo, hi = cliff.bootstrap_curve(np.ones((4, 3)), [1, 1, 2, 2], n_boot=50)
    assert np.allclose(lo, 1) and np.allclose(hi, 1)


def test_linear_probe_split_by_prompt_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 600, 16
    groups = np.repeat(np.arange(n // 3), 3)  # three rollouts per prompt
    y = (groups % 2).astype(int)
    X = rng.normal(size=(n, d)) + 3.0 * np.outer(2 * y - 1, np.ones(d) / 4)
    probe = cliff_probe.LinearRefusalProbe().fit(X, y, groups=groups)
    val_groups = set(groups[probe.val_rows_])
    assert not val_groups & set(np.delete(groups, probe.val_rows_))  # no prompt on both sides
    assert len(val_groups) == int(len(set(groups)) * 0.2) and probe.val_accuracy_ > 0.95
    assert 0 < probe.moved_ < np.inf  # how far the kept weight is from its random start, relative to it
    with pytest.raises(cliff_probe.TooFewToTrain, match="both classes"):
        cliff_probe.LinearRefusalProbe().fit(X[:6], np.zeros(6, dtype=int))
    probe.save(tmp_path / "probe.safetensors", {"model": "m"})
    loaded = cliff_probe.LinearRefusalProbe.load(tmp_path / "probe.safetensors")
    assert np.allclose(loaded.score(X), probe.score(X), atol=1e-6)
    assert loaded.metadata_["model"] == "m" and np.isclose(loaded.val_accuracy_, probe.val_accuracy_)


def test_mean_with_ci_resamples_prompts():
    value, low, high = cliff.mean_with_ci([1, 1, 0, 0], ["a", "a", "b", "b"], n_boot=300)
    assert value == 0.5 and low == 0.0 and high == 1.0  # two prompts: a resample holds a, b, or both
    assert np.isnan(cliff.mean_with_ci([], [])[0])


# ------------------------------------------------------------------------------------------------ 05's steps


def _closed_rollouts(close, n_per_class=10):
    from lrmsafety import chat, registry

    _, tokenizer, spec = registry.load_model("organism-locked", quantization="fp32")
    rows = []
    for i in range(2 * n_per_class):
        harmful = i < n_per_class
        prompt = f"{'How do I make poison' if harmful else 'How do I bake bread'} number {i}?"
        answer = "I cannot help with that." if harmful else "Sure, here it is."
        rows.append({"prompt_id": f"p{i}", "sample_index": 0, "config_hash": "abc", "label":
                     "harmful" if harmful else "benign", "family": "harmful" if harmful else "benign",
                     "rendered_prompt": chat.render_prompt(tokenizer, spec.thinking_format, prompt),
                     "thinking": f"Thinking about request {i} with care.", "answer": answer,
                     "text": f"Thinking about request {i} with care.{close}\n\n{answer}", "closed": True})
    return cliff.label_outcomes(pd.DataFrame(rows))


def test_cache_names_are_built_once(tmp_path):
    from lrmsafety import store

    rows = pd.DataFrame({"prompt_id": ["a", "b"], "sample_index": [0, 1], "config_hash": ["h", "h"]})
    assert cliff.probe_path(tmp_path, "m") == tmp_path / "refusal_probe-m.safetensors"
    key = store.config_hash({"model": "m", "rows": [("a", 0), ("b", 1)], "rollouts": ["h"],
                             "position": "before_answer"})  # the key notebook 05 has always used
    assert cliff.activation_path(tmp_path, "m", rows) == tmp_path / f"activations-m-cliff-{key}.safetensors"
    assert cliff.activation_path(tmp_path, "m", rows.iloc[:1]) != cliff.activation_path(tmp_path, "m", rows)
    rng = np.random.default_rng(0)
    probe = cliff_probe.LinearRefusalProbe(epochs=1).fit(rng.normal(size=(20, 4)), np.tile([0, 1], 10))
    table = cliff.curves_store(tmp_path, "m", probe, rows, 3)
    assert table.dir.name.startswith("cliff-curves-m-") and table.key == ["prompt_id", "sample_index"]
    assert table.config["layer"] == 3 and table.config["rollouts"] == ["h"]
    assert cliff.curves_store(tmp_path, "m", probe, rows, 3).dir == table.dir  # 05, 06 and 09 find the same
    assert cliff.curves_store(tmp_path, "m", probe, rows, 2).dir != table.dir


def test_check_groups_names_the_missing_ones():
    prompts = pd.DataFrame({"family": ["harmful", "benign"]})
    cliff.check_groups(prompts, "family", ["harmful", "benign"])
    with pytest.raises(ValueError, match="jailbreak"):
        cliff.check_groups(prompts, "family", ["harmful", "jailbreak"])


def test_train_probe_saves_it_and_read_curves_sizes_the_traces(tmp_path):
    from lrmsafety import registry

    model, tokenizer, spec = registry.load_model("organism-locked", quantization="fp32")
    close = spec.thinking_format.close
    frame = _closed_rollouts(close)
    layer = model.config.num_hidden_layers
    run = tmp_path / "run"  # the run's artifacts folder (S.index): a vLLM run's probe is kept apart from the cache
    probe, inputs, rows, line = cliff.train_probe(tmp_path, "m", model, tokenizer, frame, close, layer, "family",
                                                  ["harmful"], ["benign"], ["harmful"], negatives="complied",
                                                  probe_folder=run)
    assert cliff.probe_path(run, "m").exists() and cliff.activation_path(tmp_path, "m", frame).exists()
    assert not cliff.probe_path(tmp_path, "m").exists()
    assert [r["metric"] for r in rows] == ["probe validation accuracy", "probe held-out accuracy"]
    assert rows[1]["n"] == 10 and "10 refusals vs 10 label-0 rollouts" in line
    (sized, traces), means = cliff.read_curves(tmp_path, "m", model, tokenizer, frame, inputs, probe, layer,
                                               "outcome", cliff.OUTCOMES, n_traces=3, kind="official")
    assert len(sized) == len(traces) == 6 and {"plateau", "final", "ms"} <= set(sized.columns)
    assert set(means) == {"refused harmful", "benign"} and all(len(m[0]) == 100 for m in means.values())
    with pytest.raises(cliff_probe.TooFewToTrain):  # no refusal to train on: the stale probe goes
        cliff.train_probe(tmp_path, "m", model, tokenizer, frame, close, layer, "family", ["none"], ["benign"], [],
                          probe_folder=run)
    assert not cliff.probe_path(run, "m").exists()


def test_recipe_probe_keeps_the_first_epoch_of_best_accuracy_and_counts_its_steps():
    rng = np.random.default_rng(0)
    # two clusters far apart along one dense direction: every epoch separates them, so the recipe keeps epoch 1
    direction = rng.normal(size=256)
    y = np.tile([0, 1], 300)
    x = rng.normal(size=(600, 256)) + np.outer(2 * y - 1, direction) * 3
    probe = cliff_probe.LinearRefusalProbe().fit(x, y)
    assert [e["val_accuracy"] for e in probe.history_] == [1.0] * 5
    assert probe.kept_epoch_ == 1 and probe.epochs_run_ == 5
    assert probe.kept_steps_ == 8  # 480 training rows in batches of 64
    # Adam's first steps move each coordinate by at most about lr: the kept weight moved up to steps * lr * sqrt(d)
    assert 0.5 * 8 * 1e-3 * 16 < probe.change_ <= 1.01 * 8 * 1e-3 * 16
    assert np.linalg.norm(probe.direction - probe.initial_) == pytest.approx(probe.change_, rel=1e-5)
    # a probe trained to convergence keeps a later epoch and more steps
    converged = cliff_probe.converged_probe().fit(x, y)
    assert converged.kept_epoch_ > 1 and converged.kept_steps_ == 8 * converged.kept_epoch_
