"""The notebook pipeline: jupytext source -> papermill with the profile's parameters -> executed notebook.

``python -m lrmsafety.pipeline run notebooks/01_rollouts.py --profile organism [--model NAME] [--backend vllm]
--output build/…`` is what ``make all`` calls for each notebook (with ``--slots N --rank R`` when notebooks run side by
side: :mod:`lrmsafety.run_queue`); ``sync`` rewrites the ``.ipynb`` twins that Colab
opens. Each notebook receives only ``profile``, ``model`` and ``backend``; it reads its values with ``params.load``
(lrmsafety.params).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from . import params, run_queue, usage
from .paths import REPO_ROOT


def read_notebook(py_path: Path):
    import jupytext

    return jupytext.read(py_path, fmt="py:percent")


def parameters_cell(notebook, name: str = "notebook") -> dict:
    """The defaults declared in the cell tagged ``parameters`` (a name = literal per line)."""
    cells = [cell for cell in notebook.cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ValueError(
            f'{name} has no parameters cell: add a cell starting with `# %% tags=["parameters"]` '
            "so that papermill can inject the profile's values"
        )
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name):
                defaults[target.id] = ast.literal_eval(node.value) if node.value is not None else None
    return defaults


INJECTED = ("profile", "model", "backend")


def notebook_parameters(notebook, profile: str, model: str | None, name: str = "notebook",
                        backend: str | None = None) -> dict:
    """What papermill injects: the profile's name, the model and the backend, after checking that the profile
    validates and that the notebook's parameters cell declares exactly these three (every other value comes from
    ``params.load``)."""
    declared = parameters_cell(notebook, name)
    if set(declared) != set(INJECTED):
        raise ValueError(f"{name}'s parameters cell declares {sorted(declared)}: it must declare only `profile`, "
                         "`model` and `backend` and read every other value from `P = params.load(profile, model, "
                         "backend)`; declare a new parameter in lib/lrmsafety/params.py")
    params.load(profile, model, backend)  # a profile that does not validate fails here, before the kernel starts
    return {"profile": profile, "model": model, "backend": backend}


def run(py_path: Path, profile: str, output: Path, model: str | None = None, backend: str | None = None) -> None:
    """Execute one notebook into ``output``. The log gets one line when it starts and one when it ends (wall time,
    tokens); a failure names the cell and the error's last lines. Everything the cells print is in the notebook."""
    import nbformat
    import papermill
    from traitlets.config import Config

    notebook = twin(py_path)
    parameters = notebook_parameters(notebook, profile, model, py_path.name, backend)
    output.parent.mkdir(parents=True, exist_ok=True)
    # the run's files are its own (two runs of one notebook side by side do not share them); .ipynb for papermill
    run_id = f"{output.stem}.{os.getpid()}"
    source, partial = output.with_name(f"{run_id}.source.ipynb"), output.with_name(f"{run_id}.partial.ipynb")
    nbformat.write(notebook, source)
    print(f"[pipeline] {py_path.stem} started (profile {profile}{f', model {model}' if model else ''}"
          f"{f', backend {backend}' if backend else ''})", flush=True)
    usage_file = output.with_name(f"{run_id}.usage.json").resolve()  # the kernel runs in notebooks/
    usage_file.unlink(missing_ok=True)
    os.environ[usage.ENV] = str(usage_file)  # the kernel inherits it (lrmsafety.usage)
    started, failure = time.monotonic(), None
    # the kernel talks to us over local sockets (over TCP, ipykernel warns that nothing is encrypted), in a folder of
    # this run's own: by default they are named kernel-ipc-N in the working folder, which two kernels would share
    sockets = tempfile.TemporaryDirectory(prefix="lrmsafety-kernel-")
    try:
        papermill.execute_notebook(
            str(source), str(partial), parameters=parameters, cwd=str(py_path.parent),
            kernel_name="python3", progress_bar=False, log_output=False,
            config=Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets.name}/kernel"}}),
            kernel_manager_class=_kernel_manager_class(),
            store_widget_state=False,  # progress-bar widgets are dropped from the executed notebook (below)
        )
    except papermill.PapermillExecutionError as err:
        failure = f"in cell [{err.exec_count}] ", _error_tail(err)
    except Exception as err:  # the kernel died (out of memory, killed) or did not start
        failure = "", f"  {type(err).__name__}: {err}"
    finally:
        sockets.cleanup()
        source.unlink(missing_ok=True)
        os.environ.pop(usage.ENV, None)
        spent = _record_usage(py_path.stem, profile, model, time.monotonic() - started, usage_file, output.parent)
    if failure is not None:
        shown = partial.resolve()
        shown = shown.relative_to(REPO_ROOT) if shown.is_relative_to(REPO_ROOT) else shown
        where, tail = failure
        print(f"[pipeline] {py_path.stem} FAILED {where}after {spent}; its outputs so far: {shown}\n{tail}",
              file=sys.stderr, flush=True)
        raise SystemExit(1)
    # the executed notebook is read by people: progress-bar redraws (thousands of lines per loop) are dropped
    from .report import strip_progress

    executed = nbformat.read(partial, as_version=4)
    if strip_progress(executed):
        nbformat.write(executed, partial)
    # only a notebook that ran to the end gets its final name, so make reruns the failed one next time
    partial.replace(output)
    print(f"[pipeline] {py_path.stem} done in {spent}", flush=True)


