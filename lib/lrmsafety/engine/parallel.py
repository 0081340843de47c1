"""Data parallel over the GPUs of one host: the rollouts of one model, and a guard model's verdicts, spread over worker
processes, one per GPU.

Each worker (``python -m lrmsafety.engine.parallel``, its GPU the only one it sees) loads the model, takes every n-th
prompt (or judged row) from its own index, and writes into the run's one cache: the store a single process writes,
whose key holds no shard, each worker under a lock of its own (``TableStore.writing(shard)``). This process waits for
them and reads the cache. So the table is the one a single GPU gives (every sample draws from its own seed), a killed
run resumes from whatever any worker finished, and a later run on one GPU finds every row cached.

``gpus`` (the profile's ``gpus``, ``make all GPUS=2``): 1 runs in this process, as always; n > 1, or "all", starts
a worker per GPU. A model too large for one GPU is not split here: on vLLM, ``backends.load_generator`` splits it
over the host's GPUs by tensor parallelism (run it with gpus 1).

Notebook 01's and 07's rollouts and every guard model's verdicts (``judges.labels.paper_labels``) go through here;
the steps that read hidden states or hook the model run in the notebook's process on one GPU.
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
        frames = _rollouts_here(name, prompts, decodings, cache_root, backend, quantization, kv_tokens, store_name)[0]
    else:
        job = {"kind": "rollouts", "model": name, "decodings": decodings, "backend": backend,
               "quantization": quantization, "kv_tokens": kv_tokens, "store_name": store_name}
        stores = spread(job, prompts, cache_root, visible)
        frames = [rollout_rows(read_parts(store, ["prompt_id", "sample_index"]), prompts["prompt_id"],
                               d.samples_per_prompt) for store, d in zip(stores, decodings)]
    return frames if isinstance(decoding, list) else frames[0]


def judge(rollouts: pd.DataFrame, name: str, fmt, cache_root, *, quantization: str = "nf4",
          backend: str = "transformers", gpus: int | str = 1) -> pd.DataFrame:
    """``judges.labels.judge_rollouts`` of guard judge ``name`` (as ``labels.make_judge`` builds it) on the GPUs
    ``gpus`` asks for: the rollouts' key columns with the judge's columns."""
    from ..judges import labels

    visible = devices(gpus)
    if not visible:
        guard, config = labels.make_judge(name, fmt, quantization=quantization, backend=backend)
        try:
            return labels.judge_rollouts(rollouts, guard, cache_root=cache_root, judge_config=config)
        finally:
            labels.free_judge(guard)
    job = {"kind": "judge", "judge": name, "format": fmt, "quantization": quantization,
           "backend": backend}
    store = spread(job, rollouts, cache_root, visible)[0]
    return rollouts[labels.KEY].merge(read_parts(store, labels.KEY), on=labels.KEY, how="left")


def spread(job: dict, rows: pd.DataFrame, cache_root, visible: list[str]) -> list[Path]:
    """Run ``job`` on ``rows`` in one worker per entry of ``visible`` (a CUDA_VISIBLE_DEVICES value each; "" is a
    CPU worker) and return the cache folders they wrote (one per decoding of a rollouts job). A failed worker's log
    ends the error; what the others finished stays cached."""
    if cache_root is None:
        raise ValueError("data parallel workers meet in the run's cache: pass cache_root (the notebooks' S.cache)")
    with tempfile.TemporaryDirectory(prefix="lrmsafety-workers-") as tmp:
        folder = Path(tmp)
        rows.to_parquet(folder / "rows.parquet", index=False)
        (folder / "job.pkl").write_bytes(pickle.dumps({**job, "cache_root": str(cache_root)}))
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
                   shard=None, progress=True) -> tuple[list[pd.DataFrame], list[dict]]:
    """The rollouts of each decoding in this process (the model loaded once), and their cache keys."""
    from . import backends, generate

    model, tokenizer, spec = backends.load_generator(name, backend, quantization, kv_tokens)
    frames, configs = [], []
    try:
        for decoding in decodings:
            frames.append(generate.rollouts(model, tokenizer, spec, prompts, decoding, cache_root=cache_root,
                                            name=store_name, shard=shard, progress=progress))
            configs.append(generate.rollout_config(model, tokenizer, spec, decoding))
    finally:
        backends.close(model)  # a vLLM engine frees its memory now, before the next model
        del model
    return frames, configs


def _work(folder: Path, rank: int, world: int) -> None:
    """One worker: its share of the job in ``folder``; writes ``done-<rank>.json`` with the cache folder."""
    from ..store import TableStore

    job = pickle.loads((folder / "job.pkl").read_bytes())  # written by this package's own process, just before
    rows = pd.read_parquet(folder / "rows.parquet")
    cache_root = Path(job["cache_root"])
    if job["kind"] == "rollouts":
        _, configs = _rollouts_here(job["model"], rows, job["decodings"], cache_root, job["backend"],
                                    job["quantization"], job["kv_tokens"], job["store_name"], shard=(rank, world),
                                    progress=False)
        stores = [TableStore(cache_root, job["store_name"], c, ["prompt_id", "sample_index"]).dir for c in configs]
    else:
        from ..judges import labels

        guard, config = labels.make_judge(job["judge"], job["format"],
                                          quantization=job["quantization"], backend=job["backend"])
        labels.judge_rollouts(rows, guard, cache_root=cache_root, judge_config=config, shard=(rank, world))
        stores = [labels.judge_store(rows, guard, cache_root, config).dir]
        labels.free_judge(guard)
    (folder / f"done-{rank}.json").write_text(json.dumps({"stores": [str(store) for store in stores],
                                                          "usage": usage.snapshot()}))


if __name__ == "__main__":
    _work(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
