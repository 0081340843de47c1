"""The refill scheduler: continuous batching over a transformers model, so finished rows never hold a batch.

``slots`` rows decode together, one token per step, in a plain decode loop (``model(...)`` with a DynamicCache,
so forward hooks such as head ablation act at every step, and 4-bit models work unchanged). Every few steps (a
*chunk*) the scheduler hands each row its new tokens; the row says whether it continues, is done, or must be
re-prefilled with a new text (MoreThink's continuation word, a force-close, an intervention's rewrite). Rows that
leave free their slots, which are refilled at once from the queue. Only the new rows are prefilled (identical texts
once); their KV cache is merged into the running one by left padding. Models whose cache layers are not plain
(sliding windows) are handled by rebuilding the batch from text instead, which is slower but exact.

Two decode engines hold the running rows (``decode=``): ``"dynamic"``, the above (:mod:`lrmsafety.engine.dynamic`:
a DynamicCache whose layers write each step in place, merged by concatenation; works everywhere: CPU, 4-bit, hooks,
sliding windows), and ``"static"`` (:mod:`lrmsafety.engine.slots`: a preallocated slot cache, fixed-shape steps
replayed as CUDA graphs on a GPU). ``"auto"`` takes ``static`` on
CUDA for models the slot cache supports when no user forward hooks are installed, else ``dynamic``.

A request is any object with:
    text: str                              what to prefill when the row is (re)admitted
    max_steps() -> int                     steps it may still take before it must decide (chunks never exceed it)
    advance(tokens, entropies) -> str      "continue", "done" or "requeue"; ``entropies`` is None unless asked for
    seed: int, n_drawn: int                (optional, both or neither) the sample's seed, and how many tokens
                                           ``advance`` has looked at so far (dropped ones not counted)
The request's ``text`` must include every token it accepted, so that a row can always be rebuilt from text (on
out-of-memory the slots are halved and the rows re-prefilled; tokens not yet reported are then dropped).

Sampling (temperature, then top-k, then top-p, as transformers orders them) is done here on the device and is
counter-based: a row's n-th token (n counted over all its phases, ``n_drawn`` at a prefill) is the inverse CDF at a
uniform hashed from (its request's ``seed``, n) (:mod:`lrmsafety.engine.sampling`), so a sample's draws never depend
on the order, batch or slots it ran in, nor on its requeues. Requests without a ``seed`` fall back to the run's one
``generator``, shared by the rows (reproducible only for the same inputs, batch size and device).

``refill=False`` turns the refilling off: the requests run in fixed groups of ``slots`` rows, in their order; each
group is prefilled in one forward and decoded until its last row is done, finished rows staying in the batch (their
further tokens dropped), as in HF generate's batches. Every forward then sees the whole group, which matters for an
intervention whose effect depends on the batch (paper B's head ablation rescales by one norm over the forward's
whole tensor). A requeued or rewritten row is re-prefilled and rejoins its group; out of memory is an error.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import torch

from .dynamic import _DynamicEngine, growing_cache
from .sampling import draw, entropy, sample  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

CONTINUE, DONE, REQUEUE = "continue", "done", "requeue"


@dataclass
class _Prefilled:
    """Admitted rows after their prefill: the cache and left-padded mask of the distinct texts, each row's
    distinct text, and each row's first sampled token."""

    cache: object
    mask: torch.Tensor  # [distinct, width]
    rows: list[int]  # per admitted row, the index of its text among the distinct ones
    first: torch.Tensor  # [rows]
    seeds: torch.Tensor | None = None  # [rows] the requests' seeds (None: the shared generator)
    counts: torch.Tensor | None = None  # [rows] the counter of each row's next draw (its first token's + 1)


