"""The refill scheduler: same tokens as transformers' generate, refilled slots, hooks, MoreThink, interventions."""

import os

import pandas as pd
import pytest
import torch
from tiny_models import build_tiny, tokenizer_for

from lrmsafety import chat, registry
from lrmsafety.engine import dynamic, generate, hooks, scheduler

GREEDY = {"do_sample": False}


@pytest.fixture(scope="module")
def tiny(tiny_r1):
    return tiny_r1


class Fixed:
    """A request that takes exactly ``n`` tokens (end-of-sequence ignored), like the benchmark's."""

    tokenizer = None

    def __init__(self, text, n):
        self.prompt, self.n, self.tokens = text, n, []

    @property
    def text(self):  # the contract: the text includes every accepted token
        return self.prompt + (self.tokenizer.decode(self.tokens) if self.tokens else "")

    def max_steps(self):
        return self.n - len(self.tokens)

    def advance(self, tokens, entropies):
        self.tokens += tokens[: self.n - len(self.tokens)]
        return scheduler.DONE if len(self.tokens) >= self.n else scheduler.CONTINUE


def reference(model, tokenizer, text, n):
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return out[0, ids["input_ids"].shape[1]:].tolist()


TEXTS = ["alpha beta gamma", "one", "a much longer prompt with many more words in it than the others", "delta"]


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_refill_gives_generate_greedy_tokens(tiny, chunk):
    """Rows of different lengths, more requests than slots: each row's tokens are those it gets alone."""
    model, tokenizer, _ = tiny
    Fixed.tokenizer = tokenizer
    lengths = [9, 2, 5, 12, 3, 7]
    requests = [Fixed(TEXTS[i % len(TEXTS)], n) for i, n in enumerate(lengths)]
    done = []
    run = scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=2, chunk=chunk)
    run.run(requests, done.append)
    assert len(done) == len(requests) and run.prefills >= 3  # slots were refilled
    for request in requests:
        assert request.tokens == reference(model, tokenizer, request.prompt, request.n)


@pytest.mark.parametrize("spare", [0, 1, 128])
def test_in_place_cache_gives_generate_greedy_tokens(tiny, spare, monkeypatch):
    """The DynamicCache engine's in-place layers (a buffer regrown at every step with spare 0, rarely with 128):
    through refills, merges and row selections each row's tokens are those it gets alone."""
    model, tokenizer, _ = tiny
    Fixed.tokenizer = tokenizer
    layer_class = type(dynamic.growing_cache(model.config).layers[0])
    assert layer_class.__name__ == "GrowingLayer"
    monkeypatch.setattr(layer_class, "spare", spare)
    lengths = [9, 2, 5, 12, 3, 7, 4]
    requests = [Fixed(TEXTS[i % len(TEXTS)], n) for i, n in enumerate(lengths)]
    run = scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=3, chunk=2, decode="dynamic")
    run.run(requests, lambda r: None)
    for request in requests:
        assert request.tokens == reference(model, tokenizer, request.prompt, request.n)


def test_finished_rows_do_not_hold_the_batch(tiny):
    """One long row among short ones: steps are about the longest row, not batches x longest."""
    model, tokenizer, _ = tiny
    requests = [Fixed("word", 40)] + [Fixed(f"word {i}", 2) for i in range(15)]
    run = scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=4, chunk=4)
    run.run(requests, lambda r: None)
    # batch after batch would take 40 + 3 * 2 = 46 steps (at 4 rows per batch, a batch lasts its longest row)
    assert run.steps <= 44


def test_head_ablation_hooks_act_during_generation(tiny):
    model, tokenizer, _ = tiny
    heads = [(0, 0), (1, 1)]
    with hooks.add_hooks(hooks.head_ablation_hooks(model, heads)):
        expected = [reference(model, tokenizer, t, 6) for t in TEXTS]
        requests = [Fixed(t, 6) for t in TEXTS]
        scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=3, chunk=2).run(requests, lambda r: None)
    assert [r.tokens for r in requests] == expected
    plain = [reference(model, tokenizer, t, 6) for t in TEXTS]
    assert plain != expected  # the ablation changed what the model says


