"""The QFlash integer attention in readable PyTorch, key tile by key tile.

This is the specification of the integer algorithm, the test oracle of the Triton kernel (bit-exact)
and the CPU path of the evaluation. All arithmetic is on int64 tensors; matrix products run in float64,
where every partial sum is an integer below 2**53 and therefore exact.

Per query row, over key tiles of KEY_TILE keys:
  s      = Q_int . K_int + bias_int                      (integer score units)
  m_new  = max(m, rowmax(s))
  p      = 2**(-(m_new - s)) at scale 2**14             (14-bit probability relative to the row max)
  alpha  = 2**(-(m_new - m)) at scale 2**15              (rescale factor, exactly 2**15 when m is unchanged)
  l      = round(l * alpha / 2**15) + rowsum(p)
  acc    = round(acc * alpha / 2**15) + p . V_int        (p split in two 7-bit halves for int8 dots)
  out    = round(acc * round(2**40 / l) / 2**32) * s_v / 2**8   (one integer division per row)
The rescale is a multiply and a rounding shift ("scale release"): l and acc never change scale.
"""
from __future__ import annotations

from typing import Optional

import torch

from .quant import (
    EXP_SHIFT, OUT_FRAC_BITS, AttentionScales, bias_to_score_units, quantize_int8, window_mask_per_z,
)

KEY_TILE = 64  # keys per online-softmax step: part of the algorithm's definition, not a tuning knob
EXP_ONE_BITS = 15  # exp2_fixed returns 2**-x at scale 2**15
P_BITS = 14  # probabilities for P.V at scale 2**14, clamped to 2**14 - 1 (two int8 halves of 7 bits)
P_MAX = (1 << P_BITS) - 1
FRAC_BITS = 15  # bits of the exponent's fraction fed to the polynomial
RECIP_BITS = 40  # per-row reciprocal of l at scale 2**40  # 2**15 >> 17 is already 0; clamping the shift keeps it far below the bit width
# 2**-t on [0, 1) at scale 2**15: 1 - t (A - t B), coefficients at scale 2**15 (a quadratic fitted for
# minimal relative error with exact value 1 at t = 0: max relative error 0.22 %; a cubic gained 0.01 dB).
EXP_POLY_A = 22034
EXP_POLY_B = 5687
NEG_SCORE = -((1 << 31) - (1 << 25) - 1)  # initial running max; the kernel's masked keys: p = 0 exactly


def exp2_split(d: torch.Tensor, exp_mul: torch.Tensor, exp_dlim: torch.Tensor):
    """2**(-d * exp_mul / 2**EXP_SHIFT) = frac * 2**-15 * 2**-whole for integer d >= 0.

    Returns (frac in (2**14, 2**15], whole in [0, 20]); exp_dlim keeps y below 21 * 2**EXP_SHIFT.
    """
    y = torch.minimum(d, exp_dlim) * exp_mul
    whole = y >> EXP_SHIFT
    t = (y >> (EXP_SHIFT - FRAC_BITS)) & ((1 << FRAC_BITS) - 1)
    inner = EXP_POLY_A - ((t * EXP_POLY_B) >> FRAC_BITS)
    frac = (1 << EXP_ONE_BITS) - ((t * inner) >> FRAC_BITS)
    return frac, whole


def rescale_factor(d: torch.Tensor, exp_mul, exp_dlim) -> torch.Tensor:
    """alpha = 2**-d at scale 2**15, rounded half up."""
    frac, whole = exp2_split(d, exp_mul, exp_dlim)
    return (frac + ((1 << whole) >> 1)) >> whole


def probabilities(d: torch.Tensor, exp_mul, exp_dlim) -> torch.Tensor:
    """p = 2**-d at scale 2**14, rounded half up once, clamped to 14 bits (only d = 0 reaches 2**14)."""
    frac, whole = exp2_split(d, exp_mul, exp_dlim)
    return torch.clamp((frac + (1 << whole)) >> (whole + 1), max=P_MAX)


def qflash_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scales: AttentionScales,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Integer attention of (Z, H, N, D) inputs; returns (Z, H, N, D) in q's dtype (float16 for int8 input).

    bias: (H, N, N) additive logit bias (Swin's relative-position bias), shared by every z.
    mask: (W, N, N) additive mask; z uses mask[z % W] (Swin's shifted-window mask).
    """
    z, h, n, d = q.shape
    qi, ki, vi = (
        (t if t.dtype == torch.int8 else quantize_int8(t, inv)).to(torch.float64)
        for t, inv in ((q, scales.inv_q), (k, scales.inv_k), (v, scales.inv_v))
    )
    bias_int = _bias_int(bias, mask, scales, z, h, n, q.device)

    col = (-1, 1, 1, 1)
    exp_mul = scales.exp_mul.long().view(col)
    exp_dlim = scales.exp_dlim.long().view(col)
    m = torch.full((z, h, n, 1), NEG_SCORE, dtype=torch.int64, device=q.device)
    l = torch.zeros((z, h, n, 1), dtype=torch.int64, device=q.device)
    acc = torch.zeros((z, h, n, d), dtype=torch.int64, device=q.device)
    for start in range(0, n, KEY_TILE):
        stop = min(start + KEY_TILE, n)
        s = (qi @ ki[:, :, start:stop].transpose(-1, -2)).long()
        if bias_int is not None:
            s = s + bias_int[..., start:stop]
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        p = probabilities(m_new - s, exp_mul, exp_dlim)
        alpha = rescale_factor(m_new - m, exp_mul, exp_dlim)
        pv = (p.to(torch.float64) @ vi[:, :, start:stop]).long()
        l = ((l * alpha + (1 << (EXP_ONE_BITS - 1))) >> EXP_ONE_BITS) + p.sum(dim=-1, keepdim=True)
        acc = ((acc * alpha + (1 << (EXP_ONE_BITS - 1))) >> EXP_ONE_BITS) + pv
        m = m_new
    out = normalize(acc, l)
    out_dtype = torch.float16 if q.dtype == torch.int8 else q.dtype
    return (out.to(torch.float32) * scales.out_scale.view(col)).to(out_dtype)


def normalize(acc: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """acc / l with OUT_FRAC_BITS fractional bits, through a per-row reciprocal round(2**40 / l).

    |acc| <= 127 l, so acc * recip <= 127 * 2**40 fits in int64.
    """
    recip = ((1 << RECIP_BITS) + (l >> 1)) // torch.clamp(l, min=1)
    shift = RECIP_BITS - OUT_FRAC_BITS
    return (acc * recip + (1 << (shift - 1))) >> shift


def _bias_int(bias, mask, scales, z, h, n, device) -> Optional[torch.Tensor]:
    if bias is None and mask is None:
        return None
    total = torch.zeros((z, h, n, n), dtype=torch.float32, device=device)
    if bias is not None:
        total = total + bias.float().unsqueeze(0)
    if mask is not None:
        total = total + window_mask_per_z(mask, z).float()
    return bias_to_score_units(total, scales.inv_c).long()
