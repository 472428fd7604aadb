"""qflash_paper in one Triton kernel, bit-exact with reference/qflash_paper.py (the specification).

A program takes 64 query rows (32 past D = 128) of one (z, h) against 32-key tiles, the published kernel's
key tile (part of its online softmax's arithmetic). K and V are quantized once, by a pass that writes int8
with the published rounding (the same function the kernel applies to Q as it loads it); Swin's bias and mask
are read by index and converted as the published code converts an additive mask; every constant is read per
z from the call's table (jit/paper_scales.py, no host sync). Shift counts are clamped to [0, 31] and
float-to-int casts clamped first: the published kernel leaves both undefined.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .. import constants as c
from ..shapes import bias_view
from .helpers import (
    bias_mask_args, float_row, int_row, load_bias_mask, load_rows, program_rows, round_clamped, store_rows,
    to_output_dtype,
)
from .paper_scales import (
    ROW_ACC_M, ROW_EXP_M, ROW_L_M, ROW_OUT_SCALE, ROW_REQ_M, ROW_RSCALE, ROW_S_K, ROW_S_Q, ROW_SM_SCALE, TL_DTYPES,
)

PAPER_SHIFT = tl.constexpr(c.PAPER_SHIFT)
RELEASE_SHIFT = tl.constexpr(c.PAPER_RELEASE_SHIFT)
RELEASE_HALF = tl.constexpr(1 << (c.PAPER_RELEASE_SHIFT - 1))
REQ_HALF = tl.constexpr(1 << (c.PAPER_SHIFT - 1))
NEG_INF = tl.constexpr(c.PAPER_NEG_INF)
BIAS_LIMIT = tl.constexpr(float(-c.PAPER_NEG_INF))
NEG_BIAS_LIMIT = tl.constexpr(float(c.PAPER_NEG_INF))
MASKED_BELOW = tl.constexpr(c.PAPER_MASKED_BELOW)
LOG2E = tl.constexpr(c.PAPER_LOG2E)
QMIN = tl.constexpr(float(c.PAPER_QMIN))
QMAX = tl.constexpr(float(c.PAPER_QMAX))
QUOTIENT_LIMIT = tl.constexpr(2.0**31)
INT32_MAX = tl.constexpr(2**31 - 1)
INT32_MIN = tl.constexpr(-(2**31))


@triton.jit
def _in_dtype(x, dtype: tl.constexpr):
    """float32 x rounded to dtype and back: the published code computes these steps in the model dtype."""
    return to_output_dtype(x, dtype).to(tl.float32)


@triton.jit
def _quantize(x, s, dtype: tl.constexpr):
    # clamp(round(x / s), -128, 127): the quotient in the dtype, rounded to even; clamping first is the same
    t = _in_dtype(tl.math.div_rn(x.to(tl.float32), s), dtype)
    t = tl.where(t == t, t, 0.0)
    return round_clamped(tl.minimum(tl.maximum(t, QMIN), QMAX)).to(tl.int8)


@triton.jit
def _float_to_int32_gpu(x):
    # reference.float_to_int32_gpu: toward zero, saturating at the int32 limits, NaN -> 0, written out so
    # that the interpreter (INT_MIN for all of them) computes the GPU's bits
    high = x >= QUOTIENT_LIMIT
    low = x < -QUOTIENT_LIMIT
    inside = tl.where((x >= -QUOTIENT_LIMIT) & (x < QUOTIENT_LIMIT), x, 0.0).to(tl.int32)
    return tl.where(high, INT32_MAX, tl.where(low, INT32_MIN, inside))


@triton.jit
def _shift_right(x, count):
    # x >> count with the published kernel's GPU meaning for counts outside [0, 31]: 0 or -1 (a negative
    # count read as unsigned is above 31, so one unsigned min clamps both ends)
    return x >> tl.minimum(count.to(tl.uint32, bitcast=True), 31).to(tl.int32, bitcast=True)


@triton.jit
def _exp2(x, rscale, exp_m):
    # 2**(x / R) at scale 1/R for x <= 0: q = (x exp_M) >> 16, r = x + q R, ((r >> 1) + R) >> q, in int32
    q = (x * exp_m) >> PAPER_SHIFT
    r = x + q * rscale
    return _shift_right((r >> 1) + rscale, q)


@triton.jit
def _release(x, alpha, mult):
    # (x alpha mult + 2**29) >> 30 in int64, kept as int32
    return ((x.to(tl.int64) * alpha * mult + RELEASE_HALF) >> RELEASE_SHIFT).to(tl.int32)


@triton.jit
def _attend_kv_tiles(
    q, acc, l_i, m_i, offs_m, k_head, v_head, bias_head, mask_window,
    stride_kn, stride_kd, stride_vn, stride_vd, stride_bn, stride_bk, stride_mn, stride_mk,
    rscale, exp_m, req_m, l_m, acc_m, sm_scale, N, N_K,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, DTYPE: tl.constexpr,
):
    """The published online softmax of one query block over all N_K int8 keys, BLOCK_N keys per step."""
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    dim_ok = offs_d < HEAD_DIM
    for start in range(0, N_K, BLOCK_N):
        # -- scores: int8 Q.K^T, plus the converted bias + mask; keys past N_K score -2**20 --
        keys = start + offs_n
        key_ok = keys < N_K
        kt = tl.load(k_head + keys[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=dim_ok[:, None] & key_ok[None, :], other=0)
        s = tl.dot(q, kt, out_dtype=tl.int32)
        if HAS_BIAS or HAS_MASK:
            total = _in_dtype(load_bias_mask(bias_head, mask_window, offs_m, keys, N, N_K, stride_bn, stride_bk, stride_mn,
                                             stride_mk, BLOCK_M, BLOCK_N, HAS_BIAS, HAS_MASK), DTYPE)
            units = _in_dtype(tl.math.div_rn(_in_dtype(total * LOG2E, DTYPE), sm_scale), DTYPE)
            units = tl.where(units == units, units, 0.0)
            units = round_clamped(tl.minimum(tl.maximum(units, NEG_BIAS_LIMIT), BIAS_LIMIT))
            s += tl.where(total < MASKED_BELOW, NEG_INF, units)
        s = tl.where(key_ok[None, :], s, NEG_INF)

        # -- linear exp2, 7-bit probabilities, scale release of l and acc --
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = _exp2(s - m_new[:, None], rscale, exp_m)
        p8 = ((p * req_m + REQ_HALF) >> PAPER_SHIFT).to(tl.int8)
        alpha = _exp2(m_i - m_new, rscale, exp_m)
        l_i = _release(l_i, alpha, l_m) + tl.sum(p8.to(tl.int32), axis=1)
        acc = _release(acc, alpha[:, None], acc_m)
        vt = tl.load(v_head + keys[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                     mask=key_ok[:, None] & dim_ok[None, :], other=0)
        acc = tl.dot(p8, vt, acc, out_dtype=tl.int32)
        m_i = m_new
    return acc, l_i


@triton.jit(do_not_specialize=["Z"])
def quantize_kv_kernel(K, V, OUT, SCALES, Z, H, N_K, skz, skh, skn, skd, svz, svh, svn, svd,
                       HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr, DTYPE: tl.constexpr):
    # program (block, which): BLOCK_R consecutive rows of the (Z * H * N_K) rows of K (which 0) or V (1), each
    # with its image's scale, to int8 at OUT[which]
    which = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    total = Z * H * N_K
    z = rows // (H * N_K)
    if which == 0:
        base, sz, sh, sn, sd = K, skz, skh, skn, skd
    else:
        base, sz, sh, sn, sd = V, svz, svh, svn, svd
    row_ok = rows < total
    s = tl.load(SCALES + (ROW_S_K + which) * Z + z, mask=row_ok, other=0).to(tl.float32, bitcast=True)
    offs_d = tl.arange(0, BLOCK_D)
    ok = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    row_base = z.to(tl.int64) * sz + ((rows // N_K) % H) * sh + (rows % N_K) * sn
    x = tl.load(base + row_base[:, None] + offs_d[None, :] * sd, mask=ok, other=0.0)
    out = OUT + which.to(tl.int64) * total * HEAD_DIM + rows.to(tl.int64)[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(out, _quantize(x, s[:, None], DTYPE), mask=ok)


@triton.jit(do_not_specialize=["Z"])
def qflash_paper_fwd_kernel(
    Q, K, V, O, SCALES, BIAS, MASK,
    stride_qz, stride_qh, stride_qn, stride_qd,
    stride_kz, stride_kh, stride_kn, stride_kd,
    stride_vz, stride_vh, stride_vn, stride_vd,
    stride_oz, stride_oh, stride_on, stride_od,
    stride_bz, stride_bh, stride_bn, stride_bk,
    stride_mw, stride_mn, stride_mk,
    Z, H, N, N_K, NUM_WINDOWS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, DTYPE: tl.constexpr,
):
    # -- set-up: this program's rows, its head's pointers, its image's constants; Q quantized on load --
    z, h, offs_m, offs_d = program_rows(H, BLOCK_M, BLOCK_D)
    q = load_rows(Q + z * stride_qz + h * stride_qh, offs_m, offs_d, N, stride_qn, stride_qd, HEAD_DIM)
    q = _quantize(q, float_row(SCALES, ROW_S_Q, z, Z), DTYPE)
    m_i = tl.full([BLOCK_M], NEG_INF, dtype=tl.int32)
    l_i = tl.full([BLOCK_M], 1, dtype=tl.int32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.int32)
    acc, l_i = _attend_kv_tiles(
        q, acc, l_i, m_i, offs_m, K + z * stride_kz + h * stride_kh, V + z * stride_vz + h * stride_vh,
        BIAS + z * stride_bz + h * stride_bh, MASK + (z % NUM_WINDOWS) * stride_mw,
        stride_kn, stride_kd, stride_vn, stride_vd, stride_bn, stride_bk, stride_mn, stride_mk,
        int_row(SCALES, ROW_RSCALE, z, Z),
        int_row(SCALES, ROW_EXP_M, z, Z), int_row(SCALES, ROW_REQ_M, z, Z), int_row(SCALES, ROW_L_M, z, Z),
        int_row(SCALES, ROW_ACC_M, z, Z), float_row(SCALES, ROW_SM_SCALE, z, Z), N, N_K,
        HEAD_DIM, BLOCK_D, BLOCK_M, BLOCK_N, HAS_BIAS, HAS_MASK, DTYPE,
    )
    # -- epilogue: int8(trunc(acc / l)) times s_v, in the model dtype; l as it is (0 or negative where the
    # published arithmetic broke down), the float -> int32 step saturating as on the GPU --
    quotient = tl.math.div_rn(acc.to(tl.float32), l_i.to(tl.float32)[:, None])
    o8 = _float_to_int32_gpu(quotient).to(tl.int8)
    out = o8.to(tl.float32) * float_row(SCALES, ROW_OUT_SCALE, z, Z)
    store_rows(O + z * stride_oz + h * stride_oh, out, offs_m, offs_d, N, stride_on, stride_od, HEAD_DIM)


# query rows, warps and pipeline stages per program (rows are independent: any row count gives the same bits)
QUERY_ROWS = 64
NUM_WARPS = 4
NUM_STAGES = 3  # 0.454 ms at A3 x 256 against 0.497 with 2 (H200)
# head dims past 128, as qflash's wide-head config: 64 rows x 4 warps at BLOCK_D >= 512 computed wrong columns
# and read out of bounds on the H200 (triton 3.6); 32 rows and one stage are right at every D up to 1024
WIDE_HEAD_QUERY_ROWS = 32
WIDE_HEAD_STAGES = 1
QUANTIZE_ROWS = 64  # rows per program of the K/V pass: 75 us at A3 x 256 against 81 us looping per head
QUANTIZE_WARPS = 4


def quantize_kv(k, v, table, dtype, rows: int = QUANTIZE_ROWS, num_warps: int = QUANTIZE_WARPS):
    """K and V of (Z, H, N_K, D) as one int8 (2, Z, H, N_K, D) tensor with the published rounding; each
    program of the attention kernel would otherwise quantize every K/V tile it reads again."""
    import torch

    z, h, n_k, d = k.shape
    kv8 = torch.empty((2, z, h, n_k, d), dtype=torch.int8, device=k.device)
    quantize_kv_kernel[(triton.cdiv(z * h * n_k, rows), 2)](
        k, v, kv8, table, z, h, n_k, *k.stride(), *v.stride(),
        HEAD_DIM=d, BLOCK_D=triton.next_power_of_2(d), BLOCK_R=rows, DTYPE=dtype, num_warps=num_warps,
    )
    return kv8[0], kv8[1]


def launch_qflash_paper(q, k, v, out, table, bias=None, mask=None):
    """Run the kernel on validated (Z, H, N, D) float tensors with the call's (10, Z) table
    (jit/paper_scales.py); `out` (q's dtype and shape) is written in place and returned."""
    import torch

    z, h, n, d = q.shape
    bias = bias_view(bias, q, k)
    b, mk, b_strides, m_strides, windows = bias_mask_args(bias, mask, table)
    dtype = TL_DTYPES[q.dtype]
    k8, v8 = quantize_kv(k, v, table, dtype)
    rows, stages = (QUERY_ROWS, NUM_STAGES) if d <= 128 else (WIDE_HEAD_QUERY_ROWS, WIDE_HEAD_STAGES)
    grid = (z * h, triton.cdiv(n, rows))
    qflash_paper_fwd_kernel[grid](
        q, k8, v8, out, table, b, mk,
        *q.stride(), *k8.stride(), *v8.stride(), *out.stride(), *b_strides, *m_strides,
        z, h, n, k.shape[2], windows,
        HEAD_DIM=d, BLOCK_D=max(32, triton.next_power_of_2(d)), BLOCK_M=rows,
        BLOCK_N=c.PAPER_KEY_TILE, HAS_BIAS=bias is not None, HAS_MASK=mask is not None, DTYPE=dtype,
        num_warps=NUM_WARPS, num_stages=stages, enable_fp_fusion=False,
    )
    return out