def _kernel_manager_class():
    """jupyter_client's kernel manager, less the interrupt it sends a kernel before asking it to shut down. Papermill
    asks for the kernel's info right before the shutdown, and the interrupt could land while the kernel was still in
    that request's handler, which it logs as "KeyboardInterrupt caught in kernel". The notebook has ended by then;
    the shutdown request stops the kernel (and one that does not stop is terminated, then killed, as before)."""
    from jupyter_client.manager import AsyncKernelManager

    class KernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return KernelManager


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_tail(error, lines: int = 8) -> str:
    """The failing cell's first line and the last lines of its traceback, without IPython's colours."""
    text = _ANSI.sub("", "\n".join(error.traceback or [f"{error.ename}: {error.evalue}"]))
    tail = [line for line in text.splitlines() if line.strip(" -")][-lines:]  # not the rule above the traceback
    first = next((line for line in error.source.splitlines() if line.strip() and not line.startswith("#")), "")
    return "\n".join([f"  cell: {first}", *(f"  {line}" for line in tail)])


USAGE_COLUMNS = ["notebook", "profile", "model", "wall_s", "tokens", "engines", "peak_gpu_gb",
                 *(f"{phase}_s" for phase in usage.PHASES)]


def _record_usage(notebook: str, profile: str, model: str | None, seconds: float, usage_file: Path,
                  folder: Path) -> str:
    """Append a notebook's wall time, tokens per engine, peak GPU memory and seconds per phase (lrmsafety.usage)
    to usage.csv beside it; returns them in words for the log."""
    used = usage.read(usage_file)
    usage_file.unlink(missing_ok=True)
    tokens = sum(used["tokens"].values())
    engines = "+".join(sorted(used["tokens"])) or "none"
    peak = used["peak_gpu_gb"]
    phases = {f"{phase}_s": round(used["seconds"].get(phase, 0.0), 1) for phase in usage.PHASES}
    table = folder / "usage.csv"
    rows, rewrite = [], not table.exists()
    if table.exists():
        with table.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != USAGE_COLUMNS:  # a table written before the phase columns: rewritten with them
                rows, rewrite = list(reader), True
    with table.open("w" if rewrite else "a", newline="") as handle:
        writer = csv.DictWriter(handle, USAGE_COLUMNS, restval="")
        if rewrite:
            writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in USAGE_COLUMNS} for row in rows)
        writer.writerow({"notebook": notebook, "profile": profile, "model": model or "", "wall_s": round(seconds, 1),
                         "tokens": tokens, "engines": engines, "peak_gpu_gb": "" if peak is None else peak, **phases})
    generated = f", {tokens:,} tokens generated ({engines})" if tokens else ""
    spent = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in phases.items() if v >= 0.5)
    return (f"{seconds:.0f} s{generated}{'' if peak is None else f', peak GPU memory {peak:.1f} GB'}"
            f"{f' ({spent})' if spent else ''}")


def twin(py_path: Path):
    """The .ipynb twin of a jupytext source, without outputs (what Colab opens)."""

    notebook = read_notebook(py_path)
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:02d}"  # stable ids: the twin changes only when the source does
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def twin_text(py_path: Path) -> str:
    import nbformat

    return nbformat.writes(twin(py_path)) + "\n"


def sync(paths: list[Path]) -> None:
    """Rewrite each notebook's Colab cell and badge from the repository's address (lrmsafety.colab), then its
    .ipynb twin from its .py; and the README's Colab badge."""
    from . import colab

    address = colab.repository()
    for path in [*(Path(p).resolve() for p in paths), REPO_ROOT / "README.md"]:
        text = path.read_text()
        if colab.stamp(text, address) != text:
            path.write_text(colab.stamp(text, address))
            print(f"[pipeline] wrote {path.relative_to(REPO_ROOT)}")
        if path.suffix != ".py":
            continue
        target = path.with_suffix(".ipynb")
        text = twin_text(path)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            print(f"[pipeline] wrote {target.relative_to(REPO_ROOT)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lrmsafety.pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="execute one notebook with a profile's parameters")
    run_parser.add_argument("notebook", type=Path)
    run_parser.add_argument("--profile", default="organism", help="a params/<profile>.yaml (python -m "
                            "lrmsafety.params <profile> lists its values)")
    run_parser.add_argument("--model", default=None)
    run_parser.add_argument("--backend", default=None, help="transformers or vllm, in place of the profile's")
    run_parser.add_argument("--output", type=Path, required=True)
    run_parser.add_argument("--slots", type=int, default=0, help="run when one of this many slots is free, shared with "
                            "the other notebooks of the output folder (make all side by side; 0: at once)")
    run_parser.add_argument("--rank", type=int, default=0, help="with --slots: lower ranks take a free slot first")
    sync_parser = commands.add_parser("sync", help="rewrite the .ipynb twins from the .py sources")
    sync_parser.add_argument("notebooks", type=Path, nargs="*")
    args = parser.parse_args(argv)
    if args.command == "run":
        queued = (run_queue.turn(args.output.parent / ".queue", args.slots, args.rank) if args.slots
                  else contextlib.nullcontext())
        with queued:
            run(args.notebook, args.profile, args.output, args.model or None, args.backend or None)
    else:
        sync(args.notebooks or sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")))


if __name__ == "__main__":
    main()
