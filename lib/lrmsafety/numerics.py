"""Batch-invariant CPU numerics: a row's logits do not depend on the rows computed beside it.

Counter-based sampling (:mod:`lrmsafety.engine.sampling`) gives every sample its own uniform draws, but a draw
becomes a token through the inverse CDF of the row's probabilities, so the logits themselves must not move with
the batch. MKL's matrix products do: one row runs a matrix-vector kernel, a few rows one blocked kernel, many rows
another, and each rounds its sums in its own order (a logit moves by about 1e-5). Over thousands of sampled
tokens a draw that lands that close to a CDF boundary now and then picks the neighbouring token, and a sample
resumed from a cache, or generated beside another notebook's prompts, ends differently from a cold run of it.

On Intel CPUs, MKL's conditional numerical reproducibility in strict mode (``MKL_CBWR=<instruction set>,STRICT``)
makes every product bitwise independent of its row count and of the thread count, at no measurable cost on the
organisms. MKL reads the setting at its first product, so :func:`configure` runs when ``lrmsafety`` is imported (a
value the user has set is kept). The instruction set is the best the CPU has (AVX-512, else AVX2).

Elsewhere (MKL runs its own code path on AMD CPUs, where the setting leaves products dependent on their row count)
:func:`use_batch_invariant_products` replaces ``torch.nn.functional.linear`` for CPU float32 inference by the
cheapest of two products that :func:`batch_invariant`'s check finds invariant on this CPU: **padded**, where a
product of fewer than ``MIN_ROWS`` rows is padded with zero rows to that many (MKL's kernels there differ only below
it: one row runs a matrix-vector kernel, two or three another), or **row-blocked**, where the rows are cut into
blocks of ``ROW_BLOCK`` (the last one padded) and each block is one product of that one shape, in which a row's
result depends neither on its position nor on the other rows, whatever the kernels (slower than padded products:
``benchmarks/cpu_products.py``). Products that record gradients, GPU products and other dtypes keep torch's own.
:func:`mode` says which a process uses; results are bitwise the same between machines of one mode and instruction
set, not across them.

On a GPU, cuBLAS and the attention kernels choose their algorithms by shape, and bf16 rounds far more coarsely,
so a sample's tokens are fixed by its seed but its logits, and now and then a token, depend on its batch.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path


def instruction_set() -> str:
    """MKL's code branch for this CPU: ``AVX512`` when it has AVX-512F, ``AVX2`` when it has AVX2, else
    ``COMPATIBLE`` (the flags are read from /proc/cpuinfo; elsewhere AVX2, which every x86-64 CPU with MKL's
    fast paths has)."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")),
                     "").split()
    except OSError:
        return "AVX2"
    if "avx512f" in flags:
        return "AVX512"
    return "AVX2" if "avx2" in flags else "COMPATIBLE"


def configure() -> str:
    """Ask MKL for strict reproducibility unless ``MKL_CBWR`` is already set; returns the setting in force."""
    if "MKL_CBWR" not in os.environ:  # the CPU's flags are read only when the setting is ours to make
        os.environ["MKL_CBWR"] = f"{instruction_set()},STRICT"
    return os.environ["MKL_CBWR"]


MIN_ROWS = 4  # padded products: fewer rows are padded to this many
ROW_BLOCK = 64  # row-blocked products: rows per product
_torch_linear = None  # torch's own linear, kept when a fallback replaces it
_mode = None  # the fallback installed: "padded" or "row-blocked"


def _invariant(linear) -> bool:
    """Whether ``linear`` gives a row bitwise the same result at 1, 2, 3, 4, 17, 64, 200 and 1000 rows (the kernels
    MKL switches between; a long prefill's), and at another position among other rows."""
    import torch

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 256, generator=generator)
    rows = torch.randn(1000, 256, generator=generator)
    alone = linear(rows[:1], weight)[0]
    same = all(torch.equal(linear(rows[:n], weight)[0], alone) for n in (2, 3, 4, 17, 64, 200, 1000))
    return same and torch.equal(linear(rows[:5].flip(0), weight)[4], alone)


