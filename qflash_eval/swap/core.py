"""What every swapped attention module shares: the per-forward context, static-scale calibration, and the
one call into the chosen integer attention (or float attention while calibrating)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from qflash_kernels.scales import window_mask_per_z

from ..modes import MODES, AttentionConfig

# PyTorch's own SDPA, kept before sdpa_route patches the module attribute
TORCH_SDPA = torch.nn.functional.scaled_dot_product_attention


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


class SwappedAttention(nn.Module):
    """Holds timm's module as `inner` (so its weights) and replaces only softmax(Q K^T s + bias) V."""

    def __init__(self, inner: nn.Module, config: AttentionConfig, context: ForwardContext):
        super().__init__()
        self.inner = inner
        self.config = config
        self.context = context
        self.static_range = StaticRange()
        self.mode = MODES[config.mode]
        if not self.mode.is_integer:
            raise ValueError(f"not an integer attention mode: {config.mode!r}")
        self.layer_index = -1  # the swap's numbering, set by swap_attention

    def images_group(self, z: int) -> int:
        """Leading entries of q per image: 1, or the windows / patches / partitions of one image."""
        batch = max(1, self.context.batch_size)
        if z % batch:
            raise RuntimeError(f"{type(self.inner).__name__}: attention over {z} sequences does not split "
                               f"evenly into the batch's {batch} images")
        return z // batch

    def attend(self, q, k, v, bias: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
               scale: Optional[float] = None) -> torch.Tensor:
        """(Z, H, N_q, D) q, (Z, H, N_k, D) k, (Z, H, N_k, D_v) v -> (Z, H, N_q, D_v) in the mode's arithmetic.
        bias broadcasts to (Z, H, N_q, N_k); mask is Swin's (windows, N_q, N_k); scale is SDPA's."""
        cfg = self.config
        if self.context.observing:
            self.static_range.update(q, k, v)
            return float_attention(q, k, v, bias, mask, scale)
        if self.layer_index in self.mode.float_layers:
            return float_attention(q, k, v, bias, mask, scale)
        static = self.static_range.scales() if cfg.granularity == "static" else None
        return self.mode.attend(q, k, v, cfg, granularity=cfg.granularity, group=self.images_group(q.shape[0]),
                                static_scales=static, bias=bias, mask=mask, softmax_scale=scale)


def float_attention(q, k, v, bias=None, mask=None, scale=None):
    """PyTorch SDPA of the same call (calibration passes run it)."""
    attn_bias = None
    if bias is not None or mask is not None:
        attn_bias = torch.zeros((), device=q.device, dtype=q.dtype)
        if bias is not None:
            attn_bias = attn_bias + bias.to(q.dtype)
        if mask is not None:
            attn_bias = attn_bias + window_mask_per_z(mask, q.shape[0]).to(q.dtype)
    return TORCH_SDPA(q, k, v, attn_mask=attn_bias, scale=scale)
