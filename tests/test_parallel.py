"""Data parallel rollouts and guard verdicts (lrmsafety.engine.parallel): two worker processes, here on the CPU,
write the table one process writes, into the same cache."""

import pandas as pd
import pytest

from lrmsafety import data, registry, usage
from lrmsafety.engine import generate, parallel
from lrmsafety.judges import labels

KEY = ["prompt_id", "sample_index"]


@pytest.fixture(scope="module")
def prompts():
    return data.load_prompt_sets(["organism"], n_prompts=5, seed=0)


def two_cpu_workers(monkeypatch):
    monkeypatch.setattr(parallel, "devices", lambda gpus: ["", ""])  # two workers that see no GPU


def decodings():
    return [generate.Decoding(mode=mode, samples_per_prompt=2, max_thinking_tokens=48, max_answer_tokens=24,
                              batch_size=8, seed=3) for mode in ("natural", "zerothink")]


def test_two_workers_write_the_table_and_cache_of_one_process(prompts, tmp_path, monkeypatch):
    one = parallel.rollouts("organism-locked", prompts, decodings(), tmp_path / "one", quantization="fp32")
    two_cpu_workers(monkeypatch)
    before = sum(usage.snapshot()["tokens"].values())
    two = parallel.rollouts("organism-locked", prompts, decodings(), tmp_path / "two", quantization="fp32", gpus=2)
    generated = sum(int((f["n_thinking_tokens"] + f["n_answer_tokens"]).sum()) for f in two)
    assert sum(usage.snapshot()["tokens"].values()) - before >= generated > 0  # the workers' tokens are counted
    for ours, theirs in zip(one, two):
        assert len(theirs) == len(prompts) * 2
        columns = ["prompt_id", "sample_index", "text", "mode", "config_hash"]
        pd.testing.assert_frame_equal(ours[columns], theirs[columns])
    # the workers' cache is the one a single process reads: nothing left to generate
    model, tokenizer, spec = registry.load_model("organism-locked", quantization="fp32")
    cached = generate.rollouts(model, tokenizer, spec, prompts, decodings()[0], cache_root=tmp_path / "two",
                               progress=False)
    pd.testing.assert_frame_equal(cached[columns], two[0][columns])


def test_two_workers_give_a_guards_verdicts(prompts, tmp_path, monkeypatch):
    rollouts = parallel.rollouts("organism-locked", prompts, decodings()[0], tmp_path, quantization="fp32")
    fmt = registry.get_spec("organism-locked").thinking_format
    judges = {"A": ["standin_guard@organism-locked"]}
    one = labels.paper_labels(rollouts, judges, fmt, cache_root=tmp_path / "one", quantization="fp32")
    two_cpu_workers(monkeypatch)
    two = labels.paper_labels(rollouts, judges, fmt, cache_root=tmp_path / "two", quantization="fp32", gpus=2)
    pd.testing.assert_frame_equal(one, two)
    assert one["refused_a"].nunique() == 2  # the stand-in's verdicts vary, so the comparison can fail


def test_a_failed_worker_names_itself_and_its_log(prompts, tmp_path, monkeypatch):
    two_cpu_workers(monkeypatch)
    with pytest.raises(parallel.WorkerError, match="worker.*failed.*rerun resumes"):
        parallel.rollouts("organism-locked", prompts, decodings()[0], tmp_path, quantization="nf5", gpus=2)


def test_gpus_asks_for_no_more_than_the_host_has():
    with pytest.raises(ValueError, match="more GPUs than this host has"):
        parallel.devices(64)
    with pytest.raises(ValueError, match="a number of GPUs"):
        parallel.devices("two")
    import torch

    assert parallel.devices(1) == []  # one GPU: the notebook's own process
    if torch.cuda.device_count() < 2:
        assert parallel.devices("all") == []


def test_make_all_gpus_reaches_the_parameters(monkeypatch):
    from lrmsafety import params

    assert params.load("organism").gpus == 1
    monkeypatch.setenv("LRMSAFETY_GPUS", "2")
    assert params.load("organism").gpus == 2
    monkeypatch.setenv("LRMSAFETY_GPUS", "all")
    assert params.load("organism").gpus == "all"
    monkeypatch.setenv("LRMSAFETY_GPUS", "two")
    with pytest.raises(params.ParamsError, match="GPUS="):
        params.load("organism")
