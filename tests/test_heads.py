"""Paper B's head scores and head ablation, on tiny random-weight models of every reasoning architecture."""

import numpy as np
import pandas as pd
import pytest
import torch
from test_scheduler import Fixed
from tiny_models import build_tiny

from lrmsafety import registry as models
from lrmsafety.analysis import heads
from lrmsafety.engine import generate, hooks, scheduler

ARCHITECTURES = sorted({spec.architecture for spec in models.REGISTRY.values() if spec.role == "reasoner"})


class _Tokenizer:
    pad_token_id = 0


TEXTS = [[5, 6, 7, 8, 9], [10, 11, 12]]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_ablation_and_scores_on_every_family(architecture):
    model = build_tiny(architecture, 1000).eval()
    ids = torch.tensor([TEXTS[0]])
    with torch.no_grad():
        before = model(ids).logits
        with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [])):
            nothing = model(ids).logits
        with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [(1, 1)], rescale="batch",
                                                                           keep=1.0)):
            kept = model(ids).logits  # heads kept whole: the rescaling factor is 1
        for rule in (None, "batch", "position"):
            with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [(0, 1)], rescale=rule)):
                assert not torch.allclose(model(ids).logits, before, atol=1e-5), rule
    assert torch.equal(before, nothing) and torch.allclose(before, kept, atol=1e-5)

    direction = np.random.default_rng(0).normal(size=model.config.hidden_size)
    scores = heads.head_scores(model, _Tokenizer, TEXTS, direction, progress=False)
    n_layers, n_heads = len(hooks.decoder_layers(model)), hooks.n_heads(model)
    assert len(scores) == n_layers * n_heads and scores["score"].is_monotonic_increasing
    assert scores["score"].abs().max() > 0

    # the heads' writes add up to the attention output's write (bias excluded), projected on the direction
    projection = hooks.attention_output_projection(hooks.decoder_layers(model)[1])
    seen = {}
    with torch.no_grad(), hooks.add_hooks(forward_hooks=hooks.capture_hooks({"o": projection}, seen, inputs=True)):
        model(torch.tensor([TEXTS[0]]))
        last = seen["o"][:, -1]
        total = (projection(last) - projection(torch.zeros_like(last)))[0].float().numpy()
    alone = heads.head_scores(model, _Tokenizer, TEXTS[:1], direction, progress=False)
    unit = direction / np.linalg.norm(direction)
    assert np.isclose(alone[alone["layer"] == 1]["score"].sum(), total @ unit, atol=1e-4)

    size = hooks.head_dim(model)
    with torch.no_grad():
        projection.weight[:, 2 * size:3 * size] = 0
    zeroed = heads.head_scores(model, _Tokenizer, TEXTS, direction, progress=False)
    assert zeroed[(zeroed["layer"] == 1) & (zeroed["head"] == 2)]["score"].item() == 0.0


def _run_hook(rescale, hidden, heads_, size=4):
    model = build_tiny("Qwen2ForCausalLM", 100)  # 4 heads of 16
    (module, hook), = hooks.head_ablation_hooks(model, heads_, rescale=rescale)
    return hook(module, (hidden.clone(),))[0]


def test_rescaling_rules():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 64)  # (batch, positions, heads * head_dim)
    zeroed = hidden.clone()
    zeroed[..., 16:32] = 0
    plain = _run_hook(None, hidden, [(0, 1)])
    assert torch.equal(plain, zeroed)
    batch = _run_hook("batch", hidden, [(0, 1)])  # paper B: one factor for the whole batch's tensor
    assert torch.allclose(batch, zeroed * hidden.norm() / zeroed.norm())
    assert not torch.allclose(batch.norm(dim=-1), hidden.norm(dim=-1))
    position = _run_hook("position", hidden, [(0, 1)])
    assert torch.allclose(position.norm(dim=-1), hidden.norm(dim=-1), rtol=1e-5)
    assert torch.all(position[..., 16:32] == 0) and torch.all(batch[..., 16:32] == 0)
    with pytest.raises(ValueError, match="rescale"):
        _run_hook("per-token", hidden, [(0, 1)])
    with pytest.raises(ValueError, match="outside"):
        _run_hook(None, hidden, [(0, 9)])


