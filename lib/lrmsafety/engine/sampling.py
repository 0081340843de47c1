"""Sampling one token per row from last-position logits, and the entropy of the distribution; shared by the
refill scheduler's DynamicCache loop (:mod:`lrmsafety.engine.scheduler`) and the slot engine
(:mod:`lrmsafety.engine.slots`)."""

from __future__ import annotations

import torch


def sample(logits: torch.Tensor, sampling: dict, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from the last-position logits, under transformers-style sampling arguments."""
    if not sampling.get("do_sample", False) or not sampling.get("temperature", 1.0):
        return logits.argmax(-1)
    logits = logits.float() / float(sampling.get("temperature", 1.0))
    top_k = int(sampling.get("top_k") or 0)
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    top_p = sampling.get("top_p")
    if top_p is not None and top_p < 1.0:
        ordered, order = logits.sort(dim=-1)
        remove = ordered.softmax(-1).cumsum(-1) <= 1 - top_p
        remove[:, -1] = False  # keep at least the most likely token
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the model's next-token distribution at temperature 1."""
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)
