"""The elementwise chains of a decode step, fused on CUDA for the slot engine (:mod:`lrmsafety.engine.slots`).

In transformers' eager decoder layer most of a decode step's 40-odd kernels per layer are short elementwise chains:
the RMS norm (a cast, a square, a mean, an add, a reciprocal square root, two products: twice per layer), the rotary
embedding of the query and the key (slices, a negation, a concatenation, products and sums) and the gated MLP's
activation times its up projection. On a GPU each kernel costs a few microseconds of launch and tail for far less
work: on a 1.5B model at 64 slots they are about half of a step's kernels (1,200 a step) and of its time.

``fused(model)`` runs them, for the duration of a ``with``, as functions compiled by ``torch.compile`` (inductor: one
or two Triton kernels each): the same formulas, in float32 where transformers computes in float32, with sums possibly
in another order (so within float rounding of the eager modules, not bit for bit). The slot engine enters it for
every step on CUDA, captured or eager, so its graph replays and its eager steps run the same kernels.

Which parts: a norm module with a ``weight`` and a ``variance_epsilon`` (the RMS norms of Qwen2, Qwen3, Llama,
Mistral), a gated MLP (``gate_proj``, ``up_proj``, ``down_proj``, a SiLU ``act_fn``) and the modeling module's
``apply_rotary_pos_emb``, each only after its compiled formula gave its own output on a random input (checked once
per class or function); anything else runs as it is, and so does a module whose forward is already wrapped
(accelerate's hooks). Nothing is fused on the CPU, whose formulas the committed
organism outputs depend on bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

ENABLED = True  # on CUDA, the slot engine's steps run through fused() (False: transformers' modules as they are)
_checked: dict = {}  # (class or function, dtype, device type) -> whether the compiled formula reproduced it
_compiled: dict = {}


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def compiled(name: str):
    """The compiled form of one of the formulas above (compiled once per process, for any shape)."""
    if name not in _compiled:
        _compiled[name] = torch.compile({"rms_norm": _rms_norm, "rotary": _rotary, "silu_mul": _silu_mul}[name],
                                        dynamic=True, fullgraph=True)
    return _compiled[name]


def _close(got, want) -> bool:
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    return all(g.shape == w.shape and g.dtype == w.dtype and torch.allclose(g.float(), w.float(), rtol=2e-2, atol=2e-2)
               for g, w in zip(got, want))


def _serves(key, original, fused, make_inputs) -> bool:
    """Whether the fused function gives the original's output on a random input (once per ``key``: the class or
    function, the dtype and the device type; a compilation that fails counts as no)."""
    name = getattr(key[0], "__name__", key[0])
    if key not in _checked:
        try:
            with torch.no_grad():
                inputs = make_inputs()
                _checked[key] = _close(fused(*inputs), original(*inputs))
        except Exception as err:  # noqa: BLE001 (inductor missing or failing here: the modules run as they are)
            log.warning("not fusing %s (%s: %s)", name, type(err).__name__, err)
            _checked[key] = False
        if not _checked[key]:
            log.info("not fusing %s: its output differs from the fused formula's", name)
    return _checked[key]


def _norm_forward(module):
    rms = compiled("rms_norm")
    return lambda hidden_states: rms(hidden_states, module.weight, module.variance_epsilon)


def _mlp_forward(module):
    silu_mul = compiled("silu_mul")
    return lambda x: module.down_proj(silu_mul(module.gate_proj(x), module.up_proj(x)))


def _rotary_function(original):
    rotary = compiled("rotary")

    def apply(q, k, cos, sin, *args, **kwargs):
        unsqueeze_dim = args[0] if args else kwargs.get("unsqueeze_dim", 1)
        if unsqueeze_dim != 1 or (len(args) + len(kwargs)) > 1:
            return original(q, k, cos, sin, *args, **kwargs)
        return rotary(q, k, cos, sin)
    return apply


def _is_norm(module) -> bool:
    return (hasattr(module, "variance_epsilon") and isinstance(getattr(module, "weight", None), torch.Tensor)
            and module.weight.dim() == 1 and not list(module.children()))


def _is_gated_mlp(module) -> bool:
    return (all(isinstance(getattr(module, n, None), torch.nn.Linear) for n in ("gate_proj", "up_proj", "down_proj"))
            and type(getattr(module, "act_fn", None)).__name__ in ("SiLU", "SiLUActivation"))  # torch's, transformers'


def plan(model) -> tuple[list, list]:
    """What :func:`fused` swaps in ``model``: ``(module, forward)`` pairs and ``(owner, name, original,
    replacement)`` patches of the modeling module, each checked against the original once (on any device)."""
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    swapped, patched = [], []
    for module in model.modules():
        if "forward" in module.__dict__:  # already wrapped (accelerate's dispatch hooks): left as it is
            continue
        if _is_norm(module):
            size, forward = module.weight.shape[0], _norm_forward(module)
        elif _is_gated_mlp(module):
            size, forward = module.gate_proj.in_features, _mlp_forward(module)
        else:
            continue
        if _serves((type(module), dtype, device.type), module.forward, forward,
                   lambda: (torch.randn(3, 1, size, device=device, dtype=dtype),)):
            swapped.append((module, forward))
    modeling = sys.modules.get(type(model).__module__)
    original = getattr(modeling, "apply_rotary_pos_emb", None)
    if callable(original):
        heads = getattr(model.config, "num_attention_heads", 4)
        dim = getattr(model.config, "head_dim", None) or model.config.hidden_size // heads

        def inputs():
            shapes = ((3, 2, 1, dim), (3, 1, 1, dim), (3, 1, dim), (3, 1, dim))  # query, key, cos, sin
            return tuple(torch.randn(shape, device=device, dtype=dtype) for shape in shapes)
        rotary = _rotary_function(original)
        if _serves((original, dtype, device.type), original, rotary, inputs):
            patched.append((modeling, "apply_rotary_pos_emb", original, rotary))
    return swapped, patched


@contextlib.contextmanager
def applied(swaps: tuple[list, list]):
    """The swaps of :func:`plan` in place for the duration of the ``with``; on leaving, everything as it was."""
    swapped, patched = swaps
    try:
        for module, forward in swapped:
            module.forward = forward
        for owner, name, _, replacement in patched:
            setattr(owner, name, replacement)
        yield
    finally:
        for module, _ in swapped:
            module.__dict__.pop("forward", None)  # the class's forward again
        for owner, name, before, _ in patched:
            setattr(owner, name, before)


@contextlib.contextmanager
def fused(model):
    """Within the ``with``, the model's norms, gated MLPs and rotary embedding run fused (see the module's
    docstring); on leaving, as they were. A model on the CPU, or with ``ENABLED`` off, runs as it is."""
    if not ENABLED or next(model.parameters()).device.type != "cuda":
        yield
        return
    with applied(plan(model)):
        yield