def test_head_counts_and_random_sets():
    assert [heads.heads_for_share(784, s) for s in (0.015, 0.03, 0.10)] == [12, 24, 78]  # methods.md, R1-Qwen-7B
    assert heads.heads_for_share(48, 0.01) == 1
    drawn = heads.random_heads(6, 8, 5, seed=3)
    assert len(set(drawn)) == 5 and all(0 <= layer < 6 and 0 <= h < 8 for layer, h in drawn)
    assert drawn == heads.random_heads(6, 8, 5, seed=3) != heads.random_heads(6, 8, 5, seed=4)


def test_official_head_counts_per_model():
    """Paper B's scripts' --top_n_ablation (scripts/trace/<model>/ablate.sh): a table where they give one, the
    share rule elsewhere. R1-Llama-8B's 1024 heads round to 15 / 31 / 102; the scripts ablate 16 / 32 / 102."""
    shares = (0.015, 0.03, 0.10)
    llama = "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"
    assert [heads.head_count(1024, s, llama) for s in shares] == [(16, "paper B's scripts"), (32, "paper B's scripts"),
                                                                   (102, "paper B's scripts")]
    assert [heads.heads_for_share(1024, s) for s in shares] == [15, 31, 102]
    assert [heads.head_count(784, s, "deepseek-r1-distill-qwen-7b")[0] for s in shares] == [12, 24, 78]
    assert [heads.head_count(1920, s, "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B")[0] for s in shares] == [29, 58, 192]
    # no table for this model, or for this share: the share rule
    assert heads.head_count(1024, 0.03, "some/Other-8B") == (31, "share rule")
    assert heads.head_count(1024, 0.04, llama) == (41, "share rule")
    assert heads.head_count(48, 0.04) == (2, "share rule")
    with pytest.raises(ValueError, match="1024 heads"):
        heads.head_count(1000, 0.03, llama)
    with pytest.raises(ValueError, match="share"):
        heads.head_count(1024, 0.0, "some/Other-8B")


class _Fixed(Fixed):
    """test_scheduler's fixed-length request, with its own tokenizer."""

    def __init__(self, tokenizer, text, n):
        super().__init__(text, n)
        self.tokenizer = tokenizer




def _rows_per_forward(model):
    seen = []
    layer = hooks.attention_output_projection(hooks.decoder_layers(model)[0])
    return seen, [(layer, lambda module, args: seen.append(args[0].shape[0]))]


def test_fixed_groups_hold_every_row_until_the_group_ends(tiny_r1):
    """refill=False: groups of exactly ``slots`` rows (the last one what is left); a row that finishes stays in the
    batch, so every forward of a group has all its rows; each row still gets the tokens it gets alone."""
    model, tokenizer, _ = tiny_r1
    lengths = [2, 9, 4, 1, 5, 3, 7]
    texts = ["alpha beta gamma", "one", "a much longer prompt with many more words", "delta"]
    requests = [_Fixed(tokenizer, texts[i % len(texts)], n) for i, n in enumerate(lengths)]
    seen, recorder = _rows_per_forward(model)
    run = scheduler.RefillScheduler(model, tokenizer, {"do_sample": False}, slots=3, chunk=2, refill=False)
    done = []
    with hooks.add_hooks(forward_pre_hooks=recorder):
        run.run(requests, done.append)
    assert run.groups == [3, 3, 1] and len(done) == 7
    # group 1 (longest 9 tokens) and group 2 (7): 3 rows in every forward; group 3: 1 row
    first_single = seen.index(1)
    assert set(seen[:first_single]) == {3} and set(seen[first_single:]) == {1}
    # per group: its prefill, then one forward per decode step until its longest row is done (9, then 5 tokens)
    assert len(seen[:first_single]) == (1 + 8) + (1 + 4) and len(seen[first_single:]) == 1 + 6
    for request in requests:
        ids = tokenizer(request.prompt, return_tensors="pt", add_special_tokens=False)
        alone = model.generate(**ids, max_new_tokens=request.n, min_new_tokens=request.n, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)[0, ids["input_ids"].shape[1]:].tolist()
        assert request.tokens == alone
    # the refill scheduler, for contrast, lets finished rows leave
    seen.clear()
    with hooks.add_hooks(forward_pre_hooks=recorder):
        scheduler.RefillScheduler(model, tokenizer, {"do_sample": False}, slots=3, chunk=2).run(
            [_Fixed(tokenizer, texts[i % len(texts)], n) for i, n in enumerate(lengths)], lambda r: None)
    assert 2 in seen


