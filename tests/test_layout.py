"""The library's folders show its design: no import cycles between lrmsafety modules (lazy imports inside
functions included), the analysis never imports the organisms, and no module grows past a few hundred lines."""

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
ROOT = LIB / "lrmsafety"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(LIB).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The lrmsafety modules ``name`` imports anywhere in its file (``from pkg import mod`` counts as mod)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _package_edge(src: str, dst: str) -> bool:
    """An import of a module's own package (its __init__ re-exporting the package's names) is not a cycle."""
    return src.startswith(dst + ".")


def test_no_import_cycles():
    graph = {n: {d for d in deps if not _package_edge(n, d)} for n, deps in GRAPH.items()}
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(
    ("lrmsafety.engine", "lrmsafety.judges", "lrmsafety.analysis")) or n == "lrmsafety.data"))
def test_analysis_never_imports_the_organisms(name):
    assert not {d for d in GRAPH[name] if d.startswith("lrmsafety.organism")}, \
        f"{name} imports the organism package; ask the registry (prompt_source, sft_source) instead"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines (at most {MAX_LINES}): split it where a concept ends"


def test_the_graph_sees_lazy_and_relative_imports():
    assert "lrmsafety.engine.vllm_backend" in GRAPH["lrmsafety.engine.generate"]  # a lazy import inside a function
    assert "lrmsafety.engine.decoding" in GRAPH["lrmsafety.engine.vllm_backend"]
    assert "lrmsafety.registry" in GRAPH["lrmsafety.data"]


NOTEBOOKS = sorted((LIB.parent / "notebooks").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("py_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_read_in_under_200_lines(py_path):
    """A notebook is the paper's argument (claim, method, figure, our number beside the published one); its
    mechanics live in the library."""
    n = len(py_path.read_text().splitlines())
    assert n < 200, f"{py_path.name} has {n} lines: move its mechanics into lrmsafety.analysis"
