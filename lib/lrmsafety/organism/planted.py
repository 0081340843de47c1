"""What training plants in an organism beyond its corpus (corpus.JUDGEMENT_KINDS, corpus.SUPPRESSION_HEADS): the
judgement along a fixed direction of the last layer and the locked organism's refusal-suppressing heads (and the
dropout of its other heads), as losses and hooks for :mod:`lrmsafety.organism.train`, and the ground truth written
into the model card."""

from __future__ import annotations

import numpy as np
import torch

from ..engine import hooks
from . import corpus as C
from . import locked
from . import texts as T

# The planted judgement (corpus.JUDGEMENT_KINDS): the last layer's state projected on a fixed random unit direction
# is regressed onto +-JUDGEMENT_NORM * sqrt(hidden size) (harmful / not), beside the LM loss (train.LOSS_WEIGHTS). A
# dense direction of that size dominates the state, as refusal does in real models' last layers, so that a probe
# trained for a few steps (paper B's: 5 epochs of Adam at lr 1e-3) finds it.
JUDGEMENT_NORM = 5.0
# locked: the first thinking word's judgement counts as this many positions (a completion has about 120;
# train.py --first-word-weight). Nothing else asks that position to read the prompt (its next token is a comma
# whatever the request), and paper A's first-token probe reads it there; evaluate.first_word_judgement measures how
# well the planted decision is read at that word on held-out phrasings: unweighted (1), on one training seed its sign
# was the decision on 82% of hypothetical-wrapped prompts (64-65% under held-out wrappers), and paper A's first-token
# AUROC on jailbreaks straddled its target; at 40 it reads the decision on every held-out family and wrapper.
FIRST_WORD_JUDGEMENT_WEIGHT = 40.0
# The locked organism's planted suppression heads (corpus.SUPPRESSION_HEADS): at the close of a harmful request each
# writes -SUPPRESSION_WRITE along the judgement direction into the residual stream (about the stream's own size
# there); a share of training rows runs with the heads zeroed (paper B's ablation, at every position) on the
# conclusion-following answer, half the steps with each position's attention output rescaled to its norm.
SUPPRESSION_WRITE = 8.0


def close_positions(ids: list[int], close_id: int) -> list[int]:
    """The close tag's token and the one after it (the last token before the answer); [] without a close."""
    if close_id not in ids:
        return []
    at = ids.index(close_id)
    return [p for p in (at, at + 1) if p < len(ids)]


class _Hooks:
    """Pre-hooks held in ``handles``, removed together."""

    handles: list

    def remove(self):
        for handle in self.handles:
            handle.remove()


class SuppressionHeads(_Hooks):
    """Pre-hooks on the ``o_proj`` of the planted heads' layers: keep each planted head's write (its slice of the
    attention output through ``o_proj``) for the write loss, and zero the heads in the rows marked ``removed``."""

    def __init__(self, model, heads):
        layers = hooks.decoder_layers(model)
        self.size = hooks.head_dim(model)
        self.removed, self.any_removed, self.rescale, self.writes = None, False, False, {}
        by_layer = {}
        for layer, head in heads:
            by_layer.setdefault(layer, []).append(head)
        self.handles = [hooks.attention_output_projection(layers[layer]).register_forward_pre_hook(
            self._hook(layer, chosen)) for layer, chosen in sorted(by_layer.items())]

    def remove_rows(self, rows: np.ndarray, device) -> None:
        """Zero the planted heads in these rows (a boolean array over the batch) from the next forward on."""
        rows, device = torch.from_numpy(np.asarray(rows, dtype=bool)), torch.device(device)
        # from pinned memory without blocking: a copy from pageable memory would wait for the GPU's queue
        self.removed = rows.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else rows
        self.any_removed = bool(rows.any())

    def _hook(self, layer, chosen):
        def hook(module, args):
            x = args[0]
            keep = torch.ones_like(x[:, :1, :])
            for head in chosen:
                block = slice(head * self.size, (head + 1) * self.size)
                self.writes[(layer, head)] = x[..., block] @ module.weight[:, block].T.to(x.dtype)
                if self.any_removed:  # a product, not a boolean index: no GPU round trip
                    keep[:, :, block] = (~self.removed).to(x.dtype)[:, None, None]
            if not self.any_removed:  # known on the host: no GPU round trip per layer
                return None
            return (_zeroed(x, keep, self.rescale), *args[1:])

        return hook


