"""The notebook pipeline: jupytext source -> papermill with a profile's parameters; twins; repository files."""

import json
import re
import subprocess
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from lrmsafety import pipeline
from lrmsafety.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))

SOURCE = '''# %% [markdown]
# # A test notebook

# %% tags=["parameters"]
profile = "organism"
model = None
backend = None

# %%
from lrmsafety import params

P = params.load(profile, model, backend)

# %%
import json, pathlib
from tqdm.auto import tqdm

print("in the notebook, not in the log")
list(tqdm(range(3), desc="a bar"))
pathlib.Path("seen.json").write_text(json.dumps({"profile": profile, "n_prompts": P.n_prompts, "model": model,
                                                 "backend": P.backend}))
{FAIL}
'''


def write_notebook(folder: Path, fail: bool = False) -> Path:
    path = folder / "01_test.py"
    path.write_text(SOURCE.replace("{FAIL}", "raise ValueError('planted failure')" if fail else ""))
    return path


def test_notebook_runs_with_injected_parameters_and_logs_two_lines(tmp_path, capfd):
    output = tmp_path / "build" / "01_test.ipynb"
    pipeline.run(write_notebook(tmp_path), "smoke", output)
    seen = json.loads((tmp_path / "seen.json").read_text())
    smoke = yaml.safe_load((REPO_ROOT / "params" / "smoke.yaml").read_text())
    assert seen == {"profile": "smoke", "n_prompts": smoke["n_prompts"], "model": None, "backend": "transformers"}
    executed = nbformat.read(output, as_version=4)
    assert any("injected-parameters" in cell.metadata.get("tags", []) for cell in executed.cells)
    # the log (the kernel's own stderr included): a line when it starts, one when it ends; no warnings
    out, err = capfd.readouterr()
    assert re.fullmatch(r"\[pipeline\] 01_test started \(profile smoke\)\n"
                        r"\[pipeline\] 01_test done in \d+ s[^\n]*\n", out)
    assert err == ""
    # the cells' output is in the notebook; the progress bar was a widget (no text redraws, no tqdm warning)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("in the notebook, not in the log" in o.get("text", "") for o in outputs)
    assert not [o for o in outputs if o.get("name") == "stderr"]


SLOW_KERNEL_INFO = '''# %% tags=["parameters"]
profile = "organism"
model = None
backend = None

# %%
import time

kernel = get_ipython().kernel
answer = kernel.shell_handlers["kernel_info_request"]


async def slow_answer(*args):
    await answer(*args)
    time.sleep(1)  # still in the handler after its reply, where an interrupt sent at shutdown would land


kernel.shell_handlers["kernel_info_request"] = slow_answer
'''


def test_the_kernel_is_not_interrupted_when_it_is_shut_down(tmp_path, capfd):
    # papermill asks for the kernel's info after the last cell, then shuts it down: an interrupt sent with the
    # shutdown would catch the kernel in that request's handler ("KeyboardInterrupt caught in kernel")
    (tmp_path / "01_slow.py").write_text(SLOW_KERNEL_INFO)
    pipeline.run(tmp_path / "01_slow.py", "smoke", tmp_path / "build" / "01_slow.ipynb")
    assert capfd.readouterr().err == ""


def test_a_notebook_declaring_other_parameters_is_refused(tmp_path):
    path = tmp_path / "02_old.py"
    path.write_text('# %% tags=["parameters"]\nprofile = "organism"\nmodel = None\nbackend = None\nn_prompts = 3\n')
    with pytest.raises(ValueError, match="only `profile`, `model` and `backend`"):
        pipeline.notebook_parameters(pipeline.read_notebook(path), "organism", None, path.name)


