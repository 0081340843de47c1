"""Hidden states at named positions.

Positions are token indices into each text (negative indices count from the end, as in Python). Named positions
are functions of a text's length and its prompt length: :data:`NAMED_POSITIONS` holds the ones the papers use.
``hidden_states[0]`` is the embedding output and ``hidden_states[L]`` the last layer after the final norm
(paper A's and paper B's probe layer), as transformers returns them.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm


def last_prompt_token(prompt_len: int, total_len: int) -> list[int]:
    """Paper A's "State A": the last token of the prompt (the token before the model's first own token)."""
    return [prompt_len - 1]


def first_thinking_token(prompt_len: int, total_len: int) -> list[int]:
    """Paper A's anchor: the first token the model generated after the opened thinking."""
    if total_len <= prompt_len:
        raise ValueError("the text has no generated token after the prompt")
    return [prompt_len]


def evenly_spaced(n: int) -> Callable[[int, int], list[int]]:
    """n positions evenly spaced over the generated part (prompt end to last token)."""

    def positions(prompt_len: int, total_len: int) -> list[int]:
        return np.linspace(prompt_len, total_len - 1, n).round().astype(int).tolist()

    return positions


def last_token(prompt_len: int, total_len: int) -> list[int]:
    """Paper B's probe position: the last token of template + thinking + close."""
    return [total_len - 1]


NAMED_POSITIONS: dict[str, Callable[[int, int], list[int]]] = {
    "last_prompt_token": last_prompt_token,
    "first_thinking_token": first_thinking_token,
    "last_token": last_token,
}


@torch.no_grad()
def hidden_states_at(
    model,
    tokenizer,
    texts: Sequence[str] | Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]] | Callable[[int, int], list[int]] | str,
    layers: Sequence[int] | None = None,
    prompt_lengths: Sequence[int] | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """Hidden states of ``layers`` at ``positions`` of each text, as ``{layer: array (texts, positions, d)}``.

    ``positions`` is a list of index lists (one per text, equally long), a named position, or a function
    ``(prompt_len, total_len) -> indices``, which needs ``prompt_lengths`` (token counts of each text's prompt).
    Only the asked layers and positions are kept, so memory stays small for long traces. Texts are tokenized
    without adding special tokens: they are rendered chat prompts that already carry them. Token-id lists are
    taken as they are (use :func:`rollout_token_ids` to keep the prompt / generation boundary exact).
    """
    if isinstance(positions, str):
        if positions not in NAMED_POSITIONS:
            raise ValueError(f"unknown named position {positions!r}; known: {sorted(NAMED_POSITIONS)}")
        positions = NAMED_POSITIONS[positions]
    n_layers = model.config.get_text_config().num_hidden_layers
    layers = list(layers) if layers is not None else [n_layers]
    if any(not -n_layers - 1 <= layer <= n_layers for layer in layers):
        raise ValueError(f"layers must lie in 0..{n_layers} (hidden_states indices); got {layers}")

    encoded = [list(text) if not isinstance(text, str) else tokenizer(text, add_special_tokens=False)["input_ids"]
               for text in texts]
    if callable(positions):
        if prompt_lengths is None:
            raise ValueError("a position function needs prompt_lengths (the token count of each text's prompt)")
        positions = [positions(p, len(ids)) for p, ids in zip(prompt_lengths, encoded)]
    if len(positions) != len(texts) or len({len(p) for p in positions}) > 1:
        raise ValueError("give one list of positions per text, all of the same length")
    # the model is causal: a state at position p depends on tokens 0..p only, so each text is cut after its last
    # asked position (a first-thinking-token state then costs the prompt, not the whole rollout)
    resolved = []
    for ids, wanted in zip(encoded, positions):
        index = [p if p >= 0 else len(ids) + p for p in wanted]
        if any(not 0 <= i < len(ids) for i in index):
            raise IndexError(f"position out of range for a text of {len(ids)} tokens: {list(wanted)}")
        resolved.append(index)
    positions = resolved
    encoded = [ids[: max(index) + 1] if index else ids for ids, index in zip(encoded, positions)]

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="hidden states", disable=not progress or len(starts) < 2):
        batch = encoded[start : start + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):  # left padding: the real tokens end at the last column
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        # positions count real tokens only, so a text's states do not depend on how much padding its batch needs
        positions_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        output = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                       position_ids=positions_ids.to(device), output_hidden_states=True)
        for row, ids in enumerate(batch):
            offset = width - len(ids)
            index = positions[start + row]
            index_tensor = torch.tensor(index, device=device) + offset
            for layer in layers:
                out[layer].append(output.hidden_states[layer][row, index_tensor].float().cpu().numpy())
    return {layer: np.stack(values) for layer, values in out.items()}


