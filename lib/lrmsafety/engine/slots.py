"""A fixed-slot KV cache and a decode step of fixed shapes, for the refill scheduler on a GPU.

The DynamicCache path (:mod:`lrmsafety.engine.scheduler`) concatenates the cache at every step and every merge, and its
decode step is a plain eager ``model(...)`` call: transformers' Python around ~30 kernels per layer costs more than
the GPU work itself. Here instead:

- every layer's cache is one preallocated ``[slots, kv_heads, capacity, head_dim]`` tensor per keys and values;
  row ``s`` of the batch is slot ``s``, and a request's tokens sit at columns ``0 .. length-1`` of its slot, so its
  position id is its column (no left padding once a row is in its slot);
- a decode step writes each row's new key and value at that row's own position (:class:`SlotCache`), and
  attends over the first ``width`` columns with a per-row mask built from the positions (columns past a row's
  position are masked); ``width`` is the longest live row rounded up to a bucket, so a step has fixed shapes;
- the attention reads each key-value head once for its group of query heads (transformers' sdpa path with an
  explicit mask repeats the key-value heads for every query head first). On the CPU it is the formula as matrix
  products over all ``width`` columns (:mod:`slot_attention`); on CUDA, for bf16 and fp16 models, a Triton kernel
  (:func:`kernels.decode_attention`, split over the columns as in flash decoding) reads each row's own columns
  ``0 .. position`` only, so a short row beside a long one costs its own length, not the longest row's, and the
  scores stay in float32 instead of being rounded to the model's dtype first;
- on CUDA, without user hooks, each bucket's step is captured once as a CUDA graph and replayed, with the draw of
  each slot's token when the rows carry seeds (the counter-based draw of :mod:`sampling`, keyed by the slot's seed
  and token count: the eager path's tokens), and with the norms, rotary embeddings and MLP activations fused
  (:mod:`fusion`);
- newly admitted requests are prefilled separately (a batched DynamicCache forward, identical texts once) and their
  KV is copied into free slots; a finished row frees its slot; the capacity grows (graphs are re-captured) when a
  row would outgrow it.

Hooks marked ``row_local`` (a row's output depends on that row alone: head zeroing, per-position rescaling) run
inside the step, and a CUDA graph captured with them replays their tensor operations; the captured graphs are keyed
by the hooks present, so a step never replays hooks that were since removed. Other user hooks (paper B's rescaling
by one norm over the whole batch, activation capture) keep a run on the DynamicCache path, where the batch holds the
live rows only and every step runs eagerly. Models with sliding-window or other non-plain
attention layers, quantized models and multimodal configurations also stay on the DynamicCache path.
"""

from __future__ import annotations

import logging

import torch

from . import attention, fusion
from .hooks import hook_census, row_local_hooks
from .sampling import draw, entropy
from .slot_attention import ATTENTION_NAME, FUSED_NAME, fused_attention_serves, register, routed

log = logging.getLogger(__name__)

SAMPLE_IN_GRAPH = True  # on CUDA with keyed rows, the draw is part of the captured step (False: eager, per step)
BUCKET = 256  # attended width is a multiple of this (one CUDA graph per width)
GROWTH = 512  # the capacity grows in steps of this many columns


def unsupported(model) -> str | None:
    """Why the slot cache cannot serve ``model`` (None when it can)."""
    config = model.config
    if getattr(config, "quantization_config", None) is not None or getattr(model, "is_quantized", False):
        return "quantized weights"
    devices = set(getattr(model, "hf_device_map", {}).values()) - {"cpu", "disk"}
    if len(devices) > 1:
        return "weights spread over several devices"
    if config.get_text_config() is not config:
        return "a multimodal configuration"
    if reason := attention.not_plain(config):
        return reason
    if config._attn_implementation not in ("sdpa", "eager", "lrmsafety_cpu"):
        return f"attention implementation {config._attn_implementation!r}"
    return None


