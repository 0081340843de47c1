"""Prompt rendering with the real Qwen3 tokenizer and chat template, and split_reasoning for every format."""

import pytest
from transformers import AutoTokenizer

from lrmsafety import chat
from lrmsafety import registry as models


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


# One thinking/answer splitter per format, the papers' variants as named rules. The expected values below were
# recorded from the functions each rule replaces (chat.split_reasoning, judges.split_last_think,
# judges.split_paper_b, finetune.split_trace) before they were merged: edge cases per rule (no close, two closes,
# empty thinking, whitespace around the close).
SPLIT_TABLE = [
    # first_close
    ('first_close', '<think>\nplan\n</think>\n\nanswer', ('plan', 'answer')),
    ('first_close', 'no close at all', ('no close at all', '')),
    ('first_close', '  no close, padded \n', ('no close, padded', '')),
    ('first_close', '<think>a</think>b</think>\n\nanswer', ('<think>a', 'b</think>\n\nanswer')),
    ('first_close', 'a\n</think>\nb\n\n</think>\n\nc', ('a', 'b\n\n</think>\n\nc')),
    ('first_close', '</think>answer only', ('', 'answer only')),
    ('first_close', '<think></think>', ('<think>', '')),
    ('first_close', '\n</think>\n\n', ('', '')),
    ('first_close', '<think>\n\n</think>\n\nSure.  ', ('', 'Sure.')),
    ('first_close', 'thinking\n</think>', ('thinking', '')),
    ('first_close', '<think>\nx\n</think>\n\nI cannot.\n</think>\nSure.', ('x', 'I cannot.\n</think>\nSure.')),
    # last_close
    ('last_close', '<think>\nplan\n</think>\n\nanswer', ('\nplan', 'answer')),
    ('last_close', 'no close at all', ('no close at all', '')),
    ('last_close', '  no close, padded \n', ('  no close, padded \n', '')),
    ('last_close', '<think>a</think>b</think>\n\nanswer', ('a</think>b', 'answer')),
    ('last_close', 'a\n</think>\nb\n\n</think>\n\nc', ('a\n</think>\nb', 'c')),
    ('last_close', '</think>answer only', ('', 'answer only')),
    ('last_close', '<think></think>', ('', '')),
    ('last_close', '\n</think>\n\n', ('', '')),
    ('last_close', '<think>\n\n</think>\n\nSure.  ', ('', 'Sure.  ')),
    ('last_close', 'thinking\n</think>', ('thinking', '')),
    ('last_close', '<think>\nx\n</think>\n\nI cannot.\n</think>\nSure.', ('\nx\n</think>\n\nI cannot.', 'Sure.')),
    # paper_b
    ('paper_b', '<think>\nplan\n</think>\n\nanswer', ('\nplan', 'answer')),
    ('paper_b', 'no close at all', ('', 'no close at all')),
    ('paper_b', '  no close, padded \n', ('', '  no close, padded \n')),
    ('paper_b', '<think>a</think>b</think>\n\nanswer', ('a', 'b</think>\n\nanswer')),
    ('paper_b', 'a\n</think>\nb\n\n</think>\n\nc', ('a', 'b\n\n</think>\n\nc')),
    ('paper_b', '</think>answer only', ('', 'answer only')),
    ('paper_b', '<think></think>', ('', '')),
    ('paper_b', '\n</think>\n\n', ('', '')),
    ('paper_b', '<think>\n\n</think>\n\nSure.  ', ('', 'Sure.  ')),
    ('paper_b', 'thinking\n</think>', ('thinking', '')),
    ('paper_b', '<think>\nx\n</think>\n\nI cannot.\n</think>\nSure.', ('\nx', 'I cannot.\n</think>\nSure.')),
    # trace
    ('trace', '<think>\nplan\n</think>\n\nanswer', ('plan', 'answer')),
    ('trace', 'no close at all', ('', 'no close at all')),
    ('trace', '  no close, padded \n', ('', 'no close, padded')),
    ('trace', '<think>a</think>b</think>\n\nanswer', ('a', 'b</think>\n\nanswer')),
    ('trace', 'a\n</think>\nb\n\n</think>\n\nc', ('a', 'b\n\n</think>\n\nc')),
    ('trace', '</think>answer only', ('', 'answer only')),
    ('trace', '<think></think>', ('', '')),
    ('trace', '\n</think>\n\n', ('', '')),
    ('trace', '<think>\n\n</think>\n\nSure.  ', ('', 'Sure.')),
    ('trace', 'thinking\n</think>', ('thinking', '')),
    ('trace', '<think>\nx\n</think>\n\nI cannot.\n</think>\nSure.', ('x', 'I cannot.\n</think>\nSure.')),
]
LEGACY = {
    "first_close": lambda t: (lambda r: (r.thinking, r.answer))(chat.split_reasoning(t, chat.R1)),
    "last_close": lambda t: __import__("lrmsafety.judges", fromlist=["x"]).split_last_think(t),
    "paper_b": lambda t: __import__("lrmsafety.judges", fromlist=["x"]).split_paper_b(t),
    "trace": lambda t: __import__("lrmsafety.analysis.finetune", fromlist=["x"]).split_trace(t),
}


@pytest.mark.parametrize("rule,text,expected", SPLIT_TABLE)
def test_split_rules_keep_their_edge_behaviour(rule, text, expected):
    assert LEGACY[rule](text) == expected


@pytest.mark.parametrize("rule,text,expected", SPLIT_TABLE)
def test_chat_split_is_the_one_splitter(rule, text, expected):
    parts = chat.split(text, chat.R1, rule)
    assert (parts.thinking, parts.answer) == expected
    assert parts.closed == ("</think>" in text)


def test_chat_split_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown split rule"):
        chat.split("x", chat.R1, "middle")