def test_fixed_group_ablation_rescales_over_the_group(tiny_r1):
    """Paper B's ablation decoding through generate.rollouts: fixed groups of batch_size rows, and the batch
    rescale's one norm taken over each forward's whole tensor, i.e. the whole group."""
    model, tokenizer, spec = tiny_r1
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(7)], "prompt": [f"Question {i}?" for i in range(7)]})
    decoding = generate.Decoding(max_new_tokens=5, temperature=0.7, refill=False, batch_size=3, chunk_tokens=2)
    layer = hooks.attention_output_projection(hooks.decoder_layers(model)[1])
    before, after = [], []
    record = [(layer, lambda module, args: before.append(args[0].clone()))]
    ablate = hooks.head_ablation_hooks(model, [(1, 0), (1, 2)], rescale="batch")
    check = [(layer, lambda module, args: after.append(args[0].clone()))]
    with hooks.add_hooks(forward_pre_hooks=record + ablate + check):  # run in this order
        frame = generate.rollouts(model, tokenizer, spec, prompts, decoding, progress=False)
    assert len(frame) == 7
    rows = [t.shape[0] for t in before]
    assert set(rows[:rows.index(1)]) == {3} and set(rows[rows.index(1):]) == {1}  # groups of 3, 3, then 1
    size = hooks.head_dim(model)
    for original, ablated in zip(before, after):
        zeroed = original.clone()
        zeroed[..., 0:size] = 0
        zeroed[..., 2 * size:3 * size] = 0
        assert torch.allclose(ablated, zeroed * original.norm() / zeroed.norm(), atol=1e-5)


def test_one_budget_for_thinking_and_answer(tiny_r1):
    """max_new_tokens: HF generate's budget; random weights never close, so nothing is force-closed and every
    output ends unclosed; paper B judges it whole. At the defaults the cache key is unchanged."""
    model, tokenizer, spec = tiny_r1
    prompts = pd.DataFrame({"prompt_id": ["a", "b"], "prompt": ["Question a?", "Question b?"]})
    frame = generate.rollouts(model, tokenizer, spec, prompts, generate.Decoding(max_new_tokens=6, batch_size=2),
                              progress=False)
    assert not frame["force_closed"].any() and not frame["closed"].any() and (frame["answer"] == "").all()
    assert (frame["n_thinking_tokens"] <= 7).all() and not frame["text"].str.contains("</think>").any()
    judged = heads.paper_b_response(frame, spec.thinking_format.close)
    assert (judged == frame["text"].str.strip()).all() and (judged != "").all()
    plain = generate.rollout_config(model, tokenizer, spec, generate.Decoding())["decoding"]
    assert "max_new_tokens" not in plain and "refill" not in plain
    keyed = generate.rollout_config(model, tokenizer, spec, generate.Decoding(max_new_tokens=6, refill=False))
    assert keyed["decoding"]["max_new_tokens"] == 6 and keyed["decoding"]["refill"] is False
    # a prefix-mode rollout closes by its prefill: its answer is what is judged
    closed = frame.assign(text=frame["text"] + "</think>\n\nSure.", answer="Sure.")
    assert (heads.paper_b_response(closed, "</think>") == "Sure.").all()


