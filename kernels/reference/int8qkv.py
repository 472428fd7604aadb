"""int8qkv (ablation): int8 Q/K/V with the same scales as qflash, then an exact float softmax.

Separates the error of quantizing Q/K/V from the error of the integer softmax.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..scales import AttentionScales, quantize_int8, window_mask_per_z
from ..shapes import bias_view


def int8qkv_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scales: AttentionScales,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    z = q.shape[0]
    bias = bias_view(bias, q, k)
    col = (-1, 1, 1, 1)
    deq = [
        quantize_int8(t, inv).float() * s.view(col)
        for t, inv, s in ((q, scales.inv_q, scales.s_q), (k, scales.inv_k, scales.s_k), (v, scales.inv_v, scales.s_v))
    ]
    attn_bias = None
    if bias is not None or mask is not None:
        attn_bias = torch.zeros((), device=q.device)
        if bias is not None:
            attn_bias = attn_bias + bias.float()
        if mask is not None:
            attn_bias = attn_bias + window_mask_per_z(mask, z).float()
    out = torch.nn.functional.scaled_dot_product_attention(*deq, attn_mask=attn_bias, scale=scales.softmax_scale)
    nan_rows = torch.isnan(scales.out_scale).view(col)
    return torch.where(nan_rows, torch.full_like(out, float("nan")), out).to(q.dtype)
