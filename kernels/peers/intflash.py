"""intflash: INT-FlashAttention (Chen et al., 2024), its fully-int8 variant.

Q and K int8 with one scale per token, V int8 with one scale per head of each image (max|x| / 127, round
to nearest even); S = int8 Q.K^T times the query's and the key's scale; online softmax in float32 with
exp2 over 64-key tiles; each tile's P (relative to the running max) rounded to int8 as float16(p) * 127
+ 0.5 truncated, P8.V8 in int32, times s_v / 127; l sums the float P. Bias and mask are added to S.
"""
from __future__ import annotations

from typing import Optional

import torch

from .online import LOG2E, additive_log2, online_softmax

KEY_TILE = 64


def _quantize(x: torch.Tensor, dims) -> tuple[torch.Tensor, torch.Tensor]:
    scale = x.abs().amax(dim=dims, keepdim=True) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(x / scale), -127, 127), scale


def intflash_reference(q, k, v, bias=None, mask=None, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """(Z, H, N_q, D) q, (Z, H, N_k, D) k, (Z, H, N_k, D_v) v -> (Z, H, N_q, D_v) in q's dtype."""
    scale = q.shape[3] ** -0.5 if softmax_scale is None else softmax_scale
    q8, s_q = _quantize(q.float(), (3,))  # per token
    k8, s_k = _quantize(k.float(), (3,))
    v8, s_v = _quantize(v.float(), (2, 3))  # per (image, head)
    k_cols = s_k.transpose(-1, -2)

    def scores(start, stop):
        s = (q8.double() @ k8[:, :, start:stop].double().transpose(-1, -2)).float()
        return s * s_q * k_cols[..., start:stop] * (scale * LOG2E)

    def pv(p, start, stop):
        p8 = torch.trunc(p.half() * 127 + 0.5).clamp(max=127)  # float16 arithmetic, as the kernel does it
        return (p8.double() @ v8[:, :, start:stop].double()).float() * (s_v / 127.0)

    out = online_softmax(scores, pv, k.shape[2], KEY_TILE, (*q.shape[:3], v.shape[3]), additive_log2(bias, mask, q, k))
    return out.to(q.dtype)


def intflash_attention(q, k, v, *, bias=None, mask=None, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """The reference on every device: the project publishes no installable package."""
    return intflash_reference(q, k, v, bias, mask, softmax_scale)
