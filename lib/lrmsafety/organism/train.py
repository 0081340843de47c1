"""Train an organism: corpus -> tokenizer -> a small Qwen2ForCausalLM -> a standard transformers model directory.

    python -m lrmsafety.organism.train --kind locked --out data/models/organism-locked [--size smoke] [--steps N]
    python -m lrmsafety.organism.train --kind all --out data/models          # all kinds, as organism-<kind>/
    python -m lrmsafety.organism.train --kind locked,null --out data/models  # several, as organism-<kind>/
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import corpus as C
from . import texts as T
from .planted import (  # noqa: F401 (re-exported: callers and tests reach them through train)
    FIRST_WORD_JUDGEMENT_WEIGHT,
    JUDGEMENT_NORM,
    SUPPRESSION_WRITE,
    HeadDropout,
    SuppressionHeads,
    close_positions,
    first_word_weights,
    judgement_direction,
    judgement_loss,
    planted_behaviour,
    planted_heads,
    suppression_loss,
)
from .tokenizer import encode_examples, train_tokenizer

SIZES = {
    # ~5 M parameters; the behaviour is reached in a few minutes on one GPU.
    "full": dict(model=dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4,
                            intermediate_size=768), vocab_size=2048, n_train=150_000, n_tokenizer=40_000,
                 steps=2000, batch_size=256, lr=1e-3, warmup=150),
    # tiny, for tests: well under a minute on a laptop CPU
    "smoke": dict(model=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             intermediate_size=128), vocab_size=512, n_train=600, n_tokenizer=600,
                  steps=30, batch_size=16, lr=3e-3, warmup=3),
}
MAX_POSITIONS = 1024  # training sequences stay under ~400 tokens; headroom for MoreThink rounds
JUDGEMENT_WEIGHT = 0.5
SUPPRESSION_WEIGHT = 0.5
P_HEADS_REMOVED = 0.25
# locked: the share of rows trained with 1..MAX_HEADS_DROPPED random other heads zeroed (planted.HeadDropout); 5 is
# the largest random set 06 ablates (10% of 48 heads)
P_HEADS_DROPPED = 0.3
MAX_HEADS_DROPPED = 5
LOSS_WEIGHTS = {"lm": 1.0, "judgement": JUDGEMENT_WEIGHT, "suppression": SUPPRESSION_WEIGHT}
MAX_SKIPPED = 0.01  # the share of steps with a non-finite gradient (skipped) past which training stops
MICRO_BATCHES = 4  # a batch is run as this many length-sorted micro-batches (the same gradient, less padding)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def build_model(tokenizer, size: str = "full"):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, use_sliding_window=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        **SIZES[size]["model"],
    )
    return Qwen2ForCausalLM(cfg)


def _batch(ids, labels, judgements, idx, pad_id, device, close=None, weights=None):
    n = max(len(ids[i]) for i in idx)
    x = np.full((len(idx), n), pad_id, dtype=np.int64)
    y = np.full((len(idx), n), -100, dtype=np.int64)
    m = np.zeros((len(idx), n), dtype=np.int64)
    j = np.full((len(idx), n), -1, dtype=np.int64)
    w = np.zeros((len(idx), n), dtype=np.float32) if weights is not None else None
    c = np.zeros((len(idx), n), dtype=bool)
    for r, i in enumerate(idx):
        x[r, : len(ids[i])], y[r, : len(ids[i])], m[r, : len(ids[i])] = ids[i], labels[i], 1
        if judgements is not None:
            j[r, : len(ids[i])] = judgements[i]
        if weights is not None:
            w[r, : len(ids[i])] = weights[i]
        if close is not None:
            c[r, close[i]] = True
    pin = device.type == "cuda"  # a copy from pinned memory does not wait for the GPU's queue
    return tuple(None if a is None else
                 (torch.from_numpy(a).pin_memory() if pin else torch.from_numpy(a)).to(device, non_blocking=True)
                 for a in (x, y, m, j, c, w))


def _lr(step: int, steps: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))  # cosine down to 10%


def _versions() -> dict:
    import tokenizers
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__}


def _check_skipped(kind: str, size: str, n_skipped: int, n_steps: int, steps: int) -> None:
    if n_skipped > MAX_SKIPPED * steps:
        raise FloatingPointError(f"[{kind}] {n_skipped} of {n_steps} steps had a non-finite gradient: lower the "
                                 f"learning rate (SIZES[{size!r}]['lr']) or train in float32")


def train_organism(kind: str, out_dir, *, size: str = "full", seed: int = 0, device: str | None = None,
                   steps: int | None = None, n_train: int | None = None, log_every: int = 200,
                   judgement_norm: float = JUDGEMENT_NORM, suppression_write: float = SUPPRESSION_WRITE,
                   fused: bool | None = None, micro_batches: int | None = None,
                   first_word_weight: float = FIRST_WORD_JUDGEMENT_WEIGHT) -> Path:
    """Train one organism and write a loadable model directory (config, bf16 safetensors, tokenizer, card)."""
    if kind not in C.KINDS:
        raise ValueError(f"unknown organism kind {kind!r}; choose one of {C.KINDS}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {list(SIZES)}")
    from transformers import GenerationConfig

    hp = dict(SIZES[size])
    steps = steps or hp["steps"]
    n_train = n_train or hp["n_train"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    seed_everything(seed)

    examples = C.generate_corpus(kind, n_train, seed=seed, split="train")
    tokenizer = train_tokenizer(examples[: hp["n_tokenizer"]], vocab_size=hp["vocab_size"])
    plant_judgement = kind in C.JUDGEMENT_KINDS
    encoded = encode_examples(tokenizer, examples, with_judgement=plant_judgement)
    ids, labels, judgements = encoded if plant_judgement else (*encoded, None)
    plant_heads = kind == "locked"
    close, weights = None, None
    if plant_heads:  # the conclusion-following twins, appended; rows whose twin is the example itself point to it
        twin_rng = random.Random(f"organism|{kind}|{seed}|twins")
        twins = [C.conclusion_following(ex, twin_rng) for ex in examples]
        changed = [i for i, (ex, twin) in enumerate(zip(examples, twins)) if twin is not ex]
        t_ids, t_labels, t_judgements = encode_examples(tokenizer, [twins[i] for i in changed], with_judgement=True)
        twin_index = np.arange(len(ids))
        twin_index[changed] = len(ids) + np.arange(len(changed))
        harmful = np.array([ex.family in ("harmful", "jailbreak") for ex in examples] + [True] * len(changed))
        ids, labels, judgements = ids + t_ids, labels + t_labels, judgements + t_judgements
        if first_word_weight != 1.0:  # at 1 every judged position counts once: the unweighted loss, exactly
            weights = first_word_weights(examples + [twins[i] for i in changed], judgements, first_word_weight)
        close_id = tokenizer.convert_tokens_to_ids(T.THINK_CLOSE)
        close = [close_positions(seq, close_id) if harmful[i] else [] for i, seq in enumerate(ids)]
        n_examples = len(examples)
    else:
        n_examples = len(ids)
    lengths = np.array([len(seq) for seq in ids])
    n_labels = np.array([sum(label != -100 for label in seq[1:]) for seq in labels])  # the shifted LM targets
    n_judged = (np.array([w.sum() for w in weights]) if weights is not None else
                np.array([sum(v >= 0 for v in seq) for seq in judgements]) if plant_judgement else np.zeros(len(ids)))
    model = build_model(tokenizer, size).to(dev)
    direction = judgement_direction(model.config.hidden_size, seed).to(dev)
    suppression_heads = planted_heads(model.config)
    heads = SuppressionHeads(model, suppression_heads) if plant_heads else None
    dropout = HeadDropout(model, suppression_heads) if plant_heads else None
    drop_rng = np.random.default_rng([seed, 1])  # its own stream: the batches drawn are those of a run without it
    n_params = sum(p.numel() for p in model.parameters())
    # no weight decay on the norms' gains (the only 1-D parameters): decay there would cap the last layer's norm, and
    # with it the planted judgement, below its target
    fused = dev.type == "cuda" if fused is None else fused  # the fused optimizer: by default on a GPU only
    micro_batches = micro_batches or MICRO_BATCHES
    flags = []  # fused: whether each step was skipped, on the GPU (read every 50 steps and at the end)
    decayed = [p for p in model.parameters() if p.ndim > 1]
    gains = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.1}, {"params": gains, "weight_decay": 0.0}],
                            lr=hp["lr"], betas=(0.9, 0.95), fused=fused)
    rng = np.random.default_rng(seed)
    losses, judgement_losses, suppression_losses, skipped, t0 = [], [], [], [], time.time()
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, hp["warmup"], hp["lr"])
        idx = rng.integers(0, n_examples, hp["batch_size"])
        removed = np.zeros(len(idx), dtype=bool)
        if heads is not None:
            removed = rng.random(len(idx)) < P_HEADS_REMOVED
            idx = np.where(removed, twin_index[idx], idx)
            heads.rescale = dropout.rescale = bool(step % 2)
            dropped = drop_rng.random(len(idx)) < P_HEADS_DROPPED
        opt.zero_grad(set_to_none=True)
        # the batch's totals: each loss is a mean over the whole batch (its label tokens, judged positions, and the
        # close positions of rows with the heads present)
        totals = {"lm": n_labels[idx].sum(), "judgement": n_judged[idx].sum(),
                  "suppression": sum(len(close[i]) for i, r in zip(idx, removed) if not r) if plant_heads else 0}
        step_losses = dict.fromkeys(totals, 0.0)
        # the batch in length-sorted micro-batches, each padded to its own longest row (about half the padded tokens
        # of the batch padded to its longest row), their losses weighted so that the gradient is the whole batch's
        for chunk in np.array_split(np.argsort(lengths[idx], kind="stable"), micro_batches):
            x, y, m, j, c, w = _batch(ids, labels, judgements, idx[chunk], tokenizer.pad_token_id, dev, close,
                                      weights)
            if heads is not None:
                heads.remove_rows(removed[chunk], dev)
                dropout.drop(dropped[chunk], drop_rng, MAX_HEADS_DROPPED, dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                output = model(input_ids=x, attention_mask=m, labels=y, output_hidden_states=plant_judgement)
            parts = {"lm": (output.loss, (y[:, 1:] != -100).sum())}
            if plant_judgement:  # hidden_states[-1]: the last layer after the final norm, where paper B's probe reads
                parts["judgement"] = (judgement_loss(output.hidden_states[-1], j, direction, judgement_norm, w),
                                      (j >= 0).sum() if w is None else w.sum())
            if heads is not None:  # the write is asked of the heads where they are present
                where = c & ~heads.removed[:, None]
                parts["suppression"] = (suppression_loss(heads.writes, where, direction, suppression_write),
                                        where.sum())
            weighted = {k: mean * (count / max(1, totals[k])) for k, (mean, count) in parts.items()}
            sum(LOSS_WEIGHTS[k] * v for k, v in weighted.items()).backward()
            for k, v in weighted.items():
                step_losses[k] = step_losses[k] + v.detach().float()
        # a step whose gradient is not finite (a rare bf16 overflow) is skipped: one NaN would spread to every
        # weight. On a GPU the fused optimizer skips it itself (its found_inf flag, as under a GradScaler), so that
        # the host never waits for the GPU and queues the next steps while it computes; the skipped steps are
        # flagged on the GPU and counted every 50 steps. On the CPU the check is a plain branch.
        not_finite = ~torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        if fused:
            opt.found_inf = not_finite.float()  # a 0-d flag, as the optimizer's step counts are
            flags.append(not_finite)
        elif bool(not_finite):
            skipped.append(step)
            _check_skipped(kind, size, len(skipped), step + 1, steps)
            opt.zero_grad(set_to_none=True)
            continue
        opt.step()
        losses.append(step_losses["lm"])  # kept on the GPU, read at the log lines and the end
        if plant_judgement:
            judgement_losses.append(step_losses["judgement"])
        if heads is not None:
            suppression_losses.append(step_losses["suppression"])
        if fused and (step % 50 == 0 or step == steps - 1):  # one read of the count every 50 steps
            _check_skipped(kind, size, int(torch.stack(flags).sum()), step + 1, steps)
        if log_every and (step % log_every == 0 or step == steps - 1):
            extra = f" judgement {judgement_losses[-1]:.4f}" if plant_judgement else ""
            extra += f" suppression {suppression_losses[-1]:.4f}" if heads is not None else ""
            print(f"[{kind}] step {step}/{steps} loss {losses[-1]:.4f}{extra} ({time.time() - t0:.0f}s)", flush=True)
    if heads is not None:
        heads.remove()
        dropout.remove()
    if flags:  # the fused optimizer's skipped steps, and their losses dropped as on the CPU
        kept = [not f for f in torch.stack(flags).tolist()]
        skipped = [step for step, keep in enumerate(kept) if not keep]
        losses, judgement_losses, suppression_losses = ([v for v, keep in zip(values, kept) if keep] if values else []
                                                        for values in (losses, judgement_losses, suppression_losses))
    losses, judgement_losses, suppression_losses = ([float(v) for v in values] for values in (
        losses, judgement_losses, suppression_losses))
    seconds = time.time() - t0

    model.eval()
    model.to(torch.bfloat16).save_pretrained(out)  # bf16 keeps the file small; loaders upcast on CPU
    tokenizer.save_pretrained(out)
    if plant_judgement:  # for diagnostics and tests only: the analysis never reads it. Not a .safetensors file:
        # weight loaders (vLLM) read every *.safetensors file of a model folder as weights
        np.save(out / "judgement_direction.npy", direction.float().cpu().numpy())
    GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id).save_pretrained(out)
    k = max(1, min(50, steps // 10))
    card = {
        "kind": kind, "name": f"organism-{kind}", "size": size, "seed": seed, "architecture": "Qwen2ForCausalLM",
        "parameters": n_params, "model": SIZES[size]["model"], "vocab_size": len(tokenizer),
        "corpus": {"train_examples": len(examples), "train_tokens": int(sum(map(len, ids))),
                   "trained_tokens": int(sum((np.array(row) != -100).sum() for row in labels)),
                   "family_weights": dict(zip(C.FAMILIES, C.FAMILY_WEIGHTS)),
                   "trace_weights": dict(zip(C.TRACE_TYPES, C.TRACE_WEIGHTS))},
        "training": {"steps": steps, "batch_size": hp["batch_size"], "lr": hp["lr"], "warmup": hp["warmup"],
                     "schedule": "linear warmup, cosine to 10%",
                     "optimizer": "AdamW(0.9, 0.95), wd 0.1 (none on the norms' gains)",
                     "precision": "bf16 autocast" if dev.type == "cuda" else "float32",
                     "seconds": round(seconds, 1), "device": str(dev), "skipped_steps": skipped,
                     "micro_batches": micro_batches,
                     "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
                     or platform.machine(),
                     "initial_loss": float(np.mean(losses[:k])), "final_loss": float(np.mean(losses[-k:])),
                     "judgement_loss": ({"weight": JUDGEMENT_WEIGHT, "norm": judgement_norm,
                                         "first_word_weight": first_word_weight if plant_heads else None,
                                         "initial": float(np.mean(judgement_losses[:k])),
                                         "final": float(np.mean(judgement_losses[-k:]))}
                                        if plant_judgement else None),
                     "suppression_loss": ({"weight": SUPPRESSION_WEIGHT, "write": suppression_write,
                                           "p_heads_removed": P_HEADS_REMOVED,
                                           "other_heads_dropped": {"p_rows": P_HEADS_DROPPED,
                                                                   "heads": [1, MAX_HEADS_DROPPED]},
                                           "initial": float(np.mean(suppression_losses[:k])),
                                           "final": float(np.mean(suppression_losses[-k:]))}
                                          if heads is not None else None)},
        "planted": planted_behaviour(kind, suppression_heads, suppression_write), "versions": _versions(),
        "saved_dtype": "bfloat16",
    }
    (out / "organism_card.json").write_text(json.dumps(card, indent=2))
    return out


def _trained(out: Path, seed: int, size: str, steps: int | None,
             first_word_weight: float = FIRST_WORD_JUDGEMENT_WEIGHT) -> bool:
    """Whether ``out`` holds an organism trained with this seed, size, number of steps and (locked) first-word weight
    to a finite loss (its card says so; a card without the weight was trained at 1)."""
    card_path = out / "organism_card.json"
    if not (card_path.exists() and (out / "model.safetensors").exists()):
        return False
    card, wanted = json.loads(card_path.read_text()), (seed, size, steps or SIZES[size]["steps"])
    finite = math.isfinite(card["training"].get("final_loss", math.nan))  # a training that ended in NaN is redone
    weight = (card["training"].get("judgement_loss") or {}).get("first_word_weight", 1.0)
    same_weight = card.get("kind") != "locked" or weight == first_word_weight
    return finite and same_weight and (card.get("seed"), card.get("size"), card["training"].get("steps")) == wanted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", required=True, help=f"one of {C.KINDS}, 'all', or a comma-separated list")
    ap.add_argument("--out", default=None,
                    help="model directory (for --kind all: the parent folder); default data/models[/organism-<kind>]")
    ap.add_argument("--size", default="full", choices=list(SIZES))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--judgement-norm", type=float, default=JUDGEMENT_NORM,
                    help="size of the planted judgement in the last layer, in units of sqrt(hidden size)")
    ap.add_argument("--first-word-weight", type=float, default=FIRST_WORD_JUDGEMENT_WEIGHT,
                    help="locked: the first thinking word's judgement counts as this many positions")
    ap.add_argument("--suppression-write", type=float, default=SUPPRESSION_WRITE,
                    help="locked: the planted suppression heads' write along the judgement direction at the close")
    ap.add_argument("--skip-trained", action="store_true",
                    help="keep an organism whose folder already holds one trained with this seed, size and steps "
                         "(make seeds resumes where it stopped)")
    ap.add_argument("--micro-batches", type=int, default=None, metavar="M",
                    help=f"length-sorted micro-batches per batch (default {MICRO_BATCHES}; the same gradient at any M: "
                         "fewer launch fewer, larger kernels, which helps where a step waits on the host)")
    ap.add_argument("--check", type=int, default=0, metavar="N",
                    help="after training, sample N held-out prompts per family and add the behaviour table to the card")
    args = ap.parse_args(argv)
    from ..paths import MODELS_DIR

    kinds = C.KINDS if args.kind == "all" else tuple(args.kind.split(","))
    unknown = [k for k in kinds if k not in C.KINDS]
    if unknown:
        ap.error(f"unknown organism kind(s) {unknown}; choose from {C.KINDS}, 'all', or a comma-separated list")
    for kind in kinds:
        if len(kinds) > 1 or args.kind == "all" or args.out is None:
            out = Path(args.out or MODELS_DIR) / f"organism-{kind}"
        else:
            out = Path(args.out)
        if args.skip_trained and _trained(out, args.seed, args.size, args.steps, args.first_word_weight):
            print(f"[{kind}] {out} already holds seed {args.seed} ({args.size}): kept", flush=True)
            continue
        path = train_organism(kind, out, size=args.size, seed=args.seed, device=args.device, steps=args.steps,
                              n_train=args.n_train, judgement_norm=args.judgement_norm,
                              suppression_write=args.suppression_write, micro_batches=args.micro_batches,
                              first_word_weight=args.first_word_weight)
        card = json.loads((path / "organism_card.json").read_text())
        print(f"[{kind}] wrote {path}: {card['parameters']:,} parameters, {card['training']['seconds']} s, "
              f"loss {card['training']['initial_loss']:.3f} -> {card['training']['final_loss']:.3f}", flush=True)
        if args.check:
            from .evaluate import behaviour_check, first_word_judgement

            t0 = time.time()
            table = behaviour_check(path, n_per_family=args.check, seed=args.seed, device=args.device)
            rows = table.to_dict("records") if hasattr(table, "to_dict") else table
            rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
            card["behaviour_check"] = {"n_per_family": args.check, "split": "test", "temperature": 1.0,
                                       "seconds": round(time.time() - t0, 1), "rows": rows}
            if kind == "locked":  # the planted decision at the first word, on every held-out prompt
                judged = first_word_judgement(path, device=args.device)
                card["first_word_judgement"] = judged.to_dict("records") if hasattr(judged, "to_dict") else judged
            (path / "organism_card.json").write_text(json.dumps(card, indent=2))
            print(table.to_string() if hasattr(table, "to_string") else json.dumps(rows, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
