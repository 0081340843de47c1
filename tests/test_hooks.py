"""lrmsafety.engine.hooks: hooks live only inside their block; head ablation zeroes exactly the chosen heads."""

import pytest
import torch
from torch import nn

from lrmsafety.engine import hooks


class Attention(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.o_proj = nn.Identity()

    def forward(self, x):
        return self.o_proj(x)


class Layer(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.self_attn = Attention(width)

    def forward(self, x):
        return self.self_attn(x)


class Tiny(nn.Module):
    """Two layers of 4 heads of size 2: the o_proj input is what the hooks see."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"num_attention_heads": 4, "hidden_size": 8, "head_dim": 2,
                                          "num_hidden_layers": 2, "get_text_config": lambda self: self})()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([Layer(8), Layer(8)])

    def forward(self, x):
        return [layer(x) for layer in self.model.layers]


def test_hooks_are_removed_after_the_block_even_when_it_raises():
    model, seen = Tiny(), []
    module = model.model.layers[0].self_attn.o_proj
    with pytest.raises(RuntimeError):
        with hooks.add_hooks(forward_hooks=[(module, lambda m, a, o: seen.append(1))]):
            model(torch.ones(1, 8))
            raise RuntimeError("inside the block")
    model(torch.ones(1, 8))
    assert seen == [1]


def test_head_ablation_zeroes_the_chosen_head_and_rescales_as_asked():
    model, x = Tiny(), torch.arange(1, 17, dtype=torch.float32).reshape(2, 8)
    with hooks.add_hooks(hooks.head_ablation_hooks(model, [(1, 2)])):
        first, second = model(x)
    assert torch.equal(first, x) and torch.equal(second[:, 4:6], torch.zeros(2, 2))
    assert torch.equal(second[:, :4], x[:, :4])
    with hooks.add_hooks(hooks.head_ablation_hooks(model, [(1, 2)], rescale="position")):
        _, rescaled = model(x)
    assert torch.allclose(rescaled.norm(dim=-1), x.norm(dim=-1))
    with hooks.add_hooks(hooks.head_ablation_hooks(model, [(1, 2)], rescale="batch")):
        _, rescaled = model(x)
    assert torch.allclose(rescaled.norm(), x.norm())
    with pytest.raises(ValueError, match="outside the model"):
        hooks.head_ablation_hooks(model, [(2, 0)])