def test_sampling_matches_transformers_warpers():
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(3, 50) * 3
    logits_ref = logits
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(10), TopPLogitsWarper(0.8)):
        logits_ref = warper(None, logits_ref)
    kept = torch.isfinite(logits_ref)
    draws = torch.stack([scheduler.sample(logits, {"do_sample": True, "temperature": 0.7, "top_k": 10, "top_p": 0.8},
                                          torch.Generator().manual_seed(i)) for i in range(400)], 1)
    for row in range(3):
        assert set(draws[row].tolist()) <= set(kept[row].nonzero().flatten().tolist())
    assert (scheduler.sample(logits, GREEDY, None) == logits.argmax(-1)).all()


def _biased(model, token_id):
    """Make the model say ``token_id`` every time (a bias on the output layer), to drive a mode's rules."""
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
    model.lm_head.bias.data[token_id] = 1e4


def prompts(n=2):
    return pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "prompt": [f"Question {i}?" for i in range(n)]})


@pytest.mark.parametrize("stop", ["close", "eos"])
def test_morethink_follows_safechain(tiny, stop):
    """Each close (or end-of-sequence) inside the thinking becomes a continuation word, with no separator;
    after the last extension the thinking is closed with SafeChain's string and the answer follows."""
    model, tokenizer, spec = tiny
    token = tokenizer.convert_tokens_to_ids("</think>") if stop == "close" else tokenizer.eos_token_id
    decoding = generate.Decoding(mode="morethink", morethink_extensions=3, max_thinking_tokens=50,
                                 max_answer_tokens=2, batch_size=2)
    _biased(model, token)
    try:
        frame = generate.rollouts(model, tokenizer, spec, prompts(), decoding, progress=False)
    finally:
        model.lm_head.bias = None
    assert (frame["extensions"] == 3).all()
    for text in frame["text"]:
        words = [w for w in ("Wait", "Let me think again") if w in text]
        assert words and text.count("</think>") >= 1
        body = text.replace("Let me think again", "|").replace("Wait", "|")
        # the model's close is replaced and nothing separates the words: "|||</think>\n\n" then the answer
        assert body.startswith("|||" + chat.MORETHINK_CLOSE)
    assert (frame["closed"] == (stop == "close")).all() and (frame["force_closed"] == (stop == "eos")).all()


def test_morethink_keeps_whitespace_before_the_word(tiny):
    model, tokenizer, spec = tiny
    unit = {"prompt_id": "p", "prompt": "Q?", "sample_index": 0}
    sample = generate._make_samples(tokenizer, spec, [unit], generate.Decoding(mode="morethink"),
                                    {tokenizer.eos_token_id})[0]
    close = tokenizer.convert_tokens_to_ids("</think>")
    sample.advance(tokenizer("I think so.\n\n", add_special_tokens=False)["input_ids"] + [close], None)
    assert sample.generated_text.startswith("I think so.\n\n") and sample.extensions == 1
    assert sample.generated_text[len("I think so.\n\n"):] in chat.MORETHINK_CONTINUATIONS


def test_answer_budget_counts_from_the_close(tiny):
    model, tokenizer, spec = tiny
    unit = {"prompt_id": "p", "prompt": "Q?", "sample_index": 0}
    decoding = generate.Decoding(max_thinking_tokens=10, max_answer_tokens=3)
    sample = generate._make_samples(tokenizer, spec, [unit], decoding, {tokenizer.eos_token_id})[0]
    close = tokenizer.convert_tokens_to_ids("</think>")
    a = tokenizer.convert_tokens_to_ids("a")
    assert sample.advance([a, a, close, a, a], None) == scheduler.CONTINUE and sample.phase == "answer"
    assert sample.advance([a, a], None) == scheduler.DONE and sample.budget == 0
    record = generate._record(sample, tokenizer, spec, decoding)
    assert record["closed"] and record["answer"] == "aaa"


class Reminder:
    """An intervention of the kind SafeRemind is: after the first chunk of thinking, insert a sentence."""

    config = {"name": "reminder", "text": " Remember safety."}
    seen = []

    def __call__(self, rows):
        rewritten = []
        for row in rows:
            self.seen.append((len(row.new_tokens), len(row.new_entropies)))
            assert all(e >= 0 for e in row.new_entropies)
            if row.phase == "thinking" and self.config["text"] not in row.generated_text:
                row.rewrite(row.generated_text + self.config["text"])
                rewritten.append(row)
        return rewritten


