"""The slot engine's CUDA attention kernel (``kernels.decode_attention``) against the formula the CPU runs.

The kernels are Triton's; without a GPU they run in Triton's interpreter on CPU tensors (a subprocess, since the
interpreter is chosen when the kernels are defined). The tests skip where Triton is not installed (the CPU-only
torch builds): the CPU path never uses the kernels.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lrmsafety.engine import slot_attention, slots

HERE = Path(__file__).resolve().parent

# the interpreter (Triton 3.5) converts one-element arrays to int with int(), which NumPy 2 refuses
INTERPRETER_PRELUDE = """
import triton.runtime.interpreter as interpreter
if hasattr(interpreter, "_patch_lang_tensor"):
    _patch = interpreter._patch_lang_tensor

    def _patch_index(tensor, *args, **kwargs):  # (tensor) in Triton 3.5, (tensor, scope) in later versions
        _patch(tensor, *args, **kwargs)
        tensor.__index__ = lambda self: int(self.handle.data.reshape(-1)[0])

    interpreter._patch_lang_tensor = _patch_index
"""


def run_interpreted(code: str, timeout: float = 600) -> str:
    """Run ``code`` in a fresh Python with Triton's interpreter on; its output (fails the test on an error)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    done = subprocess.run([sys.executable, "-c", INTERPRETER_PRELUDE + textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_cpu_attends_by_the_formula():
    assert not slot_attention.fused_attention_serves(torch.device("cpu"), torch.float32)
    assert not slot_attention.fused_attention_serves(torch.device("cpu"), torch.bfloat16)


def test_decode_attention_matches_the_formula():
    """Grouped-query heads (7 and 6 query heads per key-value head, and 1), head sizes 128 and 80 (padded),
    positions at split and block edges, the query laid out as transformers passes it: each row attends to its
    columns 0..position, within float16 rounding of the float64 formula (no worse than the formula in float16)."""
    out = run_interpreted("""
        import torch
        from lrmsafety.engine import kernels, slot_attention

        kernels.SPLIT, kernels.BLOCK_N = 64, 16  # several splits and blocks per row at a small width
        torch.manual_seed(0)
        for heads, kv, dim in ((28, 4, 128), (12, 2, 80), (4, 4, 64)):
            for dtype, tol in ((torch.float16, 2e-3), (torch.float32, 2e-5)):
                rows, width, capacity = 6, 192, 256
                query = torch.randn(rows, 1, heads, dim).to(dtype).transpose(1, 2)
                keys = torch.randn(rows, kv, capacity, dim).to(dtype)
                values = torch.randn(rows, kv, capacity, dim).to(dtype)
                pos = torch.tensor([0, 15, 16, 63, 64, 191])
                visible = torch.arange(width)[None] <= pos[:, None]
                bias = torch.zeros(rows, width).masked_fill(~visible, float("-inf"))[:, None, None]
                k, v = keys[:, :, :width], values[:, :, :width]
                got, _ = slot_attention.fused_slot_attention(None, query, k, v, bias, scaling=dim ** -0.5,
                                                             position_ids=pos[:, None])
                ref, _ = slot_attention.slot_attention(None, query.double(), k.double(), v.double(),
                                                       bias.double(), scaling=dim ** -0.5)
                formula, _ = slot_attention.slot_attention(None, query, k, v, bias, scaling=dim ** -0.5)
                assert got.shape == formula.shape == (rows, 1, heads, dim) and got.dtype == dtype
                err = float((got.double() - ref).abs().max())
                formula_err = float((formula.double() - ref).abs().max())
                assert err <= max(tol, formula_err), (heads, kv, dim, dtype, err, formula_err)
                print(heads, kv, dim, dtype, f"{err:.2e} (formula {formula_err:.2e})")
    """)
    assert out.count("\n") == 6


def test_the_slot_engine_on_the_kernel_gives_the_formulas_tokens(qwen3_tokenizer_path):
    """The slot engine routed through the kernel (forced on the CPU, float32, the interpreter) gives the greedy
    tokens of its formula path: rows of different lengths, refills, widths that grow past a split."""
    out = run_interpreted("""
        import torch
        from test_scheduler import Fixed
        from tiny_models import build_tiny, tokenizer_for
        from lrmsafety.engine import kernels, scheduler, slot_attention, slots

        tokenizer = tokenizer_for("r1")
        model = build_tiny("Qwen2ForCausalLM", len(tokenizer)).eval()
        Fixed.tokenizer = tokenizer
        slots.BUCKET, slots.GROWTH, kernels.SPLIT, kernels.BLOCK_N = 8, 16, 16, 16
        texts = ["alpha beta gamma", "one", "a much longer prompt with many more words in it", "delta"]
        lengths = [9, 2, 25, 5, 12]

        tokens, used = {}, {}
        for fused in (False, True):
            slots.fused_attention_serves = lambda device, dtype, fused=fused: fused
            requests = [Fixed(texts[i % 4], n) for i, n in enumerate(lengths)]
            run = scheduler.RefillScheduler(model, tokenizer, {"do_sample": False}, slots=3, chunk=4,
                                            decode="static")
            run.run(requests, lambda r: None)
            tokens[fused], used[fused] = [r.tokens for r in requests], run.engine.attention
        assert used == {False: slot_attention.ATTENTION_NAME, True: slot_attention.FUSED_NAME}, used
        assert tokens[True] == tokens[False], tokens
        print("same tokens", sum(map(len, tokens[True])))
    """)
    assert "same tokens 53" in out


def test_a_kernel_that_fails_leaves_the_formula(tiny_r1, monkeypatch):
    """Where the kernel cannot run (it does not build on the GPU), the slot engine says so and attends by the
    formula: the tokens are those of the formula path."""
    from test_scheduler import Fixed

    from lrmsafety.engine import scheduler

    model, tokenizer, _ = tiny_r1
    monkeypatch.setattr(Fixed, "tokenizer", tokenizer)

    def run():
        requests = [Fixed(t, n) for t, n in (("alpha beta", 6), ("one", 3), ("a longer prompt here", 8))]
        engine_run = scheduler.RefillScheduler(model, tokenizer, {"do_sample": False}, slots=2, chunk=3,
                                               decode="static")
        engine_run.run(requests, lambda r: None)
        return [r.tokens for r in requests], engine_run.engine

    want, engine = run()
    assert engine.attention == slot_attention.ATTENTION_NAME and engine.attention_error is None

    def no_kernel(*args, **kwargs):
        raise RuntimeError("no kernel for this GPU")

    monkeypatch.setattr(slots, "fused_attention_serves", lambda device, dtype: True)
    monkeypatch.setattr(slot_attention.kernels, "decode_attention", no_kernel)
    got, engine = run()
    assert engine.attention == slot_attention.ATTENTION_NAME and "no kernel" in engine.attention_error
    assert got == want
