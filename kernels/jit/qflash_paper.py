"""qflash_paper in one Triton kernel, bit-exact with reference/qflash_paper.py (the specification).

A program takes 64 query rows of one (z, h) against 32-key tiles, the published kernel's key tile (part of
its online softmax's arithmetic). K and V are quantized once, by a pass that writes int8 with the published
rounding (the same function the kernel applies to Q as it loads it); Swin's bias and mask are read by index and converted as the published code
converts an additive mask; every constant is read per z from device memory (no host sync). Shift counts
are clamped to [0, 31] and float-to-int casts clamped first: the published kernel leaves both undefined.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .. import constants as c
from ..scales import pack_scale_rows
from ..shapes import bias_view
from .helpers import (
    bias_mask_args, float_row, int_row, load_bias_mask, load_rows, program_rows, round_clamped, store_rows,
    to_output_dtype,
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
# rows of paper_table: float32 rows first, then int32 rows
(ROW_S_Q, ROW_S_K, ROW_S_V, ROW_OUT_SCALE, ROW_SM_SCALE, ROW_RSCALE, ROW_EXP_M, ROW_REQ_M, ROW_L_M,
 ROW_ACC_M) = (tl.constexpr(i) for i in range(10))


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
    # x >> count with the published kernel's GPU meaning for counts outside [0, 31]: 0 or -1
    return x >> tl.where((count < 0) | (count > 31), 31, count)


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
        acc += tl.dot(p8, vt, out_dtype=tl.int32)
        m_i = m_new
    return acc, l_i


@triton.jit(do_not_specialize=["Z"])
def quantize_kv_kernel(K, V, OUT, SCALES, Z, H, N_K, skz, skh, skn, skd, svz, svh, svn, svd,
                       HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, DTYPE: tl.constexpr):
    # program (z * H + h, which): head h of image z of K (which 0) or V (1) to int8 at OUT[which, z, h]
    zh = tl.program_id(0)
    which = tl.program_id(1)
    z = zh // H
    h = zh % H
    if which == 0:
        base, sn, sd = K + z * skz + h * skh, skn, skd
    else:
        base, sn, sd = V + z * svz + h * svh, svn, svd
    s = float_row(SCALES, ROW_S_K + which, z, Z)
    out = OUT + (which * tl.num_programs(0) + zh).to(tl.int64) * N_K * HEAD_DIM
    offs_d = tl.arange(0, BLOCK_D)
    dim_ok = offs_d[None, :] < HEAD_DIM
    for start in range(0, N_K, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        ok = (offs_n[:, None] < N_K) & dim_ok
        x = tl.load(base + offs_n[:, None] * sn + offs_d[None, :] * sd, mask=ok, other=0.0)
        tl.store(out + offs_n[:, None] * HEAD_DIM + offs_d[None, :], _quantize(x, s, DTYPE), mask=ok)


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


def paper_table(scales):
    """PaperScales as one (10, Z) int32 kernel argument (scales.pack_scale_rows): the float32 rows
    s_q, s_k, s_v, out_scale (NaN for a non-finite group), sm_scale, then R, exp_M, req_M, l_M, acc_M."""
    import torch

    s_v = scales.s_v.to(torch.float32)
    out_scale = torch.where(scales.finite, s_v, torch.full_like(s_v, float("nan")))
    return pack_scale_rows([scales.s_q, scales.s_k, s_v, out_scale, scales.sm_scale_f32],
                           [scales.rscale, scales.exp_m, scales.req_m, scales.l_m, scales.acc_m])


def triton_paper_amax(q, k, v, granularity: str, group: int):
    """The (3, Z) per-z max|x| of q, k, v in their dtype from the amax kernel (jit/amax.py: one pass over
    timm's qkv views, where torch's reductions over those strided views take several), or None where the
    torch path takes them ('static', or q, k, v of different shapes). NaN reads as inf: the same scales."""
    if granularity not in ("sample", "batch") or not (q.shape == k.shape == v.shape):
        return None
    from .amax import amax_per_z

    z = q.shape[0]
    group_div = z if granularity == "batch" else group
    amax = amax_per_z(q, k, v, group_div)  # (3, Z // group_div) float32, exact
    return amax.unsqueeze(2).expand(3, z // group_div, group_div).reshape(3, z).to(q.dtype)


# query rows and warps per program: rows are independent, so any row count gives the same bits
QUERY_ROWS = 64
NUM_WARPS = 4
QUANTIZE_ROWS = 32  # key rows per step of the K/V pass: 81 us at A3 x 256 against 110 us with 64
QUANTIZE_WARPS = 4


def quantize_kv(k, v, table, dtype, rows: int = QUANTIZE_ROWS, num_warps: int = QUANTIZE_WARPS):
    """K and V of (Z, H, N_K, D) as one int8 (2, Z, H, N_K, D) tensor with the published rounding; each
    program of the attention kernel would otherwise quantize every K/V tile it reads again."""
    import torch

    z, h, n_k, d = k.shape
    kv8 = torch.empty((2, z, h, n_k, d), dtype=torch.int8, device=k.device)
    quantize_kv_kernel[(z * h, 2)](
        k, v, kv8, table, z, h, n_k, *k.stride(), *v.stride(),
        HEAD_DIM=d, BLOCK_D=triton.next_power_of_2(d), BLOCK_N=rows, DTYPE=dtype, num_warps=num_warps,
    )
    return kv8[0], kv8[1]


def launch_qflash_paper(q, k, v, out, scales, bias=None, mask=None):
    """Run the kernel on validated (Z, H, N, D) float tensors with reference.qflash_paper.PaperScales;
    `out` (q's dtype and shape) is written in place and returned."""
    import torch

    z, h, n, d = q.shape
    bias = bias_view(bias, q, k)
    table = paper_table(scales)
    b, mk, b_strides, m_strides, windows = bias_mask_args(bias, mask, table)
    dtype = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}[q.dtype]
    k8, v8 = quantize_kv(k, v, table, dtype)
    grid = (z * h, triton.cdiv(n, QUERY_ROWS))
    qflash_paper_fwd_kernel[grid](
        q, k8, v8, out, table, b, mk,
        *q.stride(), *k8.stride(), *v8.stride(), *out.stride(), *b_strides, *m_strides,
        z, h, n, k.shape[2], windows,
        HEAD_DIM=d, BLOCK_D=max(32, triton.next_power_of_2(d)), BLOCK_M=QUERY_ROWS,
        BLOCK_N=c.PAPER_KEY_TILE, HAS_BIAS=bias is not None, HAS_MASK=mask is not None, DTYPE=dtype,
        num_warps=NUM_WARPS, num_stages=2 if d <= 128 else 1, enable_fp_fusion=False,
    )
    return out
