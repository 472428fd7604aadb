"""qflash: the project's integer attention in readable PyTorch, key tile by key tile.

This is the specification of the integer algorithm, the test oracle of the Triton kernel (bit-exact)
and the CPU path of the evaluation. All arithmetic is on int64 tensors; matrix products run in float64,
where every partial sum is an integer below 2**53 and therefore exact.

Per query row, over key tiles of KEY_TILE keys:
  s      = Q_int . K_int + bias_int                      (integer score units)
  m_new  = max(m, rowmax(s))
  p      = 2**(-(m_new - s)) at scale 2**14             (14-bit probability relative to the row max)
  alpha  = 2**(-(m_new - m)) at scale 2**15              (rescale factor, exactly 2**15 when m is unchanged)
  l      = floor(l * alpha / 2**15) + rowsum(p)
  acc    = floor(acc * alpha / 2**15) + p . V_int        (p split in two 7-bit halves for int8 dots)
  out    = round(acc * round(2**40 / l) / 2**32) * s_v / 2**8   (one integer division per row)
The rescale is a multiply and a shift ("scale release"): l and acc never change scale. It floors (a bias
of half a unit per key tile on values of at least 2**14) where rounding would cost the GPU two more
integer instructions per accumulator element.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..constants import (
    EXP_ONE_BITS, EXP_POLY, EXP_POLY_DEGREE, EXP_SATURATE, EXP_SHIFT, FRAC_TOP_SHIFT, KEY_TILE, NEG_SCORE,
    OUT_FRAC_BITS, P_BITS, RECIP_BITS,
)
from ..scales import AttentionScales, bias_to_score_units, quantize_int8, window_mask_per_z
from ..shapes import bias_view

WORD = 1 << 32


def exp2_split(d: torch.Tensor, exp_mul: torch.Tensor, exp_dlim: torch.Tensor, degree: int = EXP_POLY_DEGREE):
    """2**(-d * exp_mul / 2**EXP_SHIFT) = frac * 2**-15 * 2**-whole for integer d >= 0.

    y = min(d, exp_dlim) * exp_mul (< 21 * 2**26). whole = y >> 26 in [0, 20]. The fraction t of y is
    taken as a 32-bit word u = 2**32 - 1 - (t << 6) ("1 - t"), and every polynomial product is the high
    half of a 32 x 32-bit product (one IMAD.HI each on the GPU; two at the kernels' degree 2). Returns frac
    in [2**14, 2**15 - 2].
    """
    y = torch.minimum(d, exp_dlim) * exp_mul
    whole = y >> EXP_SHIFT
    u = (WORD - 1) - ((y << FRAC_TOP_SHIFT) & (WORD - 1))
    coefficients = EXP_POLY[degree]
    inner = coefficients[-1]
    for c in reversed(coefficients[:-1]):  # degree 2: A + (u B >> 32)
        inner = c + ((u * inner) >> 32)
    frac = (1 << P_BITS) + ((u * inner) >> 32)
    return frac, whole


def rescale_factor(d: torch.Tensor, exp_mul, exp_dlim, degree: int = EXP_POLY_DEGREE) -> torch.Tensor:
    """alpha = 2**-d at scale 2**15, rounded half up; exactly 2**15 when the running max did not move."""
    frac, whole = exp2_split(d, exp_mul, exp_dlim, degree)
    alpha = (frac + ((1 << whole) >> 1)) >> whole
    return torch.where(d == 0, torch.full_like(alpha, 1 << EXP_ONE_BITS), alpha)


def probabilities(d: torch.Tensor, exp_mul, exp_dlim, p_bits: int = P_BITS,
                  degree: int = EXP_POLY_DEGREE) -> torch.Tensor:
    """p = 2**-d at scale 2**p_bits, rounded half up once from frac's 15 bits: for the default 14 bits
    ((frac >> whole) + 1) >> 1 <= 2**14 - 1; fewer bits round away more of the fraction."""
    frac, whole = exp2_split(d, exp_mul, exp_dlim, degree)
    drop = EXP_ONE_BITS - p_bits
    return ((frac >> whole) + (1 << (drop - 1))) >> drop


def clamp_scores(d: torch.Tensor, exp_mul: torch.Tensor, exp_dlim: torch.Tensor, score_clamp: int) -> torch.Tensor:
    """d (score units below the running max) clamped to score_clamp doublings, I-ViT style: keys between
    score_clamp and EXP_SATURATE doublings below count as score_clamp below; keys EXP_SATURATE or more below
    (masked keys among them) are left as they are, so that their p stays 0."""
    if score_clamp == EXP_SATURATE:
        return d
    limit = ((score_clamp << EXP_SHIFT) - 1) // exp_mul
    return torch.where(d >= exp_dlim, d, torch.minimum(d, limit))


def qflash_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scales: AttentionScales,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    p_bits: int = P_BITS,
    key_tile: int = KEY_TILE,
    exp_degree: int = EXP_POLY_DEGREE,
    score_clamp: int = EXP_SATURATE,
) -> torch.Tensor:
    """Integer attention of q (Z, H, N_q, D), k (Z, H, N_k, D), v (Z, H, N_k, D); returns (Z, H, N_q, D) in
    q's dtype (float16 for int8 input).

    bias: additive logit bias that broadcasts to (Z, H, N_q, N_k) (Swin's relative-position bias: (H, N, N)).
    mask: (W, N_q, N_k) additive mask; z uses mask[z % W] (Swin's shifted-window mask).
    p_bits (1-14), key_tile, exp_degree (1-3: the exp2 polynomial), score_clamp (1-21 doublings, see
    clamp_scores): the arithmetic's knobs; their defaults (constants.P_BITS, KEY_TILE, EXP_POLY_DEGREE,
    EXP_SATURATE) are the kernel's arithmetic.
    """
    check_knobs(p_bits, key_tile, exp_degree, score_clamp)
    z, h, n, d = q.shape
    n_k = k.shape[2]
    bias = bias_view(bias, q, k)
    qi, ki, vi = (
        (t if t.dtype == torch.int8 else quantize_int8(t, inv)).to(torch.float64)
        for t, inv in ((q, scales.inv_q), (k, scales.inv_k), (v, scales.inv_v))
    )
    bias_int = _bias_int(bias, mask, scales, (z, h, n, n_k), q.device)

    col = (-1, 1, 1, 1)
    exp_mul = scales.exp_mul.long().view(col)
    exp_dlim = scales.exp_dlim.long().view(col)
    m = torch.full((z, h, n, 1), NEG_SCORE, dtype=torch.int64, device=q.device)
    l = torch.zeros((z, h, n, 1), dtype=torch.int64, device=q.device)
    acc = torch.zeros((z, h, n, d), dtype=torch.int64, device=q.device)
    for start in range(0, n_k, key_tile):
        stop = min(start + key_tile, n_k)
        s = (qi @ ki[:, :, start:stop].transpose(-1, -2)).long()
        if bias_int is not None:
            s = s + bias_int[..., start:stop]
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        d_p, d_alpha = (clamp_scores(x, exp_mul, exp_dlim, score_clamp) for x in (m_new - s, m_new - m))
        p = probabilities(d_p, exp_mul, exp_dlim, p_bits, exp_degree)
        alpha = rescale_factor(d_alpha, exp_mul, exp_dlim, exp_degree)
        pv = (p.to(torch.float64) @ vi[:, :, start:stop]).long()
        l = ((l * alpha) >> EXP_ONE_BITS) + p.sum(dim=-1, keepdim=True)
        acc = ((acc * alpha) >> EXP_ONE_BITS) + pv
        m = m_new
    out = normalize(acc, l)
    out_dtype = torch.float16 if q.dtype == torch.int8 else q.dtype
    return (out.to(torch.float32) * scales.out_scale.view(col)).to(out_dtype)


def check_knobs(p_bits: int, key_tile: int, exp_degree: int = EXP_POLY_DEGREE,
                score_clamp: int = EXP_SATURATE) -> None:
    """p_bits from 1 to P_BITS (the exponential's fraction has P_BITS + 1 bits), key_tile a positive int,
    exp_degree one of EXP_POLY's, score_clamp from 1 to EXP_SATURATE doublings."""
    if not (isinstance(p_bits, int) and 1 <= p_bits <= P_BITS):
        raise ValueError(f"qflash p_bits must be an integer from 1 to {P_BITS}, got {p_bits!r}")
    if not (isinstance(key_tile, int) and key_tile >= 1):
        raise ValueError(f"qflash key_tile must be a positive integer, got {key_tile!r}")
    if exp_degree not in EXP_POLY:
        raise ValueError(f"qflash exp_degree must be one of {', '.join(map(str, EXP_POLY))}, got {exp_degree!r}")
    if not (isinstance(score_clamp, int) and 1 <= score_clamp <= EXP_SATURATE):
        raise ValueError(f"qflash score_clamp must be an integer from 1 to {EXP_SATURATE} doublings, "
                         f"got {score_clamp!r}")


def normalize(acc: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """acc / l with OUT_FRAC_BITS fractional bits, through a per-row reciprocal round(2**40 / l).

    |acc| <= 127 l, so acc * recip <= 127 * 2**40 fits in int64.
    """
    recip = ((1 << RECIP_BITS) + (l >> 1)) // torch.clamp(l, min=1)
    shift = RECIP_BITS - OUT_FRAC_BITS
    return (acc * recip + (1 << (shift - 1))) >> shift


def _bias_int(bias, mask, scales, shape, device) -> Optional[torch.Tensor]:
    if bias is None and mask is None:
        return None
    total = torch.zeros(shape, dtype=torch.float32, device=device)
    if bias is not None:
        total = total + bias.float()
    if mask is not None:
        total = total + window_mask_per_z(mask, shape[0]).float()
    return bias_to_score_units(total, scales.inv_c).long()
