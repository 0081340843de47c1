"""Rollouts: every thinking mode's prompt for each family, the phases, the cache key, resume after a kill."""

import pandas as pd
import pytest
import torch
from tiny_models import FAMILY_TEMPLATES, tokenizer_for

from lrmsafety import chat, registry
from lrmsafety.engine import generate

FAMILIES = sorted({spec.thinking for spec in registry.REGISTRY.values() if spec.thinking})




def prompts(n=3):
    return pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "prompt": [f"Question {i}?" for i in range(n)]})


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["natural", "no_think", "zerothink", "lessthink", "morethink", "prefix"])
def test_rendered_prompt_of_every_mode(qwen3_tokenizer_path, family, mode):
    tokenizer = tokenizer_for(family if family in FAMILY_TEMPLATES else "r1")
    fmt = chat.get_format(family)
    think = chat.render_prompt(tokenizer, fmt, "Q?")
    prefill, closed = generate._prefill(mode, fmt, "I think.", close_prefix=True)
    if mode in ("natural", "morethink"):
        assert (prefill, closed) == ("", False)
    elif mode == "zerothink":
        assert closed and prefill == (chat.ZEROTHINK_PREFILL if fmt.close == "</think>" else fmt.force_close)
    elif mode == "lessthink":
        assert closed and prefill.startswith("Okay, the user ask for this") and fmt.close in prefill
    elif mode == "prefix":
        assert closed and prefill == "I think." + fmt.force_close
    elif mode == "no_think":
        no_think = chat.render_prompt(tokenizer, fmt, "Q?", mode="no_think")
        assert no_think.startswith(think.removesuffix(fmt.open)) and fmt.close in no_think[len(think) - len(fmt.open):]


def test_natural_rollouts_force_close_past_the_budget(tiny_r1):
    model, tokenizer, spec = tiny_r1
    decoding = generate.Decoding(samples_per_prompt=2, max_thinking_tokens=5, max_answer_tokens=4, batch_size=4)
    frame = generate.rollouts(model, tokenizer, spec, prompts(), decoding, progress=False)
    assert len(frame) == 6 and set(frame["sample_index"]) == {0, 1}
    # random weights never close their thinking: all were force-closed and got an answer phase
    assert frame["force_closed"].all() and not frame["closed"].any()
    assert all(text.count("</think>") >= 1 for text in frame["text"])
    assert (frame["n_answer_tokens"] <= 8).all()


@pytest.mark.parametrize("mode", ["zerothink", "lessthink", "no_think", "morethink"])
def test_modes_run(tiny_r1, mode):
    model, tokenizer, spec = tiny_r1
    decoding = generate.Decoding(mode=mode, max_thinking_tokens=4, max_answer_tokens=3, batch_size=3)
    frame = generate.rollouts(model, tokenizer, spec, prompts(), decoding, progress=False)
    assert len(frame) == 3
    if mode == "lessthink":
        assert frame["thinking"].str.startswith("Okay, the user ask for this").all()
    if mode == "zerothink":
        assert (frame["thinking"] == "").all()


def test_prefix_mode_keeps_the_prefix(tiny_r1):
    model, tokenizer, spec = tiny_r1
    frame = prompts(2).assign(thinking_prefix=["First idea.", "Second idea."])
    out = generate.rollouts(model, tokenizer, spec, frame, generate.Decoding(mode="prefix", max_answer_tokens=3),
                            progress=False)
    assert list(out["thinking"]) == ["First idea.", "Second idea."]


def test_cache_key_separates_configurations(tiny_r1, tmp_path):
    model, tokenizer, spec = tiny_r1
    a = generate.rollout_config(model, tokenizer, spec, generate.Decoding(seed=0))
    b = generate.rollout_config(model, tokenizer, spec, generate.Decoding(seed=1))
    c = generate.rollout_config(model, tokenizer, spec, generate.Decoding(mode="zerothink"))
    assert len({generate.config_hash(x) for x in (a, b, c)}) == 3
    assert a["chat_template"] == generate.text_hash(tokenizer.chat_template)
    d = dict(a, chat_template="something else")
    assert generate.config_hash(d) != generate.config_hash(a)


