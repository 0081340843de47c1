"""Rollout throughput on realistic work: variable trace lengths, many more requests than batch slots.

    python benchmarks/realistic_rollouts.py --tokenizer ../shared/tokenizers/qwen3 [--models ...] [--batch-sizes 64 256]
        [--engines batch refill slots] [--plan MODEL:ENGINE:BATCH[:KERNELS] ...] [--requests-per-slot 8]
        [--json out.json] [--deadline-s 480] [--run-limit-s 120] [--check] [--shard I/N --barrier DIR]

Each request is a distinct prompt of ``--prompt-tokens`` random tokens; its generated length is drawn from a
log-normal and the row stops there (random weights never stop by themselves). Three engines:

    batch   what generate.rollouts did before the refill scheduler: batch after batch of ``generate()`` with the
            static, compiled cache; a batch runs until its longest row stops (rows stop by a forced end-of-sequence)
    refill  lrmsafety.engine.scheduler.RefillScheduler with ``decode="dynamic"``: finished rows leave and waiting
    requests
            take their slots; eager decode steps over a DynamicCache
    slots   the same scheduler with ``decode="static"`` (what ``auto`` picks on CUDA): a fixed-slot static KV
            cache, each step replayed as a CUDA graph (lrmsafety.engine.slots)

A plan entry may end in ``:fused`` (the default, what the engine runs on CUDA: ``kernels.decode_attention`` over each
row's own columns, ``kernels.top_p_search``, the elementwise chains fused by ``lrmsafety.engine.fusion`` and the draw
inside the captured step), ``:triton`` (the two kernels alone, the draw after the replay) or ``:torch`` (the formula
over all attended columns and top-p by a sort, as on the CPU), to compare them in one process. Every request
carries its own seed, as the notebooks' rollouts do.

``--run-limit-s`` stops a run that takes longer and reports the rate over the tokens accepted so far (marked
``partial``; the batch engine stops between batches). ``--check`` first compares the slot engine's greedy tokens
with and without CUDA graphs and with the DynamicCache engine's, on a few rows. ``--shard I/N`` runs every N-th
request from the I-th (one data parallel worker's share, as ``lrmsafety.engine.parallel`` splits prompts), and
``--barrier DIR`` holds each timed run until all N shards are warm (benchmarks/data_parallel.py drives them).

Reported: useful tokens per second (the drawn lengths, summed, over the wall time of the whole run, prefills and
compilation warm-up excluded only where said) and "of limit": the time the same useful tokens would take if every
decode step at this batch size ran at the memory-bandwidth limit (weights plus each row's KV cache read once per
step, at the device-to-device copy bandwidth measured here), over the measured time. ``occupancy`` is the share of
the slots that held a running row, over the run's decode steps: the tail, where the last long rows run with the other
slots empty, and the steps a finished row waits for its chunk to end lower it.

The length distribution: log-normal with median 396 and mean 537 tokens, capped at 2,048;
its median is close to that of real DeepSeek-R1 traces on safety prompts: STAR-1's 1,000 R1 responses
(UCSC-VLAA/STAR-1, ../shared/data/star1) have a median of 321 Qwen3 tokens (p90 568, max 1,120); raw rollouts
spread wider than that curated set (σ = 0.33 in log space), so the wider σ = 0.78 is used. ``--median``,
``--sigma`` and ``--cap`` change it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from real_configs import REAL_CONFIGS, random_model
from transformers import AutoTokenizer, LogitsProcessor, LogitsProcessorList

from lrmsafety.engine import fusion, hooks, sampling, scheduler, slot_attention, slots
from lrmsafety.engine.generate import generate_batch

# a tiny model of the 1.5B's architecture, to check the benchmark on a CPU (`--models tiny --device cpu`)
REAL_CONFIGS.setdefault("tiny", dict(REAL_CONFIGS["deepseek-r1-distill-qwen-1.5b"], hidden_size=64,
                                     intermediate_size=128, num_hidden_layers=2, num_attention_heads=4))

SAMPLING = {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 0}


KERNELS = ("fused", "triton", "torch")
KERNEL_DRAW = sampling.KERNEL_DRAW  # the fused runs' draw: kernels.inverse_cdf (the default) or the softmax (--draw)


def use_kernels(name: str) -> None:
    """``fused`` (what the engine runs on CUDA): the slot engine's Triton kernels (decode_attention, top_p_search,
    and inverse_cdf unless ``--draw softmax``), the norms, rotary embeddings and MLP activations fused
    (lrmsafety.engine.fusion) and each row's draw inside the captured step; ``triton``: decode_attention and
    top_p_search alone (the draw eager, after the graph's replay); ``torch``: the formula and the sort, as on the
    CPU."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernels {name!r}; choose one of {KERNELS}")
    slot_attention.FUSED = sampling.SORT_FREE = name != "torch"
    fusion.ENABLED = slots.SAMPLE_IN_GRAPH = name == "fused"
    sampling.KERNEL_DRAW = name == "fused" and KERNEL_DRAW


