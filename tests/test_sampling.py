"""Counter-based sampling: the key hash, the inverse CDF of the filtered distribution, rows independent."""

import torch

from lrmsafety.engine import sampling

MASK = (1 << 64) - 1
SAMPLE = {"do_sample": True, "temperature": 1.0}


def _splitmix64_reference(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_the_hash_is_splitmix64_with_logical_shifts():
    xs = [0, 1, 2, 12345, 2 ** 40 + 7, 2 ** 62 + 3, -1, -(2 ** 63), -987654321]
    out = sampling.splitmix64(torch.tensor(xs, dtype=torch.long)).tolist()
    assert [o & MASK for o in out] == [_splitmix64_reference(x & MASK) for x in xs]


def test_draws_look_uniform():
    u = sampling.uniform(torch.arange(10_000))
    assert len(set(u.tolist())) == 10_000 and 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(u.var()) - 1 / 12) < 0.003
    counts = torch.histc(u.float(), bins=10, min=0, max=1)
    assert ((counts - 1000).abs() < 150).all()  # each decile within ~5 sigma
    # keys of consecutive counters under several seeds: also distinct, and seeds do not share streams
    keys = sampling.row_keys(torch.arange(100).repeat_interleave(100), torch.arange(100).repeat(100))
    assert len(set(keys.tolist())) == 10_000
    assert abs(float(sampling.uniform(keys).mean()) - 0.5) < 0.01


def test_inverse_cdf_matches_the_distribution():
    """On a fixed distribution (a zero-probability token among them), draws over many keys follow the probabilities
    (chi-square with 4 degrees of freedom below its 0.999 quantile) and never pick the zero."""
    probs = torch.tensor([0.1, 0.0, 0.25, 0.05, 0.4, 0.2])
    n = 40_000
    u = sampling.uniform(sampling.row_keys(torch.full((n,), 7), torch.arange(n)))
    tokens = sampling.inverse_cdf(probs.expand(n, -1), u)
    counts = torch.bincount(tokens, minlength=6).double()
    assert counts[1] == 0
    expected = probs.double() * n
    keep = expected > 0
    chi2 = float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    assert chi2 < 18.5


def test_inverse_cdf_edges_never_pick_a_zero():
    probs = torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0], [0.3, 0.0, 0.7, 0.0, 0.0]])
    for value in (0.0, 0.5 - 1e-12, 0.5, 1 - 2 ** -53, 1.0):  # 1.0 cannot be drawn; the clamp still holds
        tokens = sampling.inverse_cdf(probs, torch.full((3,), value, dtype=torch.float64))
        assert (probs[torch.arange(3), tokens] > 0).all(), value


def test_keyed_sampling_respects_top_k_and_top_p():
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    ref = logits
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(10), TopPLogitsWarper(0.8)):
        ref = warper(None, ref)
    kept = torch.isfinite(ref)
    args = {"do_sample": True, "temperature": 0.7, "top_k": 10, "top_p": 0.8}
    n = 4000
    draws = torch.stack([sampling.sample(logits, args, keys=sampling.row_keys(torch.tensor([1, 2, 3]),
                                                                              torch.full((3,), i)))
                         for i in range(n)], 1)
    for row in range(3):
        chosen = set(draws[row].tolist())
        allowed = set(kept[row].nonzero().flatten().tolist())
        assert chosen <= allowed
        # frequencies near the filtered distribution's probabilities
        probs = ref[row].softmax(-1)
        freq = torch.bincount(draws[row], minlength=50).double() / n
        assert (freq - probs.double()).abs().max() < 0.04
    greedy = {"do_sample": False}
    assert (sampling.sample(logits, greedy, keys=torch.arange(3)) == logits.argmax(-1)).all()
    assert (sampling.sample(logits, {**SAMPLE, "temperature": 0.0}, keys=torch.arange(3)) == logits.argmax(-1)).all()


def test_a_row_draws_the_same_token_alone_or_in_any_batch():
    torch.manual_seed(1)
    logits = torch.randn(8, 300)
    keys = sampling.row_keys(torch.arange(8) * 1000 + 5, torch.arange(8))
    together = sampling.sample(logits, SAMPLE, keys=keys)
    alone = torch.cat([sampling.sample(logits[i:i + 1], SAMPLE, keys=keys[i:i + 1]) for i in range(8)])
    perm = torch.randperm(8)
    shuffled = sampling.sample(logits[perm], SAMPLE, keys=keys[perm])
    assert together.tolist() == alone.tolist() == shuffled[perm.argsort()].tolist()
    # the shared generator is still there for callers without keys
    g = sampling.sample(logits, SAMPLE, torch.Generator().manual_seed(0))
    assert g.shape == (8,)
