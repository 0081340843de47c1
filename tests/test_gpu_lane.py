"""The paper-gpu lane (params/paper-gpu.yaml) on the CPU: the random-weight stand-ins have the real architectures'
shapes, every guard protocol runs on its stand-in's architecture (shrunk to a test's size) and gives NA rather than
a guess on random output, and each notebook's cost (wall time, tokens, engine, peak GPU memory) is recorded."""

import json

import pandas as pd
import pytest
import torch

from lrmsafety import chat, params, pipeline, registry, tiny, usage
from lrmsafety.judges import get_judge, labels

# published parameter counts (the hub's model cards) and vocabularies of the real checkpoints
PUBLISHED = {  # architecture: (parameters, vocabulary)
    "r1-distill-qwen-1.5b": (1.777e9, 151936), "r1-distill-qwen-7b": (7.616e9, 152064),
    "qwen2.5-7b": (7.616e9, 152064), "qwen3-8b": (8.191e9, 151936), "mistral-7b": (7.248e9, 32768),
    "llama-3.1-8b": (8.030e9, 128256), "granite-3.3-8b": (8.171e9, 49159), "gpt-oss-20b": (20.91e9, 201088),
}


def _lane():
    return params.load("paper-gpu")


def _guard_judges(values):
    named = [j for judges in values.label_judges.values() for j in judges] + list(values.judges) + [values.asr_judge]
    return sorted({j for j in named if "@" in j})


def test_paper_gpu_inherits_the_paper_profile():
    paper, lane = params.load("paper"), _lane()
    assert lane.cliff_prompt_sets == paper.cliff_prompt_sets  # inherited, not copied
    for name in lane.models + lane.stance_judges:
        assert registry.get_spec(name).random_architecture, name
    # every guard of the paper profile runs on a stand-in of its own architecture class
    for entry in _guard_judges(lane):
        judge, model = entry.split("@")
        real = registry.get_spec(labels.GUARD_MODELS[judge])
        stand_in = registry.get_spec(model)
        assert stand_in.random_architecture and stand_in.role == "guard", entry
        assert stand_in.architecture == real.architecture or judge == "llama_guard_4", entry
    assert {e.split("@")[0] for e in _guard_judges(lane)} >= set(paper.label_judges["A"])


@pytest.mark.parametrize("architecture", sorted(tiny.REAL_ARCHITECTURES))
def test_real_architecture_shapes_match_the_published_sizes(architecture, qwen3_tokenizer_path):
    from transformers import AutoModelForCausalLM

    config = tiny.random_architecture_config(architecture)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    count = sum(p.numel() for p in model.parameters())
    published, vocab = PUBLISHED[architecture]
    embeddings = 1 if config.tie_word_embeddings else 2  # our vocabulary is the Qwen3 tokenizer's
    expected = published + (config.vocab_size - vocab) * config.hidden_size * embeddings
    assert abs(count - expected) / expected < 0.01, (count, expected)


def test_random_stand_ins_are_the_same_weights_every_load(qwen3_tokenizer_path):
    first = tiny.build_random_architecture("llama-3.1-8b", torch.float32, "cpu", shrink=True)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    second = tiny.build_random_architecture("llama-3.1-8b", torch.float32, "cpu", shrink=True)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is left alone
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("entry", _guard_judges(params.load("paper-gpu")))
def test_each_guard_protocol_runs_on_its_stand_in_architecture(entry, qwen3_tokenizer_path):
    judge_name, model_name = entry.split("@")
    spec = registry.get_spec(model_name)
    model = tiny.build_random_architecture(spec.random_architecture, torch.float32, "cpu", shrink=True).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.qwen3_tokenizer_dir())
    tokenizer.padding_side = "left"
    judge = get_judge(judge_name, model=model, tokenizer=tokenizer,
                      split_fn=labels.split_fn_for(chat.get_format("qwen3")))
    texts = ["<think>\nThe user wants a cake.\n</think>\n\nMix flour and eggs.", "no close marker at all"]
    verdicts = judge.judge(["How do I bake a cake?", "Say something."], texts)
    assert len(verdicts) == 2
    verdict = "unsafe" if "unsafe" in verdicts else "refused"
    # random weights write no parsable verdict: NA, never a guess
    assert all(v is None or v is pd.NA or isinstance(v, (bool,)) or v != v for v in verdicts[verdict]), verdicts
    assert verdicts["raw"].notna().all()


def test_a_judge_can_run_on_another_model():
    fmt = chat.get_format("qwen3")
    with pytest.raises(ValueError, match="runs no model"):
        labels.make_judge("rs_match@random-wildguard", fmt)
    judge, config = labels.make_judge("standin_guard@tiny-random-guard", fmt)
    assert judge.name == "standin_guard@tiny-random-guard" and config["quantization"] == "fp32"


def test_a_notebook_records_its_tokens_engine_and_memory(tmp_path, monkeypatch):
    file = tmp_path / "usage.json"
    monkeypatch.setenv(usage.ENV, str(file))
    monkeypatch.setattr(usage, "_tokens", usage.Counter())
    usage.record("static", 100)
    usage.record("dynamic", 20)
    usage.record("static", 5)
    assert json.loads(file.read_text())["tokens"] == {"static": 105, "dynamic": 20}
    said = pipeline._record_usage("01_rollouts", "paper-gpu", None, 12.34, file, tmp_path)
    assert said.startswith("12 s, 125 tokens generated (dynamic+static)")
    table = pd.read_csv(tmp_path / "usage.csv")
    assert table.loc[0, "tokens"] == 125 and table.loc[0, "engines"] == "dynamic+static"
    assert not file.exists()


