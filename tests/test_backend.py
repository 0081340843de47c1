"""The backend a run generates with (params `backend`, make all BACKEND=): the parameter, the override reaching P,
the vLLM run's folders apart from the transformers run's, and backends.load_generator's choice. vLLM itself is not
needed here (its engine is mocked); the vLLM lane (`make test-vllm`) runs the real one."""

import re
import subprocess
import types

import pytest
import torch

from lrmsafety import artifacts, memory, params, paths, pipeline, registry
from lrmsafety.engine import backends, vllm_backend
from lrmsafety.paths import REPO_ROOT


# ------------------------------------------------------------------------------------------- the parameter
def test_backend_is_transformers_unless_the_profile_or_the_override_says_vllm(tmp_path, monkeypatch):
    assert params.load("organism").backend == "transformers"
    assert params.load("organism", backend="vllm").backend == "vllm"
    (tmp_path / "fast.yaml").write_text("inherits: organism\nbackend: vllm\n")
    (tmp_path / "organism.yaml").write_text("")
    monkeypatch.setattr(params, "PARAMS_DIR", tmp_path)
    assert params.load("fast").backend == "vllm"
    assert params.load("fast", backend="transformers").backend == "transformers"  # BACKEND= wins over the file


def test_an_unknown_backend_names_where_it_was_set():
    with pytest.raises(params.ParamsError, match=r"backend \(set in the backend argument, make all BACKEND=\)"):
        params.load("organism", backend="tgi")


def test_the_override_reaches_the_notebook(tmp_path):
    """make all BACKEND=vllm -> pipeline --backend vllm -> papermill injects it -> P.backend."""
    notebook = tmp_path / "01_backend.py"
    notebook.write_text('# %% tags=["parameters"]\nprofile = "organism"\nmodel = None\nbackend = None\n\n# %%\n'
                        "import pathlib\nfrom lrmsafety import params\n\n"
                        "P = params.load(profile, model, backend)\n"
                        'pathlib.Path("seen.txt").write_text(P.backend)\n')
    assert pipeline.notebook_parameters(pipeline.read_notebook(notebook), "smoke", None, notebook.name, "vllm") == {
        "profile": "smoke", "model": None, "backend": "vllm"}
    pipeline.main(["run", str(notebook), "--profile", "smoke", "--backend", "vllm",
                   "--output", str(tmp_path / "build" / "01_backend.ipynb")])
    assert (tmp_path / "seen.txt").read_text() == "vllm"


def _make_dry(*variables) -> str:
    return subprocess.run(["make", "-n", "-B", "all", *variables], cwd=REPO_ROOT, capture_output=True,
                          text=True).stdout


def test_make_passes_backend_and_builds_apart():
    dry = _make_dry("PROFILE=smoke", "BACKEND=vllm")
    runs = re.findall(r"pipeline run notebooks/(\S+)\.py (.*)", dry)
    assert runs and all("--backend vllm" in args and "--output build/smoke/vllm/" in args for _, args in runs)
    plain = re.findall(r"pipeline run notebooks/\S+\.py (.*)", _make_dry("PROFILE=smoke"))
    assert plain and all("--backend" not in args and re.search(r"--output build/smoke/\d\d_", args) for args in plain)
    both = re.findall(r"--output (\S+)", _make_dry("PROFILE=smoke", "MODEL=organism-locked", "BACKEND=vllm"))
    assert both and all(path.startswith("build/smoke/organism-locked/vllm/") for path in both)