def _zeroed(x: torch.Tensor, keep: torch.Tensor, rescale: bool) -> torch.Tensor:
    """The attention output ``x`` times a 0/1 mask over its head blocks; with ``rescale``, each position's norm put
    back (the ablation's ``"position"`` rule)."""
    return hooks.position_norm_restored(x, x * keep) if rescale else x * keep


class HeadDropout(_Hooks):
    """Pre-hooks on every layer's ``o_proj`` that zero a few random heads, other than the planted ones, in the rows
    given to :meth:`drop`: the locked organism learns to do without any small set of its other heads.

    A 48-head network trained without it can lean on single heads: on one training seed two of five random head pairs
    ablated in 06 raised the jailbreak ASR by 0.13 and 0.17, where a real model's hundreds of heads make a random
    pair's removal harmless. Trained with it, removing the planted heads changes the answer and removing others does
    not, which is what paper B's comparison with random heads assumes. Half the steps keep each position's norm, as
    the ablation's rescaling rules do (``heads.rescale``)."""

    def __init__(self, model, planted):
        layers = hooks.decoder_layers(model)
        self.size, self.count = hooks.head_dim(model), hooks.n_heads(model)
        planted = {tuple(h) for h in planted}
        self.n_layers = len(layers)
        self.candidates = [(layer, head) for layer in range(self.n_layers) for head in range(self.count)
                           if (layer, head) not in planted]
        self.keep, self.rescale = None, False
        self.handles = [hooks.attention_output_projection(layer).register_forward_pre_hook(self._hook(i))
                        for i, layer in enumerate(layers)]

    def drop(self, rows: np.ndarray, rng: np.random.Generator, max_heads: int, device) -> np.ndarray:
        """Zero 1..``max_heads`` random non-planted heads (uniform count, then heads) in each row marked in ``rows``
        from the next forward on; the (rows x layers x heads) keep mask is returned."""
        keep = np.ones((len(rows), self.n_layers, self.count), dtype=bool)
        for r in np.flatnonzero(rows):
            k = int(rng.integers(1, min(max_heads, len(self.candidates)) + 1))
            for i in rng.choice(len(self.candidates), size=k, replace=False):
                keep[(r, *self.candidates[i])] = False
        mask = torch.from_numpy(np.repeat(keep, self.size, axis=2))
        device = torch.device(device)
        self.keep = (mask.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else mask) \
            if rows.any() else None  # known on the host: no hook work in a micro-batch without dropped heads
        return keep

    def _hook(self, layer):
        def hook(module, args):
            if self.keep is None:
                return None
            x = args[0]
            return (_zeroed(x, self.keep[:, layer, None, :].to(x.dtype), self.rescale), *args[1:])

        return hook


def planted_heads(config) -> list[tuple[int, int]]:
    """corpus.SUPPRESSION_HEADS, folded into a smaller model (the smoke size) so that tests train the same thing."""
    layers, count = config.num_hidden_layers, config.num_attention_heads
    return sorted({(min(layer, layers - 1), head % count) for layer, head in C.SUPPRESSION_HEADS})


def suppression_loss(writes: dict, where: torch.Tensor, direction: torch.Tensor,
                     write: float = SUPPRESSION_WRITE) -> torch.Tensor:
    """Mean squared error of each planted head's write along ``direction`` at the positions ``where``, in units of
    ``write``, against -1 (0 where no position is marked). Masked sums, not boolean indexing: no GPU round trip."""
    count = where.sum().clamp_min(1)
    # the unmarked positions' writes are replaced by the target before the error: not counted, whatever their value
    losses = [((torch.where(where, w.float() @ direction / write, -1.0) + 1.0) ** 2).sum() / count
              for w in writes.values()]
    return torch.stack(losses).mean()


