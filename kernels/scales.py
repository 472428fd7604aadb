"""Per-tensor int8 scales of Q, K, V and the integer constants derived from them, with torch ops only.

No `.item()`, no host sync. The Triton kernels and the PyTorch references consume the same
`AttentionScales`, so the float-to-integer bookkeeping is computed once. jit/amax.py computes the same
bits on CUDA in two launches; ScaleRule.compute chooses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from .constants import (
    BIAS_INT_LIMIT, EXP_DLIM_NUMERATOR, EXP_MUL_MAX, FLOAT32_MAX, OUT_FRAC_BITS, QMAX,
    head_constants,
)

from .scale_table import FLOAT_SCALE_ROWS, SCALE_ROWS, AttentionScales, pack_scale_rows  # noqa: F401 (re-exported)

ScaleArg = Union[float, torch.Tensor]


@dataclass(frozen=True)
class ScaleRule:
    """How a call's scales are formed: granularity 'sample' (one per image, `group` consecutive z form an
    image), 'batch' (one per call) or 'static' (static_scales = (s_q, s_k, s_v)); checked by the caller."""

    granularity: str = "sample"
    group: int = 1
    static_scales: Optional[tuple] = None
    softmax_scale: Optional[float] = None  # None: 1 / sqrt(D); else shapes.default_softmax_scale's float

    @property
    def fusable(self) -> bool:
        """One z per image and scales from the inputs: the amax can run fused with the int8 pass."""
        return self.granularity == "sample" and self.group == 1 and self.softmax_scale is None

    @property
    def from_inputs(self) -> bool:
        return self.granularity != "static"

    def compute(self, q, k, v) -> "AttentionScales":
        """The scales of q, k, v on their device, no host sync: two Triton launches on CUDA (jit/amax.py),
        torch ops elsewhere; the same bits."""
        if q.is_cuda and self.from_inputs and self.softmax_scale is None and q.shape == k.shape == v.shape:
            from .jit.amax import fused_scales  # CUDA only: the torch path needs no Triton

            return fused_scales(q, k, v, self.granularity, self.group)
        return torch_scales(q, k, v, self.granularity, self.group, self.static_scales, self.softmax_scale)


def group_amax(q, k, v, granularity: str, group: int) -> torch.Tensor:
    """(3, Z) max|x| of q, k, v per leading index z, shared by `group` consecutive z (Swin windows)."""
    z = q.shape[0]
    per_z = torch.stack([t.detach().abs().amax(dim=(1, 2, 3)).float() for t in (q, k, v)])
    if granularity == "batch":
        return per_z.amax(dim=1, keepdim=True).expand(3, z)
    if group == 1:
        return per_z
    return per_z.view(3, z // group, group).amax(dim=2).repeat_interleave(group, dim=1)


def static_amax(static_scales, z: int, device: torch.device) -> torch.Tensor:
    """The caller's scales (s_q, s_k, s_v), each a float or a tensor of shape () / (Z,), as (3, Z) amax."""
    return torch.stack([(_float32_on(device, s) * QMAX).expand(z) for s in static_scales])


def _float32_on(device: torch.device, s) -> torch.Tensor:
    # a float is filled on the device, not copied from the host, so the op can run inside a CUDA graph capture
    if isinstance(s, torch.Tensor):
        return s.to(device, torch.float32)
    return torch.full((), s, dtype=torch.float32, device=device)


def torch_scales(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    granularity: str = "sample",
    group: int = 1,
    static_scales: Optional[tuple] = None,
    softmax_scale: Optional[float] = None,
) -> AttentionScales:
    """Scales for one attention call, with torch ops (ScaleRule.compute picks the CUDA path where it can).

    granularity: 'sample' (one scale per image and tensor; `group` consecutive z form one image, as
    Swin's windows do), 'batch' (one scale per tensor over the whole call, as the paper's reference),
    'static' (`static_scales` = (s_q, s_k, s_v) from calibration).
    A tensor that is all zero gets amax 1 (its int8 values are all 0 anyway); a group holding inf or
    NaN gets inverse scale 0 and a NaN output scale, so its outputs are NaN. The arguments are checked by
    the caller (validation.check_scale_arguments).
    """
    z, _, _, d = q.shape
    if granularity == "static":
        return scales_from_amax(static_amax(static_scales, z, q.device), d, granularity, softmax_scale)
    return scales_from_amax(group_amax(q, k, v, granularity, group), d, granularity, softmax_scale)


