"""The attention the slot engine (:mod:`lrmsafety.engine.slots`) routes a model's layers to during a decode step.

One query token per row over that row's slot of the cache. :func:`slot_attention` is the formula as matrix products
over all attended columns (the CPU, and CUDA without the kernel); :func:`fused_slot_attention` calls
:func:`kernels.decode_attention`, which reads each row's own columns ``0 .. position`` only (CUDA, bf16 and fp16).
Both read each key-value head once for its group of query heads.
"""

from __future__ import annotations

import contextlib

import torch

from . import kernels

ATTENTION_NAME = "lrmsafety_slots"
FUSED_NAME = "lrmsafety_slots_fused"
FUSED = True  # on CUDA, attend through kernels.decode_attention (False: the formula, as on the CPU)


def slot_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, sliding_window=None,
                   **kwargs):
    """One query token per row over that row's cached columns; ``attention_mask`` is additive, ``[rows,1,1,L]``.

    Grouped-query heads are handled by a reshape (query head ``h`` uses key-value head ``h // groups``, as
    transformers' ``repeat_kv`` orders them), so the keys and values are read once per key-value head.
    """
    if sliding_window is not None:
        raise ValueError("the slot cache does not handle sliding-window attention")
    rows, heads, q_len, dim = query.shape
    if q_len != 1:
        raise ValueError("the slot cache's attention decodes one token per row")
    kv_heads = key.shape[1]
    scale = scaling if scaling is not None else dim ** -0.5
    q = (query * scale).reshape(rows, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(q, key.transpose(-1, -2)).float() + attention_mask
    probs = scores.softmax(-1).to(value.dtype)
    out = torch.matmul(probs, value)  # [rows, kv_heads, groups, dim]
    return out.reshape(rows, 1, heads, dim), None


def fused_slot_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                         sliding_window=None, position_ids=None, **kwargs):
    """:func:`slot_attention` through :func:`kernels.decode_attention` (CUDA): each row attends to its columns up to
    its position (``position_ids``, which the slot engine passes; the mask says the same and is not read)."""
    if sliding_window is not None:
        raise ValueError("the slot cache does not handle sliding-window attention")
    rows, heads, q_len, dim = query.shape
    if q_len != 1 or position_ids is None:
        raise ValueError("the fused slot attention decodes one token per row at the given positions")
    scale = scaling if scaling is not None else dim ** -0.5
    out = kernels.decode_attention(query[:, :, 0], key, value, position_ids[:, 0], scale)
    return out.reshape(rows, 1, heads, dim), None


def fused_attention_serves(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the slot engine on this device and dtype attends through :func:`kernels.decode_attention`."""
    return FUSED and kernels.available and device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)


def register() -> None:
    """Make both attentions known to transformers by name (what :func:`routed` sets)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, slot_attention)
    AttentionInterface.register(FUSED_NAME, fused_slot_attention)


@contextlib.contextmanager
def routed(model, name: str = ATTENTION_NAME):
    """Route the model's attention layers to the slot attention ``name`` for the duration of the block."""
    config = model.config
    before = config._attn_implementation_internal
    config._attn_implementation_internal = name
    try:
        yield
    finally:
        config._attn_implementation_internal = before