def test_on_chunk_sees_tokens_and_entropies_and_may_rewrite(tiny, tmp_path):
    model, tokenizer, spec = tiny
    decoding = generate.Decoding(max_thinking_tokens=12, max_answer_tokens=2, chunk_tokens=4, batch_size=2)
    frame = generate.rollouts(model, tokenizer, spec, prompts(3), decoding, progress=False, on_chunk=Reminder(),
                              cache_root=tmp_path)
    assert frame["thinking"].str.contains("Remember safety.").all()
    assert Reminder.seen and all(n == m and n > 0 for n, m in Reminder.seen)
    plain = generate.rollout_config(model, tokenizer, spec, decoding)
    assert generate.config_hash(plain) != generate.config_hash(
        generate.rollout_config(model, tokenizer, spec, decoding, on_chunk=Reminder()))
    with pytest.raises(ValueError, match="config"):
        generate.rollouts(model, tokenizer, spec, prompts(1), decoding, on_chunk=lambda rows: [])


def test_out_of_memory_halves_the_slots_and_loses_no_row(tiny, monkeypatch):
    model, tokenizer, _ = tiny
    run = scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=4, chunk=2)
    make_engine = run._new_engine
    calls = []

    def engine_failing_once():
        engine = make_engine()
        real = engine.decode

        def fails_once(steps):
            calls.append(engine.rows)
            if len(calls) == 2:
                raise RuntimeError("CUDA out of memory (simulated)")
            return real(steps)

        engine.decode = fails_once
        return engine

    monkeypatch.setattr(run, "_new_engine", engine_failing_once)
    requests = [Fixed(t, 5) for t in TEXTS]
    Fixed.tokenizer = tokenizer
    done = []
    run.run(requests, done.append)
    assert run.slots == 2 and max(calls[2:]) <= 2
    assert len(done) == 4 and all(len(r.tokens) == 5 for r in requests)
    # the rows evicted by the failure kept their first chunk: re-prefilled from their text, they went on
    assert all(r.tokens[:1] == reference(model, tokenizer, r.prompt, 1) for r in requests)


# ---------------------------------------------------------------- the static slot engine (lrmsafety.engine.slots)
@pytest.fixture(scope="module", params=["Qwen2ForCausalLM", "Qwen3ForCausalLM"])
def tiny_arch(request, tmp_path_factory, qwen3_tokenizer_path):
    folder = tmp_path_factory.mktemp(f"tiny-slots-{request.param}")
    tokenizer = tokenizer_for("r1")
    tokenizer.save_pretrained(folder)
    build_tiny(request.param, len(tokenizer), folder)
    return registry.load_model(str(folder), quantization="fp32", device_map="cpu")  # CPU: see conftest.tiny_r1


def run_engine(model, tokenizer, requests, decode, slots=3, chunk=3, sampling=GREEDY, seed=None):
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    run = scheduler.RefillScheduler(model, tokenizer, sampling, slots=slots, chunk=chunk, decode=decode,
                                    generator=generator)
    done = []
    run.run(requests, done.append)
    assert len(done) == len(requests)
    return run


@pytest.mark.parametrize("chunk", [1, 4])
def test_static_slots_give_the_dynamic_cache_tokens(tiny_arch, chunk, monkeypatch):
    """Greedy: the slot engine's tokens are the DynamicCache engine's (and generate()'s), for rows of different
    prompt lengths, K rows of one text (one prefill), refills in between, and a capacity that grows mid-run."""
    from lrmsafety.engine import slots

    monkeypatch.setattr(slots, "BUCKET", 8)  # many attended widths, and the cache grows several times
    monkeypatch.setattr(slots, "GROWTH", 16)
    model, tokenizer, _ = tiny_arch
    Fixed.tokenizer = tokenizer
    texts = TEXTS + [TEXTS[0], TEXTS[0]]  # identical texts admitted together share one prefill
    lengths = [9, 2, 5, 30, 3, 7]
    runs, tokens = {}, {}
    for decode in ("dynamic", "static"):
        requests = [Fixed(t, n) for t, n in zip(texts, lengths)]
        runs[decode] = run_engine(model, tokenizer, requests, decode, chunk=chunk)
        tokens[decode] = [r.tokens for r in requests]
    engine = runs["static"].engine
    assert isinstance(engine, slots.SlotEngine) and engine.capacity >= 2 * 16 and engine.eager_steps > 0  # it grew
    assert runs["static"].prefills >= 3  # slots were refilled
    assert tokens["static"] == tokens["dynamic"]
    assert tokens["static"][3] == reference(model, tokenizer, texts[3], 30)


