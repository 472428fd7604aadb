"""'head' granularity: one int8 scale per image, tensor and head, by folding the heads into Z.

(Z, H, N, D) with Z = B * W (W = `group`, the windows of one image) is copied to (B * H * W, 1, N, D) in
the order (image, head, window), so that 'sample' granularity with group W gives each image and head its
own scales; a bias shared by every image (H, N_q, N_k) and the mask (windows, N_q, N_k) become one
(H * W, N_q, N_k) mask in that order, their float32 sum (as qflash's kernel and reference form it); a bias
that differs by image is folded with the tensors. The copies cost one pass over Q, K, V and one over the
output; no kernel changes.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .scales import window_mask_per_z


def fold_heads(t: torch.Tensor, group: int) -> torch.Tensor:
    """(B * W, H, N, D) -> (B * H * W, 1, N, D), rows ordered (image, head, window); any last two dims."""
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
    n_q, n_k = (bias if bias is not None else mask).shape[-2:]
    device = (bias if bias is not None else mask).device
    total = torch.zeros((heads, group, n_q, n_k), dtype=torch.float32, device=device)
    if bias is not None:
        total = total + bias.float().unsqueeze(1)
    if mask is not None:
        total = total + mask.float().repeat(group // mask.shape[0], 1, 1).unsqueeze(0)
    return total.reshape(heads * group, n_q, n_k)


def folded_bias(bias: Optional[torch.Tensor], mask: Optional[torch.Tensor], heads: int, group: int):
    """(bias, mask) of the folded call from a (Z, H, N_q, N_k) bias view and a (W, N_q, N_k) mask."""
    if bias is None or bias.stride(0) == 0:  # shared by every image: one (H * W, N_q, N_k) mask
        return None, folded_mask(bias[0] if bias is not None else None, mask, heads, group)
    total = bias.float()
    if mask is not None:
        total = total + window_mask_per_z(mask, bias.shape[0]).float()
    return fold_heads(total, group), None


def attend_per_head(attend: Callable, q, k, v, bias, mask, group: int, **options) -> torch.Tensor:
    """attend(...) with one scale per image and head: fold, attend with granularity 'sample', unfold."""
    heads = q.shape[1]
    folded = [fold_heads(t, group) for t in (q, k, v)]
    folded_b, folded_m = folded_bias(bias, mask, heads, group)
    out = attend(*folded, granularity="sample", group=group, bias=folded_b, mask=folded_m, **options)
    return unfold_heads(out, heads, group)
