"""The slot engine's fused elementwise chains (``lrmsafety.engine.fusion``): what each architecture has fused, the
model's logits through them within float rounding, and a module of another formula left as it is.

The engine fuses on CUDA only; here the same plan runs on the CPU, where inductor compiles C++ in place of the Triton
kernels it writes for a GPU (the formulas and the swapping are the same).
"""

import pytest
import torch
from tiny_models import build_tiny

from lrmsafety.engine import fusion


def _kinds(swapped):
    return {"norm": sum(fusion._is_norm(m) for m, _ in swapped),
            "mlp": sum(fusion._is_gated_mlp(m) for m, _ in swapped)}


@pytest.mark.parametrize("architecture, norms_per_layer", [("Qwen2ForCausalLM", 2), ("Qwen3ForCausalLM", 4),
                                                            ("LlamaForCausalLM", 2)])
def test_fused_forward_gives_the_models_logits(architecture, norms_per_layer):
    model = build_tiny(architecture, 300).eval()
    swapped, patched = fusion.plan(model)
    # two decoder layers: their norms (Qwen3 also normalises each head's query and key), the final norm, the MLPs
    assert _kinds(swapped) == {"norm": 2 * norms_per_layer + 1, "mlp": 2}
    assert [name for _, name, _, _ in patched] == ["apply_rotary_pos_emb"]
    norm = model.model.layers[0].input_layernorm
    ids = torch.randint(3, 300, (3, 9))
    with torch.no_grad():
        want = model(ids).logits
        with fusion.applied((swapped, patched)):
            assert "forward" in norm.__dict__
            got = model(ids).logits
        after = model(ids).logits
    assert "forward" not in norm.__dict__  # the class's own forward again
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), float((got - want).abs().max())
    assert torch.equal(after, want)


def test_a_norm_of_another_formula_runs_as_it_is():
    """A norm with the same attributes but another formula (Gemma's scales by 1 + weight) fails the check once and
    is left alone; so is a module whose forward something else already wraps."""
    model = build_tiny("Qwen2ForCausalLM", 300).eval()
    layers = model.model.layers
    norm_class = type(layers[0].input_layernorm)

    class OnePlusWeightNorm(norm_class):
        def forward(self, hidden_states):
            h = hidden_states.float()
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
            return ((1.0 + self.weight.float()) * h).to(hidden_states.dtype)

    layers[0].input_layernorm.__class__ = OnePlusWeightNorm
    wrapped = layers[1].post_attention_layernorm
    wrapped.forward = wrapped.forward  # an instance-level forward, as accelerate's hooks leave
    swapped, _ = fusion.plan(model)
    modules = [m for m, _ in swapped]
    assert layers[0].input_layernorm not in modules and wrapped not in modules
    assert layers[1].input_layernorm in modules and _kinds(swapped)["norm"] == 5 - 2


def test_the_engine_fuses_on_cuda_only():
    model = build_tiny("Qwen2ForCausalLM", 300)
    with fusion.fused(model):
        assert not any("forward" in m.__dict__ for m in model.modules())
