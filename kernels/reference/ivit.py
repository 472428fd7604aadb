"""ivit: I-ViT-style integer attention: scores materialized, requantized to int8, Shiftmax, integer P.V.

Follows I-ViT (Li & Gu, ICCV 2023): x * log2(e) ~= x + x/2 - x/16 on integers, exp2 split into a
shift and a linear term, n = 15, normalisation by one integer division per row, output at
`output_bits` bits (I-ViT's own code uses 16 for ViT attention and 8 for Swin; the default here is 16).
Runs on any device with torch ops; int64 throughout, matrix products and score scaling in float64
(exact on integers). The steps are split as jit/ivit.py runs them: score scales, then Shiftmax and P.V.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..constants import IVIT_DEFAULT_OUTPUT_BITS, IVIT_SHIFTMAX_N, IVIT_X0_MIN, QMAX
from ..scales import AttentionScales, quantize_int8, window_mask_per_z

DEFAULT_OUTPUT_BITS = IVIT_DEFAULT_OUTPUT_BITS


def check_output_bits(output_bits: int) -> None:
    if not 2 <= output_bits <= 16:
        raise ValueError(f"output_bits must be in [2, 16], got {output_bits}")


def doubling_units(s_score: torch.Tensor) -> torch.Tensor:
    """x0 = floor(-1 / s_score): minus one doubling in int8 score units (int64), clamped at IVIT_X0_MIN."""
    return torch.floor(-1.0 / s_score.double()).clamp(min=IVIT_X0_MIN).long()


def shiftmax_from_x0(x: torch.Tensor, x0: torch.Tensor, output_bits: int = DEFAULT_OUTPUT_BITS) -> torch.Tensor:
    """Integer softmax over the last dim of int64 scores `x`, x0 = doubling_units(scale) broadcastable.

    Returns int64 probabilities at scale 2**-(output_bits - 1).
    """
    check_output_bits(output_bits)
    n = IVIT_SHIFTMAX_N
    x = x - x.amax(dim=-1, keepdim=True)
    x = x + (x >> 1) - (x >> 4)  # >> is floor division by 2 and 16
    x = torch.maximum(x, n * x0)
    q = torch.div(x, x0, rounding_mode="floor")  # 0 <= q <= n
    r = x - x0 * q  # in (x0, 0]
    # floor((r / 2 - x0) * 2**(n - q)), exactly, on integers
    e = torch.clamp(((r - 2 * x0) << (n - q)) >> 1, min=0)
    f = torch.div((1 << 31) - 1, e.sum(dim=-1, keepdim=True), rounding_mode="floor")
    return (e * f) >> (32 - output_bits)


def shiftmax(x: torch.Tensor, scale: torch.Tensor, output_bits: int = DEFAULT_OUTPUT_BITS) -> torch.Tensor:
    """Shiftmax of int64 scores `x` at real `scale` (broadcastable): shiftmax_from_x0 with x0 from the scale."""
    return shiftmax_from_x0(x, doubling_units(scale), output_bits)


def score_constant(scales: AttentionScales, head_dim: int) -> torch.Tensor:
    """c = s_q s_k / sqrt(D) in float64: one integer Q.K^T step in logits."""
    return scales.s_q.double() * scales.s_k.double() / head_dim**0.5


def score_scale(amax_per_z: torch.Tensor, granularity: str, group: int) -> torch.Tensor:
    """(Z,) float64 int8 scale of the scores from each z's max|score|: per image (`group` z), or per call."""
    z = amax_per_z.numel()
    if granularity == "batch":
        amax = amax_per_z.amax().expand(z)
    else:
        amax = amax_per_z.view(z // group, group).amax(dim=1).repeat_interleave(group)
    return torch.where(amax > 0, amax, torch.ones_like(amax)) / QMAX


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
    check_output_bits(output_bits)
    z, h, n, d = q.shape
    col = (-1, 1, 1, 1)
    qi = quantize_int8(q, scales.inv_q).double()
    ki = quantize_int8(k, scales.inv_k).double()
    vi = quantize_int8(v, scales.inv_v).double()
    scores = (qi @ ki.transpose(-1, -2)) * score_constant(scales, d).view(col)
    if bias is not None:
        scores = scores + bias.double().unsqueeze(0)
    if mask is not None:
        scores = scores + window_mask_per_z(mask, z).double()
    s_score = score_scale(scores.abs().amax(dim=(1, 2, 3)), scales.granularity, group)
    scores8 = torch.round((scores / s_score.view(col)).float().clamp(-QMAX, QMAX)).long()
    probs = shiftmax_from_x0(scores8, doubling_units(s_score).view(col), output_bits)
    out = (probs.double() @ vi) * (scales.s_v.double() / 2.0 ** (output_bits - 1)).view(col)
    nan_rows = torch.isnan(scales.out_scale).view(col)
    # float64 -> float32 -> q's dtype, as the kernel converts
    return torch.where(nan_rows, torch.full_like(out, float("nan")), out).float().to(q.dtype)
