"""The flash-attention loop the peers share: key tiles, a running row max, exp2, and a P.V of each
peer's own arithmetic. Scores are in log2 units (softmax scale times log2(e) already applied)."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..scales import window_mask_per_z
from ..shapes import bias_view

LOG2E = 1.44269504  # the constant the peers' Triton kernels multiply by


def additive_log2(bias: Optional[torch.Tensor], mask: Optional[torch.Tensor], q, k) -> Optional[torch.Tensor]:
    """bias (broadcasting to (Z, H, N_q, N_k)) plus Swin's (W, N_q, N_k) mask, in log2 units, float32."""
    total = None
    if bias is not None:
        total = bias_view(bias, q, k).float()
    if mask is not None:
        m = window_mask_per_z(mask, q.shape[0]).float()
        total = m if total is None else total + m
    return None if total is None else total * LOG2E


def online_softmax(scores: Callable, pv: Callable, n_k: int, tile: int, out_shape: tuple,
                   extra: Optional[torch.Tensor]) -> torch.Tensor:
    """sum_j 2^(s_ij - m_i) pv_j / l_i over key tiles of `tile` keys, as the kernels run it.

    scores(start, stop): (Z, H, N_q, stop - start) float32 log2-unit scores of those keys;
    pv(p, start, stop): that tile's (Z, H, N_q, D_v) float32 contribution from its float32 probabilities p
    (the peer's own rounding of p and V happens there); l sums the unrounded p, as every peer does.
    """
    z, h, n_q, d_v = out_shape
    m = l = acc = None
    for start in range(0, n_k, tile):
        stop = min(start + tile, n_k)
        s = scores(start, stop)
        if extra is not None:
            s = s + extra[..., start:stop]
        if m is None:
            m = torch.full((z, h, n_q, 1), float("-inf"), device=s.device)
            l = torch.zeros((z, h, n_q, 1), device=s.device)
            acc = torch.zeros((z, h, n_q, d_v), device=s.device)
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        p = torch.exp2(s - m_new)
        alpha = torch.exp2(m - m_new)
        l = l * alpha + p.sum(dim=-1, keepdim=True)
        acc = acc * alpha + pv(p, start, stop)
        m = m_new
    return acc / l
