"""Data parallel over the GPUs of one host: the rollouts of one model, and a guard model's verdicts, spread over worker
processes, one per GPU.

Each worker (``python -m lrmsafety.engine.parallel``, its GPU the only one it sees) loads the model, takes every n-th
prompt (or judged row) from its own index, and writes into the run's one cache: the store a single process writes,
whose key holds no shard, each worker under a lock of its own (``TableStore.writing(shard)``). This process waits for
them and reads the cache. So the table is the one a single GPU gives (every sample draws from its own seed;
identical on the CPU, where tests/test_parallel.py compares them, and on GPUs up to the rounding of kernels that
differ with the batch's make-up), a killed run resumes from whatever any worker finished, and a later run on one GPU
finds every row cached.

``gpus`` (the profile's ``gpus``, ``make all GPUS=2``): 1 runs in this process, as always; n > 1, or "all", starts
a worker per GPU. A model too large for one GPU is not split here: on vLLM, ``backends.load_generator`` splits it
over the host's GPUs by tensor parallelism (run it with gpus 1).

Notebook 01's and 07's rollouts (:func:`rollouts`) and every guard model's verdicts (``judges.labels.guard_verdicts``)
go through here; the steps that read hidden states or hook the model run in the notebook's process on one GPU.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from .. import usage
from ..store import read_parts, rollout_rows


class WorkerError(RuntimeError):
    """A data parallel worker failed (its log's end is the message)."""


def devices(gpus: int | str) -> list[str]:
    """The CUDA devices ``gpus`` asks for, as CUDA_VISIBLE_DEVICES values: [] for one process (gpus 1, or "all" on
    a host with fewer than two GPUs), else one per worker."""
    import torch

    count = torch.cuda.device_count()
    if gpus == "all":
        n = count
    elif isinstance(gpus, int) and not isinstance(gpus, bool) and gpus >= 1:
        n = gpus
    else:
        raise ValueError(f"gpus must be a number of GPUs (1, 2, ...) or 'all', not {gpus!r}")
    if n > count and n > 1:
        raise ValueError(f"gpus {n} asks for more GPUs than this host has ({count}); set gpus: {max(count, 1)} or "
                         "'all' in the profile (make all GPUS=...)")
    if n <= 1:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(count)]
    return ids[:n]


def rollouts(name: str, prompts: pd.DataFrame, decoding, cache_root, *, backend: str = "transformers",
             quantization: str = "auto", kv_tokens: int | None = None, gpus: int | str = 1,
             store_name: str = "rollouts"):
    """``generate.rollouts`` of registry model ``name``, loaded once as ``backends.load_generator`` loads it, on the
    GPUs ``gpus`` asks for (module docstring). ``decoding`` is one Decoding, or a list of them (07's thinking
    budgets: one load for all); the rows are those of one process, in the prompts' order, one frame per decoding."""
    decodings = decoding if isinstance(decoding, list) else [decoding]
    visible = devices(gpus)
    if not visible:
        frames = _rollouts_here(name, prompts, decodings, cache_root, backend, quantization, kv_tokens, store_name)
    else:
        job = {"name": name, "decodings": decodings, "backend": backend, "quantization": quantization,
               "kv_tokens": kv_tokens, "store_name": store_name}
        stores = spread(f"{__name__}:rollouts_shard", job, prompts, cache_root, visible)
        frames = [rollout_rows(read_parts(store, ["prompt_id", "sample_index"]), prompts["prompt_id"],
                               d.samples_per_prompt) for store, d in zip(stores, decodings)]
    return frames if isinstance(decoding, list) else frames[0]