def test_static_slots_sample_like_the_dynamic_cache(tiny_arch):
    """Sampling draws from one generator in the same order on both engines: same seed, same tokens."""
    model, tokenizer, _ = tiny_arch
    Fixed.tokenizer = tokenizer
    sampling = {"do_sample": True, "temperature": 0.8, "top_p": 0.9, "top_k": 0}
    tokens = {}
    for decode in ("dynamic", "static"):
        requests = [Fixed(t, n) for t, n in zip(TEXTS, [6, 3, 8, 4])]
        run_engine(model, tokenizer, requests, decode, slots=2, chunk=2, sampling=sampling, seed=3)
        tokens[decode] = [r.tokens for r in requests]
    assert tokens["static"] == tokens["dynamic"]


@pytest.mark.parametrize("rescale", [None, "position"])
def test_static_slots_run_row_local_ablation_hooks_at_every_step(tiny, rescale):
    """Head zeroing and per-position rescaling act on each row alone: the slot engine runs them (inside its CUDA
    graphs on a GPU) and gives the eager tokens under the same hooks."""
    model, tokenizer, _ = tiny
    Fixed.tokenizer = tokenizer
    with hooks.add_hooks(hooks.head_ablation_hooks(model, [(0, 0), (1, 1)], rescale=rescale)):
        assert not hooks.user_hooks(model) and hooks.row_local_hooks(model)
        assert scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=2).decode == (
            "static" if next(model.parameters()).is_cuda else "dynamic")
        expected = [reference(model, tokenizer, t, 6) for t in TEXTS]
        requests = [Fixed(t, 6) for t in TEXTS]
        run_engine(model, tokenizer, requests, "static", chunk=2)
    assert [r.tokens for r in requests] == expected
    unhooked = [reference(model, tokenizer, t, 6) for t in TEXTS]
    assert unhooked != expected  # the hooks changed the tokens, and they are gone
    assert not hooks.row_local_hooks(model)


def test_batch_rescaling_keeps_a_run_off_the_slot_engine(tiny):
    """Paper B's rescaling takes one norm over the whole batch, which in the slot engine would include free slots."""
    model, tokenizer, _ = tiny
    with hooks.add_hooks(hooks.head_ablation_hooks(model, [(0, 0)], rescale="batch")):
        assert hooks.user_hooks(model)
    capture: dict = {}
    with hooks.add_hooks(forward_hooks=hooks.capture_hooks({"last": hooks.decoder_layers(model)[-1]}, capture)):
        assert hooks.user_hooks(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graph_replay_runs_row_local_hooks(tiny_arch, monkeypatch):
    """On a GPU, a captured step replays the hooks' operations: in fp32 the graph's tokens equal the eager step's,
    with the hooks and without them (graphs are keyed by the hooks present)."""
    from lrmsafety.engine import slots

    model, tokenizer, _ = tiny_arch
    model = model.to("cuda")
    Fixed.tokenizer = tokenizer
    ablate = hooks.head_ablation_hooks(model, [(0, 0), (1, 1)])
    tokens = {}
    for graphs in (True, False):
        if not graphs:
            eager = slots.SlotEngine._eager_step
            monkeypatch.setattr(slots.SlotEngine, "_graph_step", lambda self, width, hooks=None: eager(self, width))
        for hooked in (False, True):
            requests = [Seeded(t, n, seed=11 * i) for i, (t, n) in enumerate(zip(TEXTS, [12, 5, 9, 7]))]
            with hooks.add_hooks(ablate if hooked else ()):
                run = scheduler.RefillScheduler(model, tokenizer, SAMPLED, slots=2, chunk=3)
                assert run.decode == "static"
                run.run(requests, lambda r: None)
            assert (run.engine.graph_steps > 0) == graphs
            tokens[graphs, hooked] = [r.tokens for r in requests]
    model.to("cpu")
    assert tokens[True, True] == tokens[False, True] and tokens[True, False] == tokens[False, False]
    assert tokens[True, True] != tokens[True, False]


def test_decode_choice(tiny, tmp_path):
    """auto: the DynamicCache on the CPU; static where the model cannot use slots is refused with the reason."""
    model, tokenizer, _ = tiny
    assert scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=2).decode == "dynamic"
    assert scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=2, decode="static").decode == "static"
    with pytest.raises(ValueError, match="decode"):
        scheduler.RefillScheduler(model, tokenizer, GREEDY, slots=2, decode="paged")
    sliding = build_tiny("GptOssForCausalLM", len(tokenizer))
    with pytest.raises(ValueError, match="sliding"):
        scheduler.RefillScheduler(sliding, tokenizer, GREEDY, slots=2, decode="static")


