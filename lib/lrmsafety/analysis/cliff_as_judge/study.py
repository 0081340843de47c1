"""Paper B's Cliff-as-a-Judge, the loop of notebook 09: the pool's cliff sizes, one LoRA adapter per distinct
selection, the held-out evaluation of each, and the table of ASR and ORR with 95% intervals.

    Study(...)                                  the settings every step shares (cache, judges, recipe, prompts)
      .pool(rollouts, answers_for, fmt)         the SFT pool from the rollouts the model closed itself, or None
                                                and the reason when it closed none
      .with_cliff(name, model, tokenizer, spec, pool)
                                                plateau, final and MS per example from notebook 05's probe (NaN,
                                                and no probe, when 05 saved none: see no_probe)
      .prepare(name, ..., conditions)           both, and the table's NA rows for what cannot run, with the reason
      .run(name, pool, selectors, shares, ...)  the base model, one adapter per distinct selection (the same steps
                                                for every one) and the epoch arm (the whole pool for E epochs), each
                                                evaluated on held-out prompts
      .prepare_all(names, conditions, source)   .prepare for every model (source: .own_rollouts(prompts) on real
                                                models, organism.safe_answers.cliff_pool_source on the organisms)
      .run_all(pools, selectors, shares, ...)   .run for every model's pool, the evaluations in one frame
    conditions(selectors, shares, full_epochs)  every (selector, share) the table holds; n_runs: adapters per model
    epoch_steps(n, epochs, batch_size)          the epoch arm's optimizer steps (the trainer's own count)
    (the table of ASR and ORR per condition, and of each selector against random, is in cliff_as_judge.table)
    usable(pool, selectors)                     the selectors that can run on a pool (none without; no cliff one
                                                without cliff sizes)
    cliff_summary(pools)                        plateau, final and MS by model and outcome
    figure(asr, ...), compare(asr, ...)         the notebook's figure and its control checks

Every selector at 100% takes the whole pool, so those selections train and evaluate once. A fixed number of steps
for every selection compares *which* examples a selector picks, but sees a 1.7% selection many times and the whole
pool less than once; the epoch arm (``all_epochs``) trains the whole pool for a number of epochs instead, the
comparison that "matches training on all of the data" asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ... import chat
from ...engine import generate
from ...judges import labels as evaluate
from .. import cliff, cliff_probe, finetune
from . import pool as safety_pool
from . import selection
from .table import not_run

# paper B's figure script (fig/flexible_validation_curves.py; likely R1-Distill-Llama-8B, low-medium confidence;
# methods.md section 2): ASR by share of the training data, and with no fine-tuning
PUBLISHED = pd.DataFrame({
    "share": [0.05, 0.125, 0.25, 0.5, 1.0] * 3,
    "selector": ["cliff_ms"] * 5 + ["random"] * 5 + ["rule"] * 5,
    "ASR": [.055, .01, .02, .02, .03, .06, .04, .08, .15, .03, .07, .09, .08, .07, .03]})
PUBLISHED_BASE_ASR = .235
EPOCH_ARM = "all_epochs"  # the selector name of the epoch arm in the table (share 1.0)
EVALUATED_COLUMNS = ["model", "selector", "seed", "share", "steps", "prompt_id", "label", "refused", "answer"]


def epoch_steps(n_examples: int, epochs: float, batch_size: int, grad_accum: int = 1) -> int:
    """Optimizer steps of ``epochs`` passes over ``n_examples`` (transformers' Trainer: a last partial batch is kept,
    ceil(n / batch) batches per epoch, ceil(batches / grad_accum) steps per epoch, ceil(epochs x that) in all)."""
    if n_examples < 1 or epochs <= 0:
        raise ValueError(f"the epoch arm needs examples and epochs > 0, got {n_examples} examples, {epochs} epochs")
    per_epoch = max(1, math.ceil(math.ceil(n_examples / batch_size) / grad_accum))
    return math.ceil(epochs * per_epoch)


@dataclass
class Study:
    """The settings shared by notebook 09's steps. ``label_judges`` names paper B's judges (label ``refused_b``)."""

    cache: Path
    label_judges: dict
    quantization: str
    recipe: finetune.Recipe
    eval_prompts: pd.DataFrame  # held-out prompts with prompt_id, prompt, label (harmful / benign)
    eval_decoding: generate.Decoding
    full_epochs: float | None = None  # the epoch arm: the whole pool for this many epochs (None or 0: no arm)
    probes: Path | None = None  # where notebook 05 saved its probes (the run's S.index; None: cache)
    backend: str = "transformers"  # the pool's and held-out rollouts and their guards: transformers or vllm

    @property
    def judge(self) -> str:
        """Paper B's label as the table names it: refused_b and its judges."""
        return f"refused_b ({' + '.join(self.label_judges['B'])})"

    def judged(self, frame: pd.DataFrame, fmt: chat.ThinkingFormat) -> pd.DataFrame:
        """Rollouts with paper B's refusal label (``refused_b``, judged on the answer) as ``refused``."""
        labels = evaluate.paper_labels(frame, self.label_judges, fmt, cache_root=self.cache, quantization="nf4",
                                       papers=["B"], report=lambda message: None, backend=self.backend)
        return frame.drop(columns=["refused"], errors="ignore").merge(
            labels[evaluate.KEY + ["refused_b"]], on=evaluate.KEY).rename(columns={"refused_b": "refused"})

    # ------------------------------------------------------------------------------------------- the pool
    def pool(self, rollouts: pd.DataFrame, answers_for: Callable[[pd.DataFrame], Sequence[str]],
             fmt: chat.ThinkingFormat) -> tuple[pd.DataFrame | None, str]:
        """(the pool, what it holds): the rollouts the model closed itself, judged, each with its safe answer
        (``answers_for(rollouts)``, one per row). None and the reason when the model closed no thinking."""
        closed = safety_pool.closed_only(rollouts)
        counted = f"{len(closed)} of {len(rollouts)} pool traces closed their thinking"
        if closed.empty:
            return None, f"{counted}: no cliff can be read and there is no pool to select from"
        closed = self.judged(closed.reset_index(drop=True), fmt)
        pool = safety_pool.build_pool(closed, answers_for(closed), fmt)
        return pool, f"{counted} (force-closed ones left out); {len(pool)} pool examples, " \
                     f"{int((~pool['refused'].astype(bool)).sum())} complied"

    def with_cliff(self, name: str, model, tokenizer, spec, pool: pd.DataFrame):
        """(the pool with each example's plateau, final-token score and MS, notebook 05's probe): paper B's probe,
        read at the last layer along each example's own thinking. Without a probe from 05: NaN, and None."""
        path = cliff.probe_path(self.probes or self.cache, name)
        if not path.exists():
            return pool.assign(plateau=np.nan, final=np.nan, ms=np.nan), None
        probe = cliff_probe.LinearRefusalProbe.load(path)
        layer = model.config.get_text_config().num_hidden_layers  # paper B: the last layer
        inputs = cliff.probe_inputs(tokenizer, pool, spec.thinking_format.close)
        inputs = inputs.assign(prompt_id=pool["prompt_id"], sample_index=pool["sample_index"])
        table = cliff.curves_store(self.cache, name, probe, pool, layer)  # 05's names, built in one place
        curves = cliff.score_curves(model, tokenizer, inputs, probe, layer, store=table)
        return pool.join(cliff.cliff_sizes(curves, inputs["n_thinking"]).set_index(pool.index)), probe

    def prepare(self, name: str, model, tokenizer, spec, rollouts: pd.DataFrame, answers_for,
                conditions: Sequence[tuple[str, float]]) -> tuple[pd.DataFrame | None, str, list[pd.DataFrame]]:
        """(the pool with its cliff sizes or None, what it holds, NA rows of the table for the conditions that cannot
        run): without closed traces every condition, without notebook 05's probe the cliff selectors."""
        pool, note = self.pool(rollouts, answers_for, spec.thinking_format)
        if pool is None:
            return None, note, [not_run(name, conditions, note, self.judge)]
        pool, probe = self.with_cliff(name, model, tokenizer, spec, pool)
        if probe is None:
            cliffless = [c for c in conditions if c[0] in selection.NEEDS_CLIFF]
            return pool, f"{note}; {no_probe(name)}", [not_run(name, cliffless, no_probe(name), self.judge)]
        return pool, f"{note}; notebook 05's probe, validation accuracy {probe.val_accuracy_:.3f}", []

    # ------------------------------------------------------------------------------------------- adapters
    def evaluate(self, model, tokenizer, spec, pool: pd.DataFrame | None) -> pd.DataFrame:
        """Held-out rollouts of a (tuned) model, judged; the spec's name carries the adapter, so caches stay apart."""
        return self.judged_evaluation(self.eval_rollouts(model, tokenizer, spec, pool), spec)

    def eval_rollouts(self, model, tokenizer, spec, pool: pd.DataFrame | None) -> pd.DataFrame:
        """The held-out rollouts of a (tuned) model, or of a vLLM engine (with its adapter), cached."""
        return generate.rollouts(model, tokenizer, spec, safety_pool.held_out(self.eval_prompts, pool),
                                 self.eval_decoding, cache_root=self.cache, progress=False)

    def judged_evaluation(self, frame: pd.DataFrame, spec) -> pd.DataFrame:
        return self.judged(frame, spec.thinking_format).merge(self.eval_prompts[["prompt_id", "label"]],
                                                              on="prompt_id")

    def train(self, name: str, rows: pd.DataFrame, recipe: finetune.Recipe):
        """Fine-tune a fresh copy of the base model on the rows (skipped when the adapter is cached)."""
        from ... import registry

        base, tokenizer, spec = registry.load_model(name, quantization=self.quantization)
        pairs = safety_pool.sft_pairs(rows, tokenizer.eos_token)
        return finetune.train_adapter(base, tokenizer, spec, pairs, recipe, out_root=self.cache / "09-adapters")

    def tuned(self, name: str, rows: pd.DataFrame, pool: pd.DataFrame, recipe: finetune.Recipe):
        """Fine-tune a fresh copy of the base model on the rows (skipped when the adapter is cached), evaluate."""
        result = self.train(name, rows, recipe)
        tuned, tokenizer, tuned_spec = finetune.load_adapted(name, result.path, quantization=self.quantization)
        return self.evaluate(tuned, tokenizer, tuned_spec, pool), result

    def run(self, name: str, pool: pd.DataFrame | None, selectors: Sequence[str], shares: Sequence[float],
            random_seeds: Sequence[int] = (0,), seed: int = 0, train_seeds: Sequence[int] = (0,)
            ) -> tuple[list[pd.DataFrame], list]:
        """(evaluated frames, training results): the base model (selector ``none``, share 0), then one adapter per
        distinct selection and fine-tuning seed (``selection.plan`` of the usable selectors; identical selections
        with the same seed train and evaluate once), then the epoch arm when ``full_epochs`` is set. Each selector
        but random fine-tunes once per ``train_seeds``; random selection ``s`` fine-tunes with seed ``s``, so its
        runs vary both. The ``seed`` column is the run's. Without a pool, the base model only."""
        from dataclasses import replace

        chosen_by = usable(pool, selectors)
        plan = selection.plan(pool, shares, chosen_by, random_seeds, seed=seed) if chosen_by else {}
        runs, trainings = [], {}  # the table's (selector, seed, share, selection) in order; each selection's training
        for (selector, sel_seed), by_share in plan.items():
            for run_seed in ([sel_seed] if selector == "random" else list(train_seeds)):
                for share, chosen in by_share.items():
                    key = (tuple(sorted(pool.index[chosen])), run_seed)
                    trainings.setdefault(key, (pool.iloc[chosen], replace(self.recipe, seed=run_seed)))
                    runs.append((selector, run_seed, share, key))
        if pool is not None and self.full_epochs:
            trainings[EPOCH_ARM] = (pool, self.epoch_recipe())
            runs.append((EPOCH_ARM, 0, 1.0, EPOCH_ARM))
        evaluate = self._evaluations_vllm if self.backend == "vllm" else self._evaluations
        base, evaluated = evaluate(name, pool, trainings)
        frames = [base.assign(model=name, selector="none", seed=0, share=0.0, steps=0)]
        for selector, sel_seed, share, key in runs:
            frame, result = evaluated[key]
            steps = result.manifest.get("steps", None if key == EPOCH_ARM else self.recipe.max_steps)
            frames.append(frame.assign(model=name, selector=selector, seed=sel_seed, share=share, steps=steps))
        return frames, [result for _, result in evaluated.values()]

    def _evaluations(self, name: str, pool, trainings: dict) -> tuple[pd.DataFrame, dict]:
        """(the base model's evaluation, {selection: (its evaluation, its training)}) on transformers: each adapter
        trained, merged and evaluated in turn."""
        from ... import registry

        base, tokenizer, spec = registry.load_model(name, quantization=self.quantization)
        untuned = self.evaluate(base, tokenizer, spec, pool)
        return untuned, {key: self.tuned(name, rows, pool, recipe) for key, (rows, recipe) in trainings.items()}

    def _evaluations_vllm(self, name: str, pool, trainings: dict) -> tuple[pd.DataFrame, dict]:
        """As :meth:`_evaluations` with the held-out rollouts through vLLM: every adapter is trained first (on
        transformers), then one engine generates the base model's rollouts and each adapter's (a LoRA request each),
        and is closed before the judges load."""
        from ...engine import backends, vllm_backend

        results = {key: self.train(name, rows, recipe) for key, (rows, recipe) in trainings.items()}
        paths = [result.path for result in results.values()]
        lora = {"enable_lora": True, "max_lora_rank": vllm_backend.lora_rank(paths)} if paths else {}
        llm, tokenizer, spec = backends.load_generator(name, "vllm", self.quantization, **lora)
        untuned = self.eval_rollouts(llm, tokenizer, spec, pool)
        tuned = {key: (self.eval_rollouts(vllm_backend.Adapted(llm, result.path, i), tokenizer,
                                          finetune.adapted_spec(spec, result.path), pool), result)
                 for i, (key, result) in enumerate(results.items(), start=1)}
        backends.close(llm)  # the judges load next
        del llm
        return (self.judged_evaluation(untuned, spec),
                {key: (self.judged_evaluation(frame, spec), result) for key, (frame, result) in tuned.items()})

    def run_all(self, pools: dict, selectors: Sequence[str], shares: Sequence[float],
                random_seeds: Sequence[int] = (0,), seed: int = 0, train_seeds: Sequence[int] = (0,)
                ) -> tuple[pd.DataFrame, list]:
        """:meth:`run` for every model's pool: (all evaluated rollouts in one frame, every training result)."""
        frames, results = [], []
        for name, pool in pools.items():
            more, runs = self.run(name, pool, selectors, shares, random_seeds, seed=seed, train_seeds=train_seeds)
            frames, results = frames + more, results + runs
        return pd.concat(frames, ignore_index=True), results

    def own_rollouts(self, pool_prompts: pd.DataFrame):
        """Paper B's pool source on real models: ``(name, model, tokenizer, spec) -> (rollouts, answers_for)``, the
        model's own rollouts of the pool's prompts, each with its dataset's safe answer."""
        def source(name, model, tokenizer, spec):
            rollouts = generate.rollouts(model, tokenizer, spec, pool_prompts, self.eval_decoding,
                                         cache_root=self.cache)
            return (rollouts.merge(pool_prompts[["prompt_id", "safe_answer"]], on="prompt_id"),
                    lambda frame: frame["safe_answer"])
        return source

    def prepare_all(self, names: Sequence[str], conditions: Sequence[tuple[str, float]], source,
                    report: Callable[[str], None] = print) -> tuple[dict, list[pd.DataFrame]]:
        """:meth:`prepare` for every model, its pool from ``source(name, model, tokenizer, spec) -> (rollouts,
        answers_for)``: ({name: pool or None}, the table's NA rows for what cannot run); one line per model."""
        from ...engine import backends

        pools, missing = {}, []
        for name in names:
            generator, tokenizer, spec = backends.load_generator(name, self.backend, self.quantization)
            rollouts, answers_for = source(name, generator, tokenizer, spec)
            # the cliff is read from hidden states: on the vLLM backend the engine closes and transformers loads
            model, tokenizer, spec = backends.transformers_model((generator, tokenizer, spec), name, self.quantization)
            del generator
            pools[name], note, rows = self.prepare(name, model, tokenizer, spec, rollouts, answers_for, conditions)
            missing += rows
            report(f"{name}: {note}")
            del model
        return pools, missing

    def epoch_recipe(self) -> finetune.Recipe:
        """The fixed-step recipe with the epochs deciding the steps (``max_steps = -1``)."""
        return self.recipe.replace(name=f"{self.recipe.name}-epochs", max_steps=-1, epochs=self.full_epochs)


