"""ivit fused in Triton, bit-exact with reference/ivit.py (the specification); scores never reach memory.

Two kernels over int8 Q/K/V (quantized once by jit/quantize.py, the reference's bits):
1. `ivit_score_stats_kernel`: per (z, h, query block), max|score| over its rows and every key, and each
   row's max score; torch folds the first into the per-image score scale (no host sync). Requantization
   is monotone, so the row max of the int8 scores is the requantized row max.
2. `ivit_fwd_kernel`: a program takes BLOCK_M query rows of one (z, h). For N <= 256 every key sits in one
   tile: e once, its row sum, then the probabilities times V. Longer rows pass over the key tiles twice,
   recomputing the int8 Q.K^T tile (cheaper than storing N x N scores). Probabilities of up to 16 bits meet int8 V as two int8 halves:
   p = 256 hi + (lo' + 128), so P.V = 256 (hi.V) + lo'.V + 128 sum(V).
Scores are scaled, biased and requantized in float32 in the reference's order (no FMA); Shiftmax runs in
int32 (x0 >= -(2**15 - 1) keeps e below 2**31, and e f <= 2**31 - 1), its row sum in int64.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .. import constants as c
from ..scale_table import pack_scale_rows
from ..shapes import bias_view
from .helpers import (
    bias_mask_args, float_row, int_row, load_rows, program_rows, round_clamped, store_rows, to_operand_order,
)

QMAX = tl.constexpr(float(c.QMAX))
SHIFT_N = tl.constexpr(c.IVIT_SHIFTMAX_N)
INT31_MAX = tl.constexpr((1 << 31) - 1)
# rows of the fused kernel's per-image table (scale_table.pack_scale_rows): float32 rows, then x0 (int32)
ROW_SCORE_C, ROW_INV_SCORE, ROW_OUT_MULT, ROW_X0 = (tl.constexpr(i) for i in range(4))


@triton.jit
def _score_tile(q8, k_head, bias_head, mask_window, offs_m, keys, key_ok, score_c, N, N_K,
                stride_kn, stride_kd, stride_bn, stride_bk, stride_mn, stride_mk,
                HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr):
    """float32 scores of one (rows, keys) tile: (q8 . k8) c + bias + mask. Rows past N and keys past N_K read
    row N - 1 / key N_K - 1 of bias and mask (never stored, never weighted)."""
    offs_d = tl.arange(0, BLOCK_D)
    kt = tl.load(k_head + keys[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                 mask=(offs_d[:, None] < HEAD_DIM) & key_ok[None, :], other=0)
    s = tl.dot(q8, kt, out_dtype=tl.int32).to(tl.float32) * score_c
    rows_in = tl.minimum(offs_m, N - 1)[:, None]
    keys_in = tl.minimum(keys, N_K - 1)[None, :]
    if HAS_BIAS:
        s = s + tl.load(bias_head + rows_in * stride_bn + keys_in * stride_bk).to(tl.float32)
    if HAS_MASK:
        s = s + tl.load(mask_window + rows_in * stride_mn + keys_in * stride_mk).to(tl.float32)
    return s


@triton.jit
def _requantize(s, inv_score):
    """round(clamp(s * inv_score, -127, 127)) as int32, ties to even; NaN -> 0."""
    t = s * inv_score
    t = tl.where(t == t, t, 0.0)
    return round_clamped(tl.minimum(tl.maximum(t, -QMAX), QMAX))


@triton.jit
def _shiftmax_numerator(s8, row_max, x0, x0_reciprocal):
    """Shiftmax's e for int8 scores s8 below row_max, x0 = -1 doubling: int32, in [0, 2**31)."""
    x = s8 - row_max[:, None]
    x = x + (x >> 1) - (x >> 4)
    x = tl.maximum(x, x0 * SHIFT_N)
    # q = floor(x / x0) in [0, 15]: a float estimate, then one integer correction step either way
    q = tl.floor(x.to(tl.float32) * x0_reciprocal).to(tl.int32)
    q = tl.minimum(tl.maximum(q, 0), x0 * 0 + SHIFT_N)
    r = x - x0 * q
    q = tl.where(r > 0, q - 1, tl.where(r <= x0, q + 1, q))
    r = x - x0 * q
    return tl.maximum(((r - x0 * 2) << (q * -1 + SHIFT_N)) >> 1, 0)


