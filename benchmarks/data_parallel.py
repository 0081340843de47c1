"""Data parallel speed-up on the realistic benchmark's requests: one GPU against N worker processes, one per GPU.

    python benchmarks/data_parallel.py --tokenizer ../shared/tokenizers/qwen3 --gpus 2 \
        [--plan deepseek-r1-distill-qwen-1.5b:slots:64 ...] [--share-gpu] [--json out.json] [-- more benchmark args]

First ``realistic_rollouts.py`` runs the plan's requests in one process on GPU 0; then N copies run side by side,
each with ``--shard I/N`` (every N-th request, as ``lrmsafety.engine.parallel`` splits prompts over its workers) on
its own GPU, meeting at a barrier after their warm-up so that their timed runs overlap. The N-process rate is all
shards' useful tokens over the time from the first shard's start to the last one's end. ``--share-gpu`` puts every
shard on GPU 0 (a host with one GPU: it measures the processes' overhead and what one GPU gains from two streams of
work, not the speed-up of N GPUs). Each worker's slots are the plan's, so N workers hold N times the slots.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(args: list[str], devices: list[str], folder: Path) -> list[dict]:
    """The benchmark once per device, side by side (shards when there are several); every shard's rows."""
    world = len(devices)
    processes = []
    for rank, device in enumerate(devices):
        out = folder / f"shard-{rank}-of-{world}.json"
        shard = ["--shard", f"{rank}/{world}", "--barrier", str(folder / f"barrier-{world}")] if world > 1 else []
        command = [sys.executable, str(HERE / "realistic_rollouts.py"), *args, *shard, "--json", str(out)]
        log = open(folder / f"shard-{rank}-of-{world}.log", "w")
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": device}
        processes.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE), log, out))
    rows = []
    for rank, (process, log, out) in enumerate(processes):
        code = process.wait()
        log.close()
        if code != 0:
            tail = (folder / f"shard-{rank}-of-{world}.log").read_text().splitlines()[-10:]
            raise RuntimeError(f"shard {rank}/{world} failed:\n" + "\n".join(tail))
        rows += json.loads(out.read_text())["runs"]
    return rows


def combine(rows: list[dict]) -> dict:
    """One plan entry's shards as one run: useful tokens over the first start to the last end."""
    seconds = max(r["ended_at"] for r in rows) - min(r["started_at"] for r in rows)
    useful = sum(r["useful_tokens"] for r in rows)
    return {"useful_tokens": useful, "seconds": round(seconds, 2), "useful_tokens_per_s": round(useful / seconds, 1),
            "partial": any(r.get("partial") for r in rows), "shards": len(rows),
            "shard_seconds": [r["seconds"] for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--share-gpu", action="store_true", help="every shard on GPU 0 (a one-GPU host)")
    parser.add_argument("--plan", nargs="+", default=["deepseek-r1-distill-qwen-1.5b:slots:64"])
    parser.add_argument("--json", default=None)
    args, rest = parser.parse_known_args()
    rest = [a for a in rest if a != "--"]
    bench = ["--tokenizer", str(Path(args.tokenizer).resolve()), "--plan", *args.plan, *rest]
    devices = ["0"] * args.gpus if args.share_gpu else [str(i) for i in range(args.gpus)]
    with tempfile.TemporaryDirectory(prefix="data-parallel-") as tmp:
        folder = Path(tmp)
        one = run(bench, ["0"], folder)
        many = run(bench, devices, folder)
    report = {"gpus": args.gpus, "share_gpu": args.share_gpu, "plan": args.plan, "entries": []}
    for entry in args.plan:
        model, engine, batch = entry.split(":")
        key = lambda r: (r["model"], r["engine"], r["batch"]) == (model, engine, int(batch))  # noqa: E731
        single = next(r for r in one if key(r))
        shards = combine([r for r in many if key(r)])
        speedup = shards["useful_tokens_per_s"] / single["useful_tokens_per_s"]
        line = {"entry": entry, "one_gpu_tokens_per_s": single["useful_tokens_per_s"],
                "one_gpu_partial": bool(single.get("partial")), f"{args.gpus}_workers": shards,
                "speedup": round(speedup, 2)}
        report["entries"].append(line)
        where = "sharing GPU 0" if args.share_gpu else f"on {args.gpus} GPUs"
        print(f"{entry}: one process {single['useful_tokens_per_s']:.0f} tokens/s; {args.gpus} workers {where} "
              f"{shards['useful_tokens_per_s']:.0f} tokens/s: {speedup:.2f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