def test_resume_after_kill_loses_nothing_and_duplicates_nothing(tiny_r1, tmp_path, monkeypatch):
    model, tokenizer, spec = tiny_r1
    decoding = generate.Decoding(samples_per_prompt=2, max_thinking_tokens=3, max_answer_tokens=2, batch_size=2)
    saves = []
    real_append = generate.TableStore.append

    def dies_on_third_save(self, frame):
        saves.append(len(frame))
        if len(saves) == 3:
            raise KeyboardInterrupt  # as if the process were killed mid-run
        return real_append(self, frame)

    monkeypatch.setattr(generate.TableStore, "append", dies_on_third_save)
    with pytest.raises(KeyboardInterrupt):
        generate.rollouts(model, tokenizer, spec, prompts(4), decoding, cache_root=tmp_path, progress=False)
    monkeypatch.setattr(generate.TableStore, "append", real_append)
    first = generate.TableStore(tmp_path, "rollouts", generate.rollout_config(model, tokenizer, spec, decoding),
                                key=["prompt_id", "sample_index"]).read()
    assert len(first) == 4  # the two saved groups of finished samples were kept

    generated = []
    real_run = generate._run_units
    monkeypatch.setattr(generate, "_run_units", lambda m, t, s, units, *a, **k: generated.extend(units) or
                        real_run(m, t, s, units, *a, **k))
    frame = generate.rollouts(model, tokenizer, spec, prompts(4), decoding, cache_root=tmp_path, progress=False)
    assert len(generated) == 4  # only the missing four samples were generated
    assert len(frame) == 8 and not frame.duplicated(["prompt_id", "sample_index"]).any()
    kept = frame.merge(first, on=["prompt_id", "sample_index"], suffixes=("", "_first"))
    assert (kept["text"] == kept["text_first"]).all()  # finished rows are served from the cache, unchanged
    again = generate.rollouts(model, tokenizer, spec, prompts(4), decoding, cache_root=tmp_path, progress=False)
    assert len(generated) == 4 and len(again) == 8


def _append_rows(root, writer, n):
    store = generate.TableStore(root, "rows", {"a": 1}, key=["prompt_id"])
    for i in range(n):
        store.append(pd.DataFrame({"prompt_id": [f"{writer}-{i}"]}))


def test_two_writers_of_one_store_lose_no_rows(tmp_path):
    # notebooks run side by side (make -j) can append to one store at the same time: no part may overwrite another
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_rows, args=(tmp_path, w, 60)) for w in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    store = generate.TableStore(tmp_path, "rows", {"a": 1}, key=["prompt_id"])
    assert len(store.read()) == 180 and len(store.parts) == 180
    assert not list(tmp_path.glob("*/*.tmp"))


def test_bad_input_names_the_fix(tiny_r1):
    model, tokenizer, spec = tiny_r1
    with pytest.raises(ValueError, match="needs a 'prompt' column"):
        generate.rollouts(model, tokenizer, spec, pd.DataFrame({"prompt_id": ["a"]}), generate.Decoding())
    with pytest.raises(ValueError, match="thinking_prefix"):
        generate.rollouts(model, tokenizer, spec, prompts(1), generate.Decoding(mode="prefix"))
    with pytest.raises(ValueError, match="unknown thinking mode"):
        generate.Decoding(mode="fast")


def test_shared_prefill_gives_the_same_tokens_as_recomputing(tiny_r1):
    model, tokenizer, spec = tiny_r1
    texts = ["alpha beta", "gamma", "alpha beta", "gamma", "alpha beta"]
    greedy = {"do_sample": False}
    shared = generate.generate_batch(model, tokenizer, texts, 6, greedy, share_prefixes=True)
    naive = generate.generate_batch(model, tokenizer, texts, 6, greedy, share_prefixes=False)
    assert shared == naive
    assert shared[0] == shared[2] == shared[4] and shared[1] == shared[3]


