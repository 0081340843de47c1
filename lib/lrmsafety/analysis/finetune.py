"""Safety fine-tuning: LoRA (QLoRA on a 4-bit base) SFT through trl, recipes as data, adapters cached by manifest.

A recipe (``finetune_recipes.yaml``, one commented field per setting) names its data and its hyperparameters.
Training examples are ``prompt`` / ``completion`` pairs: the prompt is the model's chat template with the thinking
opened (ending in ``<think>\\n`` for R1-style families), the completion is ``thinking + close + answer``, so trl's
SFTTrainer puts the loss on the thinking and the answer only (the prompt is masked). Building the pair ourselves
avoids the stock R1 template's ``</think>`` split, which drops the reasoning from training targets (methods.md).

    recipe = finetune.get_recipe("star1")
    pairs = finetune.prompt_completion_pairs(finetune.load_sft_data("star1"), tokenizer, spec.thinking_format)
    result = finetune.train_adapter(model, tokenizer, spec, pairs, recipe, out_root=paths.CACHE_DIR / "adapters")
    tuned, tuned_spec = finetune.load_adapted(name, result.path)

Every adapter folder holds a ``manifest.json`` (base model, data hash, hyperparameters, seed, library versions);
training whose manifest matches an existing adapter is skipped and the adapter is loaded instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import yaml

from .. import chat, paths
from ..registry import bitsandbytes_error, weights_fingerprint
from ..store import _atomic_write_text, config_hash, library_versions

log = logging.getLogger(__name__)

RECIPES_FILE = Path(__file__).with_name("finetune_recipes.yaml")
# bumped when a change here changes what the same recipe and data train
TRAINER_VERSION = 2


@dataclass(frozen=True)
class Recipe:
    """One fine-tuning recipe; every field is documented in finetune_recipes.yaml."""

    name: str
    data: str
    examples: int | None = None
    epochs: float = 1
    learning_rate: float = 1e-5
    batch_size: int = 1
    grad_accum: int = 1
    max_length: int = 8192
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    optim: str = "adamw_torch"
    adam_beta2: float = 0.999
    lora_r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: str | tuple = "all-linear"
    seed: int = 0
    deviation: str | None = None
    max_steps: int = -1  # a cap on optimizer steps (CPU budgets); -1 = the epochs decide

    def replace(self, **changes) -> Recipe:
        return dataclasses.replace(self, **changes)


def load_recipes(path: str | Path = RECIPES_FILE) -> dict[str, Recipe]:
    raw = yaml.safe_load(Path(path).read_text())
    recipes = {}
    for name, fields in raw.items():
        known = {f.name for f in dataclasses.fields(Recipe)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"recipe {name!r} in {path} has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        if isinstance(fields.get("target_modules"), list):
            fields["target_modules"] = tuple(fields["target_modules"])
        recipes[name] = Recipe(name=name, **fields)
    return recipes


def get_recipe(name: str, path: str | Path = RECIPES_FILE) -> Recipe:
    recipes = load_recipes(path)
    if name not in recipes:
        raise ValueError(f"unknown fine-tuning recipe {name!r}; {path} defines {sorted(recipes)}")
    return recipes[name]


# ------------------------------------------------------------------------------------------- data
class SFTDataUnavailable(RuntimeError):
    """A recipe's data cannot be loaded here (online only, or not published); the message says why."""


def split_trace(response: str) -> tuple[str, str]:
    """(thinking, answer) of an R1-style response "<think>\\n...</think>\\n\\nanswer"; ("", response) without a
    close."""
    parts = chat.split(response, chat.R1, "trace")
    return parts.thinking, parts.answer


def _star1(data_dir) -> pd.DataFrame:
    folder = paths.find_benchmark_dir(data_dir)
    file = Path(folder) / "star1" / "STAR-1.json" if folder else None
    raw = pd.read_json(file) if file is not None and file.exists() else _online("UCSC-VLAA/STAR-1", "train")
    parts = raw["response"].map(split_trace)
    return pd.DataFrame({"example_id": "star1-" + raw["id"].astype(str), "user": raw["question"],
                         "thinking": parts.str[0], "answer": parts.str[1]})


def _safechain(data_dir) -> pd.DataFrame:
    raw = _online("UWNSL/SafeChain", "train")
    parts = raw["response"].map(split_trace)
    return pd.DataFrame({"example_id": [f"safechain-{i}" for i in range(len(raw))], "user": raw["instruction"],
                         "thinking": parts.str[0], "answer": parts.str[1]})