def spread(call: str, job: dict, rows: pd.DataFrame, cache_root, visible: list[str]) -> list[Path]:
    """One worker per entry of ``visible`` (a CUDA_VISIBLE_DEVICES value each; "" is a CPU worker), each calling
    ``call`` ("module:function") as ``function(rows, shard, cache_root, **job)``: it writes its shard of ``rows`` into
    the cache and returns the cache folders. Returns those folders (the same from every worker). A failed worker's
    log ends the error; what the others finished stays cached."""
    if cache_root is None:
        raise ValueError("data parallel workers meet in the run's cache: pass cache_root (the notebooks' S.cache)")
    with tempfile.TemporaryDirectory(prefix="lrmsafety-workers-") as tmp:
        folder = Path(tmp)
        rows.to_parquet(folder / "rows.parquet", index=False)
        (folder / "job.pkl").write_bytes(pickle.dumps({"call": call, "job": job, "cache_root": str(cache_root)}))
        workers = []
        for rank, device in enumerate(visible):
            # a worker reports its usage to this process (usage.absorb), not to the notebook's usage file
            env = {**{k: v for k, v in os.environ.items() if k != usage.ENV}, "CUDA_VISIBLE_DEVICES": device}
            log = open(folder / f"worker-{rank}.log", "w")
            command = [sys.executable, "-m", __name__, str(folder), str(rank), str(len(visible))]
            workers.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        failed = []
        try:
            for rank, (process, log) in enumerate(workers):
                if process.wait() != 0:
                    failed.append(rank)
                log.close()
        except BaseException:  # an interrupted notebook takes its workers with it; their finished rows stay cached
            for process, _ in workers:
                process.kill()
            raise
        if failed:
            tail = (folder / f"worker-{failed[0]}.log").read_text().strip().splitlines()[-15:]
            raise WorkerError(f"data parallel worker(s) {failed} of {len(visible)} failed; finished rows are cached "
                               "and a rerun resumes. Worker {}'s log ends:\n{}".format(failed[0], "\n".join(tail)))
        done = [json.loads((folder / f"done-{rank}.json").read_text()) for rank in range(len(visible))]
    usage.absorb([worker["usage"] for worker in done])
    stores = {tuple(worker["stores"]) for worker in done}
    if len(stores) != 1:  # the workers loaded different weights or settings: their rows would not be one table
        raise WorkerError(f"the workers wrote {len(stores)} different caches ({sorted(stores)}); they must load the "
                          "same model with the same settings")
    return [Path(store) for store in stores.pop()]


def _rollouts_here(name, prompts, decodings, cache_root, backend, quantization, kv_tokens, store_name,
                   shard=None, progress=True) -> list[pd.DataFrame]:
    """The rollouts of each decoding in this process (the model loaded once)."""
    from . import backends, generate

    model, tokenizer, spec = backends.load_generator(name, backend, quantization, kv_tokens)
    try:
        return [generate.rollouts(model, tokenizer, spec, prompts, decoding, cache_root=cache_root, name=store_name,
                                  shard=shard, progress=progress) for decoding in decodings]
    finally:
        backends.close(model)  # a vLLM engine frees its memory now, before the next model
        del model


def rollouts_shard(rows: pd.DataFrame, shard: tuple[int, int], cache_root: Path, *, name, decodings, backend,
                   quantization, kv_tokens, store_name) -> list[Path]:
    """A worker's share of :func:`rollouts`: its cache folders, one per decoding."""
    frames = _rollouts_here(name, rows, decodings, cache_root, backend, quantization, kv_tokens, store_name,
                            shard=shard, progress=False)
    return [frame.attrs["cache"] for frame in frames]


def _work(folder: Path, rank: int, world: int) -> None:
    """One worker: its share of the job in ``folder``; writes ``done-<rank>.json`` with the cache folders."""
    import importlib

    task = pickle.loads((folder / "job.pkl").read_bytes())  # written by this package's own process, just before
    module, function = task["call"].split(":")
    stores = getattr(importlib.import_module(module), function)(
        pd.read_parquet(folder / "rows.parquet"), (rank, world), Path(task["cache_root"]), **task["job"])
    (folder / f"done-{rank}.json").write_text(json.dumps({"stores": [str(store) for store in stores],
                                                          "usage": usage.snapshot()}))


if __name__ == "__main__":
    _work(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
