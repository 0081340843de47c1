"""Paper B's refusal probe: a linear layer on hidden states, trained as the paper trains it (BCE, Adam, 5 epochs).

Labels are 1 = refusal, 0 = compliance throughout. Beside the recipe (Yin et al., ``MikaStars39/RefusalCliff``), not
part of paper B: the initialisation's draw apart from the split's (``init_seed``), so that probes of several draws
share one training set, and :func:`converged_probe`, which starts at zero and trains until the validation loss stops
improving. After the recipe's few Adam steps the weight is mostly its random initialisation, whose draw sets the
scores' level along a trace; the converged probe has no draw and its scale comes from the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .probes import _check_binary


class TooFewToTrain(ValueError):
    """Paper B's probe cannot be trained: a class is empty (in the candidates or in the training split)."""


CONVERGED_MAX_EPOCHS, CONVERGED_PATIENCE = 2000, 20


def converged_probe(seed: int = 42) -> LinearRefusalProbe:
    """The probe beside the recipe: the same layer, loss, optimiser, batches and split, started at zero (no random
    draw in the weight) and trained until the validation loss has not improved by 1e-4 for 20 epochs (at most 2000).
    On separable classes the loss keeps shrinking as the weight grows; the tolerance stops it where the gains are
    negligible, so the kept weight is the data's direction at a scale the data set, not the recipe's budget."""
    return LinearRefusalProbe(seed=seed, init="zero", epochs=CONVERGED_MAX_EPOCHS, patience=CONVERGED_PATIENCE)


