"""lrmsafety.params: one declaration per parameter, profiles that inherit, mistakes named at the door."""

import ast
from pathlib import Path

import pytest

from lrmsafety import params, pipeline
from lrmsafety.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
FIELDS = set(params.Params.model_fields)
PROPERTIES = {name for name, value in vars(params.Params).items() if isinstance(value, property)}


@pytest.mark.parametrize("profile", params.available_profiles())
def test_every_shipped_profile_validates(profile):
    loaded = params.load(profile)
    assert loaded.profile == profile and loaded.models


def test_profiles_inherit_their_parent():
    assert params.sources("smoke")["models"].name == "smoke.yaml"
    assert params.load("smoke").ablation_mode == params.load("organism").ablation_mode == "prefix"
    paper = params.load("paper")
    for child in ("paper-smoke", "paper-gpu"):
        assert params.load(child).cliff_rollouts == paper.cliff_rollouts == "paper_b"
    assert params.load("organism") == params.Params()  # organism's values are the declared defaults


def test_budget_aliases_resolve_to_one_number():
    paper = params.load("paper")
    assert paper.cut_answer_tokens == paper.intervention_answer_tokens == paper.max_answer_tokens == 1024
    assert paper.forced_answer_tokens == 2048 and paper.budget_thinking_tokens == 10000
    assert params.load("paper").cliff_models == paper.models


def _profile(tmp_path, monkeypatch, text, name="mine"):
    (tmp_path / f"{name}.yaml").write_text(text)
    monkeypatch.setattr(params, "PARAMS_DIR", tmp_path)
    return name


def test_a_misspelled_key_names_the_nearest_key(tmp_path, monkeypatch):
    name = _profile(tmp_path, monkeypatch, "n_promts: 3\n")
    with pytest.raises(params.ParamsError, match=r"mine.yaml: unknown key 'n_promts'; did you mean 'n_prompts'"):
        params.load(name)


@pytest.mark.parametrize("text, key", [("samples_per_prompt: two\n", "samples_per_prompt"),
                                       ("n_prompts: 0\n", "n_prompts"), ("ablation_mode: sideways\n", "ablation_mode"),
                                       ("probe_seeds: [1, 1]\n", "probe_seeds"),
                                       ("probe_seeds: [-1]\n", "probe_seeds")])
def test_a_wrong_value_names_its_key_and_file(tmp_path, monkeypatch, text, key):
    name = _profile(tmp_path, monkeypatch, text)
    with pytest.raises(params.ParamsError, match=rf"{key} \(set in .*mine.yaml\)"):
        params.load(name)


def test_inheritance_cycles_yaml_errors_and_missing_profiles_are_named(tmp_path, monkeypatch):
    _profile(tmp_path, monkeypatch, "inherits: loop\n", "loop")
    with pytest.raises(params.ParamsError, match="cycle"):
        params.load("loop")
    _profile(tmp_path, monkeypatch, "n_prompts: [\n", "broken")
    with pytest.raises(params.ParamsError, match="broken.yaml is not valid YAML"):
        params.load("broken")
    with pytest.raises(params.ParamsError, match="profiles: broken, loop"):
        params.load("nothing")


def test_a_profile_of_ones_own_inherits_and_overrides(tmp_path, monkeypatch):
    _profile(tmp_path, monkeypatch, "n_prompts: 5\nseed: 1\n", "base")
    name = _profile(tmp_path, monkeypatch, "inherits: base\nn_prompts: 2\n", "child")
    loaded = params.load(name)
    assert (loaded.n_prompts, loaded.seed, loaded.batch_size) == (2, 1, params.Params().batch_size)


def test_model_replaces_the_model_list():
    assert params.load("organism", model="qwen3-8b").models == ["qwen3-8b"]
    with pytest.raises(KeyError, match="Did you mean"):
        params.load("organism", model="qwen3-8")
    with pytest.raises(params.ParamsError, match="rerun the notebook's parameters cell"):
        params.load("organism", model=object())


def _reads(py_path: Path) -> tuple[set, set]:
    """The P.<name> a notebook reads, and the names it assigns at top level."""
    code = "\n".join(cell.source for cell in pipeline.read_notebook(py_path).cells if cell.cell_type == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    tree = ast.parse(code)
    read = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "P"}
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    return read, assigned


@pytest.mark.parametrize("py_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_read_only_declared_parameters(py_path):
    """Jupyter, Colab and `make all` give a notebook the same values: it declares only profile, model and backend
    (the default profile is make's) and reads every other value from P, whose keys all exist."""
    assert pipeline.parameters_cell(pipeline.read_notebook(py_path), py_path.name) == {
        "profile": "organism", "model": None, "backend": None}
    read, assigned = _reads(py_path)
    assert read <= FIELDS | PROPERTIES, f"{py_path.name} reads undeclared parameters {sorted(read - FIELDS)}"
    shadowed = assigned & (FIELDS - set(pipeline.INJECTED))  # the injected parameters are the notebook's own
    assert not shadowed, f"{py_path.name} assigns {sorted(shadowed)}, which shadow parameters: read P.<name>"
    assert "P = params.load(profile, model, backend)" in py_path.read_text()


def test_show_lists_every_key_with_its_origin():
    text = params.show("paper-gpu")
    assert "[paper-gpu.yaml]" in text and "[paper.yaml]" in text and "[default]" in text
    assert len(text.splitlines()) == len(FIELDS) - 1


@pytest.mark.parametrize("profile", params.available_profiles())
def test_make_runs_the_notebooks_the_profile_names(profile):
    """make reads `notebooks:` with sed (before the environment exists): it must agree with the validated value."""
    import re
    import subprocess

    from lrmsafety.paths import REPO_ROOT

    chosen = params.load(profile).notebooks
    every = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert chosen is None or set(chosen) <= set(every), f"{profile}: unknown notebooks {set(chosen) - set(every)}"
    dry = subprocess.run(["make", "-n", "-B", "all", f"PROFILE={profile}"], cwd=REPO_ROOT, capture_output=True,
                         text=True)
    run = sorted(set(re.findall(r"pipeline run notebooks/(\S+)\.py", dry.stdout)))
    assert run == sorted(chosen or every), dry.stderr
