"""Input checks shared by every attention variant: clear errors that name the argument, not wrong numbers."""
from __future__ import annotations

from typing import Optional

import torch

from .constants import GRANULARITIES, MAX_SEQUENCE

SUPPORTED_HEAD_DIMS = (16, 32, 64, 128, 256, 512, 1024)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_attention_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    group: int = 1,
    allow_int8: bool = False,
    granularity: Optional[str] = None,
    static_scales: Optional[tuple] = None,
) -> None:
    """Every argument of an attention call; granularity (when given) and static_scales as
    check_scale_arguments checks them."""
    dtypes = SUPPORTED_DTYPES + ((torch.int8,) if allow_int8 else ())
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have rank 4 (Z, H, N, D), got shape {tuple(t.shape)}")
        if t.dtype not in dtypes:
            names = ", ".join(str(dt).replace("torch.", "") for dt in dtypes)
            raise TypeError(f"{name} has dtype {t.dtype}; supported: {names}")
    check_shapes(q, k, v)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v are on different devices: {q.device}, {k.device}, {v.device}")
    z, h, n_q, _ = q.shape
    n_k = k.shape[2]
    if granularity is not None:
        check_scale_arguments(q, granularity, group, static_scales, per_z=False)
    elif group < 1 or z % group:
        raise ValueError(f"group={group} must divide Z={z}")
    if bias is not None:
        check_bias(bias, (z, h, n_q, n_k), q.device)
    if mask is not None:
        if mask.dim() != 3 or mask.shape[1:] != (n_q, n_k) or mask.shape[0] < 1:
            raise ValueError(f"mask must have shape (windows, {n_q}, {n_k}), got {tuple(mask.shape)}")
        if z % mask.shape[0]:
            raise ValueError(f"Z={z} is not a multiple of the mask's {mask.shape[0]} windows")
        _check_additive(mask, "mask", tuple(mask.shape), q.device)


def check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """q (Z, H, N_q, D), k (Z, H, N_k, D), v (Z, H, N_k, D_v): N_q != N_k and D_v != D allowed, D and D_v
    up to the largest supported head dim (smaller or odd ones are zero-padded, shapes.pad_head_dims)."""
    (z, h, n_q, d), (n_k, d_v) = q.shape, (k.shape[2], v.shape[3])
    if k.shape[:2] != (z, h) or v.shape[:2] != (z, h) or k.shape[3] != d or v.shape[2] != n_k:
        raise ValueError(f"q, k, v shapes do not fit (Z, H, N_q, D), (Z, H, N_k, D), (Z, H, N_k, D_v): "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.numel() == 0 or k.numel() == 0 or v.numel() == 0:
        raise ValueError(f"empty input: shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)} "
                         "(every dimension must be >= 1)")
    if max(n_q, n_k) > MAX_SEQUENCE:
        raise ValueError(f"sequence length N={max(n_q, n_k)} exceeds the supported maximum {MAX_SEQUENCE}")
    if max(d, d_v) > SUPPORTED_HEAD_DIMS[-1]:
        raise ValueError(f"head dim {max(d, d_v)} is not supported: at most {SUPPORTED_HEAD_DIMS[-1]} "
                         f"(kernel head dims {SUPPORTED_HEAD_DIMS}; smaller ones are zero-padded)")


def check_bias(bias: torch.Tensor, shape: tuple, device: torch.device) -> None:
    """An additive bias that broadcasts to (Z, H, N_q, N_k): rank 2 to 4, each leading size 1 or full."""
    if not isinstance(bias, torch.Tensor) or not 2 <= bias.dim() <= 4:
        raise ValueError(f"bias must be a tensor of rank 2-4 that broadcasts to {shape}, got "
                         f"{tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__}")
    lead = shape[4 - bias.dim():]
    if tuple(bias.shape[-2:]) != shape[2:] or any(b not in (1, s) for b, s in zip(bias.shape, lead)):
        raise ValueError(f"bias of shape {tuple(bias.shape)} does not broadcast to (Z, H, N_q, N_k) = {shape}")
    if bias.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"bias has dtype {bias.dtype}; supported: float16, bfloat16, float32")
    if bias.device != device:
        raise ValueError(f"bias is on {bias.device}, q on {device}")


def _check_additive(t: torch.Tensor, name: str, shape: tuple, device: torch.device) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} has dtype {t.dtype}; supported: float16, bfloat16, float32")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, q on {device}")


def check_scale_arguments(q: torch.Tensor, granularity: str, group: int = 1, static_scales: Optional[tuple] = None,
                          per_z: bool = True) -> None:
    """granularity, group and static_scales of a call on q (Z, H, N, D). per_z: the scales are computed per z
    directly, so 'head' (which folds the heads into Z first, heads.py) is refused."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if per_z and granularity == "head":
        raise ValueError("granularity 'head' has no per-z scales: the attention functions fold the heads into Z "
                         "(qflash_kernels.heads) and use 'sample'")
    z = q.shape[0]
    if group < 1 or z % group:
        raise ValueError(f"group={group} must divide Z={z}")
    if granularity == "static":
        check_static_scales(static_scales, z)


def check_static_scales(static_scales, z: int) -> None:
    """(s_q, s_k, s_v): each a positive float or a tensor of shape () or (Z,)."""
    if static_scales is None or len(static_scales) != 3:
        raise ValueError("granularity='static' needs static_scales=(s_q, s_k, s_v)")
    for scale in static_scales:
        if isinstance(scale, (int, float)) and scale <= 0:
            raise ValueError("static scales must be positive")
        shape = tuple(scale.shape) if isinstance(scale, torch.Tensor) else ()
        if len(shape) > 1 or (len(shape) == 1 and shape[0] not in (1, z)):
            raise ValueError(f"static scale must be a scalar or have shape ({z},), got {shape}")