def add_draw_argument(parser, what: str) -> None:
    """``--draw``: the fused ``what``'s keyed draw (the module's KERNEL_DRAW, read by :func:`use_kernels`)."""
    parser.add_argument("--draw", choices=["kernel", "softmax"], default="kernel" if KERNEL_DRAW else "softmax",
                        help=f"the fused {what}' keyed draw: kernels.inverse_cdf (sampling.KERNEL_DRAW, the "
                             "engine's default) or a softmax and a cumulative sum")


def set_draw(args) -> None:
    global KERNEL_DRAW
    KERNEL_DRAW = args.draw == "kernel"


def draw_lengths(n: int, median: float, sigma: float, cap: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in np.clip(np.round(rng.lognormal(math.log(median), sigma, n)), 1, cap)]


def make_prompts(tokenizer, n: int, tokens: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(1000, 100000, (n, tokens))
    return [tokenizer.decode(row) for row in ids]


class StopAt(LogitsProcessor):
    """Forces end-of-sequence in each row once it has generated its drawn length (the batch engine's stop)."""

    def __init__(self, lengths: list[int], start: int, eos: int):
        self.lengths, self.start, self.eos = torch.tensor(lengths), start, eos

    def __call__(self, input_ids, scores):
        done = (input_ids.shape[1] - self.start) >= self.lengths.to(scores.device)
        scores[done] = float("-inf")
        scores[done, self.eos] = 0.0
        return scores


class OutOfTime(Exception):
    """Raised from a request when the run passed ``--run-limit-s``."""


class Fixed:
    """A refill request that takes exactly its drawn number of tokens."""

    useful = 0  # tokens accepted so far by all requests: printed every 30 s, so a run cut short still reports
    started = last_print = 0.0
    limit = float("inf")  # seconds after ``started`` at which the run stops

    def __init__(self, text: str, n: int, seed: int):
        # each request draws from its own seed, as the notebooks' rollouts do (the counter-based draw)
        self.text, self.n, self.taken, self.seed, self.n_drawn = text, n, 0, seed, 0

    def max_steps(self) -> int:
        return self.n - self.taken

    def advance(self, tokens, entropies) -> str:
        before, self.taken = self.taken, min(self.n, self.taken + len(tokens))
        self.n_drawn += self.taken - before
        Fixed.useful += self.taken - before
        now = time.perf_counter()
        if now - Fixed.last_print > 30:
            Fixed.last_print = now
            print(f"  ... {Fixed.useful} useful tokens in {now - Fixed.started:.0f} s: "
                  f"{Fixed.useful / (now - Fixed.started):.0f} tokens/s", flush=True)
        if now - Fixed.started > Fixed.limit:
            raise OutOfTime
        return scheduler.DONE if self.taken >= self.n else scheduler.CONTINUE


def run_batch_engine(model, tokenizer, prompts, lengths, batch, cap, eos, limit=float("inf")) -> dict:
    started, useful = time.perf_counter(), 0
    for start in range(0, len(prompts), batch):
        if time.perf_counter() - started > limit:
            return {"useful_done": useful, "partial": True}
        texts, want = prompts[start:start + batch], lengths[start:start + batch]
        width = tokenizer(texts, padding=True, add_special_tokens=False, pad_to_multiple_of=64,
                          return_tensors="pt")["input_ids"].shape[1]
        sampling = dict(SAMPLING, logits_processor=LogitsProcessorList([StopAt(want, width, eos)]))
        generate_batch(model, tokenizer, texts, cap, sampling, share_prefixes=False, static_cache=True)
        useful += sum(want)
    return {"useful_done": useful}


def run_refill_engine(model, tokenizer, prompts, lengths, batch, chunk, decode="dynamic",
                      limit=float("inf")) -> dict:
    Fixed.useful, Fixed.started, Fixed.limit = 0, time.perf_counter(), limit
    Fixed.last_print = Fixed.started
    run = scheduler.RefillScheduler(model, tokenizer, SAMPLING, slots=batch, chunk=chunk, decode=decode,
                                    generator=torch.Generator(device=model.device).manual_seed(0))
    out = {}
    try:
        run.run([Fixed(p, n, seed) for seed, (p, n) in enumerate(zip(prompts, lengths))], lambda r: None)
    except OutOfTime:
        out["partial"] = True
    out.update(useful_done=Fixed.useful, decode_steps=run.steps, prefills=run.prefills)
    engine = run.engine
    for name in ("graph_steps", "eager_steps", "graph_captures", "capacity", "graph_error", "attention",
                 "attention_error"):
        if hasattr(engine, name):
            out[name] = getattr(engine, name)
    return out


class Collect:
    """A request that keeps its ``n`` tokens."""

    def __init__(self, text: str, n: int, seed: int):
        self.text, self.n, self.tokens, self.seed, self.n_drawn = text, n, [], seed, 0

    def max_steps(self) -> int:
        return self.n - len(self.tokens)

    def advance(self, tokens, entropies) -> str:
        self.n_drawn += len(tokens[: self.n - len(self.tokens)])
        self.tokens += tokens[: self.n - len(self.tokens)]
        return scheduler.DONE if len(self.tokens) >= self.n else scheduler.CONTINUE


def check_engines(model, tokenizer, n=12, tokens=48) -> dict:
    """Greedy tokens of a few rows of different lengths (refills in between) on the slot engine with CUDA
    graphs, the slot engine stepping eagerly, and the DynamicCache engine: agreement per token; and sampled, seeded
    tokens on the slot engine with the inverse-CDF kernel's draw and with the softmax's."""
    from lrmsafety.engine import slots

    greedy = {"do_sample": False}
    prompts = make_prompts(tokenizer, n, 8, seed=7)
    prompts = [p[: 10 + 9 * i] for i, p in enumerate(prompts)]  # different prompt lengths
    lengths = [tokens - 3 * (i % 5) for i in range(n)]
    got = {}
    for name, decode, graphs in (("graphs", "static", True), ("eager", "static", False), ("dynamic", "dynamic", None)):
        requests = [Collect(p, k, seed) for seed, (p, k) in enumerate(zip(prompts, lengths))]
        run = scheduler.RefillScheduler(model, tokenizer, greedy, slots=4, chunk=8, decode=decode)
        if graphs is not None:
            make = run._new_engine

            def engine_with(graphs=graphs, make=make):
                engine = make()
                engine.graphs_wanted = graphs and engine.device.type == "cuda"
                return engine

            run._new_engine = engine_with
        run.run(requests, lambda r: None)
        got[name] = [r.tokens for r in requests]
        if isinstance(run.engine, slots.SlotEngine):
            got[name + "_steps"] = (run.engine.graph_steps, run.engine.eager_steps, run.engine.graph_error)

    def agree(a, b):
        pairs = [(x, y) for ra, rb in zip(got[a], got[b]) for x, y in zip(ra, rb)]
        return round(sum(x == y for x, y in pairs) / len(pairs), 4)

    # bf16 rounding differs between kernels, and random weights give near-ties: the first differing token then
    # changes every later one, so the first tokens (before any drift) are the sharper test
    def prefix(a, b):  # mean share of each row's tokens before its first disagreement
        shares = []
        for ra, rb in zip(got[a], got[b]):
            same = next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), len(ra))
            shares.append(same / len(ra))
        return round(sum(shares) / len(shares), 4)

    # sampled, keyed rows in graphs: the draw by kernels.inverse_cdf against the softmax and cumulative sum
    before = sampling.KERNEL_DRAW
    for name, kernel_draw in (("kernel_draw", True), ("softmax_draw", False)):
        sampling.KERNEL_DRAW = kernel_draw
        requests = [Collect(p, k, seed) for seed, (p, k) in enumerate(zip(prompts, lengths))]
        scheduler.RefillScheduler(model, tokenizer, SAMPLING, slots=4, chunk=8, decode="static").run(
            requests, lambda r: None)
        got[name] = [r.tokens for r in requests]
    sampling.KERNEL_DRAW = before
    return {"graphs_vs_eager": agree("graphs", "eager"), "graphs_vs_dynamic": agree("graphs", "dynamic"),
            "common_prefix_graphs_vs_dynamic": prefix("graphs", "dynamic"),
            "graph_steps": got.get("graphs_steps"), "eager_steps": got.get("eager_steps"),
            "sampled_kernel_vs_softmax_draw": agree("kernel_draw", "softmax_draw"),
            "common_prefix_kernel_vs_softmax_draw": prefix("kernel_draw", "softmax_draw")}