@triton.jit
def _numerator_tile(q8, k_head, bias_head, mask_window, offs_m, start, score_c, inv_score, row_max, x0,
                    x0_reciprocal, N, N_K, stride_kn, stride_kd, stride_bn, stride_bk, stride_mn, stride_mk,
                    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr):
    """Shiftmax's e of the key tile at `start` (0 past N_K), with its keys and their validity."""
    keys = start + tl.arange(0, BLOCK_N)
    key_ok = keys < N_K
    s8 = _requantize(_score_tile(q8, k_head, bias_head, mask_window, offs_m, keys, key_ok, score_c, N, N_K,
                                 stride_kn, stride_kd, stride_bn, stride_bk, stride_mn, stride_mk,
                                 HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK), inv_score)
    e = tl.where(key_ok[None, :], _shiftmax_numerator(s8, row_max, x0, x0_reciprocal), 0)
    return e, keys, key_ok


@triton.jit
def _normaliser(row_sum, BLOCK_M: tl.constexpr):
    """f = floor((2**31 - 1) / row sum) as int32 (the sum is at least 1)."""
    return (tl.full([BLOCK_M], INT31_MAX, dtype=tl.int64) // tl.maximum(row_sum, 1)).to(tl.int32)


@triton.jit
def _probabilities_times_v(e, f, positions, v_head, offs_d, dim_ok, stride_vn, stride_vd, V_ROWS,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, OUTPUT_BITS: tl.constexpr):
    """p = (e f) >> (32 - bits) against int8 V as two int8 halves: (hi.V, lo'.V, sum V) of one key tile.
    V is quantize_qkv's: the key at each position in the P.V operand's order, so p is relabelled to match
    (helpers.to_operand_order) and the sum over keys is unchanged; positions past the keys hold 0."""
    p = (e * f[:, None]) >> (32 - OUTPUT_BITS)  # e <= row sum, so e f <= 2**31 - 1
    vt = tl.load(v_head + positions[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                 mask=(positions < V_ROWS)[:, None] & dim_ok[None, :], other=0)
    hi = to_operand_order((p >> 8).to(tl.int8), BLOCK_M, BLOCK_N)
    lo = to_operand_order(((p & 255) - 128).to(tl.int8), BLOCK_M, BLOCK_N)
    return (tl.dot(hi, vt, out_dtype=tl.int32), tl.dot(lo, vt, out_dtype=tl.int32), tl.sum(vt.to(tl.int32), axis=0))


@triton.jit
def ivit_score_stats_kernel(
    Q8, K8, BIAS, MASK, SCORE_C, AMAX, ROW_MAX,
    stride_qz, stride_qh, stride_qn, stride_qd,
    stride_kz, stride_kh, stride_kn, stride_kd,
    stride_bz, stride_bh, stride_bn, stride_bk,
    stride_mw, stride_mn, stride_mk,
    H, N, N_K, NUM_WINDOWS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
):
    z, h, offs_m, offs_d = program_rows(H, BLOCK_M, BLOCK_D)
    row_ok = offs_m < N
    q8 = load_rows(Q8 + z * stride_qz + h * stride_qh, offs_m, offs_d, N, stride_qn, stride_qd, HEAD_DIM)
    score_c = tl.load(SCORE_C + z)
    best = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    top = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    for start in range(0, N_K, BLOCK_N):
        keys = start + tl.arange(0, BLOCK_N)
        key_ok = keys < N_K
        s = _score_tile(q8, K8 + z * stride_kz + h * stride_kh, BIAS + z * stride_bz + h * stride_bh,
                        MASK + (z % NUM_WINDOWS) * stride_mw, offs_m, keys, key_ok, score_c, N, N_K,
                        stride_kn, stride_kd, stride_bn, stride_bk, stride_mn, stride_mk,
                        HEAD_DIM, BLOCK_D, HAS_BIAS, HAS_MASK)
        best = tl.maximum(best, tl.where(row_ok[:, None] & key_ok[None, :], tl.abs(s), 0.0))
        top = tl.maximum(top, tl.max(tl.where(key_ok[None, :], s, float("-inf")), axis=1))
    tl.store(AMAX + tl.program_id(0) * tl.num_programs(1) + tl.program_id(1), tl.max(tl.max(best, axis=1), axis=0))
    tl.store(ROW_MAX + tl.program_id(0) * N + offs_m, top, mask=row_ok)


@triton.jit(do_not_specialize=["Z"])
def ivit_fwd_kernel(
    Q8, K8, V8, O, BIAS, MASK, SCALES, ROW_MAX,
    stride_qz, stride_qh, stride_qn, stride_qd,
    stride_kz, stride_kh, stride_kn, stride_kd,
    stride_vz, stride_vh, stride_vn, stride_vd,
    stride_oz, stride_oh, stride_on, stride_od,
    stride_bz, stride_bh, stride_bn, stride_bk,
    stride_mw, stride_mn, stride_mk,
    Z, H, N, N_K, NUM_WINDOWS, V_ROWS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, OUTPUT_BITS: tl.constexpr, ONE_TILE: tl.constexpr,
):
    # -- set-up: this program's rows, its head's pointers, its image's constants, the int8 row max --
    z, h, offs_m, offs_d = program_rows(H, BLOCK_M, BLOCK_D)
    row_ok = offs_m < N
    dim_ok = offs_d < HEAD_DIM
    q8 = load_rows(Q8 + z * stride_qz + h * stride_qh, offs_m, offs_d, N, stride_qn, stride_qd, HEAD_DIM)
    k_head = K8 + z * stride_kz + h * stride_kh
    v_head = V8 + z * stride_vz + h * stride_vh
    bias_head = BIAS + z * stride_bz + h * stride_bh
    mask_window = MASK + (z % NUM_WINDOWS) * stride_mw
    score_c = float_row(SCALES, ROW_SCORE_C, z, Z)
    inv_score = float_row(SCALES, ROW_INV_SCORE, z, Z)
    x0 = int_row(SCALES, ROW_X0, z, Z)
    x0_reciprocal = 1.0 / x0.to(tl.float32)
    row_max = _requantize(tl.load(ROW_MAX + tl.program_id(0) * N + offs_m, mask=row_ok, other=0.0), inv_score)

    if ONE_TILE:
        # -- every key in one tile: e once, its row sum, then its probabilities times V --
        e, keys, key_ok = _numerator_tile(q8, k_head, bias_head, mask_window, offs_m, 0, score_c, inv_score,
                                          row_max, x0, x0_reciprocal, N, N_K, stride_kn, stride_kd, stride_bn, stride_bk,
                                          stride_mn, stride_mk, HEAD_DIM, BLOCK_D, BLOCK_N, HAS_BIAS, HAS_MASK)
        f = _normaliser(tl.sum(e.to(tl.int64), axis=1), BLOCK_M)
        acc_hi, acc_lo, v_sum = _probabilities_times_v(e, f, keys, v_head, offs_d, dim_ok, stride_vn, stride_vd,
                                                       V_ROWS, BLOCK_M, BLOCK_N, OUTPUT_BITS)
    else:
        # -- pass 1: Shiftmax's row sum, and the normalising factor f = floor((2**31 - 1) / sum) --
        row_sum = tl.zeros([BLOCK_M], dtype=tl.int64)
        for start in range(0, N_K, BLOCK_N):
            e, keys, key_ok = _numerator_tile(q8, k_head, bias_head, mask_window, offs_m, start, score_c,
                                              inv_score, row_max, x0, x0_reciprocal, N, N_K, stride_kn, stride_kd,
                                              stride_bn, stride_bk, stride_mn, stride_mk, HEAD_DIM, BLOCK_D, BLOCK_N,
                                              HAS_BIAS, HAS_MASK)
            row_sum += tl.sum(e.to(tl.int64), axis=1)
        f = _normaliser(row_sum, BLOCK_M)
        # -- pass 2: probabilities times V, the key tiles recomputed --
        acc_hi = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.int32)
        acc_lo = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.int32)
        v_sum = tl.zeros([BLOCK_D], dtype=tl.int32)
        for start in range(0, N_K, BLOCK_N):
            e, keys, key_ok = _numerator_tile(q8, k_head, bias_head, mask_window, offs_m, start, score_c,
                                              inv_score, row_max, x0, x0_reciprocal, N, N_K, stride_kn, stride_kd,
                                              stride_bn, stride_bk, stride_mn, stride_mk, HEAD_DIM, BLOCK_D, BLOCK_N,
                                              HAS_BIAS, HAS_MASK)
            hi, lo, vs = _probabilities_times_v(e, f, keys, v_head, offs_d, dim_ok, stride_vn, stride_vd, V_ROWS,
                                                BLOCK_M, BLOCK_N, OUTPUT_BITS)
            acc_hi += hi
            acc_lo += lo
            v_sum += vs

    # -- epilogue: the exact integer P.V (below 2**24) times s_v / 2**(bits - 1) in float32, then the dtype --
    acc = acc_hi * 256 + acc_lo + 128 * v_sum[None, :]
    out = acc.to(tl.float32) * float_row(SCALES, ROW_OUT_MULT, z, Z)
    store_rows(O + z * stride_oz + h * stride_oh, out, offs_m, offs_d, N, stride_on, stride_od, HEAD_DIM)


