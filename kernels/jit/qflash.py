"""qflash in one Triton kernel, bit-exact with reference/qflash.py (the specification).

A program takes BLOCK_M query rows of one (z, h), or a head's last rows in a TAIL_M-row block. Q is
quantized to int8 as it is loaded; each key tile of KEY_TILE keys is quantized on load (or comes in
int8 from jit/quantize.py), scored with an int8 dot (int32), turned into 14-bit probabilities by the
integer exp2 (the per-element arithmetic: jit/qflash_arith.py), and accumulated by the integer online
softmax. Plain pointer arithmetic and masks only:
the same source runs on triton 3.6+ and in the interpreter (TRITON_INTERPRET=1, read at import).
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

from .. import constants as c
from .helpers import (
    ROW_EXP_DLIM, ROW_EXP_MUL, ROW_INV_C, ROW_INV_K, ROW_INV_Q, ROW_INV_V, ROW_OUT_SCALE, float_row, int_row,
    key_of_position, load_bias_mask, load_rows, quantize, round_clamped, store_rows,
)
from .qflash_arith import exp2_split, probabilities_doubled, probability_halves, reciprocal, rescale

KEY_TILE = c.KEY_TILE
EXP_ONE = tl.constexpr(1 << c.EXP_ONE_BITS)
FRAC_TOP_SHIFT = tl.constexpr(c.FRAC_TOP_SHIFT)
BIAS_INT_LIMIT = tl.constexpr(c.BIAS_INT_LIMIT)
NEG_BIAS_INT_LIMIT = tl.constexpr(-c.BIAS_INT_LIMIT)
NORM_SHIFT = tl.constexpr(c.RECIP_BITS - c.OUT_FRAC_BITS)
NORM_HALF = tl.constexpr(1 << (c.RECIP_BITS - c.OUT_FRAC_BITS - 1))
NEG_SCORE = tl.constexpr(c.NEG_SCORE)


@triton.jit
def _add_bias_mask(s, bias_head, mask_window, offs_m, keys, N, N_K, stride_bn, stride_bk, stride_mn, stride_mk, inv_c,
                   ROWS: tl.constexpr, KEYS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr):
    """s + round(clamp((bias + mask) * inv_c)): the additive terms in integer score units (NaN -> 0)."""
    if HAS_BIAS or HAS_MASK:
        b = load_bias_mask(bias_head, mask_window, offs_m, keys, N, N_K, stride_bn, stride_bk, stride_mn, stride_mk,
                           ROWS, KEYS, HAS_BIAS, HAS_MASK)
        t = b * inv_c
        t = tl.where(t == t, t, 0.0)
        t = tl.minimum(tl.maximum(t, NEG_BIAS_INT_LIMIT), BIAS_INT_LIMIT)
        s += round_clamped(t)
    return s


@triton.jit
def _accumulate_pv(acc, p_hi, p_lo, v, WIDE_ACC: tl.constexpr):
    """acc + p . V for p = 128 hi + lo, as two exact int8 dots (V's rows in operand order). An int32 acc takes
    128 * (hi . V) in one multiply-add per element and lo . V inside the second dot."""
    pv_hi = tl.dot(p_hi, v, out_dtype=tl.int32)
    if WIDE_ACC:
        acc += (pv_hi * 128 + tl.dot(p_lo, v, out_dtype=tl.int32)).to(acc.dtype)
    else:
        acc = tl.dot(p_lo, v, acc + pv_hi * 128, out_dtype=tl.int32)
    return acc


@triton.jit
def _store_normalized(o_head, acc, l_i, offs_m, offs_d, out_scale, N, stride_on, stride_od, HEAD_DIM: tl.constexpr):
    """acc / l with 8 fractional bits through one reciprocal per row, times s_v / 2**8, into the output."""
    o = (acc.to(tl.int64) * reciprocal(l_i)[:, None] + NORM_HALF) >> NORM_SHIFT
    out = o.to(tl.int32).to(tl.float32) * out_scale  # |o| <= 128 * 2**8: the low word, one 32-bit convert
    store_rows(o_head, out, offs_m, offs_d, N, stride_on, stride_od, HEAD_DIM)


@triton.jit
def _score_tile(q, k_head, bias_head, mask_window, offs_m, start, stride_kn, stride_kd, stride_bn, stride_bk,
                stride_mn, stride_mk, inv_k, inv_c, N, N_K, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                ROWS: tl.constexpr, BLOCK_N: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
                SCALES_FROM_X: tl.constexpr):
    """int8 Q.K^T of the key tile at `start` (+ bias and mask in integer score units), NEG_SCORE past N_K."""
    keys = start + tl.arange(0, BLOCK_N)
    key_ok = keys < N_K
    offs_d = tl.arange(0, BLOCK_D)
    kt_ptrs = k_head + keys[None, :] * stride_kn + offs_d[:, None] * stride_kd
    kt = quantize(tl.load(kt_ptrs, mask=(offs_d < HEAD_DIM)[:, None] & key_ok[None, :], other=0), inv_k, SCALES_FROM_X)
    s = _add_bias_mask(tl.dot(q, kt, out_dtype=tl.int32), bias_head, mask_window, offs_m, keys, N, N_K,
                       stride_bn, stride_bk, stride_mn, stride_mk, inv_c, ROWS, BLOCK_N, HAS_BIAS, HAS_MASK)
    if start + BLOCK_N > N_K:  # only the last tile holds keys past N_K
        s = tl.where(key_ok[None, :], s, NEG_SCORE)
    return s


@triton.jit
def _online_softmax_step(
    q, acc, l_i, m_i, start, offs_m, k_head, v_head, bias_head, mask_window,
    stride_kn, stride_kd, stride_vn, stride_vd, stride_bn, stride_bk, stride_mn, stride_mk,
    inv_k, inv_v, mul_top, neg_mul_top, exp_dlim, inv_c, N, N_K, N_V,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr, KEYS: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, WIDE_ACC: tl.constexpr, SCALES_FROM_X: tl.constexpr,
    V_OPERAND_ORDER: tl.constexpr,
):
    """One key tile at `start` of the integer online softmax: KEYS = KEY_TILE, or KEY_TILE / 2 for a last
    tile whose valid keys fit in its first half (the same bits: the keys it leaves out have p = 0)."""
    s = _score_tile(q, k_head, bias_head, mask_window, offs_m, start, stride_kn, stride_kd, stride_bn,
                    stride_bk, stride_mn, stride_mk, inv_k, inv_c, N, N_K, HEAD_DIM, BLOCK_D, ROWS, KEYS,
                    HAS_BIAS, HAS_MASK, SCALES_FROM_X)

    # -- 14-bit probabilities relative to the running max; rescale from the second tile on --
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    x1 = probabilities_doubled(m_new[:, None] - s, mul_top, neg_mul_top, exp_dlim)
    if start > 0:  # l and acc are still 0 in the first tile (Swin has only one)
        d_max = tl.minimum(m_new - m_i, exp_dlim)
        frac_a, whole_a = exp2_split(d_max, mul_top, neg_mul_top)
        alpha = tl.where(d_max == 0, EXP_ONE, (frac_a + ((1 << whole_a) >> 1)) >> whole_a)
        l_i = rescale(l_i, alpha)
        acc = rescale(acc, alpha[:, None])

    # -- P.V and the row sum --
    offs_n = tl.arange(0, KEYS)
    offs_d = tl.arange(0, BLOCK_D)
    v_rows = start + offs_n if V_OPERAND_ORDER else start + key_of_position(offs_n)
    v_ptrs = v_head + v_rows[:, None] * stride_vn + offs_d[None, :] * stride_vd
    v = quantize(tl.load(v_ptrs, mask=(v_rows < N_V)[:, None] & (offs_d < HEAD_DIM)[None, :], other=0), inv_v,
                 SCALES_FROM_X)
    p_hi, p_lo = probability_halves(x1, ROWS, KEYS)
    acc = _accumulate_pv(acc, p_hi, p_lo, v, WIDE_ACC)
    l_i += tl.sum(x1 >> 1, axis=1)
    return acc, l_i, m_new


@triton.jit
def _attend_kv_tiles(
    q, acc, m_i, offs_m, k_head, v_head, bias_head, mask_window,
    stride_kn, stride_kd, stride_vn, stride_vd, stride_bn, stride_bk, stride_mn, stride_mk,
    inv_k, inv_v, exp_mul, exp_dlim, inv_c, N, N_K, N_V,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, WIDE_ACC: tl.constexpr, SCALES_FROM_X: tl.constexpr,
    V_OPERAND_ORDER: tl.constexpr, HALF_LAST_TILE: tl.constexpr,
):
    """The integer online softmax of one query block over all N_K keys, KEY_TILE keys per step; with
    HALF_LAST_TILE (N_K % KEY_TILE in 1..KEY_TILE / 2) the last step computes half a tile."""
    mul_top = (exp_mul << FRAC_TOP_SHIFT).to(tl.uint32, bitcast=True)  # exp_mul * 2**6 < 2**32
    neg_mul_top = 0 - mul_top
    l_i = tl.zeros([ROWS], dtype=tl.int32)
    full_end = N_K - N_K % BLOCK_N if HALF_LAST_TILE else N_K
    for start in range(0, full_end, BLOCK_N):
        acc, l_i, m_i = _online_softmax_step(
            q, acc, l_i, m_i, start, offs_m, k_head, v_head, bias_head, mask_window,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_bn, stride_bk, stride_mn, stride_mk,
            inv_k, inv_v, mul_top, neg_mul_top, exp_dlim, inv_c, N, N_K, N_V,
            HEAD_DIM, BLOCK_D, ROWS, BLOCK_N, HAS_BIAS, HAS_MASK, WIDE_ACC, SCALES_FROM_X, V_OPERAND_ORDER)
    if HALF_LAST_TILE:
        acc, l_i, m_i = _online_softmax_step(
            q, acc, l_i, m_i, full_end, offs_m, k_head, v_head, bias_head, mask_window,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_bn, stride_bk, stride_mn, stride_mk,
            inv_k, inv_v, mul_top, neg_mul_top, exp_dlim, inv_c, N, N_K, N_V,
            HEAD_DIM, BLOCK_D, ROWS, BLOCK_N // 2, HAS_BIAS, HAS_MASK, WIDE_ACC, SCALES_FROM_X, V_OPERAND_ORDER)
    return acc, l_i


@triton.jit
def _attend_query_block(
    row_start, q_head, k_head, v_head, o_head, bias_head, mask_window,
    stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
    stride_bn, stride_bk, stride_mn, stride_mk,
    inv_q, inv_k, inv_v, exp_mul, exp_dlim, inv_c, out_scale, N, N_K, N_V,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, WIDE_ACC: tl.constexpr, SCALES_FROM_X: tl.constexpr,
    V_OPERAND_ORDER: tl.constexpr, HALF_LAST_TILE: tl.constexpr,
):
    """Rows row_start .. row_start + ROWS - 1 of one head: load Q, run the K/V loop, normalize, store."""
    offs_m = row_start + tl.arange(0, ROWS)
    offs_d = tl.arange(0, BLOCK_D)
    q = quantize(load_rows(q_head, offs_m, offs_d, N, stride_qn, stride_qd, HEAD_DIM), inv_q, SCALES_FROM_X)
    m_i = tl.full([ROWS], NEG_SCORE, dtype=tl.int32)
    acc = tl.zeros([ROWS, BLOCK_D], dtype=tl.int64 if WIDE_ACC else tl.int32)
    acc, l_i = _attend_kv_tiles(
        q, acc, m_i, offs_m, k_head, v_head, bias_head, mask_window,
        stride_kn, stride_kd, stride_vn, stride_vd, stride_bn, stride_bk, stride_mn, stride_mk,
        inv_k, inv_v, exp_mul, exp_dlim, inv_c, N, N_K, N_V,
        HEAD_DIM, BLOCK_D, ROWS, BLOCK_N, HAS_BIAS, HAS_MASK, WIDE_ACC, SCALES_FROM_X, V_OPERAND_ORDER,
        HALF_LAST_TILE,
    )
    _store_normalized(o_head, acc, l_i, offs_m, offs_d, out_scale, N, stride_on, stride_od, HEAD_DIM)


# Fixed launch shapes, measured in docs/performance.md ("qflash launch shapes"): BLOCK_M 64, one warpgroup,
# K/V double-buffered is the fastest shape on every paper workload, and the autotuner's own timing of such
# short kernels picks worse ones, so head dims <= 64 run it without the autotuner (no host bookkeeping).
FIXED_CONFIG = triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=2)
# heads of several key tiles (ViT) load K/V three tiles ahead; a single tile (Swin) gains nothing from it
FIXED_CONFIG_MULTI_TILE = triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=3)
# a single tile with Swin's bias or mask: no pipelining
FIXED_CONFIG_BIASED_TILE = triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=1)
# head dims past 128 (CaiT's talking heads, all heads side by side): small tiles, one stage, never autotuned
FIXED_CONFIG_WIDE_HEAD = triton.Config({"BLOCK_M": 32}, num_warps=4, num_stages=1)


def _launch_configs() -> list:
    """Launch shapes only (KEY_TILE is fixed, so every config computes the same bits); the interpreter,
    which cannot autotune, gets FIXED_CONFIG alone."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return [FIXED_CONFIG]
    return [FIXED_CONFIG] + [
        triton.Config({"BLOCK_M": bm}, num_warps=w, num_stages=st)
        for bm in (32, 64, 128) for w in (4, 8) for st in (1, 2)
        if not (bm == 32 and w == 8) and (bm, w, st) != (64, 4, 2)
    ]


def uses_fixed_config(head_dim: int, wide_acc: bool) -> bool:
    """D = 128 and long sequences (int64 accumulators) are autotuned; everything else runs a fixed config."""
    return head_dim > 128 or (head_dim <= 64 and not wide_acc)


def fixed_config(n: int, biased: bool, head_dim: int = 64) -> triton.Config:
    """The launch shape of rows of n keys, with or without bias / mask."""
    if head_dim > 128:
        return FIXED_CONFIG_WIDE_HEAD
    if n > KEY_TILE:
        return FIXED_CONFIG_MULTI_TILE
    return FIXED_CONFIG_BIASED_TILE if biased else FIXED_CONFIG


def _prune_configs(configs, named_args, **kwargs):
    # triton 3.6 on the H100 returned wrong results for BLOCK_M = 64 with 8 warps at D = 128 (found by the
    # bit-exact tests): never offer it
    if named_args.get("HEAD_DIM", kwargs.get("HEAD_DIM")) == 128:
        configs = [cfg for cfg in configs if not (cfg.kwargs["BLOCK_M"] == 64 and cfg.num_warps == 8)]
    return configs


@triton.autotune(configs=_launch_configs(), key=["N", "N_K", "HEAD_DIM", "HAS_BIAS", "HAS_MASK", "WIDE_ACC", "SCALES_FROM_X"],
                 prune_configs_by={"early_config_prune": _prune_configs})
@triton.jit(do_not_specialize=["Z"])
def qflash_fwd_kernel(
    Q, K, V, O, SCALES, BIAS, MASK,
    stride_qz, stride_qh, stride_qn, stride_qd,
    stride_kz, stride_kh, stride_kn, stride_kd,
    stride_vz, stride_vh, stride_vn, stride_vd,
    stride_oz, stride_oh, stride_on, stride_od,
    stride_bz, stride_bh, stride_bn, stride_bk,
    stride_mw, stride_mn, stride_mk,
    Z, H, N, N_K, N_V, NUM_WINDOWS, FIRST_ROW,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TAIL_M: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, WIDE_ACC: tl.constexpr, SCALES_FROM_X: tl.constexpr,
    V_OPERAND_ORDER: tl.constexpr, HALF_LAST_TILE: tl.constexpr,
):
    # -- set-up: this program's head, its pointers and its image's integer constants (rows of SCALES) --
    z = tl.program_id(0) // H
    h = tl.program_id(0) % H
    row_start = FIRST_ROW + tl.program_id(1) * BLOCK_M
    args = (
        Q + z * stride_qz + h * stride_qh, K + z * stride_kz + h * stride_kh,
        V + z * stride_vz + h * stride_vh, O + z * stride_oz + h * stride_oh,
        BIAS + z * stride_bz + h * stride_bh, MASK + (z % NUM_WINDOWS) * stride_mw,
        stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
        stride_bn, stride_bk, stride_mn, stride_mk,
        float_row(SCALES, ROW_INV_Q, z, Z), float_row(SCALES, ROW_INV_K, z, Z), float_row(SCALES, ROW_INV_V, z, Z),
        int_row(SCALES, ROW_EXP_MUL, z, Z), int_row(SCALES, ROW_EXP_DLIM, z, Z), float_row(SCALES, ROW_INV_C, z, Z),
        float_row(SCALES, ROW_OUT_SCALE, z, Z), N, N_K, N_V,
    )
    # -- one query block: a head's last rows in a TAIL_M-row block when at most TAIL_M remain (N = 197
    # computes 208 rows instead of 256), every other block BLOCK_M rows. The fixed launch shapes run the
    # tail blocks as a launch of their own (FIRST_ROW, one warp per 16 rows) and TAIL_M = 0 here --
    if TAIL_M > 0:
        if N - row_start <= TAIL_M:
            _attend_query_block(row_start, *args, HEAD_DIM, BLOCK_D, TAIL_M, BLOCK_N, HAS_BIAS, HAS_MASK, WIDE_ACC,
                                SCALES_FROM_X, V_OPERAND_ORDER, HALF_LAST_TILE)
            return
    _attend_query_block(row_start, *args, HEAD_DIM, BLOCK_D, BLOCK_M, BLOCK_N, HAS_BIAS, HAS_MASK, WIDE_ACC,
                        SCALES_FROM_X, V_OPERAND_ORDER, HALF_LAST_TILE)
