"""Content-addressed caches: a folder per configuration, a manifest with the configuration and its hash,
parquet part files for tables and safetensors for tensors.

A stage asks for the store of its configuration, skips the keys that are already there, and appends each finished
batch as a new part file written atomically (temporary file, then rename). A run killed half way therefore keeps
every finished batch, and the next run does only what is missing; a store never serves rows of another
configuration, because the configuration's hash names the folder and the manifest is checked on open.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

log = logging.getLogger(__name__)


def library_versions() -> dict:
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


def config_hash(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def text_hash(text: str | None) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()[:16]


class TableStore:
    """Rows of one configuration, keyed by ``key`` columns, in ``root/<name>-<hash>/part-*.parquet``."""

    def __init__(self, root: str | os.PathLike, name: str, config: dict, key: Sequence[str]):
        self.config = json.loads(json.dumps(config, sort_keys=True, default=str))
        self.hash = config_hash(self.config)
        self.key = list(key)
        self.dir = Path(root) / f"{name}-{self.hash}"
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        if manifest.exists():
            stored = json.loads(manifest.read_text())
            if stored["config"] != self.config:
                raise RuntimeError(f"{manifest} holds another configuration than its hash says; delete {self.dir}")
        else:
            _atomic_write_text(manifest, json.dumps({"hash": self.hash, "key": self.key, "config": self.config},
                                                    indent=2, sort_keys=True))

    @property
    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def read(self) -> pd.DataFrame:
        return read_parts(self.dir, self.key)

    def done_keys(self) -> set[tuple]:
        if not self.parts:
            return set()
        frame = pd.concat([_read_part(part, self.key) for part in self.parts])
        return set(map(tuple, frame[self.key].itertuples(index=False)))

    def append(self, frame: pd.DataFrame) -> Path:
        missing = set(self.key) - set(frame.columns)
        if missing:
            raise ValueError(f"rows lack the key columns {sorted(missing)}")
        # notebooks run side by side (make -j) may append to one store: the part is written under a name of this
        # process, then linked to the first free part name, which fails rather than overwrite another's part
        tmp = self.dir / f".part-{os.getpid()}-{uuid.uuid4().hex}.tmp"
        frame.to_parquet(tmp, index=False)
        index = len(self.parts)
        try:
            while True:
                path = self.dir / f"part-{index:06d}.parquet"
                try:
                    os.link(tmp, path)
                    return path
                except FileExistsError:
                    index += 1
                except OSError:  # a file system without hard links: one writer at a time is then the rule
                    if not path.exists():
                        os.replace(tmp, path)
                        return path
                    index += 1
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def writing(self, shard: tuple[int, int] | None = None):
        """Hold the store for one writer. Two notebooks side by side (make -j) asking for the same rows would both
        compute them and append two copies; with the lock the second waits, then finds the rows done. A ``shard``
        ``(i, n)`` (data parallel workers, :mod:`lrmsafety.engine.parallel`) holds only its own lock: shards' rows
        are disjoint, so workers write side by side."""
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): one writer at a time is then the rule
            yield
            return
        with open(self.dir / (f".lock-shard-{shard[0]}-of-{shard[1]}" if shard else ".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def pending(self, keys: Iterable[tuple]) -> list[tuple]:
        done = self.done_keys()
        pending = [key for key in keys if key not in done]
        if done:
            log.info("%s: %d rows cached, %d to do", self.dir.name, len(done), len(pending))
        return pending


def read_parts(folder: Path, key: Sequence[str]) -> pd.DataFrame:
    """The rows of a store's folder, part by part; of a key written twice, the first copy."""
    parts = sorted(Path(folder).glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame(columns=list(key))
    frame = pd.concat([_read_part(part) for part in parts], ignore_index=True)
    return frame.drop_duplicates(list(key), keep="first").reset_index(drop=True)


def rollout_rows(frame: pd.DataFrame, prompt_ids, samples_per_prompt: int) -> pd.DataFrame:
    """The rows of ``prompt_ids`` with a sample index under ``samples_per_prompt``, in the prompts' order."""
    prompt_ids = list(prompt_ids)
    wanted = frame["prompt_id"].isin(set(prompt_ids)) & (frame["sample_index"] < samples_per_prompt)
    return in_prompt_order(frame[wanted], prompt_ids)

def in_prompt_order(frame: pd.DataFrame, prompt_ids) -> pd.DataFrame:
    """Rows in the prompts' order, then by sample index: the order a cache's parts were written in (which a killed
    and resumed run changes) never reaches an analysis that resamples or draws from the rows."""
    position = {prompt_id: i for i, prompt_id in enumerate(prompt_ids)}
    order = [position[p] * 1_000_000 + int(k) for p, k in zip(frame["prompt_id"], frame["sample_index"])]
    return frame.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def _read_part(path: Path, columns=None) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as err:  # pyarrow raises several types for a truncated or foreign file
        raise RuntimeError(f"{path} cannot be read ({type(err).__name__}: {err}): delete that file; the next run "
                           "recomputes its rows and keeps every other part") from None


def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict | None = None) -> Path:
    """Save named arrays or tensors as one safetensors file, atomically."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    as_torch = {k: torch.as_tensor(np.ascontiguousarray(v)) if not isinstance(v, torch.Tensor) else v.contiguous()
                for k, v in tensors.items()}
    tmp = _private(path)
    save_file(as_torch, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)
    return path


def load_tensors(path: str | os.PathLike) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _private(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process writes: workers side by side may write the same file
    (a store's manifest), and with one shared temporary name one's rename would take the other's file away."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = _private(path)
    tmp.write_text(text)
    os.replace(tmp, path)