@pytest.mark.parametrize("mode", ["natural", "no_think", "zerothink", "lessthink", "morethink", "prefix"])
def test_every_thinking_mode_through_static_slots(tiny, mode, monkeypatch):
    """generate.rollouts gives the same greedy records on either engine, in every thinking mode."""
    model, tokenizer, spec = tiny
    frame = prompts(3)
    frame["thinking_prefix"] = ["I should", "Let me think about", "Hmm"]
    decoding = generate.Decoding(mode=mode, temperature=0.0, max_thinking_tokens=9, max_answer_tokens=4,
                                 morethink_extensions=2, batch_size=2, chunk_tokens=3, close_prefix=False)
    close = tokenizer.convert_tokens_to_ids("</think>")
    texts = {}
    for decode in ("dynamic", "static"):
        monkeypatch.setenv("LRMSAFETY_DECODE", decode)
        if mode == "morethink":  # the model closes at once, so that the continuation rounds run
            _biased(model, close)
        try:
            texts[decode] = generate.rollouts(model, tokenizer, spec, frame, decoding, progress=False)["text"].tolist()
        finally:
            model.lm_head.bias = None
    assert texts["static"] == texts["dynamic"] and all(texts["static"])


class Seeded(Fixed):
    """A Fixed request with its own seed: the scheduler's draws are keyed by (seed, tokens looked at so far)."""

    def __init__(self, text, n, seed):
        super().__init__(text, n)
        self.seed, self.n_drawn = seed, 0

    def advance(self, tokens, entropies):
        looked = tokens[: self.n - len(self.tokens)]
        self.n_drawn += len(looked)
        return super().advance(tokens, entropies)


SAMPLED = {"do_sample": True, "temperature": 1.0, "top_p": 0.95, "top_k": 0}


def test_seeded_rows_draw_the_same_tokens_on_either_engine_any_slots_or_order(tiny_arch):
    """Counter-based draws: per request the same tokens on the DynamicCache and slot engines, with 1, 2 or 3 slots,
    other chunk sizes, and the requests in reverse order (refills at other steps)."""
    model, tokenizer, _ = tiny_arch
    Fixed.tokenizer = tokenizer
    specs = [(t, n, 100 + i) for i, (t, n) in enumerate(zip(TEXTS + TEXTS[:2], [6, 3, 8, 4, 5, 7]))]
    results = []
    for decode, slots, chunk, order in [("dynamic", 2, 2, 1), ("static", 3, 3, 1), ("dynamic", 1, 5, -1),
                                        ("static", 2, 1, -1), ("dynamic", 6, 4, -1)]:
        requests = [Seeded(*s) for s in specs]
        run_engine(model, tokenizer, requests[::order], decode, slots=slots, chunk=chunk, sampling=SAMPLED)
        results.append([r.tokens for r in requests])
    assert all(r == results[0] for r in results[1:])
    assert results[0][0] != results[0][4]  # same text, other seed: other tokens


