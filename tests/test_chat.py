"""Prompt rendering with the real Qwen3 tokenizer and chat template, and split_reasoning for every format."""

import pytest
from transformers import AutoTokenizer

from lrmsafety import chat, models


@pytest.fixture(scope="module")
def qwen3(qwen3_tokenizer_path):
    return AutoTokenizer.from_pretrained(qwen3_tokenizer_path)


def test_qwen3_think_prompt_opens_the_thinking(qwen3):
    text = chat.render_prompt(qwen3, chat.QWEN3, "Hi there")
    assert text.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\n")


def test_qwen3_no_think_inserts_the_empty_think_block(qwen3):
    text = chat.render_prompt(qwen3, chat.QWEN3, "Hi there", mode="no_think")
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert text.count("<think>") == 1


def test_qwen3_prefill_and_system_prompt(qwen3):
    text = chat.render_prompt(qwen3, chat.QWEN3, "Hi", prefill="Let's think about safety first.",
                              system="You are a helpful assistant.")
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert text.endswith("<think>\nLet's think about safety first.")


def test_qwen3_special_tokens_are_single_ids(qwen3):
    for token in ("<think>", "</think>", "<|im_start|>", "<|im_end|>"):
        assert len(qwen3(token, add_special_tokens=False)["input_ids"]) == 1


def test_safechain_zerothink_and_lessthink_strings():
    # exact strings of methods.md section 3
    assert chat.ZEROTHINK_PREFILL == "\n</think>\n\n"
    assert chat.LESSTHINK_PREFILL.startswith("Okay, the user ask for this, I can answer it without thinking much. ")
    assert chat.R1.force_close == "\n</think>\n" and chat.HARMONY.force_close.endswith("<|channel|>final<|message|>")


@pytest.mark.parametrize("fmt", [chat.R1, chat.QWEN3, chat.THINKING_ONLY, chat.PHI4])
def test_split_reasoning_think_tag_families(fmt):
    result = chat.split_reasoning("The user wants bread.\nFine.\n</think>\n\nHere is a recipe.<|im_end|>", fmt,
                                  eos_strings=("<|im_end|>",))
    assert result == chat.Reasoning("The user wants bread.\nFine.", "Here is a recipe.", True)
    unclosed = chat.split_reasoning("Still thinking about it", fmt)
    assert unclosed == chat.Reasoning("Still thinking about it", "", False)
    # models that write the opener themselves (Phi-4)
    assert chat.split_reasoning("<think>\nhm\n</think>\nok", fmt).answer == "ok"


def test_split_reasoning_harmony():
    text = "The user asks. Fine.<|end|><|start|>assistant<|channel|>final<|message|>Sure.<|return|>"
    assert chat.split_reasoning(text, chat.HARMONY) == chat.Reasoning("The user asks. Fine.", "Sure.", True)
    assert not chat.split_reasoning("analysis only", chat.HARMONY).closed


def test_every_reasoner_has_a_known_thinking_format():
    for spec in models.REGISTRY.values():
        if spec.role == "reasoner":
            assert spec.thinking_format.name == spec.thinking
        else:
            with pytest.raises(ValueError, match="without a thinking format"):
                spec.thinking_format


def test_unknown_format_and_mode_errors(qwen3):
    with pytest.raises(ValueError, match="known formats"):
        chat.get_format("llama")
    with pytest.raises(ValueError, match="'think' or 'no_think'"):
        chat.render_prompt(qwen3, chat.QWEN3, "x", mode="maybe")
