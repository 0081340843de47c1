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


def _sort_rule(logits, top_p):
    """Top-p as a sort (the rule filtered_logits runs on the CPU): the kept tokens of each row."""
    ordered, order = logits.sort(dim=-1)
    remove = ordered.softmax(-1).cumsum(-1) <= 1 - top_p
    remove[:, -1] = False
    return ~remove.scatter(1, order, remove)


def test_the_cpu_filters_top_p_by_the_sort():
    """On CPU tensors filtered_logits is the sort rule, bit for bit (the committed organism outputs depend on it)."""
    torch.manual_seed(2)
    logits = torch.randn(16, 5000) * 3
    for args in ({"temperature": 0.6, "top_p": 0.95}, {"temperature": 0.7, "top_p": 0.8, "top_k": 50}):
        scaled = logits.float() / args["temperature"]
        if args.get("top_k"):
            kth = torch.topk(scaled, args["top_k"], dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        want = scaled.masked_fill(~_sort_rule(scaled, args["top_p"]), float("-inf"))
        assert torch.equal(sampling.filtered_logits(logits, args), want)


def test_top_p_search_keeps_the_sort_rules_tokens():
    """The sort-free top-p (kernels.top_p_search, CUDA's; here in Triton's interpreter on CPU tensors) keeps the
    sort rule's tokens on flat, peaked and spiky rows, rows cut by top-k, and several top-p. Where the two differ,
    the token's cumulative mass (float64, ascending) lies within 1e-6 of 1 - top_p (rounding at the boundary);
    on rows of tied logits it keeps the whole tie at the boundary, where the sort keeps part of it."""
    from test_slot_attention import run_interpreted

    out = run_interpreted("""
        import torch
        from lrmsafety.engine import kernels

        kernels.TOP_P_CHUNKS, kernels.TOP_P_BLOCK = 2, 1024  # two blocks per chunk
        g = torch.Generator().manual_seed(0)
        n, vocab = 8, 4096
        rows = {
            "flat": torch.randn(n, vocab, generator=g) * 2,
            "peaked": torch.randn(n, vocab, generator=g) * 8,
            "spiky": torch.randn(n, vocab, generator=g) + 12 * (torch.rand(n, vocab, generator=g) < 0.002),
            "top_k": torch.randn(n, vocab, generator=g).masked_fill(torch.rand(n, vocab, generator=g) < 0.9,
                                                                    float("-inf")),
            "ties": (torch.randn(n, vocab, generator=g) * 3).round(),
        }
        differ = 0
        for name, logits in rows.items():
            for top_p in (0.5, 0.95, 0.999):
                kept = kernels.top_p_search(logits, top_p) > float("-inf")
                ordered, order = logits.sort(dim=-1)
                remove = ordered.softmax(-1).cumsum(-1) <= 1 - top_p
                remove[:, -1] = False
                want = ~remove.scatter(1, order, remove)
                diff = kept != want
                if name == "ties":  # a superset: the extra tokens tie with the sort's lowest kept token
                    assert (kept | want).eq(kept).all(), (name, top_p)
                    lowest = logits.masked_fill(~want, float("inf")).min(-1, keepdim=True).values
                    assert (logits[diff] == lowest.expand_as(logits)[diff]).all(), (name, top_p)
                    continue
                if diff.any():
                    ordered64, order64 = logits.double().sort(dim=-1)
                    cum = torch.empty_like(ordered64).scatter_(1, order64, ordered64.softmax(-1).cumsum(-1))
                    assert (cum[diff] - (1 - top_p)).abs().max() <= 1e-6, (name, top_p)
                    differ += int(diff.sum())
                assert kept[torch.arange(n), logits.argmax(-1)].all()
        only_max = kernels.top_p_search(rows["flat"], 0.0) > float("-inf")  # top_p 0: the most likely token
        assert only_max.sum(-1).eq(1).all() and only_max[torch.arange(n), rows["flat"].argmax(-1)].all()
        print("tokens differing", differ)
    """)
    assert "tokens differing" in out


def test_the_inverse_cdf_kernel_draws_the_softmax_draw():
    """kernels.inverse_cdf (CUDA's draw; here in Triton's interpreter) gives sampling.inverse_cdf's token on the
    softmax for flat, peaked and top-p-filtered rows, a row of one kept token, u at 0 and at its largest value, and
    targets in the tokens at chunk and block edges; it never returns a filtered token."""
    from test_slot_attention import run_interpreted

    out = run_interpreted("""
        import torch
        from lrmsafety.engine import kernels, sampling

        kernels.TOP_P_CHUNKS, kernels.TOP_P_BLOCK = 4, 256  # several chunks of several blocks per row
        g = torch.Generator().manual_seed(1)
        n, vocab = 12, 3000
        edges = (255, 256, 768, 2047)  # a block's last and the next chunk's first column, and others
        rows = {
            "flat": torch.randn(n, vocab, generator=g),
            "peaked": torch.randn(n, vocab, generator=g) * 8,
            "top_p": sampling.filtered_logits(torch.randn(n, vocab, generator=g) * 3, {"top_p": 0.9}),
            "one": torch.full((n, vocab), float("-inf")).index_fill(1, torch.tensor([1500]), 0.0),
            "edges": torch.randn(n, vocab, generator=g).index_add(1, torch.tensor(edges), torch.full((n, 4), 6.0)),
        }
        same = total = 0
        for name, logits in rows.items():
            probs = logits.softmax(-1)
            cdf = probs.double().cumsum(-1)
            u = torch.rand(n, dtype=torch.float64, generator=g)
            u[0], u[1] = 0.0, 1 - 2.0 ** -53
            if name == "edges":  # targets mid-way through the heavy tokens at the edges (far from any boundary)
                for i, col in zip(range(2, 6), edges):
                    u[i] = float(cdf[i, col - 1] + cdf[i, col]) / 2 / float(cdf[i, -1])
            got = kernels.inverse_cdf(logits, u)
            want = sampling.inverse_cdf(probs, u)
            assert (probs[torch.arange(n), got] > 0).all(), name
            if name == "edges":
                assert got[2:6].tolist() == list(edges)
            same += int((got == want).sum())
            total += n
        print("same", same, "of", total)
    """)
    same, total = map(int, out.split()[1::2])
    assert same == total, out