class LinearRefusalProbe:
    """Paper B's probe: nn.Linear(d, 1) with BCE, Adam, batch 64, 5 epochs, 80/20 split; best validation epoch.

    ``seed`` draws the split, and the initialisation and batch order unless ``init_seed`` is given (then the split
    stays ``seed``'s). ``init="zero"`` starts weight and bias at 0. ``patience``: None keeps the recipe (the epoch of
    best validation accuracy among ``epochs``); a number trains until the validation loss has not improved by
    ``min_delta`` for that many epochs (at most ``epochs``) and keeps the epoch of least validation loss.

    After ``fit``, ``moved_`` = ‖w − w₀‖ / ‖w₀‖: how far the kept weight is from its random initialisation (Adam's
    steps are about lr each per coordinate, so in few dimensions the initialisation can be most of the weight; inf
    from a zero start); ``initial_`` = w₀, ``change_`` = ‖w − w₀‖, ``epochs_run_``, and ``kept_epoch_`` (1-based)
    with ``kept_steps_``, the optimiser steps behind the kept weight: the recipe keeps the first epoch of best
    validation accuracy (paper B's ``val_acc > best_val_acc``), so on classes a few steps separate it keeps epoch 1."""

    def __init__(self, lr: float = 1e-3, batch_size: int = 64, epochs: int = 5, val_fraction: float = 0.2,
                 seed: int = 42, init_seed: int | None = None, init: str = "random", patience: int | None = None,
                 min_delta: float = 1e-4):
        if init not in ("random", "zero"):
            raise ValueError(f"init must be 'random' or 'zero', not {init!r}")
        self.lr, self.batch_size, self.epochs = lr, batch_size, epochs
        self.val_fraction, self.seed = val_fraction, seed
        self.init_seed = seed if init_seed is None else init_seed
        self.init, self.patience, self.min_delta = init, patience, min_delta
        self.model_ = None

    def fit(self, features, labels, groups=None) -> LinearRefusalProbe:
        """Train on an 80/20 split; with ``groups`` (prompt ids) the split is by prompt, so that samples of one
        prompt never sit on both sides (paper B has one rollout per prompt, where both splits coincide)."""
        import torch

        X = torch.as_tensor(np.asarray(features, dtype=np.float32))
        y = torch.as_tensor(_check_binary(labels).astype(np.float32))
        n, d = X.shape
        rng = np.random.default_rng(self.seed)
        if groups is None:
            order = rng.permutation(n)
            n_val = max(1, int(n * self.val_fraction))  # the official split: int(n * 0.2) rows
            val_rows, train_rows = order[:n_val], order[n_val:]
        else:
            codes, _ = pd.factorize(pd.Series(np.asarray(groups)))
            units = rng.permutation(codes.max() + 1)
            held = units[: max(1, int(len(units) * self.val_fraction))]
            val_rows, train_rows = np.flatnonzero(np.isin(codes, held)), np.flatnonzero(~np.isin(codes, held))
        if len(train_rows) == 0 or len(np.unique(y[torch.as_tensor(train_rows)].numpy())) < 2:
            raise TooFewToTrain(f"the probe's training split needs both classes; got {n} rows")
        val, train = torch.as_tensor(val_rows), torch.as_tensor(train_rows)
        self.val_rows_ = val_rows
        torch.manual_seed(self.init_seed)
        model = torch.nn.Linear(d, 1)
        if self.init == "zero":
            with torch.no_grad():
                model.weight.zero_()
                model.bias.zero_()
        initial = model.weight.detach().clone()
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        gen = torch.Generator().manual_seed(self.init_seed)
        best_acc, best_loss, best_state, self.history_ = -1.0, np.inf, None, []
        since_best, steps, self.kept_epoch_, self.kept_steps_ = 0, 0, 0, 0
        for epoch in range(self.epochs):
            model.train()
            perm = train[torch.randperm(len(train), generator=gen)]
            losses = []
            for start in range(0, len(perm), self.batch_size):
                idx = perm[start:start + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(model(X[idx]).squeeze(-1), y[idx])
                loss.backward()
                opt.step()
                steps += 1
                losses.append(loss.item())
            model.eval()
            with torch.no_grad():
                out = model(X[val]).squeeze(-1)
                acc = ((out >= 0).float() == y[val]).float().mean().item()  # sigmoid >= .5
                val_loss = loss_fn(out, y[val]).item()
            self.history_.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_accuracy": acc,
                                  "val_loss": val_loss})
            if self.patience is None:
                better = acc > best_acc
            else:
                better, since_best = val_loss < best_loss - self.min_delta, since_best + 1
            if better:
                best_acc, best_loss, since_best = acc, val_loss, 0
                self.kept_epoch_, self.kept_steps_ = epoch + 1, steps
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if self.patience is not None and since_best >= self.patience:
                break
        model.load_state_dict(best_state)
        self.model_, self.val_accuracy_, self.epochs_run_ = model, best_acc, len(self.history_)
        self.initial_ = initial.numpy()[0].copy()
        self.change_ = float((model.weight.detach() - initial).norm())
        self.moved_ = self.change_ / float(initial.norm()) if float(initial.norm()) > 0 else float("inf")
        return self

    def _require_fit(self):
        if self.model_ is None:
            raise RuntimeError("LinearRefusalProbe is not fitted; call fit() first")

    def logits(self, features) -> np.ndarray:
        """Raw probe outputs for features of shape (..., d), e.g. (T, d) for every token of a trace."""
        import torch

        self._require_fit()
        with torch.no_grad():
            out = self.model_(torch.as_tensor(np.asarray(features, dtype=np.float32)))
        return out.squeeze(-1).numpy()

    def score(self, features) -> np.ndarray:
        """Sigmoid refusal probabilities, shape features.shape[:-1]."""
        return 1.0 / (1.0 + np.exp(-self.logits(features)))

    @property
    def direction(self) -> np.ndarray:
        self._require_fit()
        return self.model_.weight.detach().numpy()[0].copy()

    @property
    def bias(self) -> float:
        self._require_fit()
        return float(self.model_.bias.detach()[0])

    def save(self, path, metadata: dict | None = None):
        """The weights (and the best validation accuracy) as safetensors, for the notebooks that read the probe."""
        from ..store import save_tensors

        self._require_fit()
        return save_tensors(path, {"weight": self.direction, "bias": np.array([self.bias], dtype=np.float32)},
                            {"val_accuracy": self.val_accuracy_, **(metadata or {})})

    @classmethod
    def load(cls, path) -> LinearRefusalProbe:
        import torch
        from safetensors import safe_open

        from ..store import load_tensors

        tensors = load_tensors(path)
        probe = cls()
        probe.model_ = torch.nn.Linear(tensors["weight"].shape[0], 1)
        with torch.no_grad():
            probe.model_.weight.copy_(torch.as_tensor(tensors["weight"])[None])
            probe.model_.bias.copy_(torch.as_tensor(tensors["bias"]))
        with safe_open(str(path), "np") as handle:
            probe.metadata_ = handle.metadata() or {}
        probe.val_accuracy_ = float(probe.metadata_.get("val_accuracy", "nan"))
        return probe
