"""Hopper-only kernels in Gluon (triton.experimental.gluon), below the portable Triton kernels of jit/.

They compute the same bits as jit/ (tested against reference/ on the GPU) and run only where
`sm90_kernel_applies` says so; everything else, and the CPU interpreter, stays on jit/.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from .. import constants as c

HEAD_DIM = 64  # the ViT head dim the kernel is written for
BLOCK_M = 64  # query rows per program: one warpgroup
EARLY_SCORE = False  # issuing the next tile's Q.K^T early measured slower (more registers, fewer programs per SM)
MAX_REGISTERS = None
# whether qflash's op takes this kernel by default where it applies (set from the benchmark's measurement)
PREFERRED = False


@functools.lru_cache(maxsize=None)
def gluon_sm90_available(device_index: int) -> bool:
    """True on a compute-capability 9.x GPU whose Triton has Gluon's Hopper module."""
    if torch.cuda.get_device_capability(device_index)[0] != 9:
        return False
    try:
        from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma  # noqa: F401
    except ImportError:
        return False
    return True


def sm90_kernel_applies(q, k, v, bias, mask) -> bool:
    """The shapes the Hopper kernel takes: CUDA on sm90, D = 64, self-attention without bias or mask, int32
    accumulators (N_k <= constants.INT32_ACC_MAX_N)."""
    return (q.is_cuda and bias is None and mask is None and q.shape == k.shape == v.shape
            and q.shape[3] == HEAD_DIM and q.shape[2] <= c.INT32_ACC_MAX_N
            and gluon_sm90_available(q.device.index if q.device.index is not None else torch.cuda.current_device()))


def launch_qflash_sm90(q8, k8, vt8, out, scales, block_m: int = BLOCK_M, early_score: bool = EARLY_SCORE,
                       maxnreg: Optional[int] = MAX_REGISTERS):
    """The Hopper kernel on int8 (Z, H, N, D) q8 and k8 (contiguous) and V transposed, vt8 a (Z, H, D, N)
    view of contiguous (Z, H, D, N_pad) storage, each 16 keys in the P.V operand's order and zero past N
    (quantize.quantize_qkv's V); `out` (Z, H, N, D) float is written in place and returned. block_m: 64 query rows per warpgroup;
    early_score and maxnreg as qflash_sm90_kernel's EARLY_SCORE and Triton's register cap (None: no cap)."""
    import triton
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from .qflash_sm90 import qflash_sm90_kernel

    z, h, n, d = q8.shape
    n_pad = vt8.stride(2)
    tile = [c.KEY_TILE, d]
    layout = gl.NVMMASharedLayout.get_default_for(tile, gl.int8)
    rows = z * h * n
    q_desc = TensorDescriptor(q8, [rows, d], [d, 1], [block_m, d], layout)
    k_desc = TensorDescriptor(k8, [rows, d], [d, 1], tile, layout)
    v_desc = TensorDescriptor(vt8, [z * h * d, n_pad], [n_pad, 1], [d, c.KEY_TILE],
                              gl.NVMMASharedLayout.get_default_for([d, c.KEY_TILE], gl.int8))
    qflash_sm90_kernel[(z * h, triton.cdiv(n, block_m))](
        q_desc, k_desc, v_desc, out, scales.table, z, h, n, *out.stride(),
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=c.KEY_TILE, EARLY_SCORE=early_score, num_warps=block_m // 16,
        **({} if maxnreg is None else {"maxnreg": maxnreg}),
    )
    return out
