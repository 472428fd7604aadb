"""ivit: I-ViT-style integer attention: scores materialized, requantized to int8, Shiftmax, integer P.V.

Follows I-ViT (Li & Gu, ICCV 2023): x * log2(e) ~= x + x/2 - x/16 on integers, exp2 split into a
shift and a linear term, n = 15, normalisation by one integer division per row, output at
`output_bits` bits (I-ViT's own code uses 16 for ViT attention and 8 for Swin; the default here is 16).
Runs on any device with torch ops; int64 throughout, matrix products in float64 (exact).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..constants import QMAX
from ..scales import AttentionScales, quantize_int8, window_mask_per_z

SHIFTMAX_N = 15
DEFAULT_OUTPUT_BITS = 16


def shiftmax(x: torch.Tensor, scale: torch.Tensor, output_bits: int = DEFAULT_OUTPUT_BITS) -> torch.Tensor:
    """Integer softmax over the last dim of int64 scores `x` at real `scale` (broadcastable).

    Returns int64 probabilities at scale 2**-(output_bits - 1).
    """
    if not 2 <= output_bits <= 16:
        raise ValueError(f"output_bits must be in [2, 16], got {output_bits}")
    n = SHIFTMAX_N
    x = x - x.amax(dim=-1, keepdim=True)
    x = x + (x >> 1) - (x >> 4)  # >> is floor division by 2 and 16
    x0 = torch.floor(-1.0 / scale.double()).long()  # -1 doubling in units of `scale`
    x = torch.maximum(x, n * x0)
    q = torch.div(x, x0, rounding_mode="floor")  # 0 <= q <= n
    r = x - x0 * q  # in (x0, 0]
    # floor((r / 2 - x0) * 2**(n - q)), exactly, on integers
    e = torch.clamp(((r - 2 * x0) << (n - q)) >> 1, min=0)
    f = torch.div((1 << 31) - 1, e.sum(dim=-1, keepdim=True), rounding_mode="floor")
    return (e * f) >> (32 - output_bits)


def ivit_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scales: AttentionScales,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    output_bits: int = DEFAULT_OUTPUT_BITS,
    group: int = 1,
) -> torch.Tensor:
    """I-ViT attention of (Z, H, N, D) inputs with the same int8 Q/K/V as QFlash; output in q's dtype.

    The score requantization follows `scales.granularity`: one int8 scale per image (`group` z
    form an image), or one for the whole call.
    """
    z, h, n, d = q.shape
    col = (-1, 1, 1, 1)
    qi = quantize_int8(q, scales.inv_q).double()
    ki = quantize_int8(k, scales.inv_k).double()
    vi = quantize_int8(v, scales.inv_v).double()
    c = scales.s_q.double() * scales.s_k.double() / d**0.5
    scores = (qi @ ki.transpose(-1, -2)) * c.view(col)
    if bias is not None:
        scores = scores + bias.double().unsqueeze(0)
    if mask is not None:
        scores = scores + window_mask_per_z(mask, z).double()
    amax = scores.abs().amax(dim=(1, 2, 3))
    if scales.granularity == "batch":
        amax = amax.amax().expand(z)
    else:
        amax = amax.view(z // group, group).amax(dim=1).repeat_interleave(group)
    s_score = torch.where(amax > 0, amax, torch.ones_like(amax)) / QMAX
    scores8 = torch.round((scores / s_score.view(col)).float().clamp(-QMAX, QMAX)).long()
    probs = shiftmax(scores8, s_score.view(col), output_bits)
    out = (probs.double() @ vi) * (scales.s_v.double() / 2.0 ** (output_bits - 1)).view(col)
    nan_rows = torch.isnan(scales.out_scale).view(col)
    return torch.where(nan_rows, torch.full_like(out, float("nan")), out).to(q.dtype)
