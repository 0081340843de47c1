"""Sampling one token per row from last-position logits, and the entropy of the distribution; shared by the
refill scheduler's DynamicCache loop (:mod:`lrmsafety.engine.scheduler`) and the slot engine
(:mod:`lrmsafety.engine.slots`).

Counter-based sampling: with ``keys`` (one int64 per row, :func:`row_keys` of the sample's seed and the number of
tokens it has been given so far), each row's uniform draw is a hash of its key alone and its token the inverse CDF
of its filtered distribution, so a sample's tokens never depend on the rows beside it or on what ran before.

Top-p keeps, per row, the most likely tokens whose mass first reaches ``top_p`` (the sort rule of
:func:`filtered_logits`). On the CPU that rule runs as written, a sort of the whole vocabulary. On CUDA a sort of a
152k vocabulary costs over a millisecond per step, so there :func:`kernels.top_p_search` finds the same kept set
without sorting: the lowest kept logit is the smallest threshold at or below which the tokens hold more than
``1 - top_p`` of the mass, found by a search over the floats' bits (Triton kernels). There too the keyed draw's
inverse CDF runs as :func:`kernels.inverse_cdf` (chunk masses in float64, one chunk scanned) instead of a softmax and
a float64 cumulative sum over the vocabulary (``KERNEL_DRAW``); a kernel that does not build falls back to those.
"""

from __future__ import annotations

import logging

import torch

from . import kernels

log = logging.getLogger(__name__)

SORT_FREE = True  # on CUDA, top-p through kernels.top_p_search (False: the sort, as on the CPU)
# on CUDA, the keyed draw through kernels.inverse_cdf (True) or by softmax and cumsum, as on the CPU (False). The
# same tokens either way: tests/test_sampling.py in Triton's interpreter, and on a GPU
# benchmarks/realistic_rollouts.py --check (every seeded token of 64 rows over 143 steps the same)
KERNEL_DRAW = True


def _signed(value: int) -> int:
    """A 64-bit unsigned constant as the int64 of the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic: the sign bit is masked off after it)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function of ``x`` (int64 tensor, arithmetic modulo 2**64), elementwise."""
    z = x + _GOLDEN
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def row_keys(seeds: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The key of each row's next draw: its sample's seed (any int64) and its count of tokens so far, hashed
    together (the seed is hashed first, so keys of different seeds do not run into each other's counters)."""
    return splitmix64(splitmix64(seeds.long()) + counts.long())


def uniform(keys: torch.Tensor) -> torch.Tensor:
    """One float64 in [0, 1) per key: the top 53 bits of splitmix64(key)."""
    return _shr(splitmix64(keys.long()), 11).double() * (2.0 ** -53)


def filtered_logits(logits: torch.Tensor, sampling: dict) -> torch.Tensor:
    """Temperature, then top-k, then top-p (transformers' order); filtered-out tokens get -inf.

    Top-p keeps the tokens whose ascending cumulative probability exceeds ``1 - top_p`` (the most likely always):
    by a sort on the CPU, by :func:`kernels.top_p_search` (the same set without a sort) on CUDA when Triton is
    present.
    """
    logits = logits.float() / float(sampling.get("temperature", 1.0))
    top_k = int(sampling.get("top_k") or 0)
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    top_p = sampling.get("top_p")
    if top_p is not None and top_p < 1.0 and logits.is_cuda and SORT_FREE and kernels.available:
        logits = kernels.top_p_search(logits, top_p)
    elif top_p is not None and top_p < 1.0:
        ordered, order = logits.sort(dim=-1)
        remove = ordered.softmax(-1).cumsum(-1) <= 1 - top_p
        remove[:, -1] = False  # keep at least the most likely token
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return logits


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per row, the first token whose cumulative probability exceeds ``u`` times the row's total; a token of
    probability 0 is never chosen (its cumulative sum equals its predecessor's, and rounding at the top end falls
    back to the last token of positive probability)."""
    probs = probs.double()
    cdf = probs.cumsum(-1)
    target = (u.to(cdf.device, torch.float64) * cdf[:, -1]).unsqueeze(1)
    index = torch.searchsorted(cdf, target, right=True).squeeze(1)
    positive = probs > 0
    last = probs.shape[-1] - 1 - positive.flip(-1).int().argmax(-1)
    return torch.minimum(index, last)


def sample(logits: torch.Tensor, sampling: dict, generator: torch.Generator | None = None,
           keys: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row from the last-position logits, under transformers-style sampling arguments.

    With ``keys`` (int64, one per row) each row's draw is :func:`uniform` of its key and the token the inverse
    CDF of the row's filtered distribution; without, ``torch.multinomial`` on ``generator`` (shared by the rows).
    Greedy (``do_sample`` False or temperature 0) is the argmax either way.
    """
    if not sampling.get("do_sample", False) or not sampling.get("temperature", 1.0):
        return logits.argmax(-1)
    global KERNEL_DRAW
    filtered = filtered_logits(logits, sampling)
    if keys is not None and filtered.is_cuda and KERNEL_DRAW and kernels.available:
        try:  # the same draw, without the softmax
            return kernels.inverse_cdf(filtered, uniform(keys.to(logits.device)))
        except Exception as err:  # noqa: BLE001 (a kernel that does not build on this GPU: the formula serves)
            if isinstance(err, torch.cuda.OutOfMemoryError):
                raise
            log.warning("the inverse-CDF kernel failed (%s: %s); drawing by the softmax", type(err).__name__, err)
            KERNEL_DRAW = False
    probs = filtered.softmax(-1)
    if keys is not None:
        return inverse_cdf(probs, uniform(keys.to(logits.device)))
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)



def draw(logits: torch.Tensor, sampling: dict, generator: torch.Generator | None = None,
         seeds: torch.Tensor | None = None, counts: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row for the decode engines: from each row's own stream, keyed by its sample's seed and its
    count of tokens so far, when ``seeds`` is given (the caller then advances ``counts`` by one); else from the
    shared ``generator``."""
    if seeds is not None:
        return sample(logits, sampling, keys=row_keys(seeds, counts))
    return sample(logits, sampling, generator)

def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the model's next-token distribution at temperature 1."""
    logp = logits.float().log_softmax(-1)
    terms = (logp.exp() * logp).reshape(-1, logp.shape[-1])
    # torch splits a sum that yields one number across its threads (another order of additions) but sums each of
    # several rows whole: a lone row is summed beside a copy, so that its entropy is that of its row in any batch
    sums = terms.repeat(2, 1).sum(-1)[:1] if len(terms) == 1 else terms.sum(-1)
    return -sums.reshape(logits.shape[:-1])