def test_failing_notebook_exits_nonzero_and_leaves_no_output(tmp_path, capsys):
    output = tmp_path / "build" / "01_test.ipynb"
    with pytest.raises(SystemExit) as exit_info:
        pipeline.run(write_notebook(tmp_path, fail=True), "smoke", output)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    # the failing cell's number, where its outputs are, and the error's last lines
    assert re.match(r"\[pipeline\] 01_test FAILED in cell \[\d+\] after \d+ s; its outputs so far: .*partial\.ipynb$",
                    err[0]), err
    assert err[-1].strip() == "ValueError: planted failure"
    assert not output.exists()


def test_missing_parameters_cell_is_named(tmp_path):
    path = tmp_path / "02_bad.py"
    path.write_text("# %%\nx = 1\n")
    with pytest.raises(ValueError, match="no parameters cell"):
        pipeline.parameters_cell(pipeline.read_notebook(path), path.name)


@pytest.mark.parametrize("py_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_twin_matches_source(py_path):
    twin = py_path.with_suffix(".ipynb")
    assert twin.exists(), f"{twin.name} is missing: run `make twins`"
    assert twin.read_text() == pipeline.twin_text(py_path), f"{twin.name} drifted from its .py: run `make twins`"


@pytest.mark.parametrize("py_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_parameters_badge_and_colab_install(py_path):
    text = py_path.read_text()
    assert '# %% tags=["parameters"]' in text
    assert f"blob/main/notebooks/{py_path.stem}.ipynb" in text and "colab-badge.svg" in text
    assert '"google.colab" in sys.modules' in text
    assert pipeline.parameters_cell(pipeline.read_notebook(py_path), py_path.name) == {
        "profile": "organism", "model": None, "backend": None}  # Jupyter and Colab: the default profile, as make


def test_make_help_names_every_target_profile_and_variable():
    help_text = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True,
                               check=True).stdout
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = re.search(r"^\.PHONY: (.+)$", makefile, re.M).group(1).split()
    listed = {line.split()[0] for line in help_text.splitlines() if line.startswith("  ") and line.split()}
    assert set(targets) <= listed, f"make help leaves out {set(targets) - listed}: give them a ## comment"
    for profile in (path.stem for path in (REPO_ROOT / "params").glob("*.yaml")):
        assert f"  {profile}: " in help_text, f"make help does not list the profile {profile}"
    for variable in ("PROFILE=", "MODEL=", "JOBS="):
        assert variable in help_text


def _names(requirements):
    return {re.split(r"[=<>\[ ]", r.strip())[0].lower() for r in requirements}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = set(project["dependencies"]) | {dep for deps in project["optional-dependencies"].values() for dep in deps}
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_pins = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    assert set(pip_pins) == pins, "environment.yml's pip list must carry exactly pyproject's pins"


def declared_reads() -> dict[str, set[str]]:
    """The Makefile's `reads_<notebook> := <notebooks>` lines (the report's line is computed, so it is left out)."""
    reads = {}
    for line in (REPO_ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"reads_(\w+) := ([\w ]+)$", line)
        if match:
            reads[match.group(1)] = set(match.group(2).split())
    return reads


def test_the_makefile_names_every_notebook_a_notebook_reads():
    # make -j starts a notebook as soon as the notebooks it is declared to read are done: a table or probe read
    # from an undeclared notebook would be read before it is written (or stale)
    stems = {path.stem for path in NOTEBOOKS}
    by_number = {stem[:2]: stem for stem in stems}
    reads = declared_reads()
    assert set(reads) <= stems, f"reads_ lines for notebooks that do not exist: {set(reads) - stems}"
    for path in NOTEBOOKS:
        if path.stem == "10_report":
            continue
        text = path.read_text()
        needed = {by_number[n] for n in re.findall(r'results / f?"(\d\d)_[^"]*\.(?:csv|parquet)"', text)
                  if n != path.stem[:2]}
        if re.search(r'read_csv\(results / "paper_a_', text):
            needed.add("04_deliberation")
        if "LinearRefusalProbe.load" in text:
            needed.add("05_refusal_cliff")
        missing = needed - reads.get(path.stem, set())
        assert not missing, (f"{path.name} reads results of {sorted(missing)}: add them to reads_{path.stem} in "
                             "the Makefile")
