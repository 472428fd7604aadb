"""ivit: I-ViT-style integer attention: scores materialized, requantized to int8, Shiftmax, integer P.V.

Follows I-ViT (Li & Gu, ICCV 2023): x * log2(e) ~= x + x/2 - x/16 on integers, exp2 split into a
shift and a linear term, n = 15, normalisation by one integer division per row, output at
`output_bits` bits (I-ViT's own code uses 16 for ViT attention and 8 for Swin; the default here is 16).
Runs on any device with torch ops. Integer products are exact (|Q.K^T| < 2**24, |P.V| < 2**24); scores are
scaled, biased and requantized in float32 in a fixed order, Shiftmax on values that fit int32 (the
kernel's), its row sum in int64. The steps are split as jit/ivit.py runs them.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..constants import FLOAT32_MAX, IVIT_DEFAULT_OUTPUT_BITS, IVIT_SHIFTMAX_N, IVIT_X0_MIN, QMAX
from ..scales import AttentionScales, quantize_int8, window_mask_per_z
from ..shapes import bias_view

DEFAULT_OUTPUT_BITS = IVIT_DEFAULT_OUTPUT_BITS


def check_output_bits(output_bits: int) -> None:
    if not 2 <= output_bits <= 16:
        raise ValueError(f"output_bits must be in [2, 16], got {output_bits}")


def doubling_units(inv_score: torch.Tensor) -> torch.Tensor:
    """x0 = floor(-inv_score): minus one doubling in int8 score units (int64), clamped to [IVIT_X0_MIN, -1]."""
    return torch.floor(-inv_score.double()).clamp(min=IVIT_X0_MIN, max=-1).long()


def shiftmax_from_x0(x: torch.Tensor, x0: torch.Tensor, output_bits: int = DEFAULT_OUTPUT_BITS) -> torch.Tensor:
    """Integer softmax over the last dim of int64 scores `x`, x0 = doubling_units(scale) broadcastable.

    Returns int64 probabilities at scale 2**-(output_bits - 1).
    """
    check_output_bits(output_bits)
    n = IVIT_SHIFTMAX_N
    x = x - x.amax(dim=-1, keepdim=True)
    x = x + (x >> 1) - (x >> 4)  # >> is floor division by 2 and 16
    # from here every value fits int32, as in the kernel (and int32 runs faster on a CPU)
    x0 = x0.to(torch.int32)
    x = torch.maximum(x, n * x0.long()).to(torch.int32)
    q = torch.div(x, x0, rounding_mode="floor")  # 0 <= q <= n
    r = x - x0 * q  # in (x0, 0]
    # floor((r / 2 - x0) * 2**(n - q)), exactly, on integers; below 2**31 since x0 >= IVIT_X0_MIN
    e = torch.clamp(((r - 2 * x0) << (n - q)) >> 1, min=0)
    f = torch.div((1 << 31) - 1, e.sum(dim=-1, keepdim=True, dtype=torch.int64), rounding_mode="floor")
    return ((e * f.to(torch.int32)) >> (32 - output_bits)).long()  # e <= sum e, so e f < 2**31


def shiftmax(x: torch.Tensor, scale: torch.Tensor, output_bits: int = DEFAULT_OUTPUT_BITS) -> torch.Tensor:
    """Shiftmax of int64 scores `x` at real `scale` (broadcastable): shiftmax_from_x0 with x0 = floor(-1/scale)."""
    return shiftmax_from_x0(x, doubling_units(1.0 / scale.double()), output_bits)


def score_constant(scales: AttentionScales, head_dim: int) -> torch.Tensor:
    """c = s_q s_k / sqrt(D) (s_q s_k softmax_scale for another scale) in float32: one integer Q.K^T step in
    logits."""
    if scales.softmax_scale is not None:
        return (scales.s_q.float() * scales.s_k.float()) * scales.softmax_scale
    return (scales.s_q.float() * scales.s_k.float()) / head_dim**0.5


def score_inverse_scale(amax_per_z: torch.Tensor, granularity: str, group: int) -> torch.Tensor:
    """(Z,) float32 127 / max|score| per image (`group` z) or per call: logits to int8 score units.
    127 for all-zero scores, capped at the largest float."""
    z = amax_per_z.numel()
    if granularity == "batch":
        amax = amax_per_z.amax().expand(z)
    else:
        amax = amax_per_z.view(z // group, group).amax(dim=1).repeat_interleave(group)
    inv = QMAX / torch.where(amax > 0, amax, torch.ones_like(amax))
    return inv.clamp(max=FLOAT32_MAX).float()


def requantize_scores(scores: torch.Tensor, inv_score: torch.Tensor) -> torch.Tensor:
    """float32 scores -> int8 score units: round(clamp(scores * inv_score)), ties to even, NaN -> 0 (int64)."""
    t = scores * inv_score
    return torch.round(torch.where(t == t, t, torch.zeros_like(t)).clamp(-QMAX, QMAX)).long()


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
    bias = bias_view(bias, q, k)
    col = (-1, 1, 1, 1)
    # integer products as float matmuls: every partial sum is an integer below 2**24, so float32 is exact on
    # the CPU; float64 on CUDA, where a TF32 setting would round float32 products
    exact = torch.float64 if q.is_cuda else torch.float32
    qi = quantize_int8(q, scales.inv_q).to(exact)
    ki = quantize_int8(k, scales.inv_k).to(exact)
    vi = quantize_int8(v, scales.inv_v).to(exact)
    scores = (qi @ ki.transpose(-1, -2)).float() * score_constant(scales, d).view(col)
    if bias is not None:
        scores = scores + bias.float()
    if mask is not None:
        scores = scores + window_mask_per_z(mask, z).float()
    inv_score = score_inverse_scale(scores.abs().amax(dim=(1, 2, 3)), scales.granularity, group)
    scores8 = requantize_scores(scores, inv_score.view(col)).to(torch.int32)
    probs = shiftmax_from_x0(scores8, doubling_units(inv_score).view(col), output_bits)
    out = (probs.to(exact) @ vi).float() * output_multiplier(scales, output_bits).view(col)
    return out.to(q.dtype)


def output_multiplier(scales: AttentionScales, output_bits: int) -> torch.Tensor:
    """(Z,) float32 s_v / 2**(bits - 1): integer P.V to the output; NaN where the group held a non-finite value."""
    mult = scales.s_v.float() / 2.0 ** (output_bits - 1)
    return torch.where(torch.isnan(scales.out_scale), torch.full_like(mult, float("nan")), mult)
