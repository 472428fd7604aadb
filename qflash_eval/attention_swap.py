"""Swap a timm model's attention for an integer variant, by the registry (swap/registry.py).

The swapped modules keep timm's module (and so its weights) as `inner` and replace only
softmax(Q K^T s + bias) V. A model holding attention of any other kind is refused by name, never evaluated
unmodified.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .modes import MODES, AttentionConfig
from .swap.core import ForwardContext, SwappedAttention
from .swap.find import UnsupportedAttentionError, survey
from .swap.sdpa_route import RoutedAttention

__all__ = ["AttentionConfig", "SwappedAttention", "UnsupportedAttentionError", "calibrate_static", "mode_copy",
           "swap_attention"]


def swap_attention(model: nn.Module, config: AttentionConfig) -> int:
    """Replace every attention module in place; returns how many were replaced.

    For float modes nothing is replaced (timm's SDPA path is switched on) but the model is still
    checked, so that `all` mode never evaluates some variants and not others.
    """
    if config.mode not in MODES:
        raise ValueError(f"unknown mode {config.mode!r}; choose from {', '.join(MODES)}")
    found = survey(model)
    if not found.runs_integer:
        raise UnsupportedAttentionError(f"{type(model).__name__} {found.why_not()}")
    if not MODES[config.mode].is_integer:
        for _, module, support in found.targets:
            if support.swap is RoutedAttention:
                module.fused_attn = True
        return 0
    context = ForwardContext()
    for name, module, support in found.targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, support.swap(module, config, context))

    def remember_batch(_module, args):
        context.batch_size = args[0].shape[0]

    swapped = [m for m in model.modules() if isinstance(m, SwappedAttention)]
    for index, module in enumerate(swapped):  # the numbering diagnose and the float layers use
        module.layer_index = index
    beyond = sorted(i for i in MODES[config.mode].float_layers if i >= len(swapped))
    if beyond:
        raise ValueError(f"{config.mode}: {type(model).__name__} has attention layers 0-{len(swapped) - 1}; "
                         f"no layer {', '.join(map(str, beyond))}")
    model.register_forward_pre_hook(remember_batch)
    model.qflash_context = context
    return len(found.targets)


def mode_copy(base_model: nn.Module, config: AttentionConfig, dtype: torch.dtype, device) -> tuple[nn.Module, int]:
    """A copy of base_model with its attention swapped for `config`, in `dtype` on `device`, in eval mode, and
    how many attention modules were replaced (the evaluation's per-mode models, the fallback's timing)."""
    model = copy.deepcopy(base_model)
    replaced = swap_attention(model, config)
    return model.to(device=device, dtype=dtype).eval(), replaced


def calibrate_static(model: nn.Module, batches) -> int:
    """Record per-layer amax of Q, K, V over `batches` (float attention meanwhile); returns images seen."""
    context: ForwardContext = model.qflash_context
    seen = 0
    context.observing = True
    try:
        with torch.inference_mode():
            for images in batches:
                model(images)
                seen += images.shape[0]
    finally:
        context.observing = False
    return seen