@functools.cache
def mkl_batch_invariant() -> bool:
    """Whether torch's own float32 product on the CPU is batch invariant here (MKL's strict mode took effect)."""
    return _invariant(_plain())


def _plain():
    """torch's own linear (kept aside once a fallback replaces it)."""
    import torch

    return _torch_linear or torch.nn.functional.linear


def _inference_on_cpu(input, weight) -> bool:
    import torch

    return (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad)))


def _rows(input, minimum: int):
    """``input`` as a matrix of rows, padded with zero rows to a multiple of ``minimum``; and the true row count."""
    import torch

    rows = input.reshape(-1, input.shape[-1])
    n = rows.shape[0]
    if n % minimum:
        rows = torch.cat([rows, rows.new_zeros(minimum - n % minimum, rows.shape[1])])
    return rows, n


def padded_linear(input, weight, bias=None):
    """``torch.nn.functional.linear`` with at least ``MIN_ROWS`` rows in every product on the CPU in float32 without
    gradients (the module docstring); torch's own otherwise."""
    # most products have MIN_ROWS rows or more: they pass through before the other checks
    if input.numel() >= MIN_ROWS * input.shape[-1] or not _inference_on_cpu(input, weight):
        return _plain()(input, weight, bias)
    rows, n = _rows(input, MIN_ROWS)
    return _plain()(rows, weight, bias)[:n].reshape(*input.shape[:-1], weight.shape[0])


def row_blocked_linear(input, weight, bias=None):
    """``torch.nn.functional.linear`` whose every product has ``ROW_BLOCK`` rows on the CPU in float32 without
    gradients (the module docstring); torch's own otherwise."""
    import torch

    plain = _plain()
    if not _inference_on_cpu(input, weight):
        return plain(input, weight, bias)
    rows, n = _rows(input, ROW_BLOCK)
    blocks = [plain(block, weight, bias) for block in rows.split(ROW_BLOCK)]
    out = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
    return out[:n].reshape(*input.shape[:-1], weight.shape[0])


FALLBACKS = {"padded": padded_linear, "row-blocked": row_blocked_linear}  # cheapest first


def install_fallback(name: str) -> None:
    """Put ``FALLBACKS[name]`` in place of ``torch.nn.functional.linear`` (torch's own kept aside, once)."""
    global _torch_linear, _mode
    import torch

    _torch_linear, _mode = _plain(), name
    torch.nn.functional.linear = FALLBACKS[name]
    batch_invariant.cache_clear()


def use_batch_invariant_products() -> str:
    """Make this process's CPU products batch invariant: MKL's strict mode where it works, else the cheapest
    fallback that the check finds invariant (:func:`install_fallback`, once); returns :func:`mode`."""
    if _mode is None and not mkl_batch_invariant():
        install_fallback(next((name for name, linear in FALLBACKS.items() if _invariant(linear)), "row-blocked"))
    return mode()


def mode() -> str:
    """``"mkl-strict"`` (MKL's strict products), ``"padded"`` or ``"row-blocked"`` (the fallbacks), or
    ``"batch-dependent"`` (no fallback installed yet on a CPU that needs one)."""
    if _mode is not None:
        return _mode
    return "mkl-strict" if mkl_batch_invariant() else "batch-dependent"


@functools.cache
def batch_invariant() -> bool:
    """Whether a float32 product on the CPU, as ``torch.nn.functional.linear`` now computes it, is batch invariant."""
    import torch

    return _invariant(torch.nn.functional.linear)


FIX = ("neither MKL's strict mode nor the fallback products of lrmsafety.numerics (use_batch_invariant_products) "
       "made them invariant: has other code replaced torch.nn.functional.linear?")