# ------------------------------------------------------------------------------------------- the folders
def test_a_vllm_run_keeps_its_results_figures_and_report_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(paths, "CACHE_DIR", tmp_path / "cache")
    plain, vllm = artifacts.Artifacts("organism"), artifacts.Artifacts("organism", None, "vllm")
    assert (plain.run, vllm.run) == ("organism", "organism/vllm")
    assert vllm.results == tmp_path / "results" / "organism" / "vllm" and vllm.results != plain.results
    assert vllm.index != plain.index  # 05's probe lives here: each run reads its own
    assert vllm.cache == plain.cache  # the rollout cache keys name the backend
    assert artifacts.Artifacts("organism", "organism-locked", "vllm").run == "organism/organism-locked/vllm"
    assert artifacts.Artifacts("organism", None, "transformers").run == "organism"
    # figures (plots.save_figure(fig, name, S.run)), the report (paper/<S.run>) and the build folder follow S.run
    assert paths.figures_dir(vllm.run) == paths.FIGURES_DIR / "organism" / "vllm"
    with pytest.raises(artifacts.MissingArtifact, match="BACKEND=vllm"):
        vllm.table("01_metrics")


# ------------------------------------------------------------------------------------------- the loader
class FakeLLM:
    """Stands in for vllm.LLM: decoding.is_vllm reads the class's module."""

    __module__ = "vllm.entrypoints.llm"

    def __init__(self, **kwargs):
        self.kwargs, self.shut = kwargs, False
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=self._shutdown))

    def _shutdown(self):
        self.shut = True


@pytest.fixture
def fake_vllm(monkeypatch):
    calls = []

    def load_llm(spec, **kwargs):
        calls.append((spec.name, kwargs))
        return FakeLLM(**kwargs)

    monkeypatch.setattr(vllm_backend, "load_llm", load_llm)
    return calls


def test_the_loader_returns_the_transformers_model_by_default(fake_vllm):
    model, tokenizer, spec = backends.load_generator("organism-locked")
    assert isinstance(model, torch.nn.Module) and spec.name == "organism-locked" and tokenizer.padding_side == "left"
    assert not fake_vllm