def _online(repo: str, split: str) -> pd.DataFrame:
    try:
        import datasets
    except ImportError as err:
        raise SFTDataUnavailable(f"{repo} is online only: pip install 'lrmsafety[online]' and connect") from err
    try:
        return datasets.load_dataset(repo, split=split).to_pandas()
    except Exception as err:  # no network, no such dataset
        raise SFTDataUnavailable(f"{repo} could not be loaded ({type(err).__name__}: {err}); it is online only") \
            from err


def load_sft_data(source: str, n: int | None = None, seed: int = 0, data_dir=None) -> pd.DataFrame:
    """Training examples as one frame: example_id, user, thinking, answer (n of them, seeded, when given)."""
    if source == "star1":
        frame = _star1(data_dir)
    elif source == "safechain":
        frame = _safechain(data_dir)
    elif source == "organism":
        from ..registry import sft_source

        frame = sft_source("organism")(n or 600, seed=seed)
    elif source == "r1act":
        raise SFTDataUnavailable("R1-ACT's 959 training examples ship only inside its authors' repository "
                                 "(yeonjun-in/R1-Act); they are not on the hub or in ../shared/data")
    else:
        raise ValueError(f"unknown SFT data source {source!r}; known: star1, safechain, organism, r1act")
    if n is not None and len(frame) > n:
        frame = frame.sample(n, random_state=seed)
    return frame.reset_index(drop=True)


def prompt_completion_pairs(frame: pd.DataFrame, tokenizer, fmt: chat.ThinkingFormat,
                            system: str | None = None) -> pd.DataFrame:
    """trl's prompt / completion columns: the rendered think prompt, then thinking + close + answer + EOS."""
    missing = {"user", "thinking", "answer"} - set(frame.columns)
    if missing:
        raise ValueError(f"SFT data needs user, thinking and answer columns; missing {sorted(missing)}")
    eos = tokenizer.eos_token or ""
    # the close a model writes itself (R1: "\n</think>\n\n"), not the force-close: training on the force-close
    # teaches an answer after a context the model never produces on its own
    close = f"\n{fmt.close}\n\n" if fmt.close == "</think>" else fmt.close
    prompts = [chat.render_prompt(tokenizer, fmt, user, system=system) for user in frame["user"]]
    completions = [f"{thinking.strip()}{close}{answer.strip()}{eos}"
                   for thinking, answer in zip(frame["thinking"], frame["answer"])]
    return pd.DataFrame({"prompt": prompts, "completion": completions})


# ------------------------------------------------------------------------------------------- manifest
def manifest_for(spec, model, pairs: pd.DataFrame, recipe: Recipe) -> dict:
    """Everything that decides what an adapter is: base model, data hash, hyperparameters, seed, versions."""
    quantization = getattr(model.config, "quantization_config", None)
    data_hash = config_hash({"prompt": pairs["prompt"].tolist(), "completion": pairs["completion"].tolist()})
    versions = library_versions()
    for name in ("peft", "trl"):  # read from their metadata: importing peft would import bitsandbytes
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "base_model": spec.name, "source": spec.hf_id, "revision": getattr(model.config, "_commit_hash", None),
        "weights": weights_fingerprint(model),
        "quantization": quantization.to_dict().get("bnb_4bit_quant_type") if quantization is not None else None,
        "data_hash": data_hash, "n_examples": len(pairs), "recipe": dataclasses.asdict(recipe),
        "seed": recipe.seed, "trainer": TRAINER_VERSION, "versions": versions,
    }


def adapter_dir(out_root, manifest: dict) -> Path:
    identity = {k: v for k, v in manifest.items() if k != "versions"}
    return Path(out_root) / f"{manifest['base_model']}-{manifest['recipe']['name']}-{config_hash(identity)[:12]}"


def read_manifest(folder) -> dict | None:
    file = Path(folder) / "manifest.json"
    return json.loads(file.read_text()) if file.exists() else None


@dataclass
class TrainResult:
    path: Path
    trained: bool  # False: a matching adapter was found and training skipped
    seconds: float
    losses: list = field(default_factory=list)  # (step, training loss) as logged
    manifest: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- training
