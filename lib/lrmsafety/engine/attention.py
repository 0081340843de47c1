"""Attention on the CPU: batch invariant, and without copying the KV cache at every decode step.

transformers' ``sdpa`` attention has two costs on the CPU. Its fused kernel splits the keys into blocks and
vector lanes counted from the first column, so a row's sums round differently when its batch mates pad it on the
left by another width: its logits move by about 1e-6, and a seeded sample resumed from a cache, or generated beside
other prompts, now and then draws a different token (:mod:`lrmsafety.numerics`). And whenever a padding mask is
present it repeats each key/value head for its query group (``repeat_kv``, a full copy of the cache; 37% of the
organisms' decode time).

:func:`cpu_attention_forward` is the plain formula as matrix products (scores, softmax, weighted values), with each
key/value head read once for its query group. Masked columns get the dtype's lowest value, so their weights are
exactly 0 and their values add exact zeros; with MKL's strict products (:mod:`lrmsafety.numerics`) a row's output
is then bitwise the same whatever width its batch pads it to and whatever rows sit beside it. Keys narrower than
``MIN_WIDTH`` are padded to it (masked): below that, torch takes other code paths whose sums and exponentials round
differently (a plain loop for batched products of fewer than 400 multiply-adds, a scalar softmax for rows narrower
than one vector register). Rows are taken in
groups whose scores fit in ``MAX_SCORES`` floats (a long prefill of many rows would otherwise hold them all). It is
used on the CPU only; on a GPU transformers' own choice stands.
"""

from __future__ import annotations

import torch

NAME = "lrmsafety_cpu"
MAX_SCORES = 1 << 25  # floats of attention scores held at once (128 MiB in float32)
MIN_WIDTH = 64  # narrower keys are padded to this width (masked): see the module docstring


def _additive(mask, q_len: int, width: int, dtype, device) -> torch.Tensor | None:
    """The mask as ``[rows or 1, 1, q_len, width]`` additive values (0 to keep, the dtype's lowest to drop)."""
    low = torch.finfo(dtype).min
    if mask is None:
        if q_len == 1:
            return None
        # no mask from transformers means causal without padding: query i sits at column width - q_len + i
        keep = torch.ones(q_len, width, dtype=torch.bool, device=device).tril(width - q_len)
        return torch.zeros((), dtype=dtype, device=device).masked_fill(~keep, low)[None, None]
    if mask.dtype == torch.bool:
        return torch.zeros((), dtype=dtype, device=device).masked_fill(~mask, low)
    return mask.to(dtype).clamp_min(low)  # -inf would make a fully masked (padding) query row NaN


def cpu_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """Same contract as transformers' sdpa_attention_forward (query: batch, heads, q, d; key/value: batch,
    kv_heads, k, d); returns (batch, q, heads, d) and no attention weights."""
    if any(kwargs.get(k) is not None for k in ("s_aux", "position_bias", "softcap", "sliding_window")):
        raise NotImplementedError("this attention has no attention sinks, position bias, soft-capping or sliding "
                                  "window: load the model with eager")
    if dropout and module.training:
        raise NotImplementedError("this attention is for inference: train with sdpa or eager")
    rows, heads, q_len, dim = query.shape
    kv_heads, width = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    scale = scaling if scaling is not None else dim ** -0.5
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    mask = (_additive(attention_mask, q_len, width, query.dtype, query.device)
            if attention_mask is not None or causal else None)
    if width < MIN_WIDTH:  # masked columns on the right, so that every product and softmax takes its one path
        extra = MIN_WIDTH - width
        key, value = (torch.nn.functional.pad(t, (0, 0, 0, extra)) for t in (key, value))
        if mask is None:
            mask = torch.zeros(1, 1, q_len, width, dtype=query.dtype, device=query.device)
        mask = torch.nn.functional.pad(mask, (0, extra), value=torch.finfo(query.dtype).min)
        width = MIN_WIDTH
    # query head h uses key/value head h // groups (transformers' repeat_kv order): [rows, kv, groups * q, d]
    q = (query * scale).reshape(rows, kv_heads, groups * q_len, dim)
    outs = []
    step = max(1, MAX_SCORES // (heads * q_len * width))
    for start in range(0, rows, step):
        part = slice(start, start + step)
        scores = torch.matmul(q[part], key[part].transpose(-1, -2))
        if mask is not None:
            m = mask[part] if mask.shape[0] > 1 else mask
            scores = (scores.view(-1, kv_heads, groups, q_len, width) + m[:, :, None]).view(scores.shape)
        outs.append(torch.matmul(scores.softmax(-1), value[part]))
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    out = out.view(rows, heads, q_len, dim)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, cpu_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # the same masks as sdpa


def not_plain(config) -> str | None:
    """Why a model's attention is not the plain formula over every earlier position (None when it is): the
    attentions that :func:`cpu_attention_forward` and the slot cache (:mod:`lrmsafety.engine.slots`) cannot stand in
    for, such as sliding windows, other layer types and logit soft-capping."""
    config = config.get_text_config()
    types = getattr(config, "layer_types", None) or ["full_attention"]
    if any(t != "full_attention" for t in types):
        return f"attention layers of type {sorted(set(types) - {'full_attention'})}"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "a sliding attention window"
    if getattr(config, "attn_logit_softcapping", None):
        return "attention logit soft-capping"
    return None


def use_cpu_attention(model) -> bool:
    """Switch a CPU model that uses sdpa or eager attention to :func:`cpu_attention_forward`; True if switched.
    Models whose attention is not plain (:func:`not_plain`) keep their own."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if not (on_cpu and not_plain(model.config) is None and model.config._attn_implementation in ("sdpa", "eager")):
        return False
    register()
    model.set_attn_implementation(NAME)
    return True
