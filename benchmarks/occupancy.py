"""How full the refill scheduler keeps its slots on the realistic benchmark's lengths, without a model or a GPU.

    python benchmarks/occupancy.py [--slots 64] [--requests-per-slot 8 16 32 96] [--json out.json]

The realistic benchmark (``realistic_rollouts.py``) reports its fraction of the bandwidth limit, which is about the
decode step's own fraction times the *occupancy*: the share of the slot-steps that held a running row. Occupancy
depends on the lengths and on the scheduler's admission rules, not on the model or the GPU, so it is measured here
on the scheduler itself: :class:`lrmsafety.engine.scheduler.RefillScheduler`'s own ``run`` loop (its refill
threshold, chunks and row bookkeeping) over a stand-in engine whose every step gives each running row one token,
with the benchmark's own requests (``realistic_rollouts.Fixed``: each takes exactly its drawn length).

For each number of requests per slot (lengths drawn as the benchmark draws them, the same seed) it reports:

    occupancy          the scheduler as the engine runs it (its chunk and refill threshold)
    refill at once     the same with a row's slot refilled at the next chunk (threshold 1), and its prefills
    tail bound         one step per chunk and refill at once: what is left is the tail alone, the last long rows
                       running beside emptied slots once the queue is empty
    prefills           the scheduler's prefill forwards (each a separate, eager forward on the GPU)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from realistic_rollouts import Fixed, draw_lengths

from lrmsafety.engine import scheduler


class StandIn:
    """The scheduler's engine interface (``add``, ``select``, ``decode``, ``rows``, ``mergeable``): one token per
    running row per step, no model."""

    def __init__(self):
        self.rows = 0

    def mergeable(self) -> bool:
        return True

    def add(self, prefilled) -> None:
        self.rows += len(prefilled)

    def select(self, keep) -> None:
        self.rows = len(keep)

    def decode(self, steps: int):
        return [[0] * steps for _ in range(self.rows)], None


class Counting(scheduler.RefillScheduler):
    """The refill scheduler's loop with the stand-in engine; a prefill gives each admitted row its first token."""

    def _new_engine(self):
        return StandIn()

    def _prefill(self, requests, share=True):
        self.prefills += 1
        return requests, [[(0, None)] for _ in requests]


def occupancy(lengths: list[int], slots: int, chunk: int, refill_at: int | None = None) -> tuple[float, int]:
    """(useful tokens over decode steps times slots, prefill forwards) of one run through the scheduler's loop."""
    run = Counting(torch.nn.Linear(1, 1), type("Tokenizer", (), {"pad_token_id": 0})(), {}, slots, chunk=chunk,
                   decode="dynamic")
    if refill_at is not None:
        run.refill_at = refill_at
    Fixed.useful, Fixed.started, Fixed.last_print = 0, time.perf_counter(), time.perf_counter()  # a run's counters
    run.run([Fixed("x", n, seed=i) for i, n in enumerate(lengths)], lambda request: None)
    # the first token of each row comes from its prefill, as in the benchmark's count of useful tokens
    return sum(lengths) / (run.steps * slots), run.prefills


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--requests-per-slot", nargs="+", type=float, default=[8, 16, 32, 96])
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--median", type=float, default=396)
    parser.add_argument("--sigma", type=float, default=0.78)
    parser.add_argument("--cap", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=None, help="the lengths' seed (default: the slots, as there)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for per_slot in args.requests_per_slot:
        seed = args.slots if args.seed is None else args.seed
        lengths = draw_lengths(int(args.slots * per_slot), args.median, args.sigma, args.cap, seed)
        engine, prefills = occupancy(lengths, args.slots, args.chunk)
        at_once = occupancy(lengths, args.slots, args.chunk, refill_at=1)
        rows.append({"slots": args.slots, "requests_per_slot": per_slot, "requests": len(lengths),
                     "occupancy": round(engine, 4),
                     "refill_at_once": round(at_once[0], 4), "refill_at_once_prefills": at_once[1],
                     "tail_bound": round(occupancy(lengths, args.slots, 1, refill_at=1)[0], 4),
                     "prefills": prefills})
        print(rows[-1], flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
