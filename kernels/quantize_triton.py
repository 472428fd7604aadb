"""Q, K and V to int8 in one launch, with the kernel's own rounding (bit-identical to quantizing on load).

The attention kernel can quantize float inputs as it loads them, but then every query block quantizes
every key and value tile again (N / BLOCK_M times); one pass that writes int8 costs 3 bytes per element
of memory traffic instead.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .amax_triton import program_head
from .qflash_triton import _quantize


@triton.jit
def _quantize_rows(base, sn, sd, out, out_sn, out_sd, rows, N, inv_scale,
                   HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # rows 0..rows-1 of one head to int8 at out; rows past N read as 0
    offs_d = tl.arange(0, BLOCK_D)
    dim_ok = offs_d[None, :] < HEAD_DIM
    for start in range(0, rows, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        x = tl.load(base + offs_n[:, None] * sn + offs_d[None, :] * sd, mask=(offs_n[:, None] < N) & dim_ok, other=0.0)
        tl.store(out + offs_n[:, None] * out_sn + offs_d[None, :] * out_sd, _quantize(x, inv_scale),
                 mask=(offs_n[:, None] < rows) & dim_ok)


@triton.jit
def _quantize_qkv_kernel(Q, K, V, QK_OUT, VT_OUT, INV_Q, INV_K, INV_V, H, N, N_PAD,
                         sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd,
                         HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    which, zh, z, base, sn, sd = program_head(H, Q, K, V, sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd)
    if which == 2:
        # V transposed to (D, N_PAD), keys contiguous: the order of the P.V dot's operand in shared
        # memory. Padding keys hold 0 (their probability is 0 as well).
        out = VT_OUT + zh.to(tl.int64) * HEAD_DIM * N_PAD
        _quantize_rows(base, sn, sd, out, 1, N_PAD, N_PAD, N, tl.load(INV_V + z), HEAD_DIM, BLOCK_N, BLOCK_D)
    else:
        inv = INV_Q
        if which == 1:
            inv = INV_K
        out = QK_OUT + (which * tl.num_programs(0) + zh).to(tl.int64) * N * HEAD_DIM
        _quantize_rows(base, sn, sd, out, HEAD_DIM, 1, N, N, tl.load(inv + z), HEAD_DIM, BLOCK_N, BLOCK_D)


V_ROW_MULTIPLE = 16  # keys of the transposed V are padded to this (whole 16-byte vectors)


def quantize_qkv(q, k, v, scales) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """int8 copies of q, k, v quantized with the per-z scales, laid out for the attention kernel.

    Returns (q8, k8, v8, v_rows): q8, k8 contiguous (Z, H, N, D); v8 a (Z, H, N, D) view of a
    (Z, H, D, v_rows) tensor whose keys N..v_rows-1 are zero (pass v_rows to launch_qflash).
    """
    z, h, n, d = q.shape
    n_pad = triton.cdiv(n, V_ROW_MULTIPLE) * V_ROW_MULTIPLE
    qk = torch.empty((2, z, h, n, d), dtype=torch.int8, device=q.device)
    vt = torch.empty((z, h, d, n_pad), dtype=torch.int8, device=q.device)
    block_n = max(16, min(64, triton.next_power_of_2(n)))
    _quantize_qkv_kernel[(z * h, 3)](
        q, k, v, qk, vt, scales.inv_q, scales.inv_k, scales.inv_v, h, n, n_pad,
        *q.stride(), *k.stride(), *v.stride(),
        HEAD_DIM=d, BLOCK_N=block_n, BLOCK_D=triton.next_power_of_2(d), num_warps=4,
    )
    return qk[0], qk[1], vt.transpose(2, 3)[:, :, :n], n_pad
