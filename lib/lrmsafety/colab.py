"""Colab: the repository's address, the notebooks' first cell, and the install that cell runs.

The address is pyproject.toml's ``[project.urls] Repository``, the one place to change for a fork: ``make twins``
writes it into every notebook's first cell and "Open in Colab" badge, and into the README's badge. The first cell
clones the repository and calls :func:`install` inside the running kernel, before any dependency is there, so this
module uses the standard library only.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from .paths import REPO_ROOT

# Colab's own builds stay: its torch is built for its CUDA (pyproject pins the CPU build's version), its kernel has
# numpy and pandas loaded (a replaced copy needs a restart of the runtime), and its widgets match its frontend.
KEEP = ("torch", "numpy", "pandas", "ipywidgets")
EXTRAS = ("quant", "online")  # 4-bit NF4 for the paper profile's models on a Colab GPU; benchmarks from the hub
GITHUB = re.compile(r"https://github\.com/([\w.-]+)/([\w.-]+)")

CELL = '''# %% Colab: clone and install the repository (does nothing elsewhere)
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPO, HOME = "{repository}", "/content/{name}"  # REPO: pyproject.toml's (make twins)
    if not os.path.exists(HOME):
        subprocess.run(["git", "clone", "-q", "--depth", "1", REPO, HOME], check=True)
    sys.path.insert(0, f"{{HOME}}/lib")  # importable at once, without restarting the runtime
    from lrmsafety import colab  # the standard library only: importable before the dependencies are installed
    colab.install(HOME)  # the pinned dependencies except Colab's own torch, numpy and pandas (once per runtime)
    os.chdir(f"{{HOME}}/notebooks")
'''


def repository(root: Path = REPO_ROOT) -> str:
    """The repository's address, ``https://github.com/<owner>/<repo>``, from pyproject.toml."""
    project = tomllib.loads((Path(root) / "pyproject.toml").read_text())["project"]
    address = project.get("urls", {}).get("Repository", "")
    if not GITHUB.fullmatch(address):
        raise ValueError(f"pyproject.toml's [project.urls] Repository is {address!r}: set it to the repository's "
                         "address, https://github.com/<owner>/<repo> (Colab opens and clones it), then `make twins`")
    return address


def badge_target(address: str, notebook: str) -> str:
    """The "Open in Colab" link of ``notebooks/<notebook>.ipynb`` on the main branch."""
    owner, repo = GITHUB.fullmatch(address).groups()
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/main/notebooks/{notebook}.ipynb"


def cell(address: str) -> str:
    return CELL.format(repository=address, name=GITHUB.fullmatch(address).group(2))


def stamp(text: str, address: str) -> str:
    """``text`` (a notebook's source, the README) with every Colab link on ``address`` and, in a notebook, the
    first cell as :data:`CELL` writes it."""
    owner, repo = GITHUB.fullmatch(address).groups()
    text = re.sub(r"(https://colab\.research\.google\.com/github/)[\w.-]+/[\w.-]+/", rf"\g<1>{owner}/{repo}/", text)
    return re.sub(r"# %% Colab:.*?\n(?=\n# %%)", lambda _: cell(address), text, count=1, flags=re.S)


def requirement_name(requirement: str) -> str:
    return re.split(r"[=<>!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def plan(home: Path, extras=EXTRAS, keep=KEEP) -> tuple[list[str], dict[str, str]]:
    """(pins to install, {name: installed version} left as they are). Left: ``keep`` where installed, and every
    distribution whose modules the running kernel has imported (replacing them would need a restart)."""
    project = tomllib.loads((Path(home) / "pyproject.toml").read_text())["project"]
    pins = list(dict.fromkeys([*project["dependencies"],
                               *(r for extra in extras for r in project["optional-dependencies"][extra])]))
    loaded = {name.lower().replace("_", "-") for module in {m.partition(".")[0] for m in list(sys.modules)}
              for name in metadata.packages_distributions().get(module, ())}
    kept = {}
    for name in map(requirement_name, pins):
        if name in keep or name in loaded:
            try:
                kept[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
    return [pin for pin in pins if requirement_name(pin) not in kept], kept


def install(home, extras=EXTRAS) -> None:
    """Install the repository at ``home`` into the running Python: its pins but those :func:`plan` leaves,
    constrained to their installed versions so that no other pin replaces them either, then the package itself
    (editable, without its dependencies). Done once per pyproject.toml (a marker in build/)."""
    home = Path(home)
    marker = home / "build" / "colab-install.json"
    digest = hashlib.sha256((home / "pyproject.toml").read_bytes() + repr(sorted(extras)).encode()).hexdigest()
    if marker.exists() and json.loads(marker.read_text()).get("pyproject") == digest:
        return
    pins, kept = plan(home, extras)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="colab-constraints-") as constraints:
        constraints.write("".join(f"{name}=={version}\n" for name, version in kept.items()))
        constraints.flush()
        subprocess.run([*pip, "-c", constraints.name, *pins], check=True)
    # last, so that pip does not report the kept packages as conflicts with the package's own pins
    subprocess.run([*pip, "--no-deps", "-e", str(home)], check=True)
    importlib.invalidate_caches()  # what pip just wrote is importable in this kernel without a restart
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"pyproject": digest, "kept": kept}, indent=1))
    print(f"lrmsafety installed; kept as they were: {', '.join(f'{n} {v}' for n, v in kept.items()) or 'nothing'}")
