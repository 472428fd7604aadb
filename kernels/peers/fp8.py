"""fp8: FP8 attention as FlashAttention-3 runs it. Q, K, V in float8 e4m3 with one scale per tensor per
image (max|x| / 448; 'batch': per call), S = Q8.K8^T in float32 times s_q s_k, online softmax in float32
with exp2 over 128-key tiles, P (relative to the running max, <= 1) cast to e4m3 without a scale,
P8.V8 accumulated in float32 times s_v, l summing the float P. Bias and mask are added to S.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..scales import group_amax
from .online import LOG2E, additive_log2, online_softmax

E4M3_MAX = 448.0
KEY_TILE = 128


def _to_e4m3(q, k, v, granularity: str, group: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each of q, k, v as x / s rounded to e4m3 (back in float32), with s = max|x| / 448 per image (`group`
    z each) or per call, shaped (Z, 1, 1, 1)."""
    amax = group_amax(q, k, v, granularity, group)  # (3, Z) float32
    scales = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax)).view(3, -1, 1, 1, 1)
    return [((t.float() / s).to(torch.float8_e4m3fn).float(), s) for t, s in zip((q, k, v), scales)]


def fp8_reference(q, k, v, bias=None, mask=None, softmax_scale: Optional[float] = None,
                  granularity: str = "sample", group: int = 1) -> torch.Tensor:
    """(Z, H, N_q, D) q, (Z, H, N_k, D) k, (Z, H, N_k, D_v) v -> (Z, H, N_q, D_v) in q's dtype."""
    if granularity not in ("sample", "batch"):
        raise ValueError(f"fp8 takes granularity 'sample' or 'batch', got {granularity!r}")
    scale = q.shape[3] ** -0.5 if softmax_scale is None else softmax_scale
    (q8, s_q), (k8, s_k), (v8, s_v) = _to_e4m3(q, k, v, granularity, group)

    def scores(start, stop):
        return (q8 @ k8[:, :, start:stop].transpose(-1, -2)) * (s_q * s_k * (scale * LOG2E))

    def pv(p, start, stop):
        return (p.to(torch.float8_e4m3fn).float() @ v8[:, :, start:stop]) * s_v

    out = online_softmax(scores, pv, k.shape[2], KEY_TILE, (*q.shape[:3], v.shape[3]), additive_log2(bias, mask, q, k))
    return out.to(q.dtype)


def fp8_attention(q, k, v, *, bias=None, mask=None, softmax_scale: Optional[float] = None,
                  granularity: str = "sample", group: int = 1) -> torch.Tensor:
    """The reference on every device (torch's float8 dtypes)."""
    return fp8_reference(q, k, v, bias, mask, softmax_scale, granularity, group)
