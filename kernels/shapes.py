"""Calls beyond the kernels' native shape, (Z, H, N, D) with D in SUPPORTED_HEAD_DIMS for q, k and v alike.

N_q != N_k runs natively (every kernel and reference has separate query and key counts). Other head dims,
and a value head dim D_v != D, are zero-padded to one supported head dim: zero columns quantize to 0, add
nothing to an integer Q.K^T and give zero output columns, which are cut off, so padding changes no bit of
the result; the softmax scale stays that of the true D (api passes it on). A bias becomes a
(Z, H, N_q, N_k) view with stride 0 where it broadcasts, read by index, never materialised.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .validation import SUPPORTED_HEAD_DIMS


def padded_head_dim(q: torch.Tensor, v: torch.Tensor) -> int:
    """The supported head dim the call runs at: q's own when q, k and v share a supported one."""
    need = max(q.shape[3], v.shape[3])
    return next(d for d in SUPPORTED_HEAD_DIMS if d >= need)


def needs_padding(q: torch.Tensor, v: torch.Tensor) -> bool:
    return q.shape[3] != v.shape[3] or q.shape[3] not in SUPPORTED_HEAD_DIMS


def pad_head_dims(q, k, v) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v with zero columns up to padded_head_dim (a copy of each tensor that grows)."""
    d = padded_head_dim(q, v)
    return tuple(t if t.shape[3] == d else F.pad(t, (0, d - t.shape[3])) for t in (q, k, v))


def bias_view(bias: Optional[torch.Tensor], q: torch.Tensor, k: torch.Tensor) -> Optional[torch.Tensor]:
    """A checked bias of rank 2-4 as a (Z, H, N_q, N_k) view (stride 0 on broadcast dimensions)."""
    if bias is None:
        return None
    z, h, n_q, _ = q.shape
    full = bias.reshape((1,) * (4 - bias.dim()) + tuple(bias.shape))
    return full.expand(z, h, n_q, k.shape[2])


def default_softmax_scale(head_dim: int, softmax_scale: Optional[float]) -> Optional[float]:
    """None (the kernels' own 1 / sqrt(D), bit for bit as before) when softmax_scale is that of head_dim."""
    if softmax_scale is None or softmax_scale == head_dim ** -0.5:
        return None
    if not softmax_scale > 0:
        raise ValueError(f"softmax_scale must be positive, got {softmax_scale}")
    return float(softmax_scale)
