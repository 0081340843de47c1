"""Measured decode rates, and what a profile's generation costs at them.

Every GPU-hour figure in the notebooks and the README comes from here. The rates are the realistic rollout
benchmark's (``benchmarks/realistic_rollouts.py``, results in ``benchmarks/results/``): random weights of the real
architectures on an H100 or an H200 (each row keeps its GPU's copy bandwidth), trace lengths drawn from a log-normal
(median 396, mean 537 tokens, capped at 2,048), eight requests per slot, useful tokens per second over the whole
run. A rate is *measured* when the benchmark ran that model size, weights, engine and number of slots; otherwise it
is an *estimate*, and says from what:

- another number of slots: the nearest measured one (rates grow with the slots, so fewer measured slots is a
  conservative stand-in);
- a larger model: the nearest smaller measured model's rate scaled by the parameter ratio (decoding is bound by
  reading the weights);
- a smaller model: the smallest measured model's rate (a step of a small model is bound by kernel launches, not by
  its size);
- the slot engine measured only in an earlier form (before its CUDA kernels, :mod:`lrmsafety.engine.kernels`, or
  before its fused step and in-graph draw, :mod:`lrmsafety.engine.fusion`): that rate, a lower bound.

Two figures per estimate. *At most*: every trace at its full budget (the thinking and answer budgets; random weights
never stop, so the GPU lane measures this case). *Realistic*: trace lengths from the benchmark's distribution, capped
at the budget, which is close to DeepSeek-R1 on safety prompts (STAR-1's R1 responses: median 321 tokens); an
estimate, labelled as such.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from .paths import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"
# the realistic benchmark's result files; slot-engine runs of an earlier engine (before its CUDA kernels: no
# ``kernels`` field; before its fused step: ``triton``) stand in only where the newest was not measured, as estimates
# (one file per model size and slots with the kernels: the 7B at 256 slots is the longer of its two runs)
SOURCES = ("realistic_rollouts_fused.json", "realistic_rollouts_kernels.json",
           "realistic_rollouts_1.5b_128_kernels.json", "realistic_rollouts_1.5b_256_kernels.json",
           "realistic_rollouts_7b_256_kernels.json", "realistic_rollouts.json",
           "realistic_rollouts_7b_256.json", "realistic_rollouts_nf4.json", "realistic_rollouts_nf4_256.json",
           "ablation_engines.json", "ablation_engines_7b.json")
ENGINES = {"slots": "the slot engine (CUDA graphs)", "refill": "the DynamicCache loop",
           "batch": "batch-synchronous generate()"}
MEDIAN, SIGMA = 396.0, 0.78  # the benchmark's length distribution (log-normal, tokens)


@dataclass(frozen=True)
class Rate:
    tokens_per_s: float
    measured: bool
    basis: str  # what was measured, and how the rate was derived from it
    bandwidth: float | None = None  # bytes/s of the GPU it was measured on (the benchmark's copy bandwidth)

    def on(self, bandwidth_tb_s: float | None) -> "Rate":
        """This rate on a GPU of another memory bandwidth (decoding reads the weights and the cache at every step):
        an estimate, scaled by the ratio of the bandwidths."""
        if not bandwidth_tb_s or not self.bandwidth:
            return self
        ratio = bandwidth_tb_s * 1e12 / self.bandwidth
        return Rate(self.tokens_per_s * ratio, False, f"{self.basis}; scaled by the bandwidths, {bandwidth_tb_s:g} / "
                    f"{self.bandwidth / 1e12:.2f} TB/s", bandwidth_tb_s * 1e12)

    def __str__(self) -> str:
        return f"{self.tokens_per_s:,.0f} tokens/s ({'measured' if self.measured else 'estimate'}: {self.basis})"


@lru_cache(maxsize=1)
def table() -> tuple[dict, ...]:
    """One row per measured run: model, params_b, weights, engine, slots, tokens_per_s, of_limit, ablated_heads,
    source (file), bandwidth, kernels, device."""
    from .registry import get_spec

    rows = []
    for name in SOURCES:
        path = RESULTS / name
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        for run in result["runs"]:
            if run.get("kernels") == "torch":  # the CPU's formulas on the GPU, measured for comparison only
                continue
            rows.append({"model": run["model"], "params_b": get_spec(run["model"]).params_b, "weights": run["dtype"],
                         "engine": run["engine"], "slots": int(run["batch"]),
                         "tokens_per_s": float(run["useful_tokens_per_s"]), "of_limit": run.get("of_limit"),
                         "ablated_heads": run.get("ablated_heads", 0), "source": name,
                         "bandwidth": result.get("bandwidth_bytes_per_s"), "kernels": run.get("kernels"),
                         "device": result.get("device", "")})
    # per model, weights, engine and slots, the runs of the newest engine measured there
    newest = {}
    for r in rows:
        newest[_key(r)] = max(newest.get(_key(r), 0), _generation(r))
    return tuple(r for r in rows if _generation(r) == newest[_key(r)])


def _key(row: dict) -> tuple:
    return row["model"], row["weights"], row["engine"], row["slots"], row["ablated_heads"]


def _generation(row: dict) -> int:
    """How recent the slot engine of a run is: 0 before its CUDA kernels, 1 with its Triton kernels (``triton``),
    2 with its fused step and the draw inside the graph (``fused``, what it runs now); other engines 2."""
    if row["engine"] != "slots":
        return 2
    return {"fused": 2, "triton": 1}.get(row["kernels"], 0)


def _before_kernels(row: dict) -> bool:
    """A slot-engine run measured before the engine's CUDA kernels (:mod:`lrmsafety.engine.kernels`)."""
    return _generation(row) == 0


