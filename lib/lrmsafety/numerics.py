"""Batch-invariant CPU numerics: a row's logits do not depend on the rows computed beside it.

Counter-based sampling (:mod:`lrmsafety.engine.sampling`) gives every sample its own uniform draws, but a draw
becomes a token through the inverse CDF of the row's probabilities, so the logits themselves must not move with
the batch. MKL's matrix products do: one row runs a matrix-vector kernel, a few rows one blocked kernel, many rows
another, and each rounds its sums in its own order (a logit moves by about 1e-5). Over thousands of sampled
tokens a draw that lands that close to a CDF boundary now and then picks the neighbouring token, and a sample
resumed from a cache, or generated beside another notebook's prompts, ends differently from a cold run of it.

MKL's conditional numerical reproducibility in strict mode (``MKL_CBWR=<instruction set>,STRICT``) makes every
product bitwise independent of its row count and of the thread count, at no measurable cost on the organisms.
MKL reads the setting at its first product, so :func:`configure` runs when ``lrmsafety`` is imported (a value
the user has set is kept), and :func:`batch_invariant` checks at run time that it took effect; the rollout
driver warns once, naming the fix, when it did not. The instruction set is the best the CPU has (AVX-512, else
AVX2), so results are bitwise the same on CPUs of one instruction set, not across them.

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


@functools.cache
def batch_invariant() -> bool:
    """Whether a float32 matrix product on the CPU gives each row bitwise the same result at 1, 2, 3, 17 and 64
    rows (the kernels MKL switches between)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 256, generator=generator)
    rows = torch.randn(64, 256, generator=generator)
    alone = torch.nn.functional.linear(rows[:1], weight)[0]
    return all(torch.equal(torch.nn.functional.linear(rows[:n], weight)[0], alone) for n in (2, 3, 17, 64))


FIX = ("set MKL_CBWR=AVX2,STRICT (or AVX512,STRICT) in the environment before Python starts, or import lrmsafety "
       "before anything runs a torch computation")