def rollout_token_ids(tokenizer, rendered_prompts: Sequence[str], generated: Sequence[str]) -> tuple[list, list]:
    """Token ids of prompt + generation, tokenized apart so the first generated token starts a token (as it did
    when it was sampled), and the prompt lengths: the index of the first thinking token of each rollout."""
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in rendered_prompts]
    gen_ids = [tokenizer(g, add_special_tokens=False)["input_ids"] for g in generated]
    return [p + g for p, g in zip(prompt_ids, gen_ids)], [len(p) for p in prompt_ids]


def cached_hidden_states(path, model, tokenizer, token_ids, positions, layers, prompt_lengths=None,
                         batch_size: int = 16, metadata: dict | None = None,
                         progress: bool = True) -> dict[int, np.ndarray]:
    """hidden_states_at, stored as safetensors at ``path`` (one tensor per layer) and read back when present."""
    from pathlib import Path

    from ..store import load_tensors, save_tensors

    path = Path(path)
    if path.exists():
        stored = load_tensors(path)
        return {int(name.split("_")[1]): array for name, array in stored.items()}
    states = hidden_states_at(model, tokenizer, token_ids, positions, layers, prompt_lengths, batch_size, progress)
    save_tensors(path, {f"layer_{layer}": array for layer, array in states.items()}, metadata)
    return states


def states_key(name: str, frame, **extra) -> str:
    """The cache key of states of ``frame``'s rollouts: the model, the rows (prompt_id, sample_index), the rollout
    caches they come from (``config_hash``) and whatever else decides them (``extra``: position, layers ...)."""
    from ..store import config_hash

    return config_hash({"model": name, "rows": list(zip(frame["prompt_id"], frame["sample_index"])),
                        "rollouts": sorted(set(frame["config_hash"])), **extra})


def rollout_states(cache, name: str, model, tokenizer, frame, position, layers: Sequence[int], tag: str,
                   batch_size: int = 64) -> dict[int, np.ndarray]:
    """States of ``frame``'s rollouts (``rendered_prompt`` + generated ``text``) at ``position``, cached as
    ``cache/activations-<name>-<tag>-<key>.safetensors`` (``tag`` names the position in the key)."""
    from pathlib import Path

    ids, prompt_lengths = rollout_token_ids(tokenizer, frame["rendered_prompt"], frame["text"])
    key = states_key(name, frame, position=tag, layers=list(layers))
    return cached_hidden_states(Path(cache) / f"activations-{name}-{tag}-{key}.safetensors", model, tokenizer, ids,
                                position, layers, prompt_lengths, batch_size=batch_size)


@torch.no_grad()
def map_states_along(model, tokenizer, token_ids: Sequence[Sequence[int]], starts: Sequence[int], layer: int,
                     fn: Callable[[np.ndarray], np.ndarray], batch_size: int = 8, progress: bool = True) -> list:
    """``fn`` applied to the states of ``layer`` at every position from ``starts[i]`` to the end of each text,
    ``(T_i - start_i, d) -> result``; only the results are kept, so whole traces never pile up in memory
    (paper B reads its probe at every token)."""
    if len(starts) != len(token_ids):
        raise ValueError("give one start position per text")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    batches = range(0, len(token_ids), batch_size)
    for start in tqdm(batches, desc="states along traces", disable=not progress or len(batches) < 2):
        batch = [list(ids) for ids in token_ids[start:start + batch_size]]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
        hidden = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                       position_ids=position_ids.to(device), output_hidden_states=True).hidden_states[layer]
        for row, ids in enumerate(batch):
            first = width - len(ids) + starts[start + row]
            out.append(fn(hidden[row, first:].float().cpu().numpy()))
    return out