class SlotLayer:
    """One layer's keys and values, ``[slots, kv_heads, capacity, dim]``; ``update`` writes row ``s`` at ``pos[s]``."""

    is_compileable = False
    is_sliding = False

    def __init__(self, owner: "SlotCache", keys: torch.Tensor, values: torch.Tensor):
        self.owner, self.keys, self.values = owner, keys, values
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        owner = self.owner
        self.keys[owner.rows, :, owner.pos] = key_states[:, :, 0]
        self.values[owner.rows, :, owner.pos] = value_states[:, :, 0]
        return self.keys[:, :, :owner.width], self.values[:, :, :owner.width]

    def get_seq_length(self) -> int:
        return self.owner.width

    def get_max_length(self) -> int:
        return self.keys.shape[2]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.width, 0


def _cache_base():
    from transformers.cache_utils import Cache

    return Cache


class SlotCache(_cache_base()):
    """The transformers ``Cache`` the decode step passes as ``past_key_values``: per-row positions ``pos``,
    attended ``width``. Only the decode step (one token per row) uses it; prefill goes through a DynamicCache."""

    def __init__(self, layers_kv: list[tuple[torch.Tensor, torch.Tensor]], pos: torch.Tensor):
        self.rows = torch.arange(pos.shape[0], device=pos.device)
        self.pos = pos
        self.width = 0
        super().__init__(layers=[SlotLayer(self, k, v) for k, v in layers_kv])

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        return self.layers[layer_idx].update(key_states, value_states)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width

    @property
    def is_compileable(self) -> bool:
        return False