def engine_for(weights: str, batch_hooks: bool = False) -> str:
    """The decode engine a transformers run takes on a GPU: the slot engine for 16-bit weights without hooks that
    read the whole batch, else the DynamicCache loop."""
    return "slots" if weights in ("bf16", "fp16") and not batch_hooks else "refill"


def rate(params_b: float, weights: str, engine: str, slots: int) -> Rate:
    """The measured rate for this model size, weights, engine and slots, or an estimate (module docstring)."""
    weights = "bf16" if weights == "fp16" else weights  # the same bytes and kernels
    rows = [r for r in table() if r["weights"] == weights and r["engine"] == engine]
    # runs with heads zeroed (notebook 06's hooks) stand in only where no plain run was measured
    rows = [r for r in rows if not r["ablated_heads"]] or rows
    if not rows:
        raise LookupError(f"no measured rate for {weights} on {engine}; run benchmarks/realistic_rollouts.py")
    sizes = sorted({r["params_b"] for r in rows})
    same = [s for s in sizes if math.isclose(s, params_b, rel_tol=0.1)]
    size = same[0] if same else max([s for s in sizes if s <= params_b] or [sizes[0]])
    at_size = [r for r in rows if r["params_b"] == size]
    below = [r for r in at_size if r["slots"] <= slots]
    row = max(below, key=lambda r: r["slots"]) if below else min(at_size, key=lambda r: r["slots"])
    what = f"{row['model']} {weights} on {ENGINES[engine]} at {row['slots']} slots" + (
        f" on an {row['device']}" if row["device"] else "")
    tokens_per_s, notes = row["tokens_per_s"], []
    if row["ablated_heads"]:
        what += f" with {row['ablated_heads']} heads zeroed"
    if row["slots"] != slots:
        notes.append(f"measured at {row['slots']} slots, not {slots}")
    if _before_kernels(row):
        notes.append("measured before the slot engine's CUDA kernels and its fused step, which made it 1.7-2.0x "
                     "faster at 64 slots")
    elif _generation(row) == 1:
        notes.append("measured before the slot engine's fused step and in-graph draw, which made it 1.2-1.4x "
                     "faster at 64 slots")
    if not same:
        if params_b > size:
            tokens_per_s *= size / params_b
            notes.append(f"scaled by {size:g}B / {params_b:g}B parameters")
        else:
            notes.append(f"a {params_b:g}B model taken as fast as {size:g}B")
    measured = not notes
    return Rate(tokens_per_s, measured, what + ("" if measured else "; " + "; ".join(notes)),
                bandwidth=row["bandwidth"])


def realistic_length(budget: int, median: float = MEDIAN, sigma: float = SIGMA) -> float:
    """Mean of min(L, budget) for L log-normal with this median and sigma (the benchmark's trace lengths)."""
    mu = math.log(median)
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    z = (math.log(budget) - mu) / sigma
    return math.exp(mu + sigma ** 2 / 2) * phi(z - sigma) + budget * (1 - phi(z))