def test_seeded_rows_in_fixed_groups_draw_their_own_tokens(tiny):
    """refill=False: a row's tokens do not depend on its group (same seeds, other group sizes and orders)."""
    model, tokenizer, _ = tiny
    Fixed.tokenizer = tokenizer
    specs = [(t, n, 7 + i) for i, (t, n) in enumerate(zip(TEXTS, [5, 2, 6, 3]))]
    results = []
    for slots, order in [(4, 1), (1, 1), (3, -1)]:
        requests = [Seeded(*s) for s in specs]
        run = scheduler.RefillScheduler(model, tokenizer, SAMPLED, slots=slots, chunk=2, refill=False)
        run.run(requests[::order], lambda r: None)
        results.append([r.tokens for r in requests])
    assert results[1] == results[0] and results[2] == results[0]


class Recorded(Seeded):
    """A Seeded request that keeps the entropy of every distribution it drew from (a function of its logits)."""

    def __init__(self, text, n, seed):
        super().__init__(text, n, seed)
        self.entropies = []

    def advance(self, tokens, entropies):
        self.entropies += list(entropies[: self.n - len(self.tokens)])
        return super().advance(tokens, entropies)


def test_a_rows_logits_do_not_depend_on_its_batch(tiny):
    """Batch-invariant numerics (lrmsafety.numerics): a row's logits are bitwise the same alone, beside rows of other
    lengths (its cache then left-padded) and at other slot counts, so a resumed or side-by-side run samples it as a
    cold run does. Entropies are compared, being a function of the whole logit row."""
    model, tokenizer, _ = tiny
    Fixed.tokenizer = tokenizer
    specs = [(t, n, 40 + i) for i, (t, n) in enumerate(zip(TEXTS * 2, [24, 9, 30, 17, 12, 26, 5, 21]))]
    results = []
    for slots, chunk, order in [(1, 4, 1), (3, 5, -1), (8, 4, 1), (5, 2, -1)]:
        requests = [Recorded(*s) for s in specs]
        run = scheduler.RefillScheduler(model, tokenizer, SAMPLED, slots=slots, chunk=chunk, decode="dynamic",
                                        want_entropy=True)
        run.run(requests[::order], lambda r: None)
        results.append([(r.tokens, r.entropies) for r in requests])
    assert all(len(e) == n for (_, e), (_, n, _) in zip(results[0], specs))
    assert all(r == results[0] for r in results[1:])


def test_cpu_products_are_batch_invariant_once_a_model_is_loaded():
    """MKL's strict mode where it takes effect (Intel CPUs), else the cheapest fallback found invariant here
    (lrmsafety.numerics): either way, once a model is loaded through the registry or rollouts start, a product's row
    is bitwise the same at any row count; a setting of the user's own is kept."""
    import subprocess
    import sys

    from lrmsafety import numerics

    mode = numerics.use_batch_invariant_products()
    assert numerics.batch_invariant()
    assert mode == "mkl-strict" if numerics.mkl_batch_invariant() else mode in numerics.FALLBACKS
    code = ("import os, lrmsafety; from lrmsafety import numerics; mode = numerics.use_batch_invariant_products(); "
            "print(os.environ['MKL_CBWR'], mode, numerics.batch_invariant())")
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    fresh = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert fresh.split() == [f"{numerics.instruction_set()},STRICT", mode, "True"]
    own = subprocess.run([sys.executable, "-c", code], env={**env, "MKL_CBWR": "AUTO"}, capture_output=True,
                         text=True, check=True).stdout.split()
    assert own[0] == "AUTO" and (own[1] == "mkl-strict" or own[1] in numerics.FALLBACKS) and own[2] == "True"


