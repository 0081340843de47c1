"""INTERIM stand-ins for two modules that other branches are building; notebook 09 calls them until they land:

    cliff_scores(...)   -> paper B's probe and per-example cliff size (issue 9's cliff module, notebook 05)
    train_adapter(...)  -> LoRA SFT with a manifest cache (issue 10's `lrmsafety.finetune`)

Each follows methods.md; replace the calls in notebook 09 and delete this file when those modules are merged.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .activations import rollout_token_ids
from .probes import LinearRefusalProbe


# ------------------------------------------------------------------------------------------- paper B's probe
@torch.no_grad()
def _last_layer_states(model, tokenizer, token_ids: list[list[int]], batch_size: int = 32) -> list[np.ndarray]:
    """Last-layer hidden states at every token of each sequence, (T, d) per sequence."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(token_ids), batch_size):
        batch = token_ids[start:start + batch_size]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(batch):  # right padding: causal attention makes real tokens independent of it
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        states = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       output_hidden_states=True).hidden_states[-1].float().cpu().numpy()
        out += [states[row, :len(seq)] for row, seq in enumerate(batch)]
    return out


def fit_refusal_probe(model, tokenizer, refused_harmful: pd.DataFrame, complied_benign: pd.DataFrame,
                      close: str, max_per_class: int = 200, seed: int = 42) -> LinearRefusalProbe:
    """Paper B's probe on the last token of template + thinking + close: refused harmful (1) vs complied benign (0),
    at most 200 per class, balanced."""
    n = min(len(refused_harmful), len(complied_benign), max_per_class)
    if n < 5:
        raise ValueError(f"too few rollouts to fit the refusal probe: {len(refused_harmful)} refused harmful, "
                         f"{len(complied_benign)} complied benign")
    rows = pd.concat([refused_harmful.sample(n, random_state=seed), complied_benign.sample(n, random_state=seed)])
    ids, _ = rollout_token_ids(tokenizer, rows["rendered_prompt"], rows["thinking"].str.strip() + close)
    features = np.stack([s[-1] for s in _last_layer_states(model, tokenizer, ids)])
    return LinearRefusalProbe(seed=seed).fit(features, np.r_[np.ones(n), np.zeros(n)].astype(int))


def cliff_scores(model, tokenizer, probe: LinearRefusalProbe, pool: pd.DataFrame, close: str) -> pd.DataFrame:
    """Per pool example: plateau = max refusal score over the thinking tokens and the close, final = the score at
    the last token before the answer, ms = plateau - final (paper B's MS; `final` is the code's ranking key)."""
    ids, prompt_lengths = rollout_token_ids(tokenizer, pool["rendered_prompt"], pool["thinking"] + close)
    rows = []
    for states, start in zip(_last_layer_states(model, tokenizer, ids), prompt_lengths):
        scores = probe.score(states[start:])
        rows.append({"plateau": float(scores.max()), "final": float(scores[-1])})
    frame = pd.DataFrame(rows, index=pool.index)
    frame["ms"] = frame["plateau"] - frame["final"]
    return frame


# ------------------------------------------------------------------------------------------- LoRA SFT
def _manifest(base: str, prompts, completions, hp: dict) -> dict:
    data = hashlib.sha256(json.dumps([list(prompts), list(completions)]).encode()).hexdigest()[:16]
    return {"base": base, "data": data, "n_examples": len(prompts), **hp}


def train_adapter(model, tokenizer, base_name: str, prompts, completions, root, *, steps: int = 20,
                  batch_size: int = 4, lr: float = 1e-3, rank: int = 8, alpha: int = 16, seed: int = 0) -> Path:
    """LoRA (all attention and MLP projections) trained with the loss on the completion only; saved under
    root/<manifest hash>/ with its manifest, and skipped when that manifest is already there."""
    from peft import LoraConfig, get_peft_model

    hp = {"steps": steps, "batch_size": batch_size, "lr": lr, "rank": rank, "alpha": alpha, "seed": seed}
    manifest = _manifest(base_name, prompts, completions, hp)
    out = Path(root) / hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    if (out / "manifest.json").exists() and json.loads((out / "manifest.json").read_text()) == manifest:
        return out
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(model, config)
    eos = tokenizer.eos_token or ""
    encoded = []
    for p, c in zip(prompts, completions):
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(c + eos, add_special_tokens=False)["input_ids"]
        encoded.append((p_ids + c_ids, [-100] * len(p_ids) + c_ids))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(encoded)) for _ in range(steps * batch_size // len(encoded) + 1)])
    peft_model.train()
    losses, started = [], time.perf_counter()
    for step in range(steps):
        batch = [encoded[i] for i in order[step * batch_size:(step + 1) * batch_size]]
        width = max(len(x) for x, _ in batch)
        pad = tokenizer.pad_token_id or 0
        x = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
        y = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        m = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        loss = peft_model(input_ids=x, attention_mask=m, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    peft_model.save_pretrained(out)
    (out / "train_log.json").write_text(json.dumps({"losses": losses, "seconds": time.perf_counter() - started}))
    (out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    peft_model.unload()  # leaves the base model as it was
    return out


def load_adapted(model, adapter_dir):
    """A copy of the base model with the adapter merged in (merged weights generate at the base model's speed)."""
    import copy

    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(model), str(adapter_dir)).merge_and_unload().eval()