class RefillScheduler:
    """Runs requests through ``slots`` rows of one model; see the module docstring."""

    def __init__(self, model, tokenizer, sampling: dict, slots: int, chunk: int = 16,
                 generator: torch.Generator | None = None, want_entropy: bool = False,
                 prefill_tokens: int = 32768, on_chunk=None, decode: str = "auto", refill: bool = True):
        if decode not in ("auto", "static", "dynamic"):
            raise ValueError(f"decode must be 'auto', 'static' or 'dynamic'; got {decode!r}")
        self.model, self.tokenizer, self.sampling = model, tokenizer, sampling
        self.slots, self.chunk, self.generator = slots, chunk, generator
        self.want_entropy, self.prefill_tokens, self.on_chunk = want_entropy, prefill_tokens, on_chunk
        self.refill = refill
        self.groups: list[int] = []  # refill=False: the size of each group run (for tests)
        self.device = next(model.parameters()).device
        # refill once this many slots are free (or the batch ran dry): a few rows prefilled together cost about
        # one prefill, and rows that finished have already left the batch
        self.refill_at = max(1, slots // 8)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.steps = self.prefills = 0  # counters, for benchmarks and tests
        self.decode = self._choose(decode)
        self.engine = None  # the last run's engine (for its counters)

    def _choose(self, decode: str) -> str:
        from . import hooks, slots

        if decode != "auto":
            if decode == "static" and (reason := slots.unsupported(self.model)):
                raise ValueError(f"decode='static' cannot serve this model ({reason}); use decode='dynamic'")
            return decode
        if self.device.type != "cuda" or slots.unsupported(self.model) or hooks.user_hooks(self.model):
            return "dynamic"
        return "static"

    def _new_engine(self):
        if self.decode == "static":
            from .slots import SlotEngine

            return SlotEngine(self.model, self.slots, self.sampling, self.generator, self.want_entropy,
                              self.pad_id)
        return _DynamicEngine(self)

    # ------------------------------------------------------------------ prefill
    def _prefill(self, requests: list, share: bool = True) -> tuple[_Prefilled, list[list]]:
        """Prefill the texts of ``requests`` (identical texts once, unless ``share`` is False); sample each row's
        first token.

        Returns the new rows (for the engine's ``add``) and, per row, its first (token, entropy), not reported to
        the request yet.
        """
        texts = [r.text for r in requests]
        distinct = list(dict.fromkeys(texts)) if share else texts
        ids = self.tokenizer(distinct, add_special_tokens=False)["input_ids"]
        if any(len(i) == 0 for i in ids):
            raise ValueError("a request to continue has an empty text; render the prompt first")
        width = max(len(i) for i in ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(i)) + i for i in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=self.device)
        cache = growing_cache(self.model.config)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # real tokens only, as generate() counts them
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                            use_cache=True, logits_to_keep=1).logits[:, -1]
        self.prefills += 1
        rows = [distinct.index(t) for t in texts] if share else list(range(len(texts)))
        if len(distinct) < len(texts):  # K samples of one text: one prefill, its logits repeated
            logits = logits[torch.tensor(rows, device=self.device)]
        seeds = counts = None
        if _keyed(requests):  # each row's first token: the key of its own seed and count so far
            seeds = torch.tensor([r.seed for r in requests], dtype=torch.long, device=self.device)
            counts = torch.tensor([r.n_drawn for r in requests], dtype=torch.long, device=self.device)
        first = draw(logits, self.sampling, self.generator, seeds, counts)
        counts = counts + 1 if counts is not None else None
        ents = entropy(logits).tolist() if self.want_entropy else [None] * len(texts)
        return _Prefilled(cache, mask, rows, first, seeds, counts), [[(t, e)] for t, e in zip(first.tolist(), ents)]

    def _prefill_groups(self, requests: list) -> list[list]:
        """Split admissions so that one prefill forward holds about ``prefill_tokens`` tokens at most."""
        groups, current, longest = [], [], 0
        for request in requests:
            length = len(request.text) // 3  # characters over 3: a cheap overestimate of tokens
            if current and max(longest, length) * (len(current) + 1) > self.prefill_tokens:
                groups.append(current)
                current, longest = [], 0
            current.append(request)
            longest = max(longest, length)
        return groups + ([current] if current else [])

    # ------------------------------------------------------------------ the loop
    @torch.no_grad()
    def run(self, requests, on_done) -> None:
        """Generate until every request is done; ``on_done(request)`` is called as each one finishes.

        Every sampled token is reported to its request exactly once, at the chunk boundary after it was sampled;
        a row's last sampled token is fed to the model at the start of the next chunk.
        """
        if not self.refill:
            return self._run_groups(list(requests), on_done)
        queue = deque(requests)
        active: list = []
        engine = self.engine = self._new_engine()
        heads: list[list] = []  # per active row: tokens sampled at its prefill, not reported yet
        while queue or active:
            try:
                free = self.slots - len(active)
                if queue and free > 0 and (free >= min(self.refill_at, len(queue)) or not active):
                    if active and not engine.mergeable():
                        # caches with sliding-window layers cannot be merged: rebuild the batch from text
                        queue.extendleft(reversed(active))
                        active, heads, free = [], [], self.slots
                        engine = self.engine = self._new_engine()
                    admitted = [queue.popleft() for _ in range(min(free, len(queue)))]
                    for group in self._prefill_groups(admitted):
                        new, firsts = self._prefill(group)
                        engine.add(new)
                        active, heads = active + group, heads + firsts
                # rows may overshoot their stop by up to a chunk (their extra tokens are dropped by advance)
                steps = max(1, min(self.chunk, max(r.max_steps() for r in active)))
                tokens, entropies = engine.decode(steps)
                self.steps += steps
            except RuntimeError as err:
                if not _is_oom(err) or self.slots == 1:
                    raise
                # unreported tokens are dropped: the rows are re-prefilled from the text they reported
                queue.extendleft(reversed(active))
                active, heads = [], []
                engine = self.engine = None
                torch.cuda.empty_cache()
                self.slots = max(1, self.slots // 2)
                self.refill_at = max(1, self.slots // 8)
                log.warning("out of memory: continuing with %d slots", self.slots)
                engine = self.engine = self._new_engine()
                continue
            keep = []
            for i, request in enumerate(active):
                new_tokens = [t for t, _ in heads[i]] + tokens[i]
                new_entropy = [e for _, e in heads[i]] + entropies[i] if self.want_entropy else None
                verdict = request.advance(new_tokens, new_entropy)
                if verdict == CONTINUE:
                    keep.append(i)
                elif verdict == DONE:
                    on_done(request)
                elif verdict == REQUEUE:
                    queue.appendleft(request)  # re-prefilled first, before the waiting requests
                else:
                    raise ValueError(f"advance() returned {verdict!r}; expected {CONTINUE!r}, {DONE!r} or {REQUEUE!r}")
            if self.on_chunk is not None and keep:
                # an intervention may rewrite a row's text: that row leaves and is re-prefilled
                rewritten = {id(r) for r in (self.on_chunk([active[i] for i in keep]) or [])}
                for i in keep:
                    if id(active[i]) in rewritten:
                        queue.appendleft(active[i])
                keep = [i for i in keep if id(active[i]) not in rewritten]
            engine.select(keep)
            active, heads = [active[i] for i in keep], [[] for _ in keep]

    def _run_groups(self, requests: list, on_done) -> None:
        """``refill=False``: fixed groups of ``slots`` requests, each decoded until its last row is done (module
        docstring). Finished rows stay in the engine, so every forward holds the whole group."""
        for start in range(0, len(requests), self.slots):
            rows = requests[start:start + self.slots]
            self.groups.append(len(rows))
            engine = self.engine = self._new_engine()
            try:
                new, heads = self._prefill(rows, share=False)  # one forward for the whole group, as HF generate
                engine.add(new)
                done = [False] * len(rows)
                while not all(done):
                    steps = max(1, min(self.chunk, max(r.max_steps() for r, d in zip(rows, done) if not d)))
                    tokens, entropies = engine.decode(steps)
                    self.steps += steps
                    again = []  # rows whose text changed: re-prefilled, then they rejoin the group
                    for i, request in enumerate(rows):
                        if done[i]:
                            continue
                        new_tokens = [t for t, _ in heads[i]] + tokens[i]
                        new_entropy = [e for _, e in heads[i]] + entropies[i] if self.want_entropy else None
                        verdict = request.advance(new_tokens, new_entropy)
                        if verdict == DONE:
                            done[i] = True
                            on_done(request)
                        elif verdict == REQUEUE:
                            again.append(i)
                        elif verdict != CONTINUE:
                            raise ValueError(f"advance() returned {verdict!r}; expected {CONTINUE!r}, {DONE!r} or "
                                             f"{REQUEUE!r}")
                    heads = [[] for _ in rows]
                    live = [i for i in range(len(rows)) if not done[i] and i not in again]
                    if self.on_chunk is not None and live:
                        rewritten = {id(r) for r in (self.on_chunk([rows[i] for i in live]) or [])}
                        again += [i for i in live if id(rows[i]) in rewritten]
                    if again:
                        keep = [i for i in range(len(rows)) if i not in again]
                        engine.select(keep)
                        new, firsts = self._prefill([rows[i] for i in again], share=False)
                        engine.add(new)  # the engine's rows are now keep + again: follow that order
                        order = keep + again
                        rows, done = [rows[i] for i in order], [done[i] for i in order]
                        heads = [[] for _ in keep] + firsts
            except RuntimeError as err:
                if _is_oom(err):
                    raise RuntimeError(f"out of memory in a fixed group of {len(rows)} rows: with refill=False the "
                                       "group cannot shrink (its batch is part of the method); lower batch_size "
                                       "deliberately or free memory") from err
                raise


def _keyed(requests) -> bool:
    """Whether the requests carry their own seeds (counter-based draws) rather than sharing the generator."""
    return all(hasattr(r, "seed") and hasattr(r, "n_drawn") for r in requests)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()
