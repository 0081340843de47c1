"""Paper B's head scores and head ablation, on tiny random-weight models of every reasoning architecture."""

import numpy as np
import pytest
import torch

from lrmsafety import heads, hooks, models
from tiny_models import build_tiny

ARCHITECTURES = sorted({spec.architecture for spec in models.REGISTRY.values() if spec.role == "reasoner"})


class _Tokenizer:
    pad_token_id = 0


TEXTS = [[5, 6, 7, 8, 9], [10, 11, 12]]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_ablation_and_scores_on_every_family(architecture):
    model = build_tiny(architecture, 1000).eval()
    ids = torch.tensor([TEXTS[0]])
    with torch.no_grad():
        before = model(ids).logits
        with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [])):
            nothing = model(ids).logits
        with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [(1, 1)], rescale="batch",
                                                                           keep=1.0)):
            kept = model(ids).logits  # heads kept whole: the rescaling factor is 1
        for rule in (None, "batch", "position"):
            with hooks.add_hooks(forward_pre_hooks=hooks.head_ablation_hooks(model, [(0, 1)], rescale=rule)):
                assert not torch.allclose(model(ids).logits, before, atol=1e-5), rule
    assert torch.equal(before, nothing) and torch.allclose(before, kept, atol=1e-5)

    direction = np.random.default_rng(0).normal(size=model.config.hidden_size)
    scores = heads.head_scores(model, _Tokenizer, TEXTS, direction, progress=False)
    n_layers, n_heads = len(hooks.decoder_layers(model)), hooks.n_heads(model)
    assert len(scores) == n_layers * n_heads and scores["score"].is_monotonic_increasing
    assert scores["score"].abs().max() > 0

    # the heads' writes add up to the attention output's write (bias excluded), projected on the direction
    projection = hooks.attention_output_projection(hooks.decoder_layers(model)[1])
    seen = {}
    with torch.no_grad(), hooks.add_hooks(forward_hooks=hooks.capture_hooks({"o": projection}, seen, inputs=True)):
        model(torch.tensor([TEXTS[0]]))
        last = seen["o"][:, -1]
        total = (projection(last) - projection(torch.zeros_like(last)))[0].float().numpy()
    alone = heads.head_scores(model, _Tokenizer, TEXTS[:1], direction, progress=False)
    unit = direction / np.linalg.norm(direction)
    assert np.isclose(alone[alone["layer"] == 1]["score"].sum(), total @ unit, atol=1e-4)

    size = hooks.head_dim(model)
    with torch.no_grad():
        projection.weight[:, 2 * size:3 * size] = 0
    zeroed = heads.head_scores(model, _Tokenizer, TEXTS, direction, progress=False)
    assert zeroed[(zeroed["layer"] == 1) & (zeroed["head"] == 2)]["score"].item() == 0.0


def _run_hook(rescale, hidden, heads_, size=4):
    model = build_tiny("Qwen2ForCausalLM", 100)  # 4 heads of 16
    (module, hook), = hooks.head_ablation_hooks(model, heads_, rescale=rescale)
    return hook(module, (hidden.clone(),))[0]


def test_rescaling_rules():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 64)  # (batch, positions, heads * head_dim)
    zeroed = hidden.clone()
    zeroed[..., 16:32] = 0
    plain = _run_hook(None, hidden, [(0, 1)])
    assert torch.equal(plain, zeroed)
    batch = _run_hook("batch", hidden, [(0, 1)])  # paper B: one factor for the whole batch's tensor
    assert torch.allclose(batch, zeroed * hidden.norm() / zeroed.norm())
    assert not torch.allclose(batch.norm(dim=-1), hidden.norm(dim=-1))
    position = _run_hook("position", hidden, [(0, 1)])
    assert torch.allclose(position.norm(dim=-1), hidden.norm(dim=-1), rtol=1e-5)
    assert torch.all(position[..., 16:32] == 0) and torch.all(batch[..., 16:32] == 0)
    with pytest.raises(ValueError, match="rescale"):
        _run_hook("per-token", hidden, [(0, 1)])
    with pytest.raises(ValueError, match="outside"):
        _run_hook(None, hidden, [(0, 9)])


def test_head_counts_and_random_sets():
    assert [heads.heads_for_share(784, s) for s in (0.015, 0.03, 0.10)] == [12, 24, 78]  # methods.md, R1-Qwen-7B
    assert heads.heads_for_share(48, 0.01) == 1
    drawn = heads.random_heads(6, 8, 5, seed=3)
    assert len(set(drawn)) == 5 and all(0 <= l < 6 and 0 <= h < 8 for l, h in drawn)
    assert drawn == heads.random_heads(6, 8, 5, seed=3) != heads.random_heads(6, 8, 5, seed=4)