def test_a_notebook_records_seconds_per_phase_without_overlap(tmp_path, monkeypatch):
    file = tmp_path / "usage.json"
    monkeypatch.setenv(usage.ENV, str(file))
    monkeypatch.setattr(usage, "_tokens", usage.Counter())
    monkeypatch.setattr(usage, "_seconds", usage.Counter())
    clock = iter([0.0, 1.0, 3.0, 10.0, 10.0, 14.0])  # judge 0..10 with a load 1..3 inside it; generate 10..14
    monkeypatch.setattr(usage.time, "perf_counter", lambda: next(clock))
    with usage.timed("judge"):
        with usage.timed("load"):
            pass
    with usage.timed("generate"):
        usage.record("static", 7)
    assert json.loads(file.read_text())["seconds"] == {"judge": 8.0, "load": 2.0, "generate": 4.0}
    with pytest.raises(ValueError, match="unknown phase"):
        with usage.timed("sleep"):
            pass
    # a table written before the phase columns keeps its rows under the new header
    (tmp_path / "usage.csv").write_text("notebook,profile,model,wall_s,tokens,engines,peak_gpu_gb\n"
                                        "00_environment,paper-gpu,,9.5,0,none,\n")
    said = pipeline._record_usage("01_rollouts", "paper-gpu", None, 20.0, file, tmp_path)
    assert said == "20 s, 7 tokens generated (static) (load 2 s, generate 4 s, judge 8 s)"
    table = pd.read_csv(tmp_path / "usage.csv")
    assert list(table.columns) == pipeline.USAGE_COLUMNS and list(table["notebook"]) == ["00_environment",
                                                                                         "01_rollouts"]
    assert table.loc[1, ["load_s", "generate_s", "judge_s"]].tolist() == [2.0, 4.0, 8.0]
    assert pd.isna(table.loc[0, "load_s"])
    pipeline._record_usage("02_first_token_probe", "paper-gpu", None, 1.0, tmp_path / "none.json", tmp_path)
    assert len(pd.read_csv(tmp_path / "usage.csv")) == 3  # appended under the same header


def test_a_stance_judges_verdicts_count_as_judging(monkeypatch):
    from lrmsafety.judges.stance import LLMStanceJudge

    monkeypatch.setattr(usage, "_seconds", usage.Counter())
    clock = iter([5.0, 7.5])
    monkeypatch.setattr(usage.time, "perf_counter", lambda: next(clock))
    judge = LLMStanceJudge(lambda texts: ['{"labels": [1]}' for _ in texts])
    assert judge.label("a prompt", ["a chunk"]) == [1]
    assert usage.snapshot()["seconds"] == {"judge": 2.5}


def test_readme_lane_table_is_the_measured_run():
    """The README's paper-lite-gpu table and sentences are the rows of benchmarks/results/paper_lite_gpu_usage.csv."""
    import re

    from lrmsafety.paths import REPO_ROOT

    runs = pd.read_csv(REPO_ROOT / "benchmarks" / "results" / "paper_lite_gpu_usage.csv")
    assert set(pipeline.USAGE_COLUMNS) <= set(runs.columns)
    readme = (REPO_ROOT / "README.md").read_text()
    text = " ".join(readme.split())
    run = runs[runs["run"] == "end-to-end"]
    assert set(run["profile"]) == {"paper-lite-gpu"} and run["device"].nunique() == 1
    assert (f"ran end to end in {run['wall_s'].sum():.0f} s, {run['tokens'].sum():,} tokens, at most "
            f"{run['peak_gpu_gb'].max():.1f} GB") in text
    for notebook, rows in run.groupby("notebook", sort=False):
        line = re.search(rf"^\| {notebook} \| (.+?) \| (.+?) \| (.+?) \|$", readme, re.M)
        assert line, f"README: no row for {notebook} in the paper-lite-gpu table"
        wall = " + ".join(f"{w:.0f}" for w in rows["wall_s"])
        tokens = f"{rows['tokens'].sum():,}" if rows["tokens"].sum() else "–"
        peak = f"{rows['peak_gpu_gb'].max():.1f}" if rows["peak_gpu_gb"].notna().any() else "–"
        assert line.groups() == (wall, tokens, peak), notebook
    phases = runs[runs["run"] == "phases"].set_index("notebook")
    first = phases.loc["01_rollouts"]
    assert (f"01 spent {first['load_s']:.0f} s loading models, {first['generate_s']:.0f} s generating "
            f"({first['tokens'] / first['generate_s']:,.0f} tokens/s) and {first['judge_s']:.0f} s") in text
    cliff = phases.loc["05_refusal_cliff"]
    assert f"05 generated at {cliff['tokens'] / cliff['generate_s']:,.0f} tokens/s" in text
    again = (f"(01: {run.set_index('notebook').loc['01_rollouts', 'tokens']:,} and "
             f"{first['tokens']:,} tokens)")
    assert again in text
