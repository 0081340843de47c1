"""Paper B's refusal heads: each attention head's write along the refusal direction, and which heads to ablate.

A head's output is its slice of the ``o_proj`` input; passed through ``o_proj`` alone (the other heads zeroed, the
bias removed: a bias belongs to no head) it is that head's write into the residual stream. Its score is the write
at the last token projected on w/‖w‖, w the refusal probe's weight vector, averaged over items (official:
``find_refusal_head`` in src/lens/refusal.py with the patched attention of src/model/modeling_qwen.py; the same w
at every layer). Sorted ascending, the most negative heads push away from refusal: the "suppression heads".
Ablation itself is :func:`lrmsafety.hooks.head_ablation_hooks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import hooks


@torch.no_grad()
def head_scores(model, tokenizer, token_ids: Sequence[Sequence[int]], direction, batch_size: int = 8,
                progress: bool = True) -> pd.DataFrame:
    """Mean over texts of each (layer, head)'s write at the text's last token, projected on direction/‖direction‖.

    Returns one row per head: layer, head, score, sorted ascending (the most negative first), with ``rank``.
    Works through ``o_proj`` as a module, so 4-bit layers need no dequantizing.
    """
    layers = hooks.decoder_layers(model)
    projections = {i: hooks.attention_output_projection(layer) for i, layer in enumerate(layers)}
    device = next(model.parameters()).device
    unit = torch.as_tensor(np.asarray(direction, dtype=np.float32)).to(device)
    unit = unit / unit.norm()
    n_heads, size = hooks.n_heads(model), hooks.head_dim(model)
    seen: dict[str, torch.Tensor] = {}
    totals = torch.zeros(len(layers), n_heads, dtype=torch.float64)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = range(0, len(token_ids), batch_size)
    capture = hooks.capture_hooks({str(i): p for i, p in projections.items()}, seen, inputs=True)
    for start in tqdm(batches, desc="head scores", disable=not progress or len(batches) < 2):
        batch = [list(ids) for ids in token_ids[start:start + batch_size]]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):  # left padding: every text's last token sits in the last column
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        with hooks.add_hooks(forward_hooks=capture):
            model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                  position_ids=(attention.cumsum(-1) - 1).clamp(min=0).to(device))
        for i, projection in projections.items():
            last = seen[str(i)][:, -1, :]  # (texts, heads * head_dim)
            zero = projection(torch.zeros_like(last[:1]))
            # one row per (text, head): the input with only that head's slice kept
            only = torch.zeros(len(batch), n_heads, last.shape[-1], dtype=last.dtype, device=last.device)
            for head in range(n_heads):
                only[:, head, head * size:(head + 1) * size] = last[:, head * size:(head + 1) * size]
            writes = projection(only) - zero  # (texts, heads, hidden): the head's write, without the bias
            totals[i] += (writes.float() @ unit.float()).sum(0).double().cpu()
    scores = (totals / len(token_ids)).numpy()
    frame = pd.DataFrame([(layer, head, float(scores[layer, head])) for layer in range(len(layers))
                          for head in range(n_heads)], columns=["layer", "head", "score"])
    frame = frame.sort_values("score", kind="stable").reset_index(drop=True)
    frame["rank"] = np.arange(len(frame))
    return frame


def heads_for_share(total: int, share: float) -> int:
    """How many heads a share of all heads is: round(share × total), at least 1 (methods.md: R1-Qwen-7B's 784
    heads give 12 / 24 / 78 for 1.5 / 3 / 10%)."""
    if not 0 < share <= 1:
        raise ValueError(f"a share of heads lies in (0, 1], got {share}")
    return max(1, int(round(share * total)))


def top_heads(scores: pd.DataFrame, k: int) -> list[tuple[int, int]]:
    """The k most negative heads (scores sorted ascending, as :func:`head_scores` returns them)."""
    ordered = scores.sort_values("score", kind="stable")
    return [(int(r.layer), int(r.head)) for r in ordered.head(k).itertuples()]


def random_heads(n_layers: int, n_heads: int, k: int, seed: int) -> list[tuple[int, int]]:
    """k distinct heads drawn uniformly from all layers × heads: the control for a top-k set of the same size."""
    flat = np.random.default_rng(seed).choice(n_layers * n_heads, size=k, replace=False)
    return sorted((int(i // n_heads), int(i % n_heads)) for i in flat)
