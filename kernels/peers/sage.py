"""sage: SageAttention 1.0.x (Zhang et al., 2024), its Triton path (`sageattn_qk_int8_pv_fp16_triton`).

K is smoothed (its mean over tokens subtracted: softmax is unchanged by it); Q, times the softmax scale and
log2(e), and K are quantized to int8 per block of 128 query rows and 64 keys (scale max|x| / 127, round
half away from zero); S = int8 Q.K^T times both block scales; online softmax in float32 over 64-key tiles
with exp2; P cast to float16 and P.V of each tile accumulated in float16, then added to a float32
accumulator. Bias and Swin's mask (which the package does not take) are added to S in log2 units.
sageattention 1.0.6's kernel does not mask its last key tile: keys N_k..ceil(N_k / 64) * 64 - 1 enter as
zero keys (score 0, V 0), adding 2^(0 - m) each to the row sum (59 such keys at N = 197). The specification
does the same (`unmasked_tail`) wherever the package's kernel would take the call (no bias or mask, head dims
64/96/128), so that it computes what the package computes; elsewhere (Swin's windows, other head dims) it is
the method as published.
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import torch

from .online import LOG2E, additive_log2, online_softmax

Q_BLOCK, K_BLOCK = 128, 64  # the package's BLKQ, BLKK (also its key tile)


def _quantize_per_block(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 values (as float32) and one scale per `block` rows of each (z, h): max|x| / 127, round half away."""
    z, h, n, d = x.shape
    blocks = -(-n // block)
    padded = torch.nn.functional.pad(x, (0, 0, 0, blocks * block - n)).view(z, h, blocks, block, d)
    scale = padded.abs().amax(dim=(3, 4), keepdim=True) / 127.0
    scaled = padded / torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero block stays 0
    ints = torch.trunc(scaled + 0.5 * torch.where(scaled >= 0, 1.0, -1.0))
    return ints.view(z, h, blocks * block, d)[:, :, :n], scale.view(z, h, blocks)


def sage_reference(q, k, v, bias=None, mask=None, softmax_scale: Optional[float] = None,
                   unmasked_tail: Optional[bool] = None) -> torch.Tensor:
    """(Z, H, N_q, D) q, (Z, H, N_k, D) k, (Z, H, N_k, D_v) v -> (Z, H, N_q, D_v) in q's dtype.
    unmasked_tail: the package's zero keys up to a multiple of 64 (module docstring); None: where the
    package's kernel takes such a call (kernel_takes)."""
    if unmasked_tail is None:
        unmasked_tail = kernel_takes(q, v, bias, mask)
    scale = q.shape[3] ** -0.5 if softmax_scale is None else softmax_scale
    k_smooth = (k - k.mean(dim=2, keepdim=True)).float()  # the mean in k's dtype, as the package takes it
    q8, q_scale = _quantize_per_block(q.float() * (scale * LOG2E), Q_BLOCK)
    k8, k_scale = _quantize_per_block(k_smooth, K_BLOCK)
    q_rows = q_scale.repeat_interleave(Q_BLOCK, dim=2)[:, :, :q.shape[2], None]
    v16 = v.half()
    extra = additive_log2(bias, mask, q, k)
    n_k = k.shape[2]
    if unmasked_tail:
        tail = -n_k % K_BLOCK  # zero keys and values, and no bias or mask on them
        n_k += tail
        k8, v16 = (torch.nn.functional.pad(t, (0, 0, 0, tail)) for t in (k8, v16))
        extra = None if extra is None else torch.nn.functional.pad(extra, (0, tail))

    def scores(start, stop):
        s = (q8.double() @ k8[:, :, start:stop].double().transpose(-1, -2)).float()  # exact integer products
        return s * q_rows * k_scale[:, :, start // K_BLOCK].view(*k_scale.shape[:2], 1, 1)

    def pv(p, start, stop):
        return (p.half().float() @ v16[:, :, start:stop].float()).half().float()

    out = online_softmax(scores, pv, n_k, K_BLOCK, (*q.shape[:3], v.shape[3]), extra)
    return out.to(q.dtype)


PACKAGE_HEAD_DIMS = (64, 96, 128)


def kernel_takes(q, v, bias=None, mask=None) -> bool:
    """Whether the package's kernel computes attention of this form: no bias or mask, head dims 64/96/128 with
    D_v = D (wherever it runs, whatever the dtype and layout)."""
    return bias is None and mask is None and q.shape[3] in PACKAGE_HEAD_DIMS and v.shape[3] == q.shape[3]


def sage_implementation(q, k, v, bias=None, mask=None) -> str:
    """'package' where sageattention 1.0.x runs this call (CUDA, fp16/bf16, kernel_takes, rows contiguous),
    else 'reference'."""
    usable = (q.is_cuda and kernel_takes(q, v, bias, mask) and q.dtype in (torch.float16, torch.bfloat16)
              and all(t.stride(3) == 1 for t in (q, k, v)))
    return "package" if usable and importlib.util.find_spec("sageattention") is not None else "reference"


def sage_attention(q, k, v, *, bias=None, mask=None, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """SageAttention on (Z, H, N_q, D) q, (Z, H, N_k, D) k, (Z, H, N_k, D_v) v: the package where it takes
    the call (sage_implementation), the specification otherwise. Returns (Z, H, N_q, D_v) in q's dtype."""
    if sage_implementation(q, k, v, bias, mask) == "package":
        from sageattention import sageattn

        # the package smooths k in place (k -= mean): it gets a copy, the caller's k stays as it was
        return sageattn(q, k.clone(), v, tensor_layout="HND", is_causal=False, sm_scale=softmax_scale)
    return sage_reference(q, k, v, bias, mask, softmax_scale)