class SlotEngine:
    """The running rows of the refill scheduler in fixed slots; rows are kept in admission order (``order``).

    The scheduler's interface: ``add(prefilled)``, ``select(keep)``, ``decode(steps)``, ``rows``, ``mergeable()``.
    """

    def __init__(self, model, slots: int, sampling: dict, generator, want_entropy: bool,
                 pad_id: int, graphs: bool | str = "auto"):
        register()
        self.model, self.slots = model, slots
        self.sampling, self.generator, self.want_entropy = sampling, generator, want_entropy
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        config = model.config
        self.n_layers = config.num_hidden_layers
        self.kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.graphs_wanted = (self.device.type == "cuda") if graphs == "auto" else bool(graphs)
        self.attention = FUSED_NAME if fused_attention_serves(self.device, self.dtype) else ATTENTION_NAME
        self.attention_error: str | None = None  # why the kernel was given up for the formula, if it was
        self._attention_ran = False  # whether a step has run through self.attention
        self.ids = torch.full((slots, 1), pad_id, dtype=torch.long, device=self.device)  # the token fed next
        self.pos = torch.zeros(slots, dtype=torch.long, device=self.device)  # its position (= its column)
        self.live = torch.zeros(slots, dtype=torch.long, device=self.device)  # 1 where a request holds the slot
        self.lengths = [0] * slots  # CPU copy of pos for live slots: the cached tokens
        self.seeds = torch.zeros(slots, dtype=torch.long, device=self.device)  # each slot's sample seed
        self.counts = torch.zeros(slots, dtype=torch.long, device=self.device)  # its count of tokens given so far
        self.keyed: bool | None = None  # whether the rows carry seeds (else the shared generator)
        self.order: list[int] = []  # slot of each running row, in the scheduler's row order
        self.capacity = 0
        self.cache: SlotCache | None = None
        self.cols: torch.Tensor | None = None
        self._graphs: dict[tuple, tuple] = {}  # (width, hooks) -> (graph, logits)
        self.graph_captures = self.eager_steps = self.graph_steps = 0
        self.graph_error: str | None = None

    @property
    def rows(self) -> int:
        return len(self.order)

    def mergeable(self) -> bool:
        return True

    # ------------------------------------------------------------------ storage
    def _ensure(self, need: int) -> None:
        """Make room for ``need`` columns per slot (growing copies the cache and drops the captured graphs)."""
        if need <= self.capacity:
            return
        capacity = -(-need // GROWTH) * GROWTH
        shape = (self.slots, self.kv_heads, capacity, self.head_dim)
        layers = []
        for i in range(self.n_layers):
            k = torch.zeros(shape, dtype=self.dtype, device=self.device)
            v = torch.zeros(shape, dtype=self.dtype, device=self.device)
            if self.cache is not None:
                old = self.cache.layers[i]
                k[:, :, :self.capacity] = old.keys
                v[:, :, :self.capacity] = old.values
                old.keys = old.values = None
            layers.append((k, v))
        self._graphs.clear()
        self.cache = SlotCache(layers, self.pos)
        self.capacity = capacity
        self.cols = torch.arange(capacity, device=self.device)
        log.debug("slot cache: %d slots x %d columns", self.slots, capacity)

    # ------------------------------------------------------------------ the scheduler's interface
    def add(self, prefilled) -> None:
        """Copy the rows of a prefill (``scheduler._Prefilled``) into free slots; they join at the end."""
        taken = set(self.order)
        free = [s for s in range(self.slots) if s not in taken]
        n = len(prefilled.rows)
        if n > len(free):
            raise ValueError(f"{n} rows admitted but only {len(free)} slots are free")
        slots = free[:n]
        mask = prefilled.mask  # [distinct, width], left-padded
        width = mask.shape[1]
        real = mask.sum(-1).tolist()
        lengths = [real[d] for d in prefilled.rows]
        self._ensure(max(lengths) + 1)
        src_row, src_col, dst_slot, dst_col = [], [], [], []
        for slot, d, n_tokens in zip(slots, prefilled.rows, lengths):
            src_row += [d] * n_tokens
            src_col += range(width - n_tokens, width)
            dst_slot += [slot] * n_tokens
            dst_col += range(n_tokens)
        index = [torch.tensor(x, device=self.device) for x in (src_row, src_col, dst_slot, dst_col)]
        for layer, source in zip(self.cache.layers, prefilled.cache.layers):
            layer.keys[index[2], :, index[3]] = source.keys[index[0], :, index[1]].to(self.dtype)
            layer.values[index[2], :, index[3]] = source.values[index[0], :, index[1]].to(self.dtype)
        slot_index = torch.tensor(slots, device=self.device)
        self.ids[slot_index, 0] = prefilled.first
        self.pos[slot_index] = torch.tensor(lengths, device=self.device)
        self.live[slot_index] = 1
        keyed = prefilled.seeds is not None
        if self.keyed is not None and keyed != self.keyed:
            raise ValueError("rows with and without seeds in one slot engine")
        self.keyed = keyed
        if keyed:
            self.seeds[slot_index] = prefilled.seeds.to(self.device)
            self.counts[slot_index] = prefilled.counts.to(self.device)
        for slot, n_tokens in zip(slots, lengths):
            self.lengths[slot] = n_tokens
        self.order += slots

    def select(self, keep: list[int]) -> None:
        """Keep the rows at these indices of the row order; the others free their slots."""
        kept = [self.order[i] for i in keep]
        gone = sorted(set(self.order) - set(kept))
        if gone:
            index = torch.tensor(gone, device=self.device)
            self.live[index] = 0
            self.pos[index] = 0
            for slot in gone:
                self.lengths[slot] = 0
        self.order = kept

    def decode(self, steps: int) -> tuple[list[list[int]], list[list[float]] | None]:
        """``steps`` decode steps over every slot; per running row, the tokens sampled and their entropies."""
        longest = max(self.lengths[s] for s in self.order)
        self._ensure(longest + steps)
        width = min(self.capacity, -(-(longest + steps) // BUCKET) * BUCKET)
        # the hooks cannot change within a call: one walk over the modules here, not one per step
        blocked, local = hook_census(self.model)
        graphs = self.graphs_wanted and not blocked
        # each running row draws from its own key (seed, count), as in the DynamicCache engine (without seeds, from
        # the generator in that engine's order); in a graph the draw is part of the replay, over every slot (a free
        # slot's token is discarded), else it runs eagerly over the running rows
        in_graph = graphs and self.keyed and SAMPLE_IN_GRAPH
        order = torch.tensor(self.order, device=self.device)
        out, ents = [], []
        for _ in range(steps):
            if in_graph:
                token, entropies = self._graph_step(width, local, sampled=True)
                token, entropies = token[order], (entropies[order] if self.want_entropy else None)
            else:
                logits = (self._graph_step(width, local) if graphs else self._eager_step(width))[order]
                entropies = entropy(logits) if self.want_entropy else None
                seeds, counts = (self.seeds[order], self.counts[order]) if self.keyed else (None, None)
                token = draw(logits, self.sampling, self.generator, seeds, counts)
                if self.keyed:
                    self.counts[order] += 1
                self.ids[order, 0] = token
                self.pos += self.live
            out.append(token)
            if entropies is not None:
                ents.append(entropies)
        for s in self.order:
            self.lengths[s] += steps
        return torch.stack(out, 1).tolist(), (torch.stack(ents, 1).tolist() if ents else None)

    # ------------------------------------------------------------------ one step
    def _forward(self, width: int) -> torch.Tensor:
        """The model on every slot's next token, attending to the first ``width`` columns; last-position logits."""
        self.cache.width = width
        visible = self.cols[:width][None, :] <= self.pos[:, None]
        bias = torch.zeros(visible.shape, dtype=torch.float32, device=self.device)
        bias = bias.masked_fill(~visible, float("-inf"))[:, None, None, :]
        try:
            with routed(self.model, self.attention), fusion.fused(self.model):
                # a 4D mask is passed through as it is by transformers' mask builders
                logits = self.model(input_ids=self.ids, attention_mask=bias,
                                    position_ids=self.pos[:, None], past_key_values=self.cache, use_cache=True,
                                    logits_to_keep=1).logits
        except Exception as err:  # noqa: BLE001 (a kernel that does not build on this GPU: the formula serves)
            if self._attention_ran or self.attention != FUSED_NAME or isinstance(err, torch.cuda.OutOfMemoryError):
                raise
            log.warning("the slot attention kernel failed (%s: %s); attending by the formula", type(err).__name__, err)
            self.attention, self.attention_error = ATTENTION_NAME, f"{type(err).__name__}: {err}"
            self._graphs.clear()
            return self._forward(width)  # the step again: its cache writes are the same
        self._attention_ran = True
        return logits[:, -1]

    def _eager_step(self, width: int) -> torch.Tensor:
        self.eager_steps += 1
        return self._forward(width)

    def _sampled_forward(self, width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A step and each slot's draw from its own key (seed, count), as the eager loop of :meth:`decode` draws
        for the running rows; the counts, the fed tokens and the positions of the live slots advance."""
        logits = self._forward(width)
        entropies = entropy(logits) if self.want_entropy else None
        token = draw(logits, self.sampling, None, self.seeds, self.counts)
        self.counts += self.live
        self.ids[:, 0] = torch.where(self.live.bool(), token, self.ids[:, 0])
        self.pos += self.live
        return token, entropies

    def _graph_step(self, width: int, hooks: tuple[int, ...] | None = None, sampled: bool = False):
        """One step replayed from the graph captured at this width with these ``row_local`` hooks (``None``: the
        model's present ones): its logits, or with ``sampled`` each slot's token and entropy (:meth:`_sampled_forward`;
        without a graph, the same eagerly)."""
        key = (width, row_local_hooks(self.model) if hooks is None else hooks, sampled)
        entry = self._graphs.get(key)
        if entry is None and self.graphs_wanted:
            try:
                entry = self._capture(key)
            except Exception as err:  # noqa: BLE001 (a step that cannot be captured still runs eagerly)
                if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
                    raise  # the scheduler halves the slots
                log.warning("CUDA graph capture failed (%s: %s); the slot engine steps eagerly",
                            type(err).__name__, err)
                self.graphs_wanted, self.graph_error = False, f"{type(err).__name__}: {err}"
                torch.cuda.synchronize()
        if entry is None:
            self.eager_steps += 1
            return self._sampled_forward(width) if sampled else self._forward(width)
        graph, output = entry
        graph.replay()
        self.graph_steps += 1
        return output

    def _capture(self, key: tuple):
        """Capture the step at this width with these hooks, sampled or not (a warm-up first, on a copy of the state a
        sampled step advances: it writes the same keys and values the replay will)."""
        width, sampled = key[0], key[2]
        step = self._sampled_forward if sampled else self._forward
        state = [t.clone() for t in (self.ids, self.pos, self.counts)]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            step(width)
        torch.cuda.current_stream().wait_stream(stream)
        for live, saved in zip((self.ids, self.pos, self.counts), state):
            live.copy_(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = step(width)
        self._graphs[key] = (graph, output)
        self.graph_captures += 1
        return graph, output