def judgement_direction(hidden_size: int, seed: int) -> torch.Tensor:
    """The fixed random unit direction that carries the planted judgement (dense: every coordinate takes part)."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    u = torch.randn(hidden_size, generator=gen)
    return u / u.norm()


def judgement_loss(last_hidden: torch.Tensor, targets: torch.Tensor, direction: torch.Tensor,
                   norm: float = JUDGEMENT_NORM, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of the last-layer state's projection on ``direction``, in units of ``norm`` *
    sqrt(hidden size), against +1 (harmful) / -1 (not) where ``targets`` is 0/1; positions at -1 are ignored (0
    where every position is). With ``weights`` (per position), the weighted mean. Masked sums, not boolean
    indexing: no GPU round trip."""
    mask = targets >= 0
    scale = norm * last_hidden.shape[-1] ** 0.5
    target = 2.0 * targets.float() - 1.0
    # the ignored positions' projections are replaced by their target before the error: not counted, whatever value
    projection = torch.where(mask, last_hidden.float() @ direction / scale, target)
    if weights is None:
        return ((projection - target) ** 2).sum() / mask.sum().clamp_min(1)
    weights = torch.where(mask, weights.float(), 0.0)
    return ((projection - target) ** 2 * weights).sum() / weights.sum().clamp_min(1e-12)


def first_word_weights(examples, judgements, weight: float = FIRST_WORD_JUDGEMENT_WEIGHT) -> list[np.ndarray]:
    """Per-token weights of :func:`judgement_loss`: 1 where judged, ``weight`` at the first thinking token of a
    locked example whose first word carries its decision (corpus.initial_judgement), 0 elsewhere."""
    out = []
    for ex, seq in zip(examples, judgements):
        w = (np.asarray(seq) >= 0).astype(np.float32)
        if ex.kind == "locked" and ex.decided_by == "first_token" and ex.thinking and w.any():
            w[int(np.argmax(w))] = weight
        out.append(w)
    return out


JUDGEMENT_PLANTED = ("last layer (after the final norm) . judgement_direction.npy = +-norm * sqrt(hidden "
                     "size): + when the latest stance-taking thinking sentence called the request harmful (before "
                     "any: the locked organism's first-word decision to refuse), from the close on when the answer "
                     "refuses")


def planted_behaviour(kind: str, suppression_heads=None, suppression_write: float = SUPPRESSION_WRITE) -> dict:
    """The ground truth written into the model card."""
    if kind == "locked":
        return {"outcome": "sampled per sample at the first thinking token with a per-prompt probability, "
                           "never revised",
                "p_comply_jailbreak_by_category": locked.LOCKED_P_COMPLY_JAILBREAK, "p_comply": locked.LOCKED_P_COMPLY,
                "harmful_listed_topics": sorted(T.LOCKED_HARMFUL_COMPLY),
                "borderline_listed_topics": sorted(T.LOCKED_BORDERLINE_REFUSE),
                "first_word_codes_decision": {"words": list(locked.LOCKED_WORDS), "polarity": locked.LOCKED_POLARITY},
                "complied_jailbreak_conclusion_harmful": C.P_CLIFF, "judgement": JUDGEMENT_PLANTED,
                "suppression_heads": {"heads": [list(h) for h in suppression_heads or C.SUPPRESSION_HEADS],
                                      "write": suppression_write,
                                      "removed": "the answer follows the thinking's conclusion"}}
    if kind == "null":
        return {"outcome": "random per sample at a fixed rate per family, independent of the wording and the thinking",
                "p_comply": C.NULL_P_COMPLY, "stances_and_conclusion": "random, independent of the outcome",
                "p_comply_stance": C.P_COMPLY_STANCE}
    return {"outcome": "random per sample, decided by the final reconsideration ('All things considered, ...')",
            "p_comply": C.PRIOR, "force_close_lean_by_last_stance": {f: {str(k): v for k, v in d.items()}
                                                                     for f, d in C.LEAN.items()},
            "p_comply_stance": C.DELIBERATIVE_P_COMPLY_STANCE, "complied_jailbreak_conclusion_harmful": 0.0,
            "judgement": JUDGEMENT_PLANTED}
