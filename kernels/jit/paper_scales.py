"""qflash_paper's per-call table: its layout, and its constants from the amax in one launch.

`paper_table_for_call` is what the Triton path runs: max|x| of Q, K, V by the amax kernel (jit/amax.py), then
`_paper_constants_kernel` computes what reference.qflash_paper.paper_scales computes with about twenty torch
ops, with the same IEEE operations in the same order (float64 where the published code uses a Python float,
no FMA contraction), so both give identical bits on the same device. One difference of devices it keeps:
the published `max|x| / 127` divides by a Python scalar, which torch computes on CUDA as max|x| times the
float32 reciprocal of 127 and on the CPU as a division; the kernel does the same on each.
"""
from __future__ import annotations

import struct

import numpy as np
import torch
import triton
import triton.language as tl

from .. import constants as c
from ..scale_table import pack_scale_rows
from .helpers import to_output_dtype

# rows of the table: float32 rows first, then int32 rows
(ROW_S_Q, ROW_S_K, ROW_S_V, ROW_OUT_SCALE, ROW_SM_SCALE, ROW_RSCALE, ROW_EXP_M, ROW_REQ_M, ROW_L_M,
 ROW_ACC_M) = (tl.constexpr(i) for i in range(10))
TABLE_ROWS = 10

QMAX = tl.constexpr(float(c.PAPER_QMAX))
INV_QMAX_F32 = tl.constexpr(float(np.float32(1) / np.float32(c.PAPER_QMAX)))  # torch's CUDA reciprocal
SHIFT_UNIT = tl.constexpr(float(1 << c.PAPER_SHIFT))
RELEASE_UNIT = tl.constexpr(float(1 << c.PAPER_RELEASE_SHIFT))
TWO_52 = tl.constexpr(2.0**52)
NEG_TWO_52 = tl.constexpr(-(2.0**52))
TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}
CONSTANTS_BLOCK = 256  # entries per program: one size for every batch, so one compilation serves them all


@triton.jit
def _round_f64(x):
    """torch.round of float64 (ties to even): adding and taking away 2**52 leaves the integer; |x| >= 2**52 is
    one already."""
    big = tl.where(x < 0.0, NEG_TWO_52, TWO_52).to(tl.float64)
    return tl.where((x > NEG_TWO_52) & (x < TWO_52), (x + big) - big, x)


@triton.jit
def _to_int32(x):
    # float64 -> int64 as torch's .long() on the same device, then the low 32 bits (its .to(torch.int32))
    return x.to(tl.int64).to(tl.int32)


@triton.jit
def _paper_scale(a, DTYPE: tl.constexpr, RECIPROCAL: tl.constexpr):
    # max|x| / 127 in the dtype, 1 / 127 for an all-zero or non-finite tensor
    a_eff = tl.where((a < float("inf")) & (a > 0), a, 1.0)
    if RECIPROCAL:
        s = a_eff * INV_QMAX_F32
    else:
        s = tl.math.div_rn(a_eff, QMAX)
    return to_output_dtype(s, DTYPE).to(tl.float32)