def scales_from_amax(amax: torch.Tensor, head_dim: int, granularity: str,
                     softmax_scale: Optional[float] = None) -> AttentionScales:
    """All integer constants from a (3, Z) float32 amax of q, k, v.

    The CUDA path (jit/amax.py, _constants_kernel) performs the same IEEE operations in the same order.
    exp_mul = floor(s_q s_k log2(e) 2**26 / sqrt(D) + 0.5) in float64; inv_c = sqrt(D) / (s_q s_k) in float32.
    """
    exp_k, sqrt_d = head_constants(head_dim, softmax_scale)
    finite = torch.isfinite(amax)
    a_eff = torch.where(finite & (amax > 0), amax, torch.ones_like(amax))
    # tensor / tensor is a correctly rounded division on CPU and CUDA; CUDA torch turns a division
    # by or of a Python scalar into a reciprocal and a multiply, which is not
    qmax = torch.full_like(amax, QMAX)
    # capped at the largest float: amax < 127 / FLT_MAX would give inf (and 0 * inf = NaN); capped, every
    # |x * inv| of the data the amax came from stays <= 127 (1 + 2**-23)
    inv = torch.where(finite, torch.clamp(qmax / a_eff, max=FLOAT32_MAX), torch.zeros_like(amax))
    s = a_eff / qmax
    c = s[0].double() * s[1].double()
    exp_mul = torch.floor(c * exp_k + 0.5).clamp_(1, EXP_MUL_MAX).long()
    exp_dlim = torch.div(EXP_DLIM_NUMERATOR, exp_mul, rounding_mode="floor")
    out_scale = torch.where(finite.all(dim=0), s[2] * 2.0**-OUT_FRAC_BITS, torch.full_like(s[2], float("nan")))
    return AttentionScales.from_rows(
        granularity, softmax_scale, inv_q=inv[0], inv_k=inv[1], inv_v=inv[2], s_q=s[0], s_k=s[1], s_v=s[2],
        inv_c=torch.full_like(s[0], sqrt_d) / (s[0] * s[1]), out_scale=out_scale, exp_mul=exp_mul, exp_dlim=exp_dlim,
    )


def quantize_int8(x: torch.Tensor, inv_scale: torch.Tensor) -> torch.Tensor:
    """x (Z, ...) float -> int32 values in [-127, 127]: round(clamp(x * inv_scale[z])), ties to even. NaN -> 0."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    t = x.float() * inv_scale.view(shape)
    t = torch.where(t == t, t, torch.zeros_like(t)).clamp(-QMAX, QMAX)
    return torch.round(t).to(torch.int32)


def bias_to_score_units(bias: torch.Tensor, inv_c: torch.Tensor) -> torch.Tensor:
    """Additive logit bias (fp32, broadcast to (Z, H, N, N)) -> integer score units round(b / c), ties to even."""
    t = bias.float() * inv_c.view(-1, 1, 1, 1)
    t = torch.where(t == t, t, torch.zeros_like(t)).clamp(-BIAS_INT_LIMIT, BIAS_INT_LIMIT)
    return torch.round(t).to(torch.int32)


def window_mask_per_z(mask: torch.Tensor, z: int) -> torch.Tensor:
    """(W, N, N) shifted-window mask -> (Z, 1, N, N): z uses window z % W, as timm's Swin lays them out."""
    return mask[torch.arange(z, device=mask.device) % mask.shape[0]].unsqueeze(1)