def ideal_seconds(lengths, batch, prompt_tokens, weights, kv_per_token, bandwidth) -> float:
    """Bandwidth-bound time for these useful tokens at ``batch`` rows per step."""
    steps = sum(lengths) / batch
    kv = sum(prompt_tokens * n + n * n / 2 for n in lengths) * kv_per_token
    return (steps * weights + kv) / bandwidth


def meet(folder: Path, rank: int, world: int, timeout: float = 600) -> None:
    """Wait until all ``world`` shards have reached this point (a file each in ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"ready-{rank}").touch()
    deadline = time.time() + timeout
    while len(list(folder.glob("ready-*"))) < world:
        if time.time() > deadline:
            raise TimeoutError(f"{folder}: only {len(list(folder.glob('ready-*')))} of {world} shards arrived")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["deepseek-r1-distill-qwen-1.5b"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64])
    parser.add_argument("--engines", nargs="+", default=["slots", "batch"])
    parser.add_argument("--plan", nargs="+", default=None,
                        help="MODEL:ENGINE:BATCH[:KERNELS] runs in this order (instead of models x batch sizes x "
                             "engines); KERNELS triton (default) or torch")
    parser.add_argument("--requests-per-slot", type=float, default=8)
    parser.add_argument("--batch-engine-batches", type=int, default=2,
                        help="the batch engine runs this many whole batches (its rate is the same each batch)")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--median", type=float, default=396)
    parser.add_argument("--sigma", type=float, default=0.78)
    parser.add_argument("--cap", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--deadline-s", type=float, default=1e9, help="skip runs that would start after this")
    parser.add_argument("--run-limit-s", type=float, default=float("inf"),
                        help="stop a run after this long and report its rate so far (marked partial)")
    parser.add_argument("--check", action="store_true", help="first compare the engines' greedy tokens")
    add_draw_argument(parser, "runs")
    parser.add_argument("--quantization", default="bf16", choices=["bf16", "nf4"],
                        help="nf4: the random model is saved and reloaded through bitsandbytes (models.load_model)")
    parser.add_argument("--scratch", default="/tmp/realistic_rollouts_models", help="folder for nf4's saved models")
    parser.add_argument("--ablate-share", type=float, default=0.0,
                        help="zero this share of the attention heads (notebook 06's ablation without rescaling, "
                             "random heads) during the refill and slots runs")
    parser.add_argument("--shard", default=None, help="I/N: every N-th request from the I-th (data parallel worker)")
    parser.add_argument("--barrier", default=None, help="a folder where the N shards meet before each timed run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    set_draw(args)
    rank, world = map(int, args.shard.split("/")) if args.shard else (0, 1)
    began = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.padding_side = "left"  # generate_batch pads on the left, as load_model sets it
    cuda = args.device == "cuda"
    if cuda:
        from rollout_throughput import copy_bandwidth

        bandwidth = copy_bandwidth()
        name = torch.cuda.get_device_name()
    else:
        bandwidth, name = float("nan"), "cpu"
    print(f"{name}: copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    results = {"device": name, "bandwidth_bytes_per_s": bandwidth, "args": vars(args), "runs": [],
               "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__}}
    from rollout_throughput import kv_bytes_per_token, weight_bytes

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))

    plan = [(p.split(":") + ["fused"])[:4] for p in args.plan] if args.plan else \
        [(m, e, b, "fused") for m in args.models for b in args.batch_sizes for e in args.engines]
    model, model_name = None, None
    for wanted, engine, batch, kernels in plan:
        batch = int(batch)
        use_kernels(kernels)
        if time.perf_counter() - began > args.deadline_s:
            print(f"deadline: skipping {wanted} batch {batch} {engine}", flush=True)
            results.setdefault("skipped", []).append(f"{wanted}:{engine}:{batch}:{kernels}")
            save()
            continue
        if wanted != model_name:
            del model
            if cuda:
                torch.cuda.empty_cache()
            model_name = wanted
            model = random_model(model_name, args.quantization, args.scratch, args.tokenizer, device=args.device,
                                 dtype=torch.bfloat16 if cuda else torch.float32)
            if args.check and "check" not in results:
                results["check"] = {"model": model_name, **check_engines(model, tokenizer)}
                print("check:", results["check"], flush=True)
                save()
        eos = REAL_CONFIGS[model_name]["eos_token_id"]
        weights, kv = weight_bytes(model), kv_bytes_per_token(model)
        n = batch * args.batch_engine_batches if engine == "batch" else int(batch * args.requests_per_slot)
        lengths = draw_lengths(n, args.median, args.sigma, args.cap, seed=batch)[rank::world]
        prompts = make_prompts(tokenizer, n, args.prompt_tokens, seed=batch)[rank::world]
        extra = {}
        ablation = contextlib.nullcontext()
        if args.ablate_share and engine != "batch":
            from lrmsafety.analysis.heads import random_heads

            n_layers, n_heads = len(hooks.decoder_layers(model)), hooks.n_heads(model)
            chosen = random_heads(n_layers, n_heads, max(1, round(args.ablate_share * n_layers * n_heads)), seed=0)
            ablation = hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, chosen))
            extra["ablated_heads"] = len(chosen)
        ablation.__enter__()
        warm = time.perf_counter()
        if engine == "batch":  # compile at the timed shapes first (one row, one token, same cache size)
            run_batch_engine(model, tokenizer, prompts[:batch], [1] * batch, batch, args.cap, eos)
        else:  # CUDA and cuBLAS start-up, not the run's own graph captures (those are timed)
            run_refill_engine(model, tokenizer, prompts[:batch], [2] * batch, batch, args.chunk,
                              decode="static" if engine == "slots" else "dynamic")
        extra["warmup_s"] = round(time.perf_counter() - warm, 1)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if args.barrier:  # every shard warm before any is timed, so that their runs overlap
            meet(Path(args.barrier) / f"{wanted}-{engine}-{batch}-{kernels}", rank, world)
        extra["started_at"] = time.time()
        started = time.perf_counter()
        if engine == "batch":
            extra.update(run_batch_engine(model, tokenizer, prompts, lengths, batch, args.cap, eos,
                                          limit=args.run_limit_s))
        else:
            extra.update(run_refill_engine(model, tokenizer, prompts, lengths, batch, args.chunk,
                                           decode="static" if engine == "slots" else "dynamic",
                                           limit=args.run_limit_s))
        if cuda:
            torch.cuda.synchronize()
            extra["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
        seconds = time.perf_counter() - started
        extra["ended_at"] = time.time()
        ablation.__exit__(None, None, None)
        useful = extra.pop("useful_done")
        # the bandwidth limit for the tokens done (a partial run: the same share of the whole run's limit)
        ideal = ideal_seconds(lengths, batch, args.prompt_tokens, weights, kv, bandwidth) * useful / sum(lengths)
        row = {"model": model_name, "dtype": args.quantization if cuda else "fp32", "engine": engine, "batch": batch,
               "kernels": kernels,
               "requests": len(lengths), "shard": f"{rank}/{world}", "useful_tokens": useful,
               "seconds": round(seconds, 2),
               "useful_tokens_per_s": round(useful / seconds, 1), "of_limit": round(ideal / seconds, 4),
               "median_len": float(np.median(lengths)), "mean_len": float(np.mean(lengths)),
               "max_len": max(lengths), **extra}
        if extra.get("decode_steps"):  # the share of the slots that held a running row, over the decode steps
            row["occupancy"] = round(useful / (extra["decode_steps"] * batch), 4)
        print(row, flush=True)
        results["runs"].append(row)
        save()


if __name__ == "__main__":
    main()