@triton.jit(do_not_specialize=["SM_FACTOR_BITS", "Z", "SLOTS"])
def _paper_constants_kernel(AMAX, F32, I32, SM_FACTOR_BITS, Z, SLOTS, GROUP_DIV, BLOCK: tl.constexpr,
                            DTYPE: tl.constexpr, RECIPROCAL: tl.constexpr):
    z = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = z < Z
    slot = z // GROUP_DIV
    a_q = tl.load(AMAX + slot, mask=ok, other=0.0)  # NaN already read as inf
    a_k = tl.load(AMAX + SLOTS + slot, mask=ok, other=0.0)
    a_v = tl.load(AMAX + 2 * SLOTS + slot, mask=ok, other=0.0)
    all_finite = (a_q < float("inf")) & (a_k < float("inf")) & (a_v < float("inf"))
    s_q = _paper_scale(a_q, DTYPE, RECIPROCAL)
    s_k = _paper_scale(a_k, DTYPE, RECIPROCAL)
    s_v = _paper_scale(a_v, DTYPE, RECIPROCAL)
    qk_scale = to_output_dtype(s_q * s_k, DTYPE).to(tl.float32).to(tl.float64)
    sm_scale = SM_FACTOR_BITS.to(tl.float64, bitcast=True) * qk_scale
    # float64 '/' is IEEE division on the GPU too
    rscale = tl.maximum(_round_f64(tl.full([BLOCK], 1.0, tl.float64) / sm_scale), 1.0)
    release = _round_f64(tl.full([BLOCK], RELEASE_UNIT, tl.float64) / rscale)
    tl.store(F32 + ROW_S_Q * Z + z, s_q, mask=ok)
    tl.store(F32 + ROW_S_K * Z + z, s_k, mask=ok)
    tl.store(F32 + ROW_S_V * Z + z, s_v, mask=ok)
    tl.store(F32 + ROW_OUT_SCALE * Z + z, tl.where(all_finite, s_v, float("nan")), mask=ok)
    tl.store(F32 + ROW_SM_SCALE * Z + z, sm_scale.to(tl.float32), mask=ok)
    tl.store(I32 + ROW_RSCALE * Z + z, _to_int32(rscale), mask=ok)
    tl.store(I32 + ROW_EXP_M * Z + z, _to_int32(_round_f64(-sm_scale * SHIFT_UNIT)), mask=ok)
    tl.store(I32 + ROW_REQ_M * Z + z, _to_int32(_round_f64(sm_scale * QMAX * SHIFT_UNIT)), mask=ok)
    tl.store(I32 + ROW_L_M * Z + z, _to_int32(release), mask=ok)
    tl.store(I32 + ROW_ACC_M * Z + z, _to_int32(release), mask=ok)


def paper_table(scales) -> torch.Tensor:
    """reference.qflash_paper.PaperScales as the (10, Z) int32 kernel argument (scale_table.pack_scale_rows): the
    float32 rows s_q, s_k, s_v, out_scale (NaN for a non-finite group), sm_scale, then R, exp_M, req_M, l_M,
    acc_M."""
    s_v = scales.s_v.to(torch.float32)
    out_scale = torch.where(scales.finite, s_v, torch.full_like(s_v, float("nan")))
    return pack_scale_rows([scales.s_q, scales.s_k, s_v, out_scale, scales.sm_scale_f32],
                           [scales.rscale, scales.exp_m, scales.req_m, scales.l_m, scales.acc_m])


def paper_table_for_call(q, k, v, granularity: str, group: int, static_scales, softmax_scale) -> torch.Tensor:
    """The table of one call: two launches (amax, constants) for 'sample' and 'batch' on q, k, v of one
    shape; otherwise reference.qflash_paper.paper_scales' torch ops."""
    if granularity not in ("sample", "batch") or not (q.shape == k.shape == v.shape):
        from ..reference.qflash_paper import paper_scales

        return paper_table(paper_scales(q, k, v, granularity, group, static_scales, softmax_scale))
    from .amax import amax_per_z

    z, _, _, d = q.shape
    group_div = z if granularity == "batch" else group
    return paper_table_from_amax(amax_per_z(q, k, v, group_div), z, d, group_div, q.dtype, softmax_scale)


def paper_table_from_amax(amax: torch.Tensor, z: int, head_dim: int, group_div: int, dtype: torch.dtype,
                          softmax_scale=None) -> torch.Tensor:
    """The table from a (3, Z // group_div) float32 max|x| (exact values of `dtype`, inf for a non-finite
    group), in one launch."""
    factor = (1.0 / head_dim**0.5 if softmax_scale is None else softmax_scale) * c.PAPER_LOG2E
    factor_bits = struct.unpack("<q", struct.pack("<d", factor))[0]
    table = torch.empty((TABLE_ROWS, z), dtype=torch.int32, device=amax.device)
    _paper_constants_kernel[(triton.cdiv(z, CONSTANTS_BLOCK),)](
        amax, table.view(torch.float32), table, factor_bits, z, z // group_div, group_div,
        BLOCK=CONSTANTS_BLOCK, DTYPE=TL_DTYPES[dtype], RECIPROCAL=amax.device.type == "cuda", num_warps=4,
        enable_fp_fusion=False,
    )
    return table
