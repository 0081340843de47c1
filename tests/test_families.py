"""Every family in the registry, on a tiny random-weight model of its real architecture class:
load (through load_model, from a local folder) -> render -> generate -> split_reasoning -> hidden states ->
head ablation changes the output and leaves it unchanged once removed."""

import pytest
import torch
from tiny_models import ARCHITECTURE_TYPES, build_tiny, tokenizer_for

from lrmsafety import chat
from lrmsafety import registry as models
from lrmsafety.analysis import activations
from lrmsafety.engine import hooks

REASONING_FAMILIES = sorted(
    {(spec.architecture, spec.thinking) for spec in models.REGISTRY.values() if spec.role == "reasoner"}
)
GUARD_ARCHITECTURES = sorted({spec.architecture for spec in models.REGISTRY.values() if spec.role == "guard"})


def test_every_registry_architecture_has_a_tiny_fixture():
    missing = {spec.architecture for spec in models.REGISTRY.values()} - set(ARCHITECTURE_TYPES)
    assert not missing


@pytest.fixture(scope="module")
def saved_family(tmp_path_factory, qwen3_tokenizer_path):
    cache = {}

    def get(architecture, thinking):
        if (architecture, thinking) not in cache:
            folder = tmp_path_factory.mktemp(f"{architecture}-{thinking}")
            tokenizer = tokenizer_for(thinking if thinking in ("qwen3", "harmony", "phi4", "thinking-only") else "r1")
            tokenizer.save_pretrained(folder)
            build_tiny(architecture, len(tokenizer), folder)
            cache[(architecture, thinking)] = folder
        return cache[(architecture, thinking)]

    return get


@pytest.mark.parametrize("architecture,thinking", REASONING_FAMILIES)
def test_family_end_to_end(saved_family, architecture, thinking):
    folder = saved_family(architecture, thinking)
    model, tokenizer, _ = models.load_model(str(folder), quantization="fp32")
    assert type(model).__name__.startswith(architecture.replace("ForConditionalGeneration", ""))
    fmt = chat.get_format(thinking)
    question = "How do I bake bread?"

    think = chat.render_prompt(tokenizer, fmt, question, mode="think")
    assert question in think and think.endswith(fmt.open)
    no_think = chat.render_prompt(tokenizer, fmt, question, mode="no_think")
    assert fmt.close in no_think and not no_think.endswith(fmt.open)
    prefix = "The user asks about bread. This is harmless."
    prefilled = chat.render_prompt(tokenizer, fmt, question, prefill=chat.force_close(prefix, fmt))
    assert prefilled.startswith(think) and prefilled.endswith(fmt.force_close)

    inputs = tokenizer([prefilled], return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=False)
    split = chat.split_reasoning(prefilled[len(think):] + answer, fmt)
    assert split.closed and split.thinking == prefix and split.answer == answer.strip()

    prompt_len = len(tokenizer(think, add_special_tokens=False)["input_ids"])
    text = think + prefix
    states = activations.hidden_states_at(model, tokenizer, [text, text + " More."], "first_thinking_token",
                                          layers=[0, 2], prompt_lengths=[prompt_len, prompt_len])
    assert states[2].shape == (2, 1, 64)
    assert torch.allclose(torch.tensor(states[2][0]), torch.tensor(states[2][1]), atol=1e-4)  # causal: same prefix

    ids = inputs["input_ids"]
    with torch.no_grad():
        before = model(ids).logits
        with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [(0, 1), (1, 3)])):
            ablated = model(ids).logits
        after = model(ids).logits
    assert not torch.allclose(before, ablated)
    assert torch.equal(before, after)


@pytest.mark.parametrize("architecture", GUARD_ARCHITECTURES)
def test_guard_architectures_load_and_generate(tmp_path, qwen3_tokenizer_path, architecture):
    tokenizer = tokenizer_for("qwen3")
    tokenizer.save_pretrained(tmp_path)
    build_tiny(architecture, len(tokenizer), tmp_path)
    model, tokenizer, _ = models.load_model(str(tmp_path), quantization="fp32")
    ids = tokenizer(["User: hello\nAgent: hi"], return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3


def test_ablation_hooks_are_removed_when_the_block_raises(tmp_path, qwen3_tokenizer_path):
    model = build_tiny("Qwen2ForCausalLM", 1000)
    with pytest.raises(RuntimeError):
        with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [(0, 0)])):
            raise RuntimeError("boom")
    projection = hooks.attention_output_projection(hooks.decoder_layers(model)[0])
    assert not projection._forward_pre_hooks


def test_rescaled_ablation_keeps_the_norm():
    model = build_tiny("LlamaForCausalLM", 1000)
    projection = hooks.attention_output_projection(hooks.decoder_layers(model)[1])
    seen = {}
    with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [(1, 0)], rescale="position"),
                         forward_hooks=hooks.capture_hooks({"o_in": projection}, seen, inputs=True)):
        model(torch.tensor([[5, 6, 7]]))
    ablated_input = seen["o_in"]
    assert torch.all(ablated_input[..., :16] == 0)
    with hooks.add_hooks(forward_hooks=hooks.capture_hooks({"o_in": projection}, seen, inputs=True)):
        model(torch.tensor([[5, 6, 7]]))
    assert torch.allclose(ablated_input.norm(dim=-1), seen["o_in"].norm(dim=-1), rtol=1e-4)


def test_hidden_states_do_not_depend_on_padding(saved_family):
    folder = saved_family("Qwen2ForCausalLM", "r1")
    model, tokenizer, _ = models.load_model(str(folder), quantization="fp32")
    short, long = "A short text.", "A much longer text that forces the short one to be padded on the left side."
    together = activations.hidden_states_at(model, tokenizer, [short, long], [[-1], [-1]], layers=[2])[2]
    alone = activations.hidden_states_at(model, tokenizer, [short], [[-1]], layers=[2])[2]
    assert torch.allclose(torch.tensor(together[0]), torch.tensor(alone[0]), atol=1e-4)