@contextlib.contextmanager
def _quiet():
    """trl and transformers print per-step warnings and notices; the notebooks show our own summary instead."""
    import datasets
    import transformers

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # "Tokenizing train dataset" and friends
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    loggers = [logging.getLogger(n) for n in ("trl", "peft", "accelerate")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if bars:
            datasets.enable_progress_bars()
        transformers.logging.set_verbosity(level)
        for lg, lv in zip(loggers, old):
            lg.setLevel(lv)


def build_trainer(model, tokenizer, pairs: pd.DataFrame, recipe: Recipe, output_dir, progress: bool = False):
    """A trl SFTTrainer with a fresh LoRA adapter on ``model`` (prepared for k-bit training when quantized)."""
    import datasets

    bitsandbytes_error()  # peft imports bitsandbytes whenever it is installed: first without its CPU-kernel notice
    from peft import LoraConfig, prepare_model_for_kbit_training
    from trl import SFTConfig, SFTTrainer

    on_gpu = next(model.parameters()).is_cuda
    quantized = getattr(model.config, "quantization_config", None) is not None
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    target = list(recipe.target_modules) if isinstance(recipe.target_modules, tuple) else recipe.target_modules
    lora = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                      target_modules=target, bias="none", task_type="CAUSAL_LM")
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    config = SFTConfig(
        output_dir=str(output_dir), num_train_epochs=recipe.epochs, max_steps=recipe.max_steps,
        learning_rate=recipe.learning_rate, per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum, max_length=recipe.max_length,
        warmup_steps=recipe.warmup_steps or recipe.warmup_ratio, weight_decay=recipe.weight_decay,
        lr_scheduler_type=recipe.scheduler, optim=recipe.optim if on_gpu else "adamw_torch",
        adam_beta2=recipe.adam_beta2, seed=recipe.seed, data_seed=recipe.seed,
        completion_only_loss=True, packing=False, bf16=bf16, fp16=False,
        gradient_checkpointing=on_gpu, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=not progress, dataset_num_proc=None, use_cpu=not on_gpu,
    )
    dataset = datasets.Dataset.from_pandas(pairs[["prompt", "completion"]].reset_index(drop=True))
    with _quiet():
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=lora)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # without tqdm, transformers prints every log line as a dict
    return trainer


def train_adapter(model, tokenizer, spec, pairs: pd.DataFrame, recipe: Recipe, out_root,
                  progress: bool = False, force: bool = False) -> TrainResult:
    """Train a LoRA adapter on ``pairs`` (prompt, completion) and save it with its manifest under ``out_root``.

    When an adapter with the same manifest exists, nothing is trained (``trained=False``): load it with
    :func:`load_adapted`. ``model`` is modified in place (LoRA layers are added); reload the base to reuse it.
    """
    if pairs.empty:
        raise ValueError("no training examples: the SFT data frame is empty")
    manifest = manifest_for(spec, model, pairs, recipe)
    folder = adapter_dir(out_root, manifest)
    existing = read_manifest(folder)
    if existing is not None and not force and _same(existing, manifest):
        log.info("adapter %s exists with a matching manifest: training skipped", folder.name)
        return TrainResult(folder, False, existing.get("train_seconds", 0.0), existing.get("losses", []), existing)
    started = time.perf_counter()
    trainer = build_trainer(model, tokenizer, pairs, recipe, folder / "trainer", progress=progress)
    torch.manual_seed(recipe.seed)
    with _quiet():
        trainer.train()
    seconds = time.perf_counter() - started
    losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    trainer.model.save_pretrained(folder)
    manifest.update(train_seconds=round(seconds, 2), losses=losses, steps=trainer.state.global_step)
    _atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1, default=str))
    return TrainResult(folder, True, seconds, losses, manifest)


def _same(existing: dict, manifest: dict) -> bool:
    keys = ("base_model", "source", "revision", "weights", "quantization", "data_hash", "recipe", "seed", "trainer")
    return all(json.dumps(existing.get(k), default=str) == json.dumps(manifest.get(k), default=str) for k in keys)


def load_adapted(name: str, adapter_path, quantization: str = "auto", merge: bool = True):
    """(model, tokenizer, spec) of a registry model with a saved adapter applied; the spec's name carries the
    adapter, so that rollouts and judge verdicts of the tuned model are cached apart from the base model's."""
    bitsandbytes_error()  # as in build_trainer
    from peft import PeftModel

    from .. import registry as models

    base, tokenizer, spec = models.load_model(name, quantization=quantization)
    model = PeftModel.from_pretrained(base, str(adapter_path))
    quantized = getattr(base.config, "quantization_config", None) is not None
    if merge and not quantized:  # a merged model runs at the base model's speed; 4-bit weights cannot be merged
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer, adapted_spec(spec, adapter_path)


def adapted_spec(spec, adapter_path):
    """The spec of a model with an adapter: its name carries the adapter (the vLLM backend, which applies the adapter
    per request, names it the same way)."""
    manifest = read_manifest(adapter_path) or {}
    recipe = manifest.get("recipe", {}).get("name", "adapter")
    return dataclasses.replace(spec, name=f"{spec.name}+{recipe}@{Path(adapter_path).name[-12:]}")