def test_the_loader_returns_a_vllm_engine_at_float32_on_the_cpu(fake_vllm, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    llm, tokenizer, spec = backends.load_generator("organism-locked", "vllm", "auto", kv_tokens=10_000)
    assert isinstance(llm, FakeLLM) and tokenizer.padding_side == "left" and spec.name == "organism-locked"
    (name, kwargs), = fake_vllm
    assert name == "organism-locked" and kwargs["dtype"] == "float32"
    # the KV cache it reserves in RAM is the batch's worst case, not a share of the machine
    assert 256 << 20 <= kwargs["kv_cache_memory_bytes"] <= 4 << 30


@pytest.mark.parametrize("bf16, dtype", [(True, "bfloat16"), (False, "float16")])
def test_on_a_gpu_the_loader_takes_sixteen_bit_weights(fake_vllm, monkeypatch, bf16, dtype):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    monkeypatch.setattr(memory, "available_gpu_gb", lambda: 80.0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (60e9, 80e9))  # 20 GB held by a loaded model
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(backends, "_collect", lambda: None)
    llm, _, _ = backends.load_generator("organism-locked", "vllm", "auto")
    (_, kwargs), = fake_vllm
    assert kwargs["dtype"] == dtype and "kv_cache_memory_bytes" not in kwargs  # vLLM sizes its cache on a GPU
    # vLLM claims what is free beside the loaded model (0.95 x 60 / 80), not its default 0.9 of the whole GPU
    assert kwargs["gpu_memory_utilization"] == pytest.approx(0.7125, abs=1e-3)
    assert kwargs["tensor_parallel_size"] == 1


def test_nf4_on_vllm_is_an_error_that_names_the_fix(fake_vllm, monkeypatch):
    with pytest.raises(ValueError, match=r"vLLM has no bitsandbytes NF4.*quantization: bf16.*BACKEND=transformers"):
        backends.load_generator("organism-locked", "vllm", "nf4")
    # auto on a GPU too small for 16-bit weights would take nf4 on transformers: the same error
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(memory, "available_gpu_gb", lambda: 8.0)
    spec = registry.get_spec("deepseek-r1-distill-qwen-7b")
    with pytest.raises(ValueError, match=rf"{spec.name}: auto: nf4.*vLLM has no bitsandbytes NF4"):
        backends.load_generator(spec.name, "vllm", "auto")
    assert not fake_vllm


def test_random_stand_ins_and_unknown_backends_are_refused(fake_vllm):
    with pytest.raises(ValueError, match="random weights in memory.*BACKEND=transformers"):
        backends.load_generator("random-r1-distill-qwen-7b", "vllm")
    with pytest.raises(ValueError, match="unknown backend 'tgi'"):
        backends.load_generator("organism-locked", "tgi")
    assert not fake_vllm


def test_close_shuts_an_engine_down_and_transformers_model_swaps_it(fake_vllm, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = backends.load_generator("organism-locked", "vllm")
    model, tokenizer, spec = backends.transformers_model(loaded, "organism-locked", "fp32")
    assert loaded[0].shut and isinstance(model, torch.nn.Module) and spec.name == "organism-locked"
    assert backends.transformers_model((model, tokenizer, spec), "organism-locked") == (model, tokenizer, spec)
    backends.close(model)  # a transformers model: nothing to shut down


# ------------------------------------------------------------------------------------------- 08 and 09's routing
class FakeAdapted:
    """Stands in for vllm_backend.Adapted (which imports vLLM's LoRARequest)."""

    def __init__(self, llm, path, adapter_id):
        self.llm, self.path, self.id = llm, str(path), adapter_id


@pytest.fixture
def engines(monkeypatch):
    """load_generator's vLLM engines and transformers models, and the order of events (load, close)."""
    events = []

    def load_generator(name, backend="transformers", quantization="auto", kv_tokens=None, **kwargs):
        assert backend == "vllm"
        events.append(("engine", name, kwargs.get("max_lora_rank")))
        return FakeLLM(**kwargs), "tokenizer", registry.get_spec(name)

    def load_model(name, quantization="auto", kv_tokens=None):
        events.append(("transformers", name))
        return f"model of {name}", "tokenizer", registry.get_spec(name)

    monkeypatch.setattr(backends, "load_generator", load_generator)
    monkeypatch.setattr(registry, "load_model", load_model)
    monkeypatch.setattr(backends, "close", lambda generator: events.append(("close",)))
    monkeypatch.setattr(vllm_backend, "Adapted", FakeAdapted)
    monkeypatch.setattr(vllm_backend, "lora_rank", lambda paths: 16)
    return events


def test_08_samples_every_condition_but_saferemind_through_one_engine(engines, monkeypatch, tmp_path):
    import pandas as pd

    from lrmsafety.analysis import finetune, intervention_study, interventions

    adapter = tmp_path / "adapter"
    sampled = []

    def run(model, tokenizer, spec, prompts, decoding, iv, cache_root=None):
        engine = "vllm" if isinstance(model, (FakeLLM, FakeAdapted)) else "transformers"
        sampled.append((iv.name, engine, spec.name, getattr(model, "path", None)))
        return pd.DataFrame({"prompt_id": ["p"], "sample_index": [0]})

    monkeypatch.setattr(interventions, "run", run)
    monkeypatch.setattr(intervention_study, "label_conditions", lambda frames, *a, **k: list(frames))
    monkeypatch.setattr(finetune, "load_adapted", lambda name, path, quantization: (
        f"tuned {name}", "tokenizer", finetune.adapted_spec(registry.get_spec(name), path)))
    monkeypatch.setattr(finetune, "adapted_spec", lambda spec, path: spec.__class__(
        **{**spec.__dict__, "name": f"{spec.name}+recipe"}))
    conditions = ["base", "safepath", "saferemind", "psr", "recipe", "untrained"]
    labelled, handles = intervention_study.sample_conditions(
        "organism-locked", conditions, pd.DataFrame(), None, {("organism-locked", "recipe"): adapter},
        ["safepath", "saferemind", "psr"], ["recipe", "untrained"], {}, "auto", "fresh", 8, None, backend="vllm")
    assert sampled == [("none", "vllm", "organism-locked", None), ("safepath", "vllm", "organism-locked", None),
                       ("psr", "vllm", "organism-locked", None),
                       ("none", "vllm", "organism-locked+recipe", str(adapter)),  # the adapter as a LoRA request
                       ("saferemind", "transformers", "organism-locked", None)]  # its entropies: forward passes
    # one engine (LoRA on) and closed before any transformers model loads: the signals' models and SafeRemind's
    assert engines[:2] == [("engine", "organism-locked", 16), ("close",)]
    assert engines[2:] == [("transformers", "organism-locked")] * 2
    assert labelled == ["base", "safepath", "saferemind", "psr", "recipe"]  # the conditions' order
    assert set(handles) == {("organism-locked", "base"), ("organism-locked", "recipe")}
    assert handles[("organism-locked", "recipe")][0] == "tuned organism-locked"  # transformers, for the probe


def test_09_trains_every_adapter_then_evaluates_them_through_one_engine(engines, monkeypatch, tmp_path):
    import numpy as np
    import pandas as pd

    from lrmsafety.analysis import finetune
    from lrmsafety.analysis.cliff_as_judge import EPOCH_ARM, Study
    from lrmsafety.engine import generate

    pool = pd.DataFrame({"ms": np.linspace(0, 1, 8), "final": np.linspace(1, 0, 8), "thinking": ["t"] * 8,
                         "answer": ["Sure."] * 8})

    def make(backend):
        study = Study(tmp_path, {"B": ["paper_b_refusal"]}, "auto", finetune.Recipe(name="r", data="d", max_steps=7),
                      pd.DataFrame(columns=["prompt_id", "prompt", "label"]), generate.Decoding(), full_epochs=1,
                      backend=backend)
        trained = []

        def train(name, rows, recipe):
            trained.append(len(rows))
            return types.SimpleNamespace(path=tmp_path / f"a{len(trained)}", manifest={"steps": 3 * len(trained)})

        monkeypatch.setattr(study, "train", train)
        monkeypatch.setattr(study, "judged_evaluation", lambda frame, spec: frame.assign(judged=True))
        monkeypatch.setattr(study, "eval_rollouts", lambda model, tokenizer, spec, pool: pd.DataFrame(
            {"engine": [type(model).__name__], "spec": [spec.name]}))
        monkeypatch.setattr(study, "tuned", lambda name, rows, pool, recipe: (
            pd.DataFrame({"engine": ["transformers"], "spec": ["tuned"], "judged": [True]}), train(name, rows, recipe)))
        return study, trained

    monkeypatch.setattr(finetune, "adapted_spec", lambda spec, path: spec.__class__(
        **{**spec.__dict__, "name": f"{spec.name}@{path.name}"}))
    frames = {}
    for backend in ("transformers", "vllm"):
        study, trained = make(backend)
        engines.clear()
        got, results = study.run("organism-locked", pool, ["cliff_ms", "random"], [0.25, 1.0])
        frames[backend] = pd.concat(got, ignore_index=True)
        assert trained == [2, 8, 2, 8] and len(results) == 4  # each distinct selection once, then the epoch arm
    keys = ["selector", "seed", "share", "steps"]
    assert frames["vllm"][keys].equals(frames["transformers"][keys])  # the same table rows on either backend
    assert frames["vllm"]["selector"].tolist() == ["none", "cliff_ms", "cliff_ms", "random", "random", EPOCH_ARM]
    assert frames["vllm"]["steps"].tolist() == [0, 3, 6, 9, 6, 12]
    assert frames["vllm"]["engine"].tolist() == ["FakeLLM"] + ["FakeAdapted"] * 5 and frames["vllm"]["judged"].all()
    assert frames["vllm"]["spec"].iloc[1] == "organism-locked@a1"  # the adapter names the spec (and its cache)
    assert engines == [("engine", "organism-locked", 16), ("close",)]  # judged after the engine closed


def test_a_judge_asked_for_in_nf4_loads_as_auto_chooses_on_vllm_only():
    assert backends.judge_quantization("nf4", "vllm") == "auto"  # vLLM loads no NF4
    assert backends.judge_quantization("nf4", "transformers") == "nf4"
    assert backends.judge_quantization("bf16", "vllm") == "bf16"