def profile_rate(P, model: str, batch_hooks: bool = False) -> tuple[Rate, str]:
    """The rate of ``model`` under profile ``P`` on the profile's GPU (``gpu_memory_gb``, ``gpu_bandwidth_tb_s``),
    and the weights assumed."""
    from . import memory
    from .registry import get_spec

    spec = get_spec(model)
    weights = P.quantization
    if weights == "auto":  # decide as load_model would on the profile's GPU
        weights = memory.choose("auto", spec.params_b, has_gpu=True, bf16_supported=P.gpu_bf16,
                                kv_gb=_kv_gb(spec, P), free_gb=0.95 * P.gpu_memory_gb).quantization
    if weights == "fp32":
        weights = "bf16"
    speed = rate(spec.params_b, weights, engine_for(weights, batch_hooks), P.batch_size)
    return speed.on(P.gpu_bandwidth_tb_s), weights


def _kv_gb(spec, P) -> float:
    from . import memory
    from .tiny import CHECKPOINT_ARCHITECTURES, random_architecture_config

    architecture = spec.random_architecture or CHECKPOINT_ARCHITECTURES.get(spec.name)
    if architecture is None:
        return 0.0
    return memory.kv_bytes_per_token(random_architecture_config(architecture)) * P.kv_tokens / 1e9


@dataclass(frozen=True)
class Cost:
    """Generated tokens and GPU hours of some work at one rate: at most (every trace at its budget) and at realistic
    trace lengths (an estimate)."""
    tokens: int
    hours: float
    typical_tokens: float
    typical_hours: float
    speed: Rate
    weights: str


def priced(P, work: Iterable[tuple[int, int]], model: str | None = None, batch_hooks: bool = False) -> Cost:
    """``work`` (rollouts, token budget of each) pairs at the rate of ``model`` (default: the profile's first) under
    ``P``; a model with no rate raises KeyError or LookupError."""
    work = [(int(n), int(budget)) for n, budget in work]
    worst = sum(n * budget for n, budget in work)
    typical = sum(n * realistic_length(budget) for n, budget in work if n and budget)
    speed, weights = profile_rate(P, model or P.models[0], batch_hooks)
    return Cost(worst, worst / speed.tokens_per_s / 3600, typical, typical / speed.tokens_per_s / 3600, speed,
                weights)


def cost(P, work: Iterable[tuple[int, int]], model: str | None = None, batch_hooks: bool = False) -> str:
    """One line for a notebook: ``work`` is (rollouts, token budget of each) pairs; GPU hours at most and at
    realistic lengths, at the rate of ``model`` (default: the profile's first) under ``P``."""
    work = [(int(n), int(budget)) for n, budget in work]
    model = model or P.models[0]
    try:
        c = priced(P, work, model, batch_hooks)
    except (KeyError, LookupError) as err:
        return (f"at most {sum(n * budget for n, budget in work):,} generated tokens per model (no GPU estimate for "
                f"{model}: {err})")
    return (f"at most {c.tokens:,} generated tokens per model, {c.hours:.1f} GPU hours; at realistic trace lengths "
            f"(estimate) about {c.typical_tokens:,.0f} tokens, {c.typical_hours:.1f} GPU hours; {model} in "
            f"{c.weights} at {c.speed}")


def markdown() -> str:
    """The measured rates as a markdown table (README, benchmarks/README.md)."""
    lines = ["| model | weights | engine | slots | useful tokens/s | of the bandwidth limit | GPU | source |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(table(), key=lambda r: (r["params_b"], r["weights"], r["engine"], r["slots"])):
        limit = f"{r['of_limit']:.1%}" if r["of_limit"] is not None else "–"
        hooks = f" ({r['ablated_heads']} heads zeroed)" if r["ablated_heads"] else ""
        hooks += {0: " (before its CUDA kernels)", 1: " (before its fused step)", 2: ""}[_generation(r)]
        lines.append(f"| {r['model']} | {r['weights']} | {ENGINES[r['engine']]}{hooks} | {r['slots']} | "
                     f"{r['tokens_per_s']:,.0f} | {limit} | {r['device']} | {r['source']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