def test_shared_prefill_feeds_only_the_last_token(tiny_r1):
    model, tokenizer, spec = tiny_r1
    widths = []
    handle = model.get_input_embeddings().register_forward_hook(lambda m, a, o: widths.append(tuple(a[0].shape)))
    try:
        generate.generate_batch(model, tokenizer, ["one two three four"] * 4, 2, {"do_sample": False})
    finally:
        handle.remove()
    n_tokens = len(tokenizer("one two three four", add_special_tokens=False)["input_ids"])
    assert widths[0] == (1, n_tokens - 1)  # the prefix, once
    assert widths[1] == (4, 1)  # then every row starts from its last prompt token


def test_static_cache_path_gives_the_same_greedy_tokens(tiny_r1):
    model, tokenizer, spec = tiny_r1
    texts = ["alpha beta gamma", "delta"]
    greedy = {"do_sample": False}
    assert generate.generate_batch(model, tokenizer, texts, 5, greedy, static_cache=True) == \
        generate.generate_batch(model, tokenizer, texts, 5, greedy, static_cache=False)
    decoding = generate.Decoding(static_cache=True, max_thinking_tokens=3, max_answer_tokens=2)
    assert len(generate.rollouts(model, tokenizer, spec, prompts(2), decoding, progress=False)) == 2


def test_shared_prefill_matches_unpadded_logits(tiny_r1):
    """A left-padded row in a shared prefill must see the same positions as the row alone."""
    import torch

    model, tokenizer, spec = tiny_r1
    short, long = "gamma delta epsilon zeta", "alpha beta gamma delta epsilon eta theta iota kappa lambda mu"
    cache = generate._shared_prefill(model, tokenizer, [short, long], [0, 0, 1])
    encoded = tokenizer([short, short, long], return_tensors="pt", padding=True, add_special_tokens=False)
    positions = generate.padded_positions(encoded["attention_mask"])
    with torch.no_grad():
        shared = model(input_ids=encoded["input_ids"][:, -1:], attention_mask=encoded["attention_mask"],
                       position_ids=positions[:, -1:], past_key_values=cache).logits[:, -1]
        alone = model(**tokenizer([short], return_tensors="pt", add_special_tokens=False)).logits[:, -1]
    assert torch.allclose(shared[0], alone[0], atol=1e-4) and torch.allclose(shared[1], alone[0], atol=1e-4)


def test_one_token_stop_strings_stop_and_are_kept(tiny_r1):
    model, tokenizer, spec = tiny_r1
    close_id = tokenizer.convert_tokens_to_ids("</think>")
    assert generate._single_token_ids(tokenizer, ["</think>"]) == {close_id}
    assert generate._single_token_ids(tokenizer, ["Let me think"]) is None
    with torch.no_grad():  # make the model always say </think>: generation must stop right there, keeping it
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
        model.lm_head.bias.data[close_id] = 1e4
        try:
            out = generate.generate_batch(model, tokenizer, ["Q one", "Q two"], 8, {"do_sample": False},
                                          stop_strings=["</think>"])
        finally:
            model.lm_head.bias = None
    assert out == [("</think>", 1, False), ("</think>", 1, False)]


# ------------------------------------------------------------------------------------------- per-sample randomness
SAMPLED = dict(temperature=1.0, top_p=0.95, top_k=40)


def _units(n_prompts=4, k=2):
    return [{"prompt_id": f"p{i}", "prompt": f"Question {i}?", "sample_index": j}
            for i in range(n_prompts) for j in range(k)]


def _texts(model, tokenizer, spec, units, decoding, slots=None):
    records = []
    generate._run_units(model, tokenizer, spec, units, decoding, records.append, slots=slots)
    assert len(records) == len(units)
    return {(r["prompt_id"], r["sample_index"]): r["text"] for r in records}