# (query rows, keys per tile, warps) per program; the bits do not depend on them
LAUNCH = (64, 32, 4)  # rows past 256 keys; the sweep is in docs/performance.md ("I-ViT launch shapes")
ONE_TILE_MAX_N = 256  # up to here every key of a row fits one tile: e is computed once
WIDE_HEAD_LAUNCH = (32, 32, 4)  # head dims past 128 (CaiT's talking heads): small tiles


def default_launch(n: int, head_dim: int = 64) -> tuple[int, int, int]:
    if head_dim > 128:
        return WIDE_HEAD_LAUNCH
    if n <= ONE_TILE_MAX_N:
        keys = max(32, triton.next_power_of_2(n))
        return (64 if keys <= 64 else 32), keys, 4
    return LAUNCH


def launch_ivit(q, k, v, scales, bias=None, mask=None, output_bits: int = 16, group: int = 1, launch=None):
    """Fused I-ViT attention of validated (Z, H, N, D) float tensors with their AttentionScales; returns a new
    (Z, H, N, D) tensor in q's dtype. `launch`: (BLOCK_M, BLOCK_N, num_warps), default_launch(N) if None."""
    import torch

    from ..reference.ivit import doubling_units, output_multiplier, score_constant, score_inverse_scale
    from ..scales import quantize_int8
    from .quantize import quantize_qkv

    z, h, n, d = q.shape
    n_k = k.shape[2]
    bias = bias_view(bias, q, k)
    if q.shape == k.shape:
        q8, k8, v8, v_rows = quantize_qkv(q, k, v, scales)  # one launch; the reference's quantize_int8 bits
    else:  # N_q != N_k: K and V in one launch, Q by torch (the same bits)
        _, k8, v8, v_rows = quantize_qkv(k, k, v, scales, quantize_q=False)
        q8 = quantize_int8(q, scales.inv_q).to(torch.int8)
    score_c = score_constant(scales, d).contiguous()
    b, mk, b_strides, m_strides, windows = bias_mask_args(bias, mask, score_c)
    block_m, block_n, warps = launch or default_launch(n_k, d)
    blocks = triton.cdiv(n, block_m)
    geometry = dict(HEAD_DIM=d, BLOCK_D=max(32, triton.next_power_of_2(d)), BLOCK_M=block_m, BLOCK_N=block_n,
                    HAS_BIAS=bias is not None, HAS_MASK=mask is not None)
    partial = torch.empty((z, h, blocks), dtype=torch.float32, device=q.device)
    row_max = torch.empty((z, h, n), dtype=torch.float32, device=q.device)
    ivit_score_stats_kernel[(z * h, blocks)](
        q8, k8, b, mk, score_c, partial, row_max, *q8.stride(), *k8.stride(), *b_strides, *m_strides, h, n, n_k, windows,
        **geometry, num_warps=warps, enable_fp_fusion=False,
    )
    inv_score = score_inverse_scale(partial.amax(dim=(1, 2)), scales.granularity, group)
    table = pack_scale_rows([score_c, inv_score, output_multiplier(scales, output_bits)], [doubling_units(inv_score)])
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    ivit_fwd_kernel[(z * h, blocks)](
        q8, k8, v8, out, b, mk, table, row_max,
        *q8.stride(), *k8.stride(), *v8.stride(), *out.stride(), *b_strides, *m_strides, z, h, n, n_k, windows, v_rows,
        **geometry, OUTPUT_BITS=output_bits, ONE_TILE=block_n >= n_k, num_warps=warps, enable_fp_fusion=False,
    )
    return out
