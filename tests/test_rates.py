"""GPU-hour estimates from the measured rates (lrmsafety.rates), never from a constant."""

import math
import re

import pytest

from lrmsafety import params, rates
from lrmsafety.paths import REPO_ROOT


def test_a_measured_rate_is_the_benchmarks_number():
    row = next(r for r in rates.table() if r["model"] == "deepseek-r1-distill-qwen-7b" and r["weights"] == "bf16"
               and r["engine"] == "slots" and r["slots"] == 64)
    got = rates.rate(7.62, "bf16", "slots", 64)
    assert got.measured and got.tokens_per_s == row["tokens_per_s"]


def test_estimates_say_what_they_stand_on():
    more_slots = rates.rate(7.62, "bf16", "slots", 128)  # 64 measured, 256 measured: the nearest below
    assert not more_slots.measured and "measured at 64 slots, not 128" in more_slots.basis
    larger = rates.rate(14.8, "bf16", "slots", 64)
    assert not larger.measured and math.isclose(larger.tokens_per_s, rates.rate(7.62, "bf16", "slots", 64)
                                                .tokens_per_s * 7.62 / 14.8)
    smaller = rates.rate(0.5, "nf4", "refill", 64)
    assert not smaller.measured and "taken as fast as" in smaller.basis
    with pytest.raises(LookupError, match="realistic_rollouts"):
        rates.rate(7.62, "fp8", "slots", 64)


def test_the_engine_follows_weights_and_hooks():
    assert rates.engine_for("bf16") == "slots" and rates.engine_for("fp16") == "slots"
    assert rates.engine_for("nf4") == "refill" and rates.engine_for("bf16", batch_hooks=True) == "refill"


def test_realistic_length_is_the_capped_log_normal_mean():
    uncapped = math.exp(math.log(rates.MEDIAN) + rates.SIGMA ** 2 / 2)
    assert abs(rates.realistic_length(10 ** 7) - uncapped) < 1e-6
    assert rates.realistic_length(32) < 32 and rates.realistic_length(2048) < uncapped


def test_cost_line_of_the_paper_profile():
    line = rates.cost(params.load("paper"), [(1000, 9216)])
    hours = 1000 * 9216 / rates.rate(7.62, "bf16", "slots", 64).tokens_per_s / 3600
    assert line.startswith("at most 9,216,000 generated tokens per model, " + f"{hours:.1f} GPU hours")
    assert "realistic trace lengths (estimate)" in line and "in bf16" in line


def test_readme_gpu_hours_follow_the_measured_rate():
    """The README's notebook table gives, per notebook, at most N M tokens and H h: H is N at the measured rate of
    R1-Distill-Qwen-7B in bf16 on the slot engine at the paper profile's 64 slots."""
    text = (REPO_ROOT / "README.md").read_text()
    speed = rates.rate(7.62, "bf16", "slots", params.load("paper").batch_size).tokens_per_s
    pairs = re.findall(r"≤ (\d+) M tokens, ≤ ([\d.]+) h", text)
    assert len(pairs) >= 6
    for tokens, hours in pairs:
        assert abs(float(hours) - int(tokens) * 1e6 / speed / 3600) <= 0.05 + 0.05 * float(hours), (tokens, hours)


def test_another_gpu_scales_the_measured_rate_by_the_bandwidths():
    measured = rates.rate(1.78, "bf16", "slots", 64)
    assert measured.bandwidth and measured.on(None) is measured
    t4 = measured.on(0.32)
    assert not t4.measured and "scaled by the bandwidths" in t4.basis
    assert math.isclose(t4.tokens_per_s, measured.tokens_per_s * 0.32e12 / measured.bandwidth)
    speed, weights = rates.profile_rate(params.load("paper-lite-t4"), "deepseek-r1-distill-qwen-1.5b")
    assert weights == "fp16" and "0.32 / " in speed.basis  # a T4: no bf16, 0.32 TB/s
    assert math.isclose(speed.tokens_per_s, measured.tokens_per_s * 0.32e12 / measured.bandwidth)  # from 64 slots
