"""Where a decode step of the slot engine spends its time, against the bandwidth limit of that step.

    python benchmarks/step_breakdown.py --tokenizer ../shared/tokenizers/qwen3 [--models ...] [--slots 64]
        [--context 650] [--kernels fused triton torch] [--json out.json]

The slot engine (:mod:`lrmsafety.engine.slots`) is filled with ``--slots`` live rows of ``--context`` cached tokens
each (random weights, bf16; a prompt of 256 tokens, then decode steps until the rows reach the context: the mean
length of the realistic benchmark's traces is about 540 tokens), and one step at that width is measured:

    graph        the step replayed as a CUDA graph (what the engine runs), CUDA events over 50 replays
    eager        the same step run eagerly (Python and kernel launches included)
    kernels      the eager step under torch.profiler: GPU time of the kernels inside each module kind (attention
                 blocks, MLPs, the lm_head, everything else: embeddings, norms, the mask), summed per step
    sampling     drawing the rows' tokens from the step's logits (sampling.draw: temperature, top-p, the inverse
                 CDF in float64), run eagerly
    sampled      (``fused``) the step with its draw captured in one graph, as the engine replays it
    limit        the step's bytes (weights once, each row's KV cache once) at the measured copy bandwidth

A step's real cost is graph + sampling (``sampled`` where the draw is captured); "launch gaps" is what the graph's
replay takes beyond its kernels' GPU time (the kernels are timed in the eager step, the graph replays the same
kernels).

``--kernels`` measures each model once per choice: ``fused`` is what the engine runs on CUDA (attention through
``kernels.decode_attention``, each row over its own columns; top-p through ``kernels.top_p_search``, no sort; the
norms, rotary embeddings and MLP activations fused by ``lrmsafety.engine.fusion``; the draw inside the graph),
``triton`` the two kernels alone (the draw eager), ``torch`` the CPU's formulas on the GPU (attention as matrix
products over all ``width`` columns; top-p by a sort).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from real_configs import build_random
from realistic_rollouts import KERNELS, add_draw_argument, set_draw, use_kernels  # and its `--models tiny`
from rollout_throughput import copy_bandwidth, kv_bytes_per_token, weight_bytes
from transformers import AutoTokenizer

from lrmsafety.engine import kernels, sampling, scheduler, slots
from lrmsafety.engine.sampling import draw, filtered_logits, inverse_cdf, row_keys, uniform

SAMPLING = {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 0}


class Hold:
    """A request that runs ``n`` tokens, then stays (the engine is measured while every row is live)."""

    def __init__(self, text: str, n: int):
        self.text, self.n, self.taken = text, n, 0

    def max_steps(self) -> int:
        return max(1, self.n - self.taken)

    def advance(self, tokens, entropies) -> str:
        self.taken += len(tokens)
        return scheduler.DONE if self.taken >= self.n else scheduler.CONTINUE


class Measured(Exception):
    pass


def cuda_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    if not torch.cuda.is_available():  # the CPU check of this script (--device cpu)
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - started) * 1000 / repeats
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def kernel_breakdown(model, engine, width: int) -> dict:
    """GPU time per module kind over one eager step (record_function ranges opened by module hooks)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    kinds = {"attention": [], "mlp": [], "lm_head": []}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("self_attn", "attention"):
            kinds["attention"].append(module)
        elif leaf in ("mlp", "feed_forward"):
            kinds["mlp"].append(module)
        elif leaf == "lm_head":
            kinds["lm_head"].append(module)
    handles, open_ranges = [], []
    for kind, modules in kinds.items():
        for module in modules:
            def pre(_m, _a, kind=kind):
                r = record_function(f"step::{kind}")
                r.__enter__()
                open_ranges.append(r)

            def post(_m, _a, _o):
                open_ranges.pop().__exit__(None, None, None)

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        engine._forward(width)  # warm the profiled path
        cuda = engine.device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            with record_function("step::all"):
                engine._forward(width)
            if cuda:
                torch.cuda.synchronize()
    finally:
        for h in handles:
            h.remove()
    # the profiler also puts each record_function range on the GPU's timeline (a "user annotation" spanning its
    # kernels and the idle time between them): kernels are attributed to the range whose span holds them
    gpu = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    ranges = [(e.name[6:], e.time_range.start, e.time_range.end) for e in gpu
              if e.name.startswith("step::") and e.name != "step::all"]
    kernels = [e for e in gpu if not e.name.startswith("step::")]
    totals = {"attention": 0.0, "mlp": 0.0, "lm_head": 0.0, "other": 0.0}
    for kernel in kernels:
        kind = next((k for k, lo, hi in ranges if lo <= kernel.time_range.start and kernel.time_range.end <= hi),
                    "other")
        totals[kind] += kernel.time_range.elapsed_us() / 1000
    out = {k: round(v, 3) for k, v in totals.items()}
    out["kernels_total"] = round(sum(totals.values()), 3)
    out["kernel_launches"] = len(kernels)
    return out