def conditions(selectors: Sequence[str], shares: Sequence[float], full_epochs: float | None) -> list:
    """Every (selector, share) the table holds for a model, NA or not (the epoch arm at 100% when it is set)."""
    return [(s, share) for s in selectors for share in shares] + [(EPOCH_ARM, 1.0)] * bool(full_epochs)


def n_runs(selectors: Sequence[str], shares: Sequence[float], random_seeds: Sequence[int],
           train_seeds: Sequence[int] = (0,)) -> int:
    """Fixed-step adapters per model: every selector but random once per fine-tuning seed, random once per
    selection seed; at 100% every selector takes the same data, so one run per fine-tuning seed there."""
    partial = [share for share in shares if share < 1]
    others = len([s for s in selectors if s != "random"])
    randoms = len(random_seeds) if "random" in selectors else 0
    return len(partial) * (others * len(train_seeds) + randoms) + (len(partial) < len(shares)) * len(train_seeds)


def no_probe(name: str) -> str:
    return (f"notebook 05 saved no refusal probe for {name} (a model that never refuses gives it nothing to train "
            "on; or 05 has not run): no cliff size, so no cliff selector")


def usable(pool: pd.DataFrame | None, selectors: Sequence[str]) -> list[str]:
    """The selectors that can run on this pool: none without a pool, no cliff selector without cliff sizes."""
    if pool is None:
        return []
    has_cliff = "ms" in pool and pool["ms"].notna().any()
    return [s for s in selectors if has_cliff or s not in selection.NEEDS_CLIFF]


