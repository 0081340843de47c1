"""Every parameter of the notebooks, declared once: its type, its default and what it means.

A profile is a file ``params/<name>.yaml`` that sets some of these keys; ``inherits: <profile>`` takes another
profile's values first (``smoke`` inherits ``organism``, ``paper-smoke`` and ``paper-gpu`` inherit ``paper``), and
whatever no file sets keeps the default below. The defaults are the ``organism`` profile: our own small reasoning
models on the CPU, the default of ``make all`` and of a notebook opened in Jupyter or Colab.

Each notebook declares only ``profile``, ``model`` and ``backend`` (what papermill injects) and starts with
``P = params.load(profile, model, backend)``; it then reads ``P.n_prompts`` and so on. A key that is misspelled, of
the wrong type or out of range is an error that names the file and the nearest key.

``python -m lrmsafety.params <profile>`` prints a profile's values, each with the file that set it.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .paths import PARAMS_DIR


def _f(default, description: str, **constraints):
    return Field(default, description=description, **constraints)


PROMPT_TOKENS = 512  # a long benchmark prompt with its chat template (WildJailbreak's adversarial ones run to ~400)


class Params(BaseModel):
    """The parameters of one profile (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    profile: str = _f("organism", "the profile's name (params/<profile>.yaml)")
    notebooks: Optional[list[str]] = _f(
        None, "the notebooks `make all` runs on this profile, by name (null: all); written on one line, as make "
              "reads it")

    # ---- models, data, generation (01 and every notebook that reads its rollouts)
    models: list[str] = _f(["organism-locked", "organism-deliberative", "organism-null"],
                           "registry names of the models studied (MODEL= replaces the list with one model)")
    backend: Literal["transformers", "vllm"] = _f(
        "transformers", "the engine of the rollout-heavy steps (engine.backends.load_generator): vllm generates 01, "
                        "03, 05 and 07's rollouts, 04's replays, 08's conditions but SafeRemind and 09's evaluations "
                        "through vLLM (pip install \"lrmsafety[vllm]\"), and the guard and stance judges; hooks, "
                        "hidden states and training stay on transformers. BACKEND= overrides it; a vllm run keeps its "
                        "results, figures and report under <profile>/vllm/")
    gpus: Union[int, Literal["all"]] = _f(
        1, "GPUs of this host that 01's and 07's rollouts and every guard model's verdicts spread over, one worker "
           "process each (engine.parallel; the same tables as one GPU): 1, a number, or all. GPUS= overrides it")
    quantization: Literal["auto", "bf16", "fp16", "fp32", "nf4"] = _f(
        "auto", "weights: auto (on a GPU bf16, or fp16 without bf16, when the weights and the batch's KV cache fit, "
                "else nf4; fp32 on the CPU), bf16, fp16, fp32 or nf4 (4-bit, bitsandbytes)")
    data_dir: Optional[str] = _f(None, "folder with offline benchmark copies; null finds ../shared/data or data/raw, "
                                       "else loads online")
    prompt_sets: list[str] = _f(["organism"], "prompt sets; organism: the organisms' own held-out prompt families")
    n_prompts: Optional[int] = _f(30, "prompts per prompt family or dataset (null: all)", ge=1)
    samples_per_prompt: int = _f(5, "samples per prompt (SafeChain's K)", ge=1)
    max_thinking_tokens: int = _f(256, "thinking tokens before the thinking is force-closed", ge=1)
    max_answer_tokens: int = _f(96, "answer tokens after the thinking", ge=1)
    batch_size: int = _f(256, "sequences decoded together (lowered automatically when it does not fit)", ge=1)
    seed: int = _f(0, "the seed every sample's randomness derives from")
    judges: list[str] = _f(["refusal_prefix", "rs_match"],
                           "judges recorded in 01 beside the per-paper labels (name or name@registry-model)")
    label_judges: dict[Literal["A", "B", "C"], list[str]] = _f(
        {"A": ["refusal_prefix"], "B": ["paper_b_refusal"], "C": ["rs_match"]},
        "each paper's label (lrmsafety.judges.labels): A refusal by a strict majority of these on the answer (paper: "
        "wildguard, qwen3guard, granite_guardian, gpt_oss_safeguard); B paper B's word rule; C harmfulness of the "
        "whole response (paper: llama_guard_3). On the CPU string judges stand in for the guards")

    gpu_memory_gb: float = _f(80, "the GPU the cost estimates are for (lrmsafety.rates): its memory, which decides "
                                  "quantization auto's weights there", gt=0)
    gpu_bandwidth_tb_s: Optional[float] = _f(
        None, "that GPU's memory bandwidth; the measured rates (each its GPU's) are scaled by it, as estimates; null: "
              "the measuring GPU's", gt=0)
    gpu_bf16: bool = _f(True, "whether that GPU has bf16 (a T4 has not: quantization auto then takes fp16)")

    # ---- 00_organism
    card_prompts: int = _f(300, "00_organism: held-out prompts per family for the behaviour table (300: a 95% "
                                "interval of about +-0.055 at a rate of 0.5, +-0.02 near 0.98)", ge=1)

    # ---- 02 first-token probe
    valley_rollouts: Optional[int] = _f(
        200, "02: rollouts whose last-layer states are read at 100 positions for the refusal valley J(t)", ge=1)
    permutations: int = _f(199, "02: label permutations of the whole cross-validated probe (199 resolve p = 0.005), "
                           "and outcome shuffles for the null of J(t)", ge=1)

    # ---- 03/04 lock-in and deliberation (paper A)
    lockin_prompts: int = _f(3, "03/04: prompts per family or dataset", ge=1)
    traces_per_prompt: int = _f(8, "03/04: traces per prompt (paper A's M)", ge=1)
    answers_per_prefix: int = _f(8, "03/04/08: answers sampled after each cut (paper A's N)", ge=1)
    cut_answer_tokens: Optional[int] = _f(
        32, "03/04/08: tokens of each answer sampled after a cut (the organisms' refusal shows in the first words; "
            "null: max_answer_tokens, which the paper profile keeps for its guards)", ge=1)
    cut_percents: list[int] = _f([20, 40, 60, 80], "where the thinking is cut, in percent of its tokens "
                                                   "(paper A: 20/40/60/80/100)")
    baseline_rollouts: int = _f(8, "03: full rollouts per prompt whose outcomes are B = 0's continuations "
                                   "(paper A: 32)", ge=1)
    # paper A's oscillation shares are judged on the oscillations found (0.4-1.1 per trace on the organisms): 48
    # prompts x 8 traces find enough for an interval that can lie inside a target, and the replays are capped
    deliberation_prompts: Optional[int] = _f(
        12, "04: prompts per family or dataset whose traces are studied (null: lockin_prompts, 03's)", ge=1)
    deliberation_traces: int = _f(384, "04: traces whose oscillations are replayed", ge=1)
    deliberation_transitions: Optional[int] = _f(
        200, "04: oscillations replayed per model at most, a seeded sample of those found (each costs 2 x replays "
             "answers; null: every one, as paper A)", ge=1)
    replays: int = _f(50, "04: answers sampled at each replayed cut (paper A: K = 100)", ge=1)
    stance_judges: list[str] = _f(
        [], "04: paper A's three LLM stance judges (registry names; majority of 3, a three-way split goes to the "
            "last judge, build_majority3.py); []: the cue-phrase labeler")

    # ---- 05/06 refusal cliff and refusal heads (paper B)
    cliff_prompt_sets: Optional[list[str]] = _f(
        None, "05/06: paper B's prompt sets, their rollouts generated here (null: prompt_sets, 01's rollouts)")
    probe_refusal_groups: list[str] = _f(["harmful"], "05/06: groups whose refused rollouts train the probe "
                                                      "(paper: AdvBench)")
    probe_compliance_groups: list[str] = _f(["benign"], "05/06: groups whose complied rollouts train the probe "
                                                        "(paper: Alpaca / UltraChat)")
    heldout_groups: list[str] = _f(["jailbreak"], "05/06: the held-out attack group (paper: JailbreakBench)")
    cliff_rollouts: Literal["notebook_01", "paper_b"] = _f(
        "notebook_01", "05/06: notebook_01 reads 01's rollouts (the organisms were trained without a system prompt);"
                       " paper_b samples with paper B's system prompt at temperature 0.7, cached apart")
    probe_negatives: Literal["complied", "official"] = _f(
        "complied", "05: label 0 = complied rollouts; official: every compliance-group rollout whose thinking is "
                    "over 10 characters (paper B's code)")
    cliff_curve: Literal["resampled", "official"] = _f(
        "resampled", "05: each trace's curve resampled from its first thinking token; official: paper B's "
                     "test_prober curve (right-aligned, zero-padded, averaged, cubic to 100 points)")
    cliff_curve_groups: Literal["outcome", "prompt_set"] = _f("outcome", "05: one curve per outcome or per prompt set")
    probe_max_per_class: int = _f(200, "05: at most this many rollouts per probe class (paper B: 200)", ge=1)
    curve_traces: int = _f(50, "05: traces per group read at every token", ge=1)
    probe_seeds: list[Annotated[int, Field(ge=0)]] = _f(
        list(range(10)), "05: initialisation seeds of more paper-recipe probes on the saved probe's training set and "
                         "split, each read along the same traces: their mean, spread and envelope are the '(probe "
                         "seeds)' rows, and the verdicts' differences resample them (the saved probe, seed 42, keeps "
                         "the plain rows; [] = none)")
    head_score_items: int = _f(200, "06: harmful items averaged for the head scores (paper B: up to 1000)", ge=1)
    head_shares: list[float] = _f(
        [0.03, 0.04, 0.1], "06: shares of all heads ablated (of the organisms' 48: 1, 2 and 5 heads; paper B's "
                           "scripts' own counts where they give one)")
    random_draws: int = _f(5, "06: random head sets per share", ge=1)
    rescale_rules: list[Optional[Literal["batch", "position"]]] = _f(
        ["batch", None], "06: batch is paper B's one norm over the batch's attention output; position per token; "
                         "null none")
    ablation_prompts: int = _f(48, "06: attack and benign prompts each under ablation, at most n_prompts of each (at "
                                   "24 the interval of a -0.33 change reached -0.17)", ge=1)
    ablation_mode: Literal["natural", "prefix"] = _f(
        "prefix", "06: natural regenerates thinking and answer (paper B); prefix keeps the unablated thinking and "
                  "samples the answer only (CPU budget)")
    ablation_answer_tokens: int = _f(16, "06: answer tokens under ablation when ablation_max_new_tokens is null",
                                     ge=1)
    ablation_max_new_tokens: Optional[int] = _f(
        None, "06: one budget for thinking and answer, nothing force-closed (paper B: 4096); null: the thinking "
              "and answer budgets", ge=1)
    ablation_temperature: Optional[float] = _f(None, "06: sampling temperature (paper B: 0.7); null: the model's "
                                                     "own settings", ge=0)
    ablation_group_size: Optional[int] = _f(
        None, "06: fixed groups of this many rows without refill (paper B: 8, its rescaling takes one norm over the "
              "group); null: the refill scheduler", ge=1)
    asr_judge: str = _f("paper_b_refusal", "06: the ASR judge under ablation (paper B: llama_guard_4, unsafe is a "
                                           "success; the word rule: no refusal is one)")
    asr_text: Literal["answer", "output"] = _f(
        "answer", "06: what the ASR judge reads: the answer (unclosed: the whole output) or the whole output "
                  "(thinking included, as paper B's ablate.sh passes it)")

    # ---- 07 thinking budget (SafeChain)
    morethink_extensions: int = _f(2, "07: times MoreThink replaces the close with 'Wait' (SafeChain: 10)", ge=0)
    budget_prompts: Optional[int] = _f(10, "07: harmful prompts per family compared across the four decodings "
                                           "(null: all of 01's n_prompts)", ge=1)
    budget_thinking_tokens: Optional[int] = _f(None, "07: MoreThink's thinking budget (SafeChain: 10,000; null: "
                                                     "max_thinking_tokens)", ge=1)
    budget_answer_tokens: Optional[int] = _f(None, "07: answer budget (SafeChain: 6,000; null: max_answer_tokens)",
                                             ge=1)

    # ---- 08 interventions (paper A)
    intervention_prompts: int = _f(12, "08: prompts per family or dataset", ge=1)
    intervention_samples: int = _f(1, "08: samples per prompt and condition (paper A: M = 4)", ge=1)
    finetune_eval_prompts: int = _f(
        300, "08: jailbreak prompts on which the base and fine-tuned models are compared: the studied ones and more, "
             "for those two conditions only (at 48 the interval of a change of -0.27 reached +-0.17 around it)",
        ge=1)
    intervention_answer_tokens: Optional[int] = _f(
        32, "08: answer tokens per sample (null: max_answer_tokens)", ge=1)
    inference_interventions: list[Literal["safepath", "saferemind", "psr"]] = _f(
        ["safepath", "saferemind", "psr"], "08: inference-time interventions")
    finetune_recipes: list[str] = _f(["organism-safety"], "08: fine-tuning recipes (lib/lrmsafety/"
                                                          "finetune_recipes.yaml)")
    finetune_max_steps: int = _f(-1, "08: a cap on each recipe's optimizer steps (-1: the recipe's epochs)", ge=-1)
    finetune_overrides: dict[str, Any] = _f({}, "08: recipe fields replaced on this profile (e.g. examples)")
    psr_resample: Literal["fresh", "official"] = _f(
        "fresh", "08: PSR's retry after an unsafe verdict: a fresh sample, or paper A's code (same seed and prompt)")
    forced_answer_tokens: Optional[int] = _f(
        None, "08: SafeRemind / PSR answer tokens after force-closing a thinking that never closed (null: "
              "intervention_answer_tokens)", ge=1)

    # ---- 09 Cliff-as-a-Judge (paper B)
    cliff_models: Optional[list[str]] = _f(["organism-locked", "organism-deliberative"], "09: models (null: models)")
    cliff_pool_size: int = _f(2000, "09: pool prompts on real prompt sets (WildJailbreak train online, else STAR-1)",
                              ge=1)
    cliff_pool_per_prompt: int = _f(5, "09: rollouts kept per pool prompt (organisms: all 5, so that 1.7% is 3 "
                                       "examples, not 1)", ge=1)
    cliff_shares: list[float] = _f([0.017, 0.05, 1.0], "09: shares of the pool selected")
    cliff_selectors: list[Literal["cliff_ms", "cliff_final", "random", "rule", "rule_complied"]] = _f(
        ["cliff_ms", "cliff_final", "random", "rule", "rule_complied"],
        "09: selectors; rule is create_data.py's (thinking with a refusal word), rule_complied main.py's (complied "
        "traces at random: the baseline that leaves what a cliff selector adds beyond the outcome)")
    cliff_random_seeds: list[int] = _f([0, 1, 2, 3, 4], "09: seeds of the random selector (each random selection "
                                                         "also fine-tunes with its own seed)")
    cliff_train_seeds: list[int] = _f([0, 1, 2], "09: fine-tuning seeds of every other selector: a LoRA run at this "
                                                 "size is noisy, and the verdict's interval holds that noise")
    cliff_eval_prompts: int = _f(48, "09: held-out prompts per label (at 24 the intervals of a 0.1 vs 0.3 difference "
                                     "overlapped)", ge=1)
    eval_answer_tokens: Optional[int] = _f(32, "09: answer tokens of the held-out evaluations (null: "
                                               "max_answer_tokens)", ge=1)
    cliff_train: dict[str, Any] = _f(
        {"max_steps": 10, "batch_size": 4, "learning_rate": 0.0006, "lora_r": 8, "lora_alpha": 16,
         "max_length": 512, "scheduler": "constant"},
        "09: the LoRA recipe (lrmsafety.analysis.finetune.Recipe fields), the same steps for every selection. On the "
        "organisms at lr 1e-3 a single complied example repairs the ASR and every selection that holds one ties; at "
        "3e-4 nothing moves; at 6e-4 the repair grows with the number of useful examples chosen")
    cliff_full_epochs: int = _f(3, "09: the epoch arm beside the fixed-step 100%: the whole pool for this many "
                                   "epochs", ge=1)

    @field_validator("probe_seeds")
    @classmethod
    def _distinct_seeds(cls, seeds):
        if len(set(seeds)) != len(seeds):  # a repeated seed is the same probe twice: it would narrow the spread
            raise ValueError(f"the seeds must differ: {seeds}")
        return seeds

    @model_validator(mode="after")
    def _fill_aliases(self):
        # budgets that default to another key resolve here, so that every notebook sees the same number
        fills = {"cut_answer_tokens": self.max_answer_tokens, "intervention_answer_tokens": self.max_answer_tokens,
                 "eval_answer_tokens": self.max_answer_tokens, "budget_thinking_tokens": self.max_thinking_tokens,
                 "budget_answer_tokens": self.max_answer_tokens}
        for key, value in fills.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.forced_answer_tokens is None:
            object.__setattr__(self, "forced_answer_tokens", self.intervention_answer_tokens)
        if self.cliff_models is None:
            object.__setattr__(self, "cliff_models", list(self.models))
        return self

    @property
    def kv_tokens(self) -> int:
        """Tokens the KV cache holds at worst: every row of the batch at the full budget, with a prompt of up to
        ``PROMPT_TOKENS`` (what ``quantization: auto`` weighs against the GPU's memory)."""
        return self.batch_size * (PROMPT_TOKENS + self.max_thinking_tokens + self.max_answer_tokens)

    def changed(self) -> dict:
        """The keys whose value differs from the default (what a profile sets)."""
        return {key: value for key, value in self.model_dump().items()
                if key != "profile" and value != Params.model_fields[key].default}


class ParamsError(ValueError):
    """A profile that does not exist or does not validate; the message names the file and the fix."""


def available_profiles() -> list[str]:
    return sorted(path.stem for path in PARAMS_DIR.glob("*.yaml"))


def _read(profile: str, seen: tuple = ()) -> list[tuple[Path, dict]]:
    """The files of a profile, the one it inherits from first, each with the keys it sets."""
    path = PARAMS_DIR / f"{profile}.yaml"
    if not path.exists():
        raise ParamsError(f"no profile {profile!r}: expected {path}; profiles: {', '.join(available_profiles())}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{path} must be a mapping of key: value, not {type(values).__name__}")
    parent = values.pop("inherits", None)
    _check_keys(path, values)
    if parent is None:
        return [(path, values)]
    if parent in seen + (profile,):
        raise ParamsError(f"{path}: `inherits: {parent}` makes a cycle ({' -> '.join(seen + (profile, parent))})")
    return _read(parent, seen + (profile,)) + [(path, values)]


def _check_keys(path: Path, values: dict) -> None:
    known = set(Params.model_fields) - {"profile"}
    for key in values:
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else "; the keys are listed in lib/lrmsafety/params.py"
            raise ParamsError(f"{path}: unknown key {key!r}{hint}")


def sources(profile: str) -> dict[str, Path]:
    """For each key a profile sets, the file that set it last."""
    return {key: path for path, values in _read(profile) for key in values}


def load(profile: str = "organism", model: str | None = None, backend: str | None = None) -> Params:
    """A profile's parameters; ``model`` (a registry name) replaces the profile's model list, ``backend`` (as make
    all's BACKEND=) the profile's backend."""
    if not isinstance(profile, str):
        raise ParamsError(f"profile must be a profile's name (one of {', '.join(available_profiles())}), "
                          f"not {type(profile).__name__}")
    if model is not None and not isinstance(model, str):
        raise ParamsError(f"model must be a registry name or None, not {type(model).__name__}: rerun the notebook's "
                          "parameters cell before `P = params.load(profile, model, backend)`")
    if backend is not None and not isinstance(backend, str):
        raise ParamsError(f"backend must be 'transformers', 'vllm' or None, not {type(backend).__name__}")
    values: dict = {}
    for _, layer in _read(profile):
        values.update(layer)
    if model:
        from .registry import get_spec

        get_spec(model)  # fails early, with close matches, on a typo
        values["models"] = [model]
    if backend:
        values["backend"] = backend  # an unknown name fails validation below, naming the choices
    gpus = os.environ.get("LRMSAFETY_GPUS")  # make all GPUS=n: the host's GPUs, not the profile's science
    if gpus:
        values["gpus"] = int(gpus) if gpus.isdigit() else gpus
    try:
        return Params(profile=profile, **values)
    except ValidationError as err:
        where = {**sources(profile), **({"backend": "the backend argument, make all BACKEND="} if backend else {}),
                 **({"gpus": "$LRMSAFETY_GPUS, make all GPUS="} if gpus else {})}
        lines = []
        for error in err.errors():
            key = str(error["loc"][0]) if error["loc"] else "?"
            lines.append(f"  {key} (set in {where.get(key, 'the defaults')}): {error['msg']}; "
                         f"got {error.get('input')!r}")
        raise ParamsError(f"profile {profile!r} does not validate:\n" + "\n".join(lines)) from None


def show(profile: str) -> str:
    params = load(profile)
    where = sources(profile)
    rows = []
    for key, field in Params.model_fields.items():
        if key == "profile":
            continue
        origin = where[key].name if key in where else "default"
        rows.append(f"{key:28s} {getattr(params, key)!r:40s} [{origin}] {field.description}")
    return "\n".join(rows)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["organism"]:
        print(f"# {name}\n{show(name)}")
