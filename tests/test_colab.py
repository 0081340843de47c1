"""Colab: one repository address (pyproject.toml's) in every notebook's first cell and badge and in the README's
badge; the install that cell runs leaves Colab's own torch, numpy and pandas, and the library imports in the same
kernel without a restart."""

import importlib.metadata as metadata
import json
import shutil
import subprocess
import venv

import pytest

from lrmsafety import colab
from lrmsafety.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
ADDRESS = colab.repository()


def test_the_address_comes_from_pyproject_and_must_be_a_github_repository(tmp_path):
    assert colab.GITHUB.fullmatch(ADDRESS)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[project.urls]\n'
                                             'Repository = "https://github.com/<owner>/<repo>"\n')
    with pytest.raises(ValueError, match=r"\[project.urls\] Repository"):
        colab.repository(tmp_path)


@pytest.mark.parametrize("py_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_opens_and_clones_the_configured_repository(py_path):
    text = py_path.read_text()
    assert colab.cell(ADDRESS) in text, f"{py_path.name}'s first cell is not lrmsafety.colab.CELL: run `make twins`"
    assert colab.badge_target(ADDRESS, py_path.stem) in text
    assert colab.stamp(text, ADDRESS) == text, f"{py_path.name} links another address: run `make twins`"


def test_the_readme_badge_opens_the_configured_repository():
    text = (REPO_ROOT / "README.md").read_text()
    assert colab.badge_target(ADDRESS, "01_rollouts") in text
    assert colab.stamp(text, ADDRESS) == text


def test_a_fork_address_replaces_every_link_and_the_clone_line():
    text = NOTEBOOKS[0].read_text()
    fork = "https://github.com/someone/a-fork"
    stamped = colab.stamp(text, fork)
    assert colab.cell(fork) in stamped and colab.badge_target(fork, NOTEBOOKS[0].stem) in stamped
    assert ADDRESS not in stamped and colab.badge_target(ADDRESS, NOTEBOOKS[0].stem) not in stamped
    assert colab.stamp(stamped, ADDRESS) == text


def test_the_plan_leaves_colabs_own_builds_and_what_the_kernel_has_loaded(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["torch==0.1", "numpy==0.1", "pandas==0.1", "pyyaml==0.1", '
        '"ruff==0.1", "not-installed-anywhere==1.0"]\n\n'
        '[project.optional-dependencies]\nquant = ["ruff==0.1"]\nonline = []\n')
    import yaml  # noqa: F401 (loaded, as a module Colab's kernel has imported would be)

    pins, kept = colab.plan(tmp_path)
    assert kept == {name: metadata.version(name) for name in ("torch", "numpy", "pandas", "pyyaml")}
    assert pins == ["ruff==0.1", "not-installed-anywhere==1.0"]  # installed but not loaded: our pin; each once


# ---------------------------------------------------------------------------------- the cell in a running kernel
PREINSTALLED = ("torch", "numpy", "pandas", "ipykernel")  # what Colab has before the cell; its own builds of these
FAKED = ("torch", "numpy", "pandas")  # ... at versions other than pyproject's pins


def _closure(names):
    """The distributions ``names`` need, themselves included (as installed in this environment)."""
    from packaging.requirements import Requirement

    seen, todo = {}, list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            seen[name] = dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _post0(version):
    """2.13.0+cpu -> 2.13.0.post0+cpu: a version that pyproject's pin 2.13.0 does not match."""
    base, plus, local = version.partition("+")
    return f"{base}.post0{plus}{local}"


def _colab_site(folder):
    """A folder of site-packages standing for Colab's preinstalled packages: this environment's torch, numpy, pandas
    and ipykernel with what they need, linked; torch, numpy and pandas under a version one post-release away from the
    pins, as Colab's own builds differ from them (a pip that replaced them would install the pinned ones)."""
    folder.mkdir()
    for name, dist in _closure(PREINSTALLED).items():
        tops = {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            source = dist.locate_file(top)
            target = folder / top
            if target.exists() or not source.exists():
                continue
            if top.endswith(".dist-info"):
                shutil.copytree(source, target)
                if name in FAKED:
                    meta = target / "METADATA"
                    meta.write_text(meta.read_text().replace(f"\nVersion: {dist.version}\n",
                                                             f"\nVersion: {_post0(dist.version)}\n"))
            else:
                target.symlink_to(source)
    return folder


def _snapshot_of_the_checkout(folder):
    """A git repository of the working tree as it is (committed or not), for the cell to clone."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO_ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, folder / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=folder, check=True)
    subprocess.run([*git, "add", "-A"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=folder, check=True)
    return f"file://{folder}"


def _run(client, code, timeout=900):
    """Run ``code`` in the kernel; its stdout, or the traceback as a test failure."""
    out, errors = [], []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=timeout, output_hook=hook)
    assert reply["content"]["status"] == "ok", "".join(out) + "\n".join(errors)
    return "".join(out)


@pytest.mark.slow
def test_the_colab_cell_installs_in_a_running_kernel_and_leaves_colabs_own_packages(tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    environment = tmp_path / "colab"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "site-packages.pth").write_text(str(_colab_site(tmp_path / "preinstalled")) + "\n")
    shutil.move(tmp_path / "site-packages.pth", f"{site}/preinstalled.pth")
    kernels = tmp_path / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python"}))
    repo, home = _snapshot_of_the_checkout(tmp_path / "source"), tmp_path / "content" / "lrmsafety"
    cell = colab.cell(ADDRESS)
    assert cell in NOTEBOOKS[0].read_text()
    cell = cell.replace(f'"{ADDRESS}", "/content/lrmsafety"', f'"{repo}", "{home}"')
    assert repo in cell

    manager = KernelManager(kernel_name="colab", kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(tmp_path / "kernels")]), transport="ipc", ip=str(tmp_path / "kernel"))
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        probe = ("import importlib.metadata as m, json, sys\n"
                 "import numpy, pandas, torch\n"
                 f"print(json.dumps({{n: [m.version(n), sys.modules[n].__file__] for n in {FAKED}}}))")
        _run(client, "import importlib.machinery, importlib.util, sys\nsys.modules['google.colab'] = "
                     "importlib.util.module_from_spec(importlib.machinery.ModuleSpec('google.colab', None))")
        before = json.loads(_run(client, probe))
        assert {name: version for name, (version, _) in before.items()} == {
            name: _post0(metadata.version(name)) for name in FAKED}
        _run(client, cell)  # the first cell, as every notebook carries it: clone, install, no restart
        after = json.loads(_run(client, probe).splitlines()[-1])
        assert after == before, "the install replaced Colab's own torch, numpy or pandas"
        loaded = json.loads(_run(client, (
            "import json, lrmsafety, transformers\n"
            "from lrmsafety import params, registry\n"
            "model, tokenizer, spec = registry.load_model('organism-locked')\n"
            "print(json.dumps({'lrmsafety': lrmsafety.__file__, 'transformers': transformers.__version__,\n"
            "                  'profile': params.load('organism').models, 'layers': model.config.num_hidden_layers}))"
        )).splitlines()[-1])
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert loaded["lrmsafety"].startswith(str(home / "lib"))
    assert loaded["transformers"] == metadata.version("transformers")  # the pin, installed in the session
    assert loaded["layers"] > 0 and loaded["profile"]
    installed = {p.name.split("-")[0].lower() for p in (environment / "lib").glob("python*/site-packages/*")}
    assert not installed & set(FAKED), "pip put its own torch, numpy or pandas into the environment"
    kept = json.loads((home / "build" / "colab-install.json").read_text())["kept"]
    assert {name: kept.get(name) for name in FAKED} == {name: version for name, (version, _) in before.items()}
