"""Interventions as plain ``(module, hook)`` pairs, applied inside one context manager that always cleans up.

Names follow the model's own module tree (``model.model.layers[i].self_attn.o_proj``); :func:`decoder_layers` and
:func:`attention_output_projection` find them for every family in the registry. Hook code accepts both tuple and
tensor module outputs, since transformers 5 returns tensors from decoder layers.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

Hook = tuple[nn.Module, Callable]


@contextlib.contextmanager
def add_hooks(forward_pre_hooks: Iterable[Hook] = (), forward_hooks: Iterable[Hook] = ()):
    """Register the hooks for the duration of the block; they are removed even when the block raises."""
    handles = []
    try:
        for module, hook in forward_pre_hooks:
            handles.append(module.register_forward_pre_hook(hook))
        for module, hook in forward_hooks:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def first_tensor(output):
    """The hidden-state tensor of a module output (a tensor, or a tuple whose first item is one)."""
    return output[0] if isinstance(output, tuple) else output


def replace_first_tensor(output, tensor):
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks, for any causal LM in the registry (found by shape, not by family)."""
    n_layers = model.config.get_text_config().num_hidden_layers
    for candidate in ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers"):
        module = model
        for attr in candidate.split("."):
            module = getattr(module, attr, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"found no list of {n_layers} decoder layers in {type(model).__name__}")


def attention_output_projection(layer: nn.Module) -> nn.Module:
    """The attention block's output projection, whose input is the concatenation of the heads' outputs."""
    attention = getattr(layer, "self_attn", None) or getattr(layer, "attention", None) or getattr(layer, "attn")
    for name in ("o_proj", "out_proj", "dense", "c_proj"):
        if hasattr(attention, name):
            return getattr(attention, name)
    raise ValueError(f"found no output projection in {type(attention).__name__}")


def head_dim(model: nn.Module) -> int:
    config = model.config.get_text_config()
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def n_heads(model: nn.Module) -> int:
    return model.config.get_text_config().num_attention_heads


RESCALE_RULES = ("batch", "position")


def position_norm_restored(original: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """``ablated`` with each position's norm (over the last dimension) put back to ``original``'s: the ``"position"``
    rescaling rule of a head ablation."""
    return ablated * (original.float().norm(dim=-1, keepdim=True)
                      / ablated.float().norm(dim=-1, keepdim=True).clamp_min(1e-6)).to(original.dtype)


def head_ablation_hooks(
    model: nn.Module, heads: Sequence[tuple[int, int]], rescale: str | bool | None = None, keep: float = 0.0
) -> list[Hook]:
    """Pre-hooks on ``o_proj`` that zero the chosen (layer, head) outputs at every position and decode step.

    ``rescale`` puts the norm of the attention output (the ``o_proj`` input) back after the heads are removed:

    - ``"batch"`` (paper B's rule, ``src/model/modeling_qwen.py``): one factor for the whole tensor of the forward
      call, ``‖before‖ / ‖after‖`` over every row, position and head of the batch (padding included, as there);
    - ``"position"``: one factor per token, so each position keeps its own norm;
    - ``None`` / ``False``: no rescaling. ``True`` means ``"batch"``.

    ``keep`` multiplies the chosen heads instead of zeroing them. Paper B's ablation scales them by 0
    (``add_scale(model, heads, 0, ...)`` in src/lens/generation.py, ``ablating_head_generation``); its 1e-3 appears
    only in the per-head sweep of src/lens/attn_head.py, which ablates one head at a time to probe its effect.

    ``"batch"`` depends on which rows share the forward: for paper B's rule run the rows in fixed batches
    (``generate.Decoding(refill=False)``), as its HF generate batches of 8 are. The other rules act on each row
    alone, so their hooks are marked ``row_local``: the slot engine runs them, inside its CUDA graphs too.
    """
    if rescale is True:
        rescale = "batch"
    if rescale not in (None, False, *RESCALE_RULES):
        raise ValueError(f"rescale must be one of {RESCALE_RULES}, None or False; got {rescale!r}")
    by_layer: dict[int, list[int]] = {}
    layers = decoder_layers(model)
    count = n_heads(model)
    for layer, head in heads:
        if not (0 <= int(layer) < len(layers) and 0 <= int(head) < count):
            raise ValueError(f"head ({layer}, {head}) outside the model's {len(layers)} layers x {count} heads")
        by_layer.setdefault(int(layer), []).append(int(head))
    size = head_dim(model)

    def make_hook(head_ids: list[int]):
        def hook(module, args):
            (hidden, *rest) = args
            ablated = hidden.clone()
            for head in head_ids:
                block = ablated[..., head * size : (head + 1) * size]
                block.mul_(keep) if keep else block.zero_()
            if rescale == "batch":
                ablated = ablated * (hidden.float().norm() / ablated.float().norm().clamp_min(1e-6)).to(hidden.dtype)
            elif rescale == "position":
                ablated = position_norm_restored(hidden, ablated)
            return (ablated, *rest)

        hook.row_local = rescale != "batch"  # user_hooks: a row's output depends on that row alone
        return hook

    return [(attention_output_projection(layers[i]), make_hook(ids)) for i, ids in sorted(by_layer.items())]


def capture_hooks(modules: dict[str, nn.Module], store: dict[str, torch.Tensor], inputs: bool = False) -> list[Hook]:
    """Forward hooks that keep each named module's output (or input) in ``store`` (detached)."""

    def make_hook(name: str):
        def hook(module, args, output):
            store[name] = (args[0] if inputs else first_tensor(output)).detach()

        return hook

    return [(module, make_hook(name)) for name, module in modules.items()]


# ------------------------------------------------------------------ which hooks a model carries
def _foreign(hooks) -> list:
    """The hooks not installed by transformers itself (its output capture)."""
    return [h for h in hooks.values() if not getattr(h, "__module__", "").startswith("transformers.")]


def hook_census(model) -> tuple[bool, tuple[int, ...]]:
    """One walk over the model's hooks: (whether any hook other than transformers' own and ``row_local`` ones is
    present, the identities of the ``row_local`` ones)."""
    others = bool(_foreign(torch.nn.modules.module._global_forward_hooks) or
                  _foreign(torch.nn.modules.module._global_forward_pre_hooks))
    local = []
    for module in model.modules():
        for hook in _foreign(module._forward_hooks) + _foreign(module._forward_pre_hooks):
            if getattr(hook, "row_local", False):
                local.append(id(hook))
            else:
                others = True
    return others, tuple(sorted(local))


def user_hooks(model) -> bool:
    """Whether ``model`` carries forward hooks, other than transformers' own and ``row_local`` ones, that the slot
    engine cannot serve (a hook that reads the whole batch sees the free slots there)."""
    return hook_census(model)[0]


def row_local_hooks(model) -> tuple[int, ...]:
    """The identities of the ``row_local`` hooks on ``model`` (a captured graph is valid for this set only)."""
    return hook_census(model)[1]
