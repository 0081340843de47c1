"""The refill scheduler's DynamicCache engine (:mod:`lrmsafety.engine.scheduler`): the running rows in one
DynamicCache whose plain layers write each decode step in place (``growing_cache``), new rows merged by left padding,
finished rows dropped by index. It works everywhere (CPU, 4-bit, forward hooks, sliding-window layers); the static
slot engine (:mod:`lrmsafety.engine.slots`) is the GPU's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .sampling import draw, entropy


@dataclass
class _Batch:
    """The running rows: their KV cache, left-padded attention mask, next position and last (unfed) token."""

    cache: object
    mask: torch.Tensor  # [rows, cached length], 0 on left padding
    positions: torch.Tensor  # [rows] position id of the next token fed
    last: torch.Tensor  # [rows] the last sampled token, not in the cache yet
    seeds: torch.Tensor | None = None  # [rows] each row's sample seed (None: the shared generator)
    counts: torch.Tensor | None = None  # [rows] each row's count of tokens given, the key of its next draw


@functools.cache
def _growing_layer_class():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A DynamicLayer whose keys and values are views of a buffer with spare columns: a decode step writes its
        column in place, where DynamicLayer concatenates the whole cache into a new tensor at every step (on the
        CPU that copy was most of a decode step's time). Anything that replaces ``keys`` (row selection, merging,
        trimming) is adopted into a new buffer at the next update."""

        spare = 128  # columns added beyond what an update needs, when the buffer is (re)allocated

        def _owns_keys(self) -> bool:
            buffer = getattr(self, "_key_buffer", None)
            return (buffer is not None and self.keys.dim() == 4 and self.keys.data_ptr() == buffer.data_ptr()
                    and self.keys.shape[:2] == buffer.shape[:2]
                    and self.values.data_ptr() == self._value_buffer.data_ptr())

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length = self.keys.shape[-2] if self.keys.dim() == 4 else 0
            end = length + key_states.shape[-2]
            if not self._owns_keys() or end > self._key_buffer.shape[-2]:
                shape = (*key_states.shape[:2], end + self.spare, key_states.shape[-1])
                keys, values = key_states.new_empty(shape), value_states.new_empty(shape)
                if length:
                    keys[:, :, :length], values[:, :, :length] = self.keys, self.values
                self._key_buffer, self._value_buffer = keys, values
            self._key_buffer[:, :, length:end] = key_states
            self._value_buffer[:, :, length:end] = value_states
            self.keys, self.values = self._key_buffer[:, :, :end], self._value_buffer[:, :, :end]
            return self.keys, self.values

    return GrowingLayer


def growing_cache(config):
    """A DynamicCache for ``config`` whose plain layers write in place (GrowingLayer); other layers (sliding
    windows) stay as transformers makes them."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    cache.layers = [_growing_layer_class()() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def _plain_cache(cache) -> bool:
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) in (DynamicLayer, _growing_layer_class()) for layer in getattr(cache, "layers", [None]))


def _left_pad(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _merge(a: _Batch | None, b: _Batch) -> _Batch:
    """Rows of ``a`` then rows of ``b`` in one batch; the shorter cache is left-padded (masked)."""
    if a is None:
        return b
    length = max(a.mask.shape[1], b.mask.shape[1])
    for layer_a, layer_b in zip(a.cache.layers, b.cache.layers):
        layer_a.keys = torch.cat([_left_pad(layer_a.keys, length, -2), _left_pad(layer_b.keys, length, -2)])
        layer_a.values = torch.cat([_left_pad(layer_a.values, length, -2), _left_pad(layer_b.values, length, -2)])
    keyed = a.seeds is not None and b.seeds is not None
    return _Batch(a.cache, torch.cat([_left_pad(a.mask, length, 1), _left_pad(b.mask, length, 1)]),
                  torch.cat([a.positions, b.positions]), torch.cat([a.last, b.last]),
                  torch.cat([a.seeds, b.seeds]) if keyed else None,
                  torch.cat([a.counts, b.counts]) if keyed else None)


def _select(batch: _Batch, keep: list[int]) -> _Batch | None:
    """Keep some rows, and drop the leading cache columns that are padding in every kept row."""
    if not keep:
        return None
    if len(keep) == batch.mask.shape[0]:
        return batch
    index = torch.tensor(keep, device=batch.mask.device)
    batch.cache.batch_select_indices(index)
    mask = batch.mask[index]
    used = mask.any(0).nonzero()
    start = int(used[0]) if len(used) else 0
    if start and _plain_cache(batch.cache):
        for layer in batch.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
        mask = mask[:, start:]
    keyed = batch.seeds is not None
    return _Batch(batch.cache, mask, batch.positions[index], batch.last[index],
                  batch.seeds[index] if keyed else None, batch.counts[index] if keyed else None)


class _DynamicEngine:
    """The running rows in one DynamicCache: merged by left padding, finished rows dropped by index."""

    def __init__(self, scheduler):  # a RefillScheduler: its model, sampling settings and generator
        self.model, self.sampling, self.generator = scheduler.model, scheduler.sampling, scheduler.generator
        self.want_entropy = scheduler.want_entropy
        self.batch: _Batch | None = None

    @property
    def rows(self) -> int:
        return 0 if self.batch is None else self.batch.mask.shape[0]

    def mergeable(self) -> bool:
        return self.batch is None or _plain_cache(self.batch.cache)

    def add(self, new) -> None:  # a scheduler._Prefilled
        cache, mask = new.cache, new.mask
        if len(new.rows) > mask.shape[0] or new.rows != list(range(mask.shape[0])):
            rows = torch.tensor(new.rows, device=mask.device)  # K samples of one text: its cache repeated
            cache.batch_select_indices(rows)
            mask = mask[rows]
        seeds, counts = new.seeds, new.counts
        self.batch = _merge(self.batch, _Batch(cache, mask, mask.sum(-1), new.first, seeds, counts))

    def select(self, keep: list[int]) -> None:
        self.batch = _select(self.batch, keep)

    def decode(self, steps: int) -> tuple[list[list[int]], list[list[float]] | None]:
        """``steps`` decode steps; per row, the tokens sampled and the entropies they were sampled at."""
        batch = self.batch
        out, ents = [], []
        for _ in range(steps):
            batch.mask = torch.cat([batch.mask, batch.mask.new_ones(batch.mask.shape[0], 1)], dim=1)
            logits = self.model(input_ids=batch.last[:, None], attention_mask=batch.mask,
                                position_ids=batch.positions[:, None], past_key_values=batch.cache,
                                use_cache=True).logits[:, -1]
            if self.want_entropy:
                ents.append(entropy(logits))
            batch.last = draw(logits, self.sampling, self.generator, batch.seeds, batch.counts)
            if batch.counts is not None:  # each row's own stream advances by one token
                batch.counts = batch.counts + 1
            batch.positions = batch.positions + 1
            out.append(batch.last)
        return torch.stack(out, 1).tolist(), (torch.stack(ents, 1).tolist() if ents else None)
