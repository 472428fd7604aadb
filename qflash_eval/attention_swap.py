"""Swap timm's attention (ViT/DeiT `Attention`, Swin `WindowAttention`) for an integer variant.

The wrappers keep the original module (and so its weights) as `inner` and replace only the
softmax(QK^T)V part. A model holding attention of any other kind is refused, never evaluated unmodified.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from qflash_kernels.scales import window_mask_per_z

from .modes import MODES, AttentionConfig


@dataclass
class ForwardContext:
    """Per-forward facts the attention modules need: images in the batch (Swin windows per image)."""

    batch_size: int = 1
    observing: bool = False  # calibration pass for static scales: record amax, attend in float


@dataclass
class StaticRange:
    amax: list = field(default_factory=lambda: [None, None, None])

    def update(self, q, k, v):
        for i, t in enumerate((q, k, v)):
            m = t.detach().abs().amax().float()
            self.amax[i] = m if self.amax[i] is None else torch.maximum(self.amax[i], m)

    def scales(self):
        if any(a is None for a in self.amax):
            raise RuntimeError("granularity 'static' needs a calibration pass before evaluation")
        return tuple(a / 127.0 for a in self.amax)


class _IntegerAttentionBase(nn.Module):
    def __init__(self, inner: nn.Module, config: AttentionConfig, context: ForwardContext):
        super().__init__()
        self.inner = inner
        self.config = config
        self.context = context
        self.static_range = StaticRange()
        self.mode = MODES[config.mode]
        if not self.mode.is_integer:
            raise ValueError(f"not an integer attention mode: {config.mode!r}")

    def attend(self, q, k, v, bias=None, mask=None, group=1):
        cfg = self.config
        if self.context.observing:
            self.static_range.update(q, k, v)
            return _float_attention(q, k, v, bias, mask)
        static = self.static_range.scales() if cfg.granularity == "static" else None
        return self.mode.attend(q, k, v, cfg, granularity=cfg.granularity, group=group, static_scales=static,
                                bias=bias, mask=mask)


def _float_attention(q, k, v, bias, mask):
    attn_bias = None
    if bias is not None or mask is not None:
        z = q.shape[0]
        attn_bias = torch.zeros((), device=q.device, dtype=q.dtype)
        if bias is not None:
            attn_bias = attn_bias + bias.unsqueeze(0)
        if mask is not None:
            attn_bias = attn_bias + window_mask_per_z(mask, z).to(q.dtype)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)


class IntegerViTAttention(_IntegerAttentionBase):
    """Replaces timm.layers.Attention (ViT, DeiT)."""

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False):
        if attn_mask is not None or is_causal:
            raise NotImplementedError("integer attention does not support attn_mask or is_causal")
        a = self.inner
        b, n, _ = x.shape
        gate = a.gate(x).sigmoid() if getattr(a, "gate", None) is not None else None
        qkv = a.qkv(x).reshape(b, n, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        x = self.attend(q, k, v).transpose(1, 2).reshape(b, n, -1)
        x = a.norm(x) if hasattr(a, "norm") else x
        if gate is not None:
            x = x * gate
        return a.proj_drop(a.proj(x))


class IntegerWindowAttention(_IntegerAttentionBase):
    """Replaces timm's Swin WindowAttention: relative-position bias and shift mask go in by index."""

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None):
        a = self.inner
        bw, n, _ = x.shape
        qkv = a.qkv(x).reshape(bw, n, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = a._get_rel_pos_bias()[0]  # (H, N, N), indexed from the table
        group = max(1, bw // max(1, self.context.batch_size))  # windows per image
        x = self.attend(q, k, v, bias=bias, mask=mask, group=group).transpose(1, 2).reshape(bw, n, -1)
        return a.proj_drop(a.proj(x))


def _replacement_for(module: nn.Module):
    from timm.layers import Attention
    from timm.models.swin_transformer import WindowAttention

    if type(module) is Attention:
        return IntegerViTAttention
    if type(module) is WindowAttention:
        return IntegerWindowAttention
    return None


def _looks_like_attention(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return "attention" in name or name.endswith("attn")


class UnsupportedAttentionError(ValueError):
    pass


def swap_attention(model: nn.Module, config: AttentionConfig) -> int:
    """Replace every supported attention module in place; returns how many were replaced.

    For float modes nothing is replaced (timm's SDPA path is switched on) but the model is still
    checked, so that `all` mode never evaluates some variants and not others.
    """
    context = ForwardContext()
    targets, unsupported = [], []
    for name, module in model.named_modules():
        if _replacement_for(module) is not None:
            targets.append((name, module))
        elif _looks_like_attention(module) and not any(name.startswith(t + ".") for t, _ in targets):
            unsupported.append(f"{name} ({type(module).__name__})")
    if unsupported:
        raise UnsupportedAttentionError(
            "the model holds attention that cannot be replaced with integer attention: "
            + ", ".join(unsupported[:5]) + (" ..." if len(unsupported) > 5 else "")
        )
    if not targets:
        raise UnsupportedAttentionError("no timm Attention or WindowAttention module found in the model")
    if config.mode not in MODES:
        raise ValueError(f"unknown mode {config.mode!r}; choose from {', '.join(MODES)}")
    if not MODES[config.mode].is_integer:
        for _, module in targets:
            module.fused_attn = True
        return 0
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _replacement_for(module)(module, config, context))

    def remember_batch(_module, args):
        context.batch_size = args[0].shape[0]

    model.register_forward_pre_hook(remember_batch)
    model.qflash_context = context
    return len(targets)


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
