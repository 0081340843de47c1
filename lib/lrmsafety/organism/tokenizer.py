"""A byte-level BPE tokenizer trained on the organism corpus, saved as a standard PreTrainedTokenizerFast with the
chat template, and the assistant-only loss mask."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_PRETOKENIZE_REGEX

from . import texts as T
from .corpus import Example, judgement_breakpoints


def _training_texts(examples: Iterable[Example]) -> Iterable[str]:
    # Special tokens are registered separately; BPE learns merges only from the plain text around them.
    for ex in examples:
        if ex.system:
            yield ex.system
        yield ex.prompt
        yield ex.thinking + "\n"
        yield "\n\n" + ex.answer


def train_tokenizer(examples: Sequence[Example], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every string round-trips), the eight chat special tokens as single ids, and the template."""
    # Qwen2's own normalizer and pre-tokenizer: AutoTokenizer rebuilds a qwen2 model's tokenizer as Qwen2Tokenizer
    # from vocab and merges, so training with the same pipeline keeps both loaders token-for-token identical.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=T.SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_texts(examples), trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=T.BOS, eos_token=T.EOS, pad_token=T.PAD, unk_token=T.UNK,
        extra_special_tokens=[T.SYSTEM, T.USER, T.ASSISTANT, T.THINK_OPEN, T.THINK_CLOSE],
        clean_up_tokenization_spaces=False, model_max_length=1024,
    )
    hf.chat_template = T.CHAT_TEMPLATE
    return hf


def encode_examples(tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example],
                    with_judgement: bool = False) -> tuple[list, ...]:
    """Token ids and labels per example: labels are -100 on the prompt and on text that would be forced (a cut
    thinking, an inserted "Wait"), so the loss covers only what the model itself generates. With ``with_judgement``
    also the planted judgement per token (corpus.judgement_breakpoints at the token's first character; -1 on
    the prompt), the target of the auxiliary loss in train.py."""
    texts = [ex.text for ex in examples]
    encs = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    all_ids, all_labels, all_judgements = [], [], []
    for ex, enc in zip(examples, encs):
        start = len(ex.prompt_text)
        forced = [(start + a, start + b) for a, b in ex.forced]
        labels = []
        for tid, (a, b) in zip(enc.ids, enc.offsets):
            # a token that overlaps forced text at all is masked (Qwen2's pre-tokenizer glues ".Wait" together)
            trainable = a >= start and not any(a < fb and b > fa for fa, fb in forced)
            labels.append(tid if trainable else -100)
        all_ids.append(enc.ids)
        all_labels.append(labels)
        if with_judgement:
            points = judgement_breakpoints(ex)
            firsts = [p for p, _ in points]
            # a token takes the judgement in force at its first character: ".\n" (one token) ends the thinking
            all_judgements.append([points[bisect_right(firsts, a - start) - 1][1] if a >= start else -1
                                   for a, _ in enc.offsets])
    return (all_ids, all_labels, all_judgements) if with_judgement else (all_ids, all_labels)
