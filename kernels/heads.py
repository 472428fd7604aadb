"""'head' granularity: one int8 scale per image, tensor and head, by folding the heads into Z.

(Z, H, N, D) with Z = B * W (W = `group`, the windows of one image) is copied to (B * H * W, 1, N, D) in
the order (image, head, window), so that 'sample' granularity with group W gives each image and head its
own scales; the bias (H, N, N) and the mask (windows, N, N) become one (H * W, N, N) mask in that order,
their float32 sum (as qflash's kernel and reference form it). The copies cost one pass over Q, K, V and
one over the output; no kernel changes.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch


def fold_heads(t: torch.Tensor, group: int) -> torch.Tensor:
    """(B * W, H, N, D) -> (B * H * W, 1, N, D), rows ordered (image, head, window)."""
    z, h, n, d = t.shape
    return t.reshape(z // group, group, h, n, d).transpose(1, 2).reshape(z * h, 1, n, d)


def unfold_heads(t: torch.Tensor, heads: int, group: int) -> torch.Tensor:
    """fold_heads undone: (B * H * W, 1, N, D) -> (B * W, H, N, D)."""
    zh, _, n, d = t.shape
    images = zh // (heads * group)
    return t.reshape(images, heads, group, n, d).transpose(1, 2).reshape(images * group, heads, n, d)


def folded_mask(bias: Optional[torch.Tensor], mask: Optional[torch.Tensor], heads: int,
                group: int) -> Optional[torch.Tensor]:
    """bias[h] + mask[w % windows] as one float32 (H * W, N, N) mask for fold_heads' order, or None."""
    if bias is None and mask is None:
        return None
    if mask is not None and group % mask.shape[0]:
        raise ValueError(f"granularity 'head' needs the mask's {mask.shape[0]} windows to divide group={group} "
                         "(the windows of one image)")
    n = (bias if bias is not None else mask).shape[-1]
    device = (bias if bias is not None else mask).device
    total = torch.zeros((heads, group, n, n), dtype=torch.float32, device=device)
    if bias is not None:
        total = total + bias.float().unsqueeze(1)
    if mask is not None:
        total = total + mask.float().repeat(group // mask.shape[0], 1, 1).unsqueeze(0)
    return total.reshape(heads * group, n, n)


def attend_per_head(attend: Callable, q, k, v, bias, mask, group: int, **options) -> torch.Tensor:
    """attend(...) with one scale per image and head: fold, attend with granularity 'sample', unfold."""
    heads = q.shape[1]
    folded = [fold_heads(t, group) for t in (q, k, v)]
    out = attend(*folded, granularity="sample", group=group, bias=None,
                 mask=folded_mask(bias, mask, heads, group), **options)
    return unfold_heads(out, heads, group)
