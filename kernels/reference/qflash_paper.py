"""qflash_paper: QFlash as the paper published it, in readable PyTorch (the spec, and the CPU path).

Written from the paper's description and the facts of its reference code (docs/algorithm.md, "QFlash as
published"); the Triton kernel jit/qflash_paper.py computes the same bits. Per image group (or per call
in 'batch' granularity, as the paper ran it):
  s_x      = max|x| / 127 in x's dtype;  x_int = clamp(round(x / s_x), -128, 127)
  sm_scale = log2e' / sqrt(D) * fl(s_q s_k)  (log2e' = 1.44269504, float64);  R = round(1 / sm_scale)
  exp_M = round(-sm_scale 2**16), req_M = round(sm_scale 127 2**16), l_M / acc_M = round(2**30 / R)
Per query row, over key tiles of 32 keys (its default launch configuration), m = -2**20, l = 1, acc = 0:
  x = S - m_new;  q = (x exp_M) >> 16;  r = x + q R;  p = ((r >> 1) + R) >> q      (linear exp2)
  p8 = (p req_M + 2**15) >> 16 as int8                                          (7-bit probability)
  alpha = exp2(m - m_new);  l = (l alpha l_M + 2**29) >> 30 + sum p8;  acc likewise + p8 . V_int
  out = int8(trunc(float32(acc) / float32(l))) * s_v, in x's dtype, the float -> int32 step as the GPU does it
The integer steps keep the published int32 semantics: products and sums wrap at 32 bits, a shift by 32 or
more (or by a negative count) gives 0 or -1, a cast to int8 keeps the low byte. Where the published code is
undefined or breaks, this spec says what it does instead (docs/algorithm.md): an all-zero tensor gets
s = 1/127 instead of a division by zero, a non-finite group gives NaN outputs, R >= 1, and a converted bias
beyond +-2**20 saturates there instead of wrapping the scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..constants import (
    PAPER_KEY_TILE, PAPER_LOG2E, PAPER_MASKED_BELOW, PAPER_NEG_INF, PAPER_QMAX, PAPER_QMIN, PAPER_RELEASE_SHIFT,
    PAPER_SHIFT,
)
from ..scales import window_mask_per_z
from ..shapes import bias_view


@dataclass
class PaperScales:
    """Per-z state of one call (every field has shape (Z,)).

    s_q, s_k, s_v: the scales in the inputs' dtype (max|x| / 127); sm_scale: float64;
    rscale (R), exp_m, req_m, l_m, acc_m: the integer constants as int64; sm_scale_f32: sm_scale as float32
    (the bias conversion divides by it); finite: False where the group held inf or NaN.
    """

    s_q: torch.Tensor
    s_k: torch.Tensor
    s_v: torch.Tensor
    sm_scale: torch.Tensor
    sm_scale_f32: torch.Tensor
    rscale: torch.Tensor
    exp_m: torch.Tensor
    req_m: torch.Tensor
    l_m: torch.Tensor
    acc_m: torch.Tensor
    finite: torch.Tensor
    granularity: str


def paper_scales(q, k, v, granularity: str = "batch", group: int = 1, static_scales=None,
                 softmax_scale=None) -> PaperScales:
    """The published scales and constants, per z, on the inputs' device with torch ops (no host sync).

    'batch': one scale per tensor over the call (the paper's); 'sample': per image (`group` consecutive z);
    'static': static_scales = (s_q, s_k, s_v), floats or (Z,) tensors. jit/paper_scales.py computes the
    same bits in one launch.
    """
    z, _, _, d = q.shape
    if granularity == "static":  # static_scales checked by the caller (validation.check_static_scales)
        s = [torch.as_tensor(x, device=q.device).to(q.dtype).expand(z).clone() for x in static_scales]
        amax_finite = torch.ones(z, dtype=torch.bool, device=q.device)
    else:
        amax = torch.stack([_group_amax(t, granularity, group) for t in (q, k, v)])  # (3, Z) in the dtype
        amax_finite = torch.isfinite(amax).all(dim=0)
        usable = torch.isfinite(amax) & (amax > 0)
        # its own expression, max|x| / 127, so the same rounding on CPU and CUDA as the published code
        s = list(torch.where(usable, amax, torch.ones_like(amax)) / PAPER_QMAX)
    s_q, s_k, s_v = s
    qk_scale = (s_q * s_k).double()  # the product in the inputs' dtype, then float64 (its .item())
    sm_scale = (1.0 / d**0.5 if softmax_scale is None else softmax_scale) * PAPER_LOG2E * qk_scale
    one = torch.ones_like(sm_scale)
    rscale = torch.clamp(torch.round(one / sm_scale), min=1)
    unit = float(1 << PAPER_SHIFT)
    release = torch.full_like(sm_scale, float(1 << PAPER_RELEASE_SHIFT))
    l_m = torch.round(release / rscale)
    return PaperScales(
        s_q=s_q, s_k=s_k, s_v=s_v, sm_scale=sm_scale, sm_scale_f32=sm_scale.float(), rscale=rscale.long(),
        exp_m=torch.round(-sm_scale * unit).long(), req_m=torch.round(sm_scale * PAPER_QMAX * unit).long(),
        l_m=l_m.long(), acc_m=l_m.long(), finite=amax_finite, granularity=granularity,
    )


def _group_amax(t: torch.Tensor, granularity: str, group: int) -> torch.Tensor:
    """(Z,) max|x| in t's dtype: over the call ('batch'), or over each group of `group` consecutive z."""
    z = t.shape[0]
    per_z = t.detach().abs().amax(dim=(1, 2, 3))
    if granularity == "batch":
        return per_z.amax().expand(z)
    return per_z.view(z // group, group).amax(dim=1).repeat_interleave(group)


def quantize_paper(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """clamp(round(x / s), -128, 127) in x's dtype, as int8 (its expression; a NaN quotient becomes 0)."""
    t = torch.round(x / s.view(-1, 1, 1, 1))
    t = torch.where(t == t, t, torch.zeros_like(t))
    return torch.clamp(t, PAPER_QMIN, PAPER_QMAX).to(torch.int8)


def wrap32(x: torch.Tensor) -> torch.Tensor:
    """int64 values reduced to int32 two's complement (what an int32 product or sum keeps)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def wrap8(x: torch.Tensor) -> torch.Tensor:
    """The low byte as a signed value (an int32 -> int8 cast)."""
    return ((x + 128) & 0xFF) - 128


def float_to_int32_gpu(x: torch.Tensor) -> torch.Tensor:
    """float32 -> int32 as the GPU converts (cvt.rzi.s32.f32): toward zero, saturating at the int32 limits,
    NaN -> 0 (the Triton interpreter gives INT_MIN for every value it cannot represent). int64 values."""
    inside = torch.where((x >= -2.0**31) & (x < 2.0**31), x, torch.zeros_like(x))
    out = torch.trunc(inside).long()
    out = torch.where(x >= 2.0**31, torch.full_like(out, 2**31 - 1), out)
    return torch.where(x < -2.0**31, torch.full_like(out, -(2**31)), out)


def shift_right(x: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Arithmetic x >> count of int32 values; counts outside [0, 31] (as unsigned, 32 or more) give 0 or -1."""
    return x >> torch.clamp(torch.where(count < 0, torch.full_like(count, 31), count), max=31)


def exp2_paper(x: torch.Tensor, rscale, exp_m) -> torch.Tensor:
    """2**(x / R) at scale 1/R for x <= 0: q = (x exp_M) >> 16, r = x + q R, ((r >> 1) + R) >> q, in int32."""
    q = wrap32(x * exp_m) >> PAPER_SHIFT
    r = wrap32(x + wrap32(q * rscale))
    return shift_right(wrap32((r >> 1) + rscale), q)


def scale_release(x: torch.Tensor, alpha: torch.Tensor, mult) -> torch.Tensor:
    """(x alpha mult + 2**29) >> 30 in int64, kept as int32."""
    return wrap32((x * alpha * mult + (1 << (PAPER_RELEASE_SHIFT - 1))) >> PAPER_RELEASE_SHIFT)


def paper_bias_int(bias, mask, scales: PaperScales, z: int, dtype: torch.dtype, device) -> Optional[torch.Tensor]:
    """Its conversion of an additive mask (bias + mask, summed in the model dtype) to integer score units:
    entries below -100 become -2**20; the others round(b log2e' / sm_scale), each step rounded to the
    dtype as its code does, saturated at +-2**20. (Z, H, N, N) int64, or None."""
    if bias is None and mask is None:
        return None
    total = torch.zeros((), dtype=dtype, device=device)
    if bias is not None:
        total = total + bias.to(dtype)
    if mask is not None:
        total = total + window_mask_per_z(mask, z).to(dtype)
    total = total.expand(z, *total.shape[1:]) if total.shape[0] == 1 else total
    step = (total.float() * torch.tensor(PAPER_LOG2E, dtype=torch.float32)).to(dtype)
    units = (step.float() / scales.sm_scale_f32.view(-1, 1, 1, 1)).to(dtype).float()
    units = torch.round(torch.clamp(units, PAPER_NEG_INF, -PAPER_NEG_INF))
    units = torch.where(units == units, units, torch.zeros_like(units))
    return torch.where(total < PAPER_MASKED_BELOW, torch.full_like(units, PAPER_NEG_INF), units).long()


def check_paper_knobs(p_bits: int, key_tile: int) -> None:
    """p_bits from 1 to 7 (probabilities are int8), key_tile a positive int."""
    if not (isinstance(p_bits, int) and 1 <= p_bits <= 7):
        raise ValueError(f"qflash_paper p_bits must be an integer from 1 to 7, got {p_bits!r}")
    if not (isinstance(key_tile, int) and key_tile >= 1):
        raise ValueError(f"qflash_paper key_tile must be a positive integer, got {key_tile!r}")


def qflash_paper_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scales: PaperScales,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    return_state: bool = False,
    p_bits: int = 7,
    key_tile: int = PAPER_KEY_TILE,
):
    """QFlash as published on (Z, H, N, D) float inputs; returns (Z, H, N, D) in q's dtype.

    bias (H, N, N) and mask (W, N, N; z uses mask[z % W]) are added in q's dtype and converted as its code
    converts an additive attn_mask. return_state: also (acc, l) of every row, int64, for tests that need
    the operands of the final division. p_bits (1-7: its int8 probabilities hold 2**p_bits - 1 at most) and
    key_tile are the arithmetic's knobs; 7 and PAPER_KEY_TILE are the published values.
    """
    check_paper_knobs(p_bits, key_tile)
    z, h, n, d = q.shape
    n_k = k.shape[2]
    bias = bias_view(bias, q, k)
    col = (-1, 1, 1, 1)
    qi, ki, vi = (quantize_paper(t, s).double() for t, s in ((q, scales.s_q), (k, scales.s_k), (v, scales.s_v)))
    bias_int = paper_bias_int(bias, mask, scales, z, q.dtype, q.device)
    rscale, exp_m, req_m = (t.view(col) for t in (scales.rscale, scales.exp_m, scales.req_m))
    if p_bits != 7:  # req_M = round(sm_scale (2**p_bits - 1) 2**16), as paper_scales forms it for 127
        req_m = torch.round(scales.sm_scale * ((1 << p_bits) - 1) * float(1 << PAPER_SHIFT)).long().view(col)
    l_m, acc_m = scales.l_m.view(col), scales.acc_m.view(col)

    m = torch.full((z, h, n, 1), PAPER_NEG_INF, dtype=torch.int64, device=q.device)
    l = torch.ones((z, h, n, 1), dtype=torch.int64, device=q.device)
    acc = torch.zeros((z, h, n, d), dtype=torch.int64, device=q.device)
    for start in range(0, n_k, key_tile):
        stop = min(start + key_tile, n_k)
        s = (qi @ ki[:, :, start:stop].transpose(-1, -2)).long()
        if bias_int is not None:
            s = wrap32(s + bias_int[..., start:stop])
        if stop - start < key_tile:  # keys past N are scores of -2**20 (and, int8 V = 0, add nothing)
            pad = torch.full(s.shape[:-1] + (key_tile - (stop - start),), PAPER_NEG_INF,
                             dtype=torch.int64, device=q.device)
            s = torch.cat([s, pad], dim=-1)
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        p = exp2_paper(wrap32(s - m_new), rscale, exp_m)
        p8 = wrap8(wrap32(wrap32(p * req_m) + (1 << (PAPER_SHIFT - 1))) >> PAPER_SHIFT)
        alpha = exp2_paper(wrap32(m - m_new), rscale, exp_m)
        l = wrap32(scale_release(l, alpha, l_m) + p8.sum(dim=-1, keepdim=True))
        acc = scale_release(acc, alpha, acc_m)
        acc = wrap32(acc + (p8[..., :stop - start].double() @ vi[:, :, start:stop]).long())
        m = m_new
    quotient = acc.float() / l.float()  # l as it is: 0 or negative where the published arithmetic broke down
    o8 = wrap8(float_to_int32_gpu(quotient))
    out = (o8.to(q.dtype) * scales.s_v.view(col)).to(q.dtype)
    out = torch.where(scales.finite.view(col), out, torch.full_like(out, float("nan")))
    return (out, acc, l) if return_state else out