@pytest.mark.parametrize("fallback", ["padded", "row-blocked"])
def test_the_fallback_products_are_torchs_linear_without_the_batch(fallback):
    """Each fallback, on any CPU: the values and shapes of torch's linear (bias, 1-d and 3-d inputs), torch's own
    product where gradients are recorded; the row-blocked one is batch invariant by construction (a row's result
    alone, among 2 to 200 rows and at any position), the padded one wherever the check finds it so."""
    from lrmsafety import numerics

    generator = torch.Generator().manual_seed(3)
    weight, bias = torch.randn(96, 256, generator=generator), torch.randn(96, generator=generator)
    rows = torch.randn(200, 256, generator=generator)
    linear = numerics.FALLBACKS[fallback]
    plain = numerics._plain()
    torch.testing.assert_close(linear(rows, weight, bias), plain(rows, weight, bias))
    torch.testing.assert_close(linear(rows[:2], weight, bias), plain(rows[:2], weight, bias))
    assert linear(rows[0], weight).shape == (96,)
    three = linear(rows[:12].reshape(3, 4, 256), weight, bias)
    assert three.shape == (3, 4, 96)
    trained = weight.clone().requires_grad_()
    linear(rows[:5], trained, bias).sum().backward()  # gradients: torch's own product, which autograd records
    assert trained.grad is not None and trained.grad.shape == weight.shape
    if fallback == "padded" and not numerics._invariant(linear):
        pytest.skip("this CPU's kernels differ above MIN_ROWS rows too: use_batch_invariant_products takes row-blocked")
    alone = linear(rows[:1], weight, bias)[0]
    for n in (2, 3, 4, 63, 64, 65, 129, 200):
        assert torch.equal(linear(rows[:n], weight, bias)[0], alone)
        assert torch.equal(linear(rows[:n].flip(0), weight, bias)[n - 1], alone)
    assert torch.equal(three[1, 2], linear(rows[6:7], weight, bias)[0])


def test_draws_inside_the_step_give_the_eager_draws(tiny_arch, monkeypatch):
    """The slot engine's draw as part of its captured step (every slot drawn, the live ones advanced: what a CUDA
    graph replays) gives each seeded request the tokens and entropies of the eager loop over the running rows. Run
    on the CPU with the step uncaptured, so it is the step's logic that is checked, not a graph."""
    from lrmsafety.engine import slots

    model, tokenizer, _ = tiny_arch
    Fixed.tokenizer = tokenizer
    specs = [(t, n, 40 + i) for i, (t, n) in enumerate(zip(TEXTS + TEXTS[:2], [6, 3, 8, 4, 5, 7]))]
    results, steps = {}, {}
    for in_step in (False, True):
        if in_step:  # graphs "wanted", but each capture gives none: _graph_step runs the sampled step eagerly
            monkeypatch.setattr(slots.SlotEngine, "graphs_wanted", property(lambda self: True, lambda self, v: None),
                                raising=False)
            monkeypatch.setattr(slots.SlotEngine, "_capture", lambda self, key: None)
            monkeypatch.setattr(slots.SlotEngine, "_sampled_forward", counted(slots.SlotEngine._sampled_forward, steps))
        requests = [WithEntropies(*s) for s in specs]
        run = scheduler.RefillScheduler(model, tokenizer, SAMPLED, slots=3, chunk=2, decode="static",
                                        want_entropy=True)
        run.run(requests, lambda r: None)
        results[in_step] = [(r.tokens, r.entropies) for r in requests]
    assert steps["calls"] > 10  # the sampled step ran
    assert results[True] == results[False]


class WithEntropies(Seeded):
    def __init__(self, text, n, seed):
        super().__init__(text, n, seed)
        self.entropies = []

    def advance(self, tokens, entropies):
        self.entropies += entropies[: self.n - len(self.tokens)]
        return super().advance(tokens, entropies)


def counted(function, tally):
    tally["calls"] = 0

    def wrapper(*args, **kwargs):
        tally["calls"] += 1
        return function(*args, **kwargs)
    return wrapper


def test_the_occupancy_benchmarks_stand_in_takes_the_engines_steps(tiny):
    """benchmarks/occupancy.py runs the scheduler's loop over a stand-in engine: it must take the decode steps and
    prefills a real engine takes on the same lengths (refills, chunks cut short by the longest row, the tail)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import occupancy

    model, tokenizer, _ = tiny
    Fixed.tokenizer = tokenizer
    lengths = [int(n) for n in torch.randint(1, 24, (40,), generator=torch.Generator().manual_seed(0))]
    real = run_engine(model, tokenizer, [Fixed("alpha beta", n) for n in lengths], "dynamic", slots=16, chunk=4)
    assert real.refill_at == 2  # 16 slots: a refill waits for two free slots
    stand_in, prefills = occupancy.occupancy(lengths, slots=16, chunk=4)
    assert prefills == real.prefills
    assert stand_in == pytest.approx(sum(lengths) / (real.steps * 16))