def cliff_summary(pools: dict) -> pd.DataFrame:
    """Mean plateau, final-token score and MS (and counts) per model and outcome (refused / complied) of the pools."""
    frames = [pool.assign(model=name, outcome=pool["refused"].map({True: "refused", False: "complied"}))
              for name, pool in pools.items() if pool is not None]
    summary = pd.concat([pd.DataFrame(columns=["model", "outcome", "plateau", "final", "ms"])] + frames)
    return summary.groupby(["model", "outcome"])[["plateau", "final", "ms"]].agg(["mean", "count"]).round(3)


# ------------------------------------------------------------------------------------------- the figure and checks
STYLES = {"cliff_ms": ("C0", "o"), "cliff_final": ("C2", "s"), "random": ("C3", "^"), "rule": ("C4", "D"),
          "rule_complied": ("C6", "P"), "length": ("C5", "v"), EPOCH_ARM: ("k", "*")}


def figure(asr: pd.DataFrame, studied: Sequence[str], published: pd.DataFrame, published_base: float,
           shares: Sequence[float], full_epochs: float | None = None):
    """ASR against the share of the pool per model (pooled rows with a value; the untuned model as a grey band,
    the epoch arm as a star at 100%), and paper B's published curve beside them."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(studied) + 1, figsize=(4.2 * (len(studied) + 1), 3.4), sharey=True,
                             squeeze=False)
    axes = axes[0]
    dodge = {selector: 1.06 ** i for i, selector in enumerate(STYLES)}  # selectors often tie: nudge them apart
    dodge[EPOCH_ARM] = 0.92  # left of the fixed-step 100%
    for ax, name in zip(axes, studied):
        mine = asr[asr["model"] == name]
        base = mine[mine["selector"] == "none"]
        if len(base):
            ax.axhspan(base["low"].iloc[0], base["high"].iloc[0], color="grey", alpha=0.15, label="no fine-tuning")
        for selector, rows in mine[mine["selector"] != "none"].groupby("selector"):
            rows = rows.sort_values("share")
            color, marker = STYLES.get(selector, ("k", "."))
            yerr = np.clip([rows["value"] - rows["low"], rows["high"] - rows["value"]], 0, None)
            label = f"all, {full_epochs:g} epochs" if selector == EPOCH_ARM else selector
            ax.errorbar(rows["share"] * 100 * dodge.get(selector, 1), rows["value"], yerr=yerr, color=color,
                        marker=marker, capsize=2, label=label, ls="none" if selector == EPOCH_ARM else "-")
        if (mine["selector"] == "none").all():
            ax.text(0.5, 0.3, "no selection ran:\nsee the table's notes", transform=ax.transAxes, ha="center",
                    fontsize=8, color="grey")
        ax.set(xscale="log", xlabel="share of the pool (%)", title=name)
    axes[0].set_ylabel("ASR, held-out jailbreaks")
    for selector, rows in published.groupby("selector"):
        color, marker = STYLES[selector]
        axes[-1].plot(rows["share"] * 100, rows["ASR"], color=color, marker=marker, ls="--", label=selector)
    axes[-1].axhline(published_base, color="grey", ls=":", label="no fine-tuning (paper B)")
    axes[-1].set(xscale="log", xlabel="share of the pool (%)", title="paper B (figure script, dashed)")
    ticks = sorted(set(shares) | set(published["share"]))
    legend = {}  # one legend for every panel, below them: inside, it hid points wherever the curves went
    for ax in axes:
        ax.set_xticks([t * 100 for t in ticks], [f"{t * 100:g}" for t in ticks], fontsize=7)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=len(legend),
               fontsize=7, frameon=False)
    return fig


def compare(asr: pd.DataFrame, name: str, share: float, first: str = "cliff_ms", second: str = "random"):
    """One model's ASR under two selectors at one share, and whether their intervals separate (None when either
    is missing)."""
    def row(selector):
        found = asr[(asr["model"] == name) & (asr["selector"] == selector) & (asr["share"] == share)]
        return None if found.empty else found.iloc[0]

    a, b = row(first), row(second)
    if a is None or b is None:
        return None
    text = lambda r: f"{r['value']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"  # noqa: E731
    return {"model": name, "share": share, "first": first, "ASR first": text(a), "steps first": a["steps"],
            "second": second, "ASR second": text(b), "steps second": b["steps"],
            "intervals separate": a["high"] < b["low"] or b["high"] < a["low"], "first lower": a["value"] < b["value"]}