def test_attack_success_rates_and_a_missing_probe(tmp_path):
    guard = pd.DataFrame({"refused": [True, False, None], "unsafe": [True, None, False]})
    assert heads.attack_success(guard).tolist() == [True, False, False]  # unparsed counts as safe
    words = pd.DataFrame({"refused": [True, False], "unsafe": pd.array([None, None], dtype="boolean")})
    assert heads.attack_success(words).tolist() == [False, True]
    rollouts = pd.DataFrame({"prompt_id": ["a", "b", "c"], "role": ["attack", "attack", "benign"],
                             "answer": ["Sure, here", "I cannot help", "I cannot help"]})
    asr, orr = heads.ablation_rates(rollouts, [True, False, False])
    assert (asr["metric"], asr["value"], asr["n"]) == ("ASR", 0.5, 2)
    assert (orr["metric"], orr["value"], orr["n"]) == ("ORR", 1.0, 1)
    asr, orr = heads.ablation_rates(rollouts[rollouts["role"] == "attack"], [True, True])
    assert np.isnan(orr["value"]) and orr["reason"]
    probe, why = heads.load_refusal_probe(tmp_path / "refusal_probe-x.safetensors")
    assert probe is None and "wrote no refusal probe" in why


def test_fixed_groups_with_force_closed_rows(tiny_r1):
    """refill=False with the separate budgets: a force-closed row is re-prefilled and rejoins its group; every
    sample comes back, force-closed, with its answer."""
    model, tokenizer, spec = tiny_r1
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(5)], "prompt": [f"Question {i}?" for i in range(5)]})
    decoding = generate.Decoding(max_thinking_tokens=3, max_answer_tokens=2, refill=False, batch_size=3)
    frame = generate.rollouts(model, tokenizer, spec, prompts, decoding, progress=False)
    assert sorted(frame["prompt_id"]) == list(prompts["prompt_id"]) and frame["force_closed"].all()
    # answer tokens are counted by re-tokenizing the decoded text: random tokens may re-encode to more (as in
    # test_generate's force-close test, twice the budget at most)
    assert frame["text"].str.contains("</think>").all()
    assert (frame["n_answer_tokens"] <= 2 * decoding.max_answer_tokens).all()


def test_ablated_rollouts_are_cached_per_heads_rule_and_prefix(tiny_r1, tmp_path):
    model, tokenizer, spec = tiny_r1
    prompts = pd.DataFrame({"prompt_id": ["a", "b"], "prompt": ["Question a?", "Question b?"], "role": "attack",
                            "thinking_prefix": ["I think so.", "Maybe not."]})
    decoding = generate.Decoding(mode="prefix", max_answer_tokens=3, batch_size=2)
    key, out = heads.ablated_rollouts(model, tokenizer, spec, prompts, decoding, [(0, 1)], "batch", cache_root=tmp_path)
    assert list(out["role"]) == ["attack", "attack"] and {"answer", "output"} <= set(out.columns)
    assert (out["output"] == out["text"].str.strip()).all() and out["text"].str.contains("</think>").all()
    same, _ = heads.ablated_rollouts(model, tokenizer, spec, prompts, decoding, [(0, 1)], "batch", cache_root=tmp_path)
    other_prefix, _ = heads.ablated_rollouts(model, tokenizer, spec, prompts.assign(thinking_prefix="Hm."), decoding,
                                             [(0, 1)], "batch", cache_root=tmp_path)
    other_rule, _ = heads.ablated_rollouts(model, tokenizer, spec, prompts, decoding, [(0, 1)], None,
                                           cache_root=tmp_path)
    assert same == key and len({key, other_prefix, other_rule}) == 3
    assert len(list(tmp_path.glob("ablation-*"))) == 3


def test_fixed_groups_on_both_decode_engines(tiny_r1):
    """refill=False on the slot engine (the one CUDA takes when no hook is installed) and on the DynamicCache
    engine: the same groups and the same greedy tokens."""
    model, tokenizer, _ = tiny_r1
    lengths, texts = [3, 11, 6, 2, 8], ["alpha beta", "one", "a longer prompt than the others", "delta"]
    tokens = {}
    for decode in ("static", "dynamic"):
        requests = [_Fixed(tokenizer, texts[i % len(texts)], n) for i, n in enumerate(lengths)]
        run = scheduler.RefillScheduler(model, tokenizer, {"do_sample": False}, slots=2, chunk=3, decode=decode,
                                        refill=False)
        run.run(requests, lambda r: None)
        assert run.decode == decode and run.groups == [2, 2, 1]
        tokens[decode] = [r.tokens for r in requests]
    assert tokens["static"] == tokens["dynamic"] and [len(t) for t in tokens["static"]] == lengths


