"""What each notebook generates on a profile, and what that costs at the measured rates (:mod:`lrmsafety.rates`).

A notebook's work is a list of (rollouts, token budget of each) pairs, counted from the profile's parameters and the
prompts it studies. Each notebook prints its own line before it generates (:func:`line`), from the functions below,
and ``python -m lrmsafety.workload PROFILE [MODEL]`` adds the same lines up for a whole profile before anything
runs: per notebook and in all, the tokens and GPU hours at most (every trace at its budget) and at realistic trace
lengths (an estimate). The prompt counts come from the profile's own prompt tables (the offline copies, else the
hub). Generation only: the guards' verdicts (one forward pass over each rollout and a few tokens), the probes'
forward passes, fine-tuning and model loads come on top.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from . import rates


@dataclass(frozen=True)
class Work:
    """Generation one notebook does with one model: ``parts`` are (rollouts, token budget of each) pairs;
    ``batch_hooks``: hooks that read the whole batch keep it on the DynamicCache loop (06's batch rescaling)."""
    notebook: str
    parts: tuple[tuple[int, int], ...]
    what: str = ""
    batch_hooks: bool = False

    @property
    def tokens(self) -> int:
        return sum(n * budget for n, budget in self.parts)


def full_budget(P) -> int:
    return P.max_thinking_tokens + P.max_answer_tokens


def rollouts_01(P, n_prompts: int) -> list[Work]:
    return [Work("01_rollouts", ((n_prompts * P.samples_per_prompt, full_budget(P)),),
                 f"{n_prompts} prompts x {P.samples_per_prompt} samples")]


def lock_in_03(P, n_studied: int) -> list[Work]:
    """M think and M no-think traces per prompt (and B = 0's own full rollouts when their count differs), then N
    answers after each cut of each trace; the answers are only labelled (``cut_answer_tokens``)."""
    extra_baseline = P.baseline_rollouts if P.baseline_rollouts != P.traces_per_prompt else 0
    n_prefixes = n_studied * P.traces_per_prompt * len(P.cut_percents)
    return [Work("03_lock_in", ((n_studied * (P.traces_per_prompt * 2 + extra_baseline), full_budget(P)),
                                (n_prefixes * P.answers_per_prefix, P.cut_answer_tokens)),
                 f"{n_studied} prompts, {n_prefixes} cuts x {P.answers_per_prefix} answers")]


def deliberation_04(P, n_replayed: int | None, n_new_prompts: int = 0) -> list[Work]:
    """K answers before and after each replayed transition; traces of prompts 03 did not study. ``n_replayed``
    None: not known before the stances are read (every transition found, no cap), so not counted."""
    parts = [(n_new_prompts * P.traces_per_prompt, full_budget(P))]
    if n_replayed is not None:
        parts.append((2 * n_replayed * P.replays, P.cut_answer_tokens))
    what = (f"{n_replayed} transitions replayed x 2 x {P.replays} answers" if n_replayed is not None
            else "every transition found, replayed: not counted (no cap)")
    return [Work("04_deliberation", tuple(parts), what + (f"; {n_new_prompts} prompts beyond 03's" if n_new_prompts
                                                          else ""))]


def cliff_05(P, n_prompts: int, cached: bool) -> list[Work]:
    """Paper B's rollouts of its own prompt sets; none when notebook 01's cached rollouts are read."""
    n = 0 if cached else n_prompts * P.samples_per_prompt
    return [Work("05_refusal_cliff", ((n, full_budget(P)),),
                 "01's rollouts, cached" if cached else f"{n_prompts} prompts x {P.samples_per_prompt} samples")]


def ablation_per_rollout(P) -> int:
    """Tokens per ablated rollout: one budget when set, else the answer's (and the thinking's in natural mode)."""
    natural = P.ablation_mode == "natural"
    return P.ablation_max_new_tokens or P.ablation_answer_tokens + P.max_thinking_tokens * natural


def ablation_06(P, n_studied: int, conditions: list) -> list[Work]:
    """Every ablation condition on every studied prompt; paper B's batch rescaling apart (its own engine's rate)."""
    batch = sum(rule == "batch" for *_, rule in conditions)
    return [Work("06_refusal_heads", ((n * n_studied, ablation_per_rollout(P)),),
                 f"{n} conditions x {n_studied} prompts {label} ({P.ablation_mode} mode)", batch_hooks=hooks)
            for n, label, hooks in ((len(conditions) - batch, "on the slot engine", False),
                                    (batch, "with batch rescaling", True)) if n]


def budgets_07(P, n_harmful: int) -> list[Work]:
    """ZeroThink and LessThink answer only, MoreThink thinks to its budget; the default decoding is 01's rollouts,
    read from its cache, when its budgets are 01's."""
    n = n_harmful * P.samples_per_prompt
    think = P.budget_thinking_tokens + P.budget_answer_tokens
    natural_cached = (P.budget_thinking_tokens, P.budget_answer_tokens) == (P.max_thinking_tokens,
                                                                            P.max_answer_tokens)
    parts = ((0 if natural_cached else n, think), (2 * n, P.budget_answer_tokens), (n, think))
    return [Work("07_thinking_budget", parts, f"{n_harmful} prompts x {P.samples_per_prompt} samples x 4 decodings"
                 + (" (the default read from 01)" if natural_cached else ""))]


def interventions_08(P, n_studied: int) -> list[Work]:
    conditions = 1 + len(P.inference_interventions) + len(P.finetune_recipes)
    return [Work("08_interventions", ((n_studied * P.intervention_samples * conditions,
                                       P.max_thinking_tokens + P.intervention_answer_tokens),),
                 f"{n_studied} prompts x {P.intervention_samples} samples x {conditions} conditions; plus training "
                 "and the 20% cuts")]


def cliff_as_judge_09(P, n_runs: int, n_eval: int, pool: bool = True) -> list[Work]:
    """The pool's rollouts (none on the organisms, whose pool is 01's) and every adapter's held-out evaluation,
    the base model's and the epoch arm's too."""
    evaluations = n_runs + 1 + bool(P.cliff_full_epochs)
    return [Work("09_cliff_as_judge", ((P.cliff_pool_size if pool else 0, full_budget(P)),
                                       (evaluations * n_eval, full_budget(P))),
                 f"{P.cliff_pool_size if pool else 'no'} pool rollouts, {evaluations} evaluations x {n_eval} prompts; "
                 f"plus {n_runs} LoRA runs")]


def cliff_as_judge_note(P, n_runs: int, n_eval: int, recipe) -> str:
    """09's cost line: its generation (:func:`cliff_as_judge_09`) and its LoRA runs (``recipe``: the fixed-step
    :class:`lrmsafety.analysis.finetune.Recipe`)."""
    from .analysis.cliff_as_judge.study import epoch_steps

    work, = cliff_as_judge_09(P, n_runs, n_eval)
    epochs = epoch_steps(P.cliff_pool_size, P.cliff_full_epochs or 1, recipe.batch_size, recipe.grad_accum)
    return (rates.cost(P, work.parts) + f"; plus {n_runs} LoRA runs of {recipe.max_steps} steps"
            + (f" and one of at most {epochs} (the whole pool, {P.cliff_full_epochs} epochs)"
               if P.cliff_full_epochs else ""))


def line(P, works: list[Work], model: str | None = None) -> str:
    """What a notebook prints before it generates: per part of its work, the tokens and GPU hours (rates.cost)."""
    return "\n".join(f"{work.what}: {rates.cost(P, work.parts, model, work.batch_hooks)}" for work in works)


def profile_work(P) -> list[Work]:
    """Every notebook's work on profile ``P`` (those of its ``notebooks`` list), per model, from its prompt tables."""
    from . import data
    from .analysis import heads
    from .analysis.cliff_as_judge import study

    selected = set(P.notebooks) if P.notebooks else None
    wanted = lambda name: selected is None or name in selected  # noqa: E731
    prompts = data.profile_prompts(P)
    works = []
    if wanted("01_rollouts"):
        works += rollouts_01(P, len(prompts))
    lockin = len(data.sample_per_group(prompts, P.lockin_prompts, seed=P.seed))
    if wanted("03_lock_in"):
        works += lock_in_03(P, lockin)
    if wanted("04_deliberation"):
        studied = len(data.sample_per_group(prompts, P.deliberation_prompts or P.lockin_prompts, seed=P.seed))
        works += deliberation_04(P, P.deliberation_transitions, max(0, studied - lockin))
    if wanted("05_refusal_cliff") or wanted("06_refusal_heads"):
        cliff_prompts = data.profile_prompts(P, P.cliff_prompt_sets)
        if wanted("05_refusal_cliff"):
            cached = P.cliff_rollouts == "notebook_01" and set(P.cliff_prompt_sets or P.prompt_sets) <= set(
                P.prompt_sets)
            works += cliff_05(P, len(cliff_prompts), cached)
        if wanted("06_refusal_heads"):
            studied = data.ablation_prompts(cliff_prompts, P.heldout_groups, P.probe_compliance_groups,
                                            P.ablation_prompts, P.seed)
            works += ablation_06(P, len(studied), heads.ablation_conditions(P.head_shares, P.rescale_rules,
                                                                             P.random_draws))
    if wanted("07_thinking_budget"):
        works += budgets_07(P, len(data.harmful_sample(prompts, P.budget_prompts, seed=P.seed)))
    if wanted("08_interventions"):
        works += interventions_08(P, len(data.sample_per_group(prompts, P.intervention_prompts, seed=P.seed)))
    if wanted("09_cliff_as_judge"):
        runs = study.n_runs(P.cliff_selectors, P.cliff_shares, P.cliff_random_seeds, P.cliff_train_seeds)
        organisms = P.prompt_sets == ["organism"]  # as notebook 09 decides
        works += cliff_as_judge_09(P, runs, 2 * P.cliff_eval_prompts, pool=not organisms)
    return works


def table(P, model: str | None = None, works: list[Work] | None = None):
    """One row per notebook's work (``works``, default :func:`profile_work`) and a total: tokens and GPU hours at
    most and at realistic lengths, at the rate of ``model`` (default: the profile's first)."""
    import pandas as pd

    rows = []
    for work in profile_work(P) if works is None else works:
        c = rates.priced(P, work.parts, model, work.batch_hooks)
        rows.append({"notebook": work.notebook, "work": work.what, "tokens_at_most": c.tokens,
                     "hours_at_most": c.hours, "tokens_realistic": round(c.typical_tokens),
                     "hours_realistic": c.typical_hours, "rate": str(c.speed)})
    frame = pd.DataFrame(rows)
    total = frame[["tokens_at_most", "hours_at_most", "tokens_realistic", "hours_realistic"]].sum()
    return pd.concat([frame, pd.DataFrame([{"notebook": "total", "work": "generation only", **total}])],
                     ignore_index=True)


def markdown(P, model: str | None = None) -> str:
    works = profile_work(P)  # the prompt tables are read once; each model prices the same work
    frame = table(P, model, works)
    lines = [f"{P.profile}, {model or P.models[0]}, per model; {frame['rate'].dropna().iloc[0]}", "",
             "| notebook | work | tokens at most | GPU hours at most | tokens at realistic lengths (estimate) | "
             "GPU hours (estimate) |", "|---|---|---|---|---|---|"]
    for row in frame.itertuples():
        lines.append(f"| {row.notebook} | {row.work} | {row.tokens_at_most:,.0f} | {row.hours_at_most:.2f} | "
                     f"{row.tokens_realistic:,.0f} | {row.hours_realistic:.2f} |")
    if model is None and len(P.models) > 1:  # make all runs every model of the profile, each at its own rate
        lines.append("")
        for name in P.models:
            try:
                total = table(P, name, works).iloc[-1]
            except (KeyError, LookupError) as err:
                lines.append(f"- {name}: no GPU estimate ({err})")
                continue
            lines.append(f"- {name}: at most {total['hours_at_most']:.2f} GPU hours, about "
                         f"{total['hours_realistic']:.2f} at realistic lengths")
    return "\n".join(lines)


def main(argv=None) -> None:
    from . import params

    parser = argparse.ArgumentParser(prog="python -m lrmsafety.workload", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="a profile in params/ (e.g. paper-lite)")
    parser.add_argument("model", nargs="?", help="a registry model in place of the profile's first")
    args = parser.parse_args(argv)
    print(markdown(params.load(args.profile, args.model), args.model))


if __name__ == "__main__":
    main()