def measure(model, tokenizer, slots_n: int, context: int, bandwidth: float) -> dict:
    prompt = tokenizer.decode(list(range(1000, 1256)))  # about 256 tokens
    got = {}
    original = slots.SlotEngine.decode

    def decode(engine, steps):
        if engine.rows == slots_n and min(engine.lengths[s] for s in engine.order) >= context:
            longest = max(engine.lengths[s] for s in engine.order)
            width = min(engine.capacity, -(-(longest + 1) // slots.BUCKET) * slots.BUCKET)
            got["width"], got["live_tokens"] = width, sum(engine.lengths[s] for s in engine.order)
            got["attention"] = engine.attention
            step = engine._graph_step if engine.device.type == "cuda" else engine._forward
            got["graph_ms"] = cuda_ms(lambda: step(width), 50)
            got["eager_ms"] = cuda_ms(lambda: engine._forward(width), 20)
            logits = engine._forward(width)
            seeds, counts = engine.seeds[:slots_n], engine.counts[:slots_n]
            got["sampling_ms"] = cuda_ms(lambda: draw(logits, SAMPLING, None, seeds, counts), 20)
            filtered = filtered_logits(logits, SAMPLING)
            probs = filtered.softmax(-1)
            u = uniform(row_keys(seeds, counts))
            got["sampling_parts_ms"] = {  # where the draw's time goes
                "top_p_filter": round(cuda_ms(lambda: filtered_logits(logits, SAMPLING), 20), 3),
                "softmax": round(cuda_ms(lambda: filtered.softmax(-1), 20), 3),
                "inverse_cdf": round(cuda_ms(lambda: inverse_cdf(probs, u), 20), 3)}
            if sampling.KERNEL_DRAW and kernels.available and logits.is_cuda:  # the draw the engine runs
                got["sampling_parts_ms"]["inverse_cdf_kernel"] = round(cuda_ms(
                    lambda: kernels.inverse_cdf(filtered, u), 20), 3)
            got["kernels_ms"] = kernel_breakdown(model, engine, width)
            if engine.device.type == "cuda" and slots.SAMPLE_IN_GRAPH:  # the step with its draw, one replay
                state = [t.clone() for t in (engine.ids, engine.pos, engine.counts)]

                def sampled_step():  # then back to the same state (three small copies beside the replay)
                    engine._graph_step(width, sampled=True)
                    for live, saved in zip((engine.ids, engine.pos, engine.counts), state):
                        live.copy_(saved)
                got["sampled_graph_ms"] = cuda_ms(sampled_step, 50)
            raise Measured
        return original(engine, steps)

    slots.SlotEngine.decode = decode
    try:
        run = scheduler.RefillScheduler(model, tokenizer, SAMPLING, slots=slots_n, chunk=16, decode="static")
        requests = [Hold(prompt + f" {i}", context + 64) for i in range(slots_n)]
        for i, r in enumerate(requests):
            r.seed, r.n_drawn = i, 0
        try:
            run.run(requests, lambda r: None)
        except Measured:
            pass
    finally:
        slots.SlotEngine.decode = original
    weights, kv = weight_bytes(model), kv_bytes_per_token(model)
    limit_ms = (weights + got["live_tokens"] * kv) / bandwidth * 1000
    step_ms = got.get("sampled_graph_ms", got["graph_ms"] + got["sampling_ms"])
    got.update(limit_ms=round(limit_ms, 3), step_ms=round(step_ms, 3), of_limit=round(limit_ms / step_ms, 4),
               launch_gaps_ms=round(got["graph_ms"] - got["kernels_ms"]["kernels_total"], 3),
               tokens_per_s=round(slots_n / step_ms * 1000, 1))
    for k in ("graph_ms", "eager_ms", "sampling_ms", "sampled_graph_ms"):
        if k in got:
            got[k] = round(got[k], 3)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b"])
    parser.add_argument("--slots", nargs="+", type=int, default=[64])
    parser.add_argument("--context", type=int, default=650)
    parser.add_argument("--kernels", nargs="+", default=["fused"], choices=list(KERNELS),
                        help="measure each model with these attention and top-p kernels (see above)")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--device", default="cuda", help="cpu: check the script on a tiny model (no timings)")
    parser.add_argument("--json", type=Path)
    add_draw_argument(parser, "steps")
    args = parser.parse_args()
    set_draw(args)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.padding_side = "left"
    cuda = args.device == "cuda"
    bandwidth = copy_bandwidth() if cuda else float("nan")
    report = {"device": torch.cuda.get_device_name() if cuda else "cpu", "bandwidth_bytes_per_s": bandwidth,
              "args": vars(args) | {"json": str(args.json)}, "rows": []}
    for name in args.models:
        model = build_random(name, device=args.device, dtype=None if cuda else torch.float32)
        for n in args.slots:
            for kernel_set in args.kernels:
                use_kernels(kernel_set)
                started = time.perf_counter()
                row = {"model": name, "slots": n, "context": args.context, "kernels": kernel_set,
                       **measure(model, tokenizer, n, args.context, bandwidth),
                       "seconds": round(time.perf_counter() - started, 1)}
                print(json.dumps(row), flush=True)
                report["rows"].append(row)
                if args.json:
                    args.json.write_text(json.dumps(report, indent=1))
        del model
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