# ------------------------------------------------------------------------------------------------ 06's study


def test_ablation_conditions_and_labels():
    conditions = heads.ablation_conditions([0.03, 0.1], ["batch", None], 2)
    assert conditions[0] == ("none", 0.0, 0, None) and len(conditions) == 1 + 2 * 2 * 3
    assert conditions[1:4] == [("top", 0.03, 0, "batch"), ("random", 0.03, 0, "batch"), ("random", 0.03, 1, "batch")]
    labels = heads.metric_labels("paper_b_refusal", "output")
    assert "thinking included" in labels["ASR"] and "paper B reports no ORR" in labels["ORR"]


def test_ablation_inputs_prefix_and_natural():
    studied = pd.DataFrame({"prompt_id": ["a", "b", "c"], "role": ["attack", "attack", "benign"]})
    frame = pd.DataFrame({"prompt_id": ["a", "a", "c"], "sample_index": [1, 0, 0], "thinking": ["a1", "a0", "c0"]})
    settings = dict(answer_tokens=5, max_new_tokens=None, temperature=None, group_size=8, batch_size=64,
                    max_thinking_tokens=32, seed=0)
    todo, decodings = heads.ablation_inputs(studied, frame, "prefix", **settings)
    assert todo["thinking_prefix"].tolist() == ["a0", "c0"]  # each prompt's first closed trace; b has none
    grouped, refill = decodings["batch"], decodings[None]
    assert grouped.mode == refill.mode == "prefix" and grouped.batch_size == 8 and not grouped.refill
    # the rules that act on each row alone run on the refill scheduler (the slot engine on a GPU)
    assert decodings["position"] is refill and refill.refill and refill.batch_size == 64
    todo, decodings = heads.ablation_inputs(studied, frame, "natural", **{**settings, "group_size": None})
    assert todo is studied and all(d.max_thinking_tokens == 32 and d.refill and d.batch_size == 64
                                   for d in decodings.values())


def test_run_conditions_without_scores_and_the_table():
    model = build_tiny(ARCHITECTURES[0], 1000).eval()
    spec = type("Spec", (), {"hf_id": "tiny"})()
    generated, rows = heads.run_conditions("m", model, None, spec, None, "no probe", [("top", 0.1, 0, "batch")],
                                           pd.DataFrame(), None)
    assert generated == [] and [r["metric"] for r in rows] == ["ASR", "ORR"]
    assert all(np.isnan(r["value"]) and r["reason"] == "no probe" for r in rows)
    # no prompt to ablate (prefix mode, no trace the model closed itself): NA rows that say so, nothing generated
    nothing, empty = heads.run_conditions("m", model, None, spec, None, "no probe", [("none", 0.0, 0, None)],
                                          pd.DataFrame(), None)
    assert nothing == [] and all(np.isnan(r["value"]) and r["reason"] == heads.NO_PROMPTS for r in empty)
    out = pd.DataFrame({"prompt_id": ["a", "b"], "role": ["attack", "benign"], "answer": ["Sure.", "Sure, here."]})
    info = {"model": "m", "selection": "none", "share": 0.0, "k": 0, "k_source": "", "draw": 0, "rescale": "none"}
    table = heads.ablation_table(rows, [(info, "key", out)], [[True, False]], {"m": "no probe"},
                                 heads.metric_labels("paper_b_refusal", "answer"))
    assert table["selection"].tolist() == ["none", "none", "top", "top"]  # sorted: share 0 first
    assert table.loc[table["selection"] == "none", "value"].tolist() == [1.0, 0.0] and table["label"].notna().all()
