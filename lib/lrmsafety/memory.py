"""Which weights a model loads in, and whether they fit: the arithmetic behind ``quantization="auto"``.

``auto`` on a GPU takes 16-bit weights (bf16, or fp16 on GPUs without bf16 such as the T4) when the weights and the
KV cache for the batch fit in the GPU's free memory, and 4-bit NF4 otherwise; on the CPU fp32. 16-bit weights run on
the slot engine with CUDA graphs (:mod:`lrmsafety.engine.slots`), several times faster than NF4 on the DynamicCache
loop (``benchmarks/README.md``), so 4-bit is the fallback, not the default. The choice and its arithmetic are
printed, so a reader sees why a run is slow.

The KV cache is counted at its worst: every row of the batch at the full budget (prompt, thinking and answer). The
slot engine allocates as the rows grow, and the scheduler halves its slots on out-of-memory, so a run that would not
fit at its worst still runs.
"""

from __future__ import annotations

from dataclasses import dataclass

# bytes per parameter; nf4: 4 bits + block scales + unquantized embeddings
BYTES_PER_PARAM = {"bf16": 2.0, "fp16": 2.0, "fp32": 4.0, "nf4": 0.56}
OVERHEAD = 1.15  # activations and the CUDA context, on top of the weights


def memory_estimate_gb(params_b: float, quantization: str) -> float:
    """Weights only, plus 15% for activations and the CUDA context; the KV cache comes on top."""
    return params_b * BYTES_PER_PARAM[quantization] * OVERHEAD


def kv_bytes_per_token(config, bytes_per_value: float = 2.0) -> float:
    """Keys and values of one token over every layer (16-bit cache; NF4 models compute in bf16 too)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return 2 * text.num_hidden_layers * heads * head_dim * bytes_per_value


def available_gpu_gb() -> float:
    import torch

    return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())) / 1e9


def sixteen_bit(bf16_supported: bool) -> str:
    return "bf16" if bf16_supported else "fp16"


@dataclass(frozen=True)
class Choice:
    quantization: str
    why: str


def choose(quantization: str, params_b: float, *, has_gpu: bool, bf16_supported: bool = True,
           kv_gb: float = 0.0, free_gb: float | None = None) -> Choice:
    """The weights to load: ``quantization`` itself unless it is ``auto`` (see the module docstring)."""
    if quantization not in ("auto", *BYTES_PER_PARAM):
        raise ValueError(f"quantization must be one of auto, {', '.join(BYTES_PER_PARAM)}; not {quantization!r}")
    if quantization != "auto":
        return Choice(quantization, f"{quantization}, as asked")
    if not has_gpu:
        return Choice("fp32", "auto on the CPU")
    half = sixteen_bit(bf16_supported)
    if free_gb is None or not params_b:
        return Choice(half, f"auto: {half} (no memory figure to check against)")
    need = memory_estimate_gb(params_b, half) + kv_gb
    arithmetic = (f"{params_b:g}B parameters x {BYTES_PER_PARAM[half]:g} bytes x {OVERHEAD} = "
                  f"{memory_estimate_gb(params_b, half):.1f} GB of {half} weights + {kv_gb:.1f} GB of KV cache "
                  f"= {need:.1f} GB")
    if need <= free_gb:
        return Choice(half, f"auto: {half}, {arithmetic} <= {free_gb:.1f} GB free")
    return Choice("nf4", f"auto: nf4, since {arithmetic} > {free_gb:.1f} GB free (nf4 weights: "
                         f"{memory_estimate_gb(params_b, 'nf4'):.1f} GB)")


def tensor_parallel_size(params_b: float, quantization: str, free_per_gpu_gb: list[float],
                         share: float = 0.9) -> int:
    """How many GPUs vLLM splits a model over (tensor parallelism): the fewest of 1, 2, 4, 8 on which each GPU
    holds its slice of the weights in ``share`` of what it has free; 1 when none does (vLLM then says why)."""
    need = memory_estimate_gb(params_b, quantization)
    for n in (1, 2, 4, 8):
        if n <= len(free_per_gpu_gb) and need / n <= share * min(free_per_gpu_gb[:n]):
            return n
    return 1


def check(name: str, params_b: float, quantization: str, available_gb: float) -> None:
    """Raise ``MemoryError`` naming the fix when the weights alone do not fit."""
    needed = memory_estimate_gb(params_b, quantization)
    if needed <= available_gb:
        return
    fitting = [q for q in ("bf16", "nf4") if memory_estimate_gb(params_b, q) <= available_gb]
    fix = f"quantization={fitting[0]!r} would fit" if fitting else "use a smaller model or more GPUs"
    raise MemoryError(
        f"{name} needs about {needed:.1f} GB in {quantization} but {available_gb:.1f} GB of GPU memory is free; "
        f"{fix}."
    )
