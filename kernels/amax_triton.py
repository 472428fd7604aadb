"""max|x| per leading index z of three (Z, H, N, D) tensors in one launch (CUDA only).

One program per (z, h, tensor) reduces its (N, D) slice and folds it in with an atomic max on the
float bits (non-negative floats order like their int32 bits). Non-finite values count as +inf.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _amax_kernel(Q, K, V, OUT, Z, H, N,
                 sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd,
                 HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    zh = tl.program_id(0)
    which = tl.program_id(1)
    z = zh // H
    h = zh % H
    if which == 0:
        base, sz, sh, sn, sd = Q, sqz, sqh, sqn, sqd
    elif which == 1:
        base, sz, sh, sn, sd = K, skz, skh, skn, skd
    else:
        base, sz, sh, sn, sd = V, svz, svh, svn, svd
    offs_d = tl.arange(0, BLOCK_D)
    best = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        ok = (offs_n[:, None] < N) & (offs_d[None, :] < HEAD_DIM)
        x = tl.load(base + z * sz + h * sh + offs_n[:, None] * sn + offs_d[None, :] * sd, mask=ok, other=0.0)
        a = tl.abs(x.to(tl.float32))
        a = tl.where(a == a, a, float("inf"))
        best = tl.maximum(best, a)
    m = tl.max(tl.max(best, axis=1), axis=0)
    tl.atomic_max(OUT + which * Z + z, m.to(tl.int32, bitcast=True))


def amax_per_z(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    z, h, n, d = q.shape
    out = torch.zeros((3, z), dtype=torch.int32, device=q.device)
    block_d = triton.next_power_of_2(d)
    block_n = max(16, min(128, triton.next_power_of_2(n)))
    _amax_kernel[(z * h, 3)](q, k, v, out, z, h, n, *q.stride(), *k.stride(), *v.stride(),
                             HEAD_DIM=d, BLOCK_N=block_n, BLOCK_D=block_d, num_warps=4)
    return out.view(torch.float32)