@pytest.mark.parametrize("refill", [True, False])
def test_a_sample_is_the_same_in_any_order_subset_or_batch(tiny_r1, refill):
    """The resume property: each (prompt_id, sample_index) gets the same text in one run, in reverse order, in two
    halves (as a killed and resumed run does) and with other slot counts; natural mode with force-closes (a row
    requeued mid-run, its stream continued)."""
    model, tokenizer, spec = tiny_r1
    decoding = generate.Decoding(max_thinking_tokens=6, max_answer_tokens=4, batch_size=3, chunk_tokens=4,
                                 refill=refill, **SAMPLED)
    units = _units()
    whole = _texts(model, tokenizer, spec, units, decoding)
    assert len(set(whole.values())) == len(units)  # sampled: the samples differ
    assert _texts(model, tokenizer, spec, units[::-1], decoding) == whole
    halves = {**_texts(model, tokenizer, spec, units[5:], decoding), **_texts(model, tokenizer, spec, units[:5],
                                                                              decoding)}
    assert halves == whole
    for slots in (1, 8):
        assert _texts(model, tokenizer, spec, units, decoding, slots=slots) == whole, slots
    other_seed = _texts(model, tokenizer, spec, units, generate.Decoding(**{**decoding.__dict__, "seed": 1}))
    assert all(other_seed[key] != whole[key] for key in whole)


def test_morethink_in_two_halves_equals_one_run(tiny_r1):
    """MoreThink: closes replaced by a word of the sample's own random.Random, the row re-prefilled and its draws
    continued; the words and tokens of each sample do not depend on the other samples."""
    model, tokenizer, spec = tiny_r1
    close = tokenizer.convert_tokens_to_ids("</think>")
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
    try:
        # the close among the 40 most likely tokens, often drawn, so that the rows requeue at different steps
        model.lm_head.bias.data[close] = 3.0
        decoding = generate.Decoding(mode="morethink", morethink_extensions=4, max_thinking_tokens=12,
                                     max_answer_tokens=3, batch_size=3, chunk_tokens=3, **SAMPLED)
        units = _units(4, 3)
        whole = _texts(model, tokenizer, spec, units, decoding)
        halves = {**_texts(model, tokenizer, spec, units[7:][::-1], decoding),
                  **_texts(model, tokenizer, spec, units[:7], decoding, slots=2)}
    finally:
        model.lm_head.bias = None
    assert halves == whole
    extended = [t for t in whole.values() if "Wait" in t or "Let me think again" in t]
    assert len(extended) >= len(units) // 2  # the continuation rounds did run
    assert len(set(whole.values())) == len(units)


def test_rollouts_resumed_equal_one_run(tiny_r1, tmp_path, monkeypatch):
    """generate.rollouts killed after its first save and resumed gives the texts of an uninterrupted run."""
    model, tokenizer, spec = tiny_r1
    decoding = generate.Decoding(samples_per_prompt=2, max_thinking_tokens=5, max_answer_tokens=3, batch_size=2,
                                 **SAMPLED)
    whole = generate.rollouts(model, tokenizer, spec, prompts(4), decoding, progress=False)
    real_append = generate.TableStore.append
    saves = []

    def dies_on_second_save(self, frame):
        saves.append(len(frame))
        if len(saves) == 2:
            raise KeyboardInterrupt
        return real_append(self, frame)

    monkeypatch.setattr(generate.TableStore, "append", dies_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        generate.rollouts(model, tokenizer, spec, prompts(4), decoding, cache_root=tmp_path, progress=False)
    monkeypatch.setattr(generate.TableStore, "append", real_append)
    resumed = generate.rollouts(model, tokenizer, spec, prompts(4), decoding, cache_root=tmp_path, progress=False)
    key = ["prompt_id", "sample_index"]
    merged = whole.merge(resumed, on=key, suffixes=("", "_resumed"))
    assert len(merged) == 8 and (merged["text"] == merged["text_resumed"]).all()
