"""QFlash: integer FlashAttention in one Triton kernel, bit-exact with `reference.qflash_reference`.

One program handles BLOCK_M query rows of one (z, h). Q is quantized to int8 on load; each key tile of
KEY_TILE keys is quantized on load, scored with an int8 dot (int32), turned into 14-bit probabilities
by the integer exp2, and accumulated with an integer online softmax (see reference.py for the
algorithm in words). Plain pointer arithmetic and masks only, so the same source runs on triton 3.6+,
newer releases and the interpreter (TRITON_INTERPRET=1, read when this module is imported).
"""
from __future__ import annotations

import os
import struct

import triton
import triton.language as tl

from . import reference as ref
from . import quant

# Globals read inside @triton.jit must be tl.constexpr instances (triton 3.6 refuses annotated ones),
# and derived values are precomputed: the interpreter cannot mix plain ints with constexpr objects.
KEY_TILE = ref.KEY_TILE
EXP_POLY_A = tl.constexpr(ref.EXP_POLY_A)
EXP_POLY_B = tl.constexpr(ref.EXP_POLY_B)
EXP_ONE = tl.constexpr(1 << ref.EXP_ONE_BITS)
FRAC_BASE = tl.constexpr(1 << ref.P_BITS)
FRAC_TOP_SHIFT = tl.constexpr(ref.FRAC_TOP_SHIFT)
EXP_SHIFT = tl.constexpr(quant.EXP_SHIFT)
QMAX = tl.constexpr(float(quant.QMAX))
BIAS_INT_LIMIT = tl.constexpr(quant.BIAS_INT_LIMIT)
NEG_BIAS_INT_LIMIT = tl.constexpr(-quant.BIAS_INT_LIMIT)
NEG_QMAX = tl.constexpr(-float(quant.QMAX))
ROUND_MAGIC = tl.constexpr(quant.ROUND_MAGIC)
ROUND_MAGIC_BITS = tl.constexpr(struct.unpack("<i", struct.pack("<f", quant.ROUND_MAGIC))[0])
EXP_ONE_BITS = tl.constexpr(ref.EXP_ONE_BITS)
RECIP_ONE = tl.constexpr(1 << ref.RECIP_BITS)
NORM_SHIFT = tl.constexpr(ref.RECIP_BITS - quant.OUT_FRAC_BITS)
NORM_HALF = tl.constexpr(1 << (ref.RECIP_BITS - quant.OUT_FRAC_BITS - 1))
# Largest N for which |acc| <= P_MAX * 127 * N fits in int32; longer sequences use int64 accumulators.
INT32_ACC_MAX_N = ((1 << 31) - 1) // (ref.P_MAX * quant.QMAX)
NEG_SCORE = tl.constexpr(ref.NEG_SCORE)  # initial running max and masked keys (p = 0 without a select)


@triton.jit
def _round_clamped(t):
    # round(t) for |t| <= 2**22, ties to even as torch.round: adding 1.5 * 2**23 leaves the integer in
    # the low mantissa bits. The caller's clamp sits between any product and this add, so no FMA forms.
    return (t + ROUND_MAGIC).to(tl.int32, bitcast=True) - ROUND_MAGIC_BITS


@triton.jit
def _quantize(x, inv_scale, SCALES_FROM_X: tl.constexpr = False):
    # SCALES_FROM_X: inv_scale is 127 / max|x| of x's own group (capped at the largest float), so a finite
    # product is within 127 (1 + 2**-23) and rounds into [-127, 127] without the lower clamp, and a NaN
    # product means a non-finite value in the group, whose out_scale is NaN: every output of the group is
    # NaN whatever its integers, so no NaN select either. The upper clamp stays: it keeps the product and
    # the rounding add apart (fused into one FMA they would round once, not twice).
    if x.dtype == tl.int8:  # already quantized by the caller
        q = x
    else:
        t = x.to(tl.float32) * inv_scale
        if SCALES_FROM_X:
            t = tl.minimum(t, QMAX)
        else:
            t = tl.where(t == t, t, 0.0)
            t = tl.minimum(tl.maximum(t, NEG_QMAX), QMAX)
        q = _round_clamped(t).to(tl.int8)
    return q


@triton.jit
def _exp2_split(d, exp_mul, neg_mul_top):
    # reference.exp2_split on 32-bit words. y = d * exp_mul < 21 * 2**26 gives whole = y >> 26, and
    # d * exp_mul * 2**6 wraps to the fraction of y at the top of a word: u = ~that, one IMAD. The two
    # polynomial products are IMAD.HI with the constant folded in. Multiplies run on the FMA pipe and
    # leave the integer ALU pipe to shifts, max and packing (the ALU pipe was the bottleneck).
    # (whole as the high word of d * exp_mul * 2**6, one IMAD.HI instead of IMAD + shift, has fewer
    # instructions but ran 4 % slower on the H100.)
    whole = (d * exp_mul) >> EXP_SHIFT
    u = d.to(tl.uint32, bitcast=True) * neg_mul_top + 0xFFFFFFFF
    inner = EXP_POLY_A + tl.umulhi(u, EXP_POLY_B)
    frac = FRAC_BASE + tl.umulhi(u, inner)
    return frac.to(tl.int32, bitcast=True), whole


@triton.jit
def _to_operand_order(x, ROWS: tl.constexpr, KEYS: tl.constexpr):
    # Columns (keys) 16g + 8j + 2c + e to 16g + 4c + 2j + e. In the tensor cores' accumulator layout a
    # thread holds key pairs 2c, 8 + 2c of each 16; the 8-bit operand of the P.V dot wants 4c .. 4c + 3:
    # relabelled this way the probabilities are already where the operand wants them (no shuffles
    # between threads), and V's rows are read in the same order (_key_of_position), so P.V is unchanged.
    x = tl.reshape(x, [ROWS, KEYS // 16, 2, 4, 2])
    return tl.reshape(tl.permute(x, (0, 1, 3, 2, 4)), [ROWS, KEYS])


@triton.jit
def _key_of_position(r):
    # the key at position r of _to_operand_order: 16g + 4c + 2j + e -> 16g + 8j + 2c + e
    return (r & -16) | (((r >> 1) & 1) << 3) | (((r >> 2) & 3) << 1) | (r & 1)


@triton.jit
def _rescale(x, alpha):
    # floor(x * alpha / 2**15): one 32 x 32 -> 64-bit product and one funnel shift; fits in x's type.
    return ((x.to(tl.int64) * alpha) >> EXP_ONE_BITS).to(x.dtype)


@triton.jit
def _reciprocal(l):
    # floor((2**40 + floor(l / 2)) / max(l, 1)) for int32 l, as int64. The float64 quotient of the exact
    # operands (num < 2**41) is within 2**-12 of the true one, so its floor is off by at most one, and one
    # remainder test on each side fixes it: no 64-bit integer division (a 72-instruction call per row).
    den = tl.maximum(l, 1).to(tl.int64)
    num = RECIP_ONE + (l >> 1).to(tl.int64)
    q = (num.to(tl.float64) / den.to(tl.float64)).to(tl.int64)
    r = num - q * den
    return q - (r < 0).to(tl.int64) + (r >= den).to(tl.int64)


@triton.jit
def _to_output_dtype(x, dtype: tl.constexpr):
    if dtype == tl.bfloat16:
        # round to nearest even on the bits: the interpreter's own fp32 -> bf16 cast truncates
        bits = x.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
        x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)


# BLOCK_M 64, one warpgroup, K/V double-buffered: the fastest launch shape on every paper workload
# (A1-A7 at batch 8-256, int8 and float inputs, with and without bias: measured on the H100, every
# config in one process, 2026-11-22) and never more than 10 % off the best. Short kernels made the
# autotuner's own timing pick configs up to 2x slower, so head dims <= 64 always use this one, launched
# without the autotuner (whose per-call bookkeeping is host time on launch-bound calls).
FIXED_CONFIG = triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=2)
# Heads of several key tiles (ViT) load K/V three tiles ahead: ViT-B at 256 images 0.335 -> 0.307 ms,
# DeiT-T 0.080 -> 0.078 ms (int8 in, H100, 2026-11-23); with a single tile (Swin) the third buffer
# only costs (0-2 %).
FIXED_CONFIG_MULTI_TILE = triton.Config({"BLOCK_M": 64}, num_warps=4, num_stages=3)


def _launch_configs() -> list:
    """Launch shapes only: KEY_TILE is fixed, so every config computes the same bits.

    The interpreter gets one config (it cannot autotune); it is also the GPU's FIXED_CONFIG.
    """
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return [FIXED_CONFIG]
    return [FIXED_CONFIG] + [
        triton.Config({"BLOCK_M": bm}, num_warps=w, num_stages=st)
        for bm in (32, 64, 128) for w in (4, 8) for st in (1, 2)
        if not (bm == 32 and w == 8) and (bm, w, st) != (64, 4, 2)
    ]


def _uses_fixed_config(head_dim: int, wide_acc: bool) -> bool:
    # D = 128 and long sequences (int64 accumulators) are autotuned
    return head_dim <= 64 and not wide_acc


def _prune_configs(configs, named_args, **kwargs):
    # triton 3.6 on the H100 returned wrong results for BLOCK_M=64 with 8 warps at D=128 (found by
    # tests/test_qflash_kernel.py and a config sweep on the GPU); never offer it.
    if named_args.get("HEAD_DIM", kwargs.get("HEAD_DIM")) == 128:
        configs = [c for c in configs if not (c.kwargs["BLOCK_M"] == 64 and c.num_warps == 8)]
    return configs


@triton.jit
def _attend_rows(
    row_start, q_head, k_head, v_head, o_head, bias_head, mask_window,
    stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
    stride_bn, stride_bk, stride_mn, stride_mk,
    inv_q, inv_k, inv_v, exp_mul, exp_dlim, inv_c, out_scale, N, N_V,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, WIDE_ACC: tl.constexpr, SCALES_FROM_X: tl.constexpr,
    V_OPERAND_ORDER: tl.constexpr,
):
    """Query rows row_start .. row_start + ROWS - 1 of one head against all N keys; *_head point at the
    head's first row, bias_head at its (N, N) bias, mask_window at its window's (N, N) mask."""
    offs_m = row_start + tl.arange(0, ROWS)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < N
    dim_ok = offs_d < HEAD_DIM

    q_ptrs = q_head + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd
    q = _quantize(tl.load(q_ptrs, mask=row_ok[:, None] & dim_ok[None, :], other=0), inv_q, SCALES_FROM_X)
    neg_mul_top = 0 - (exp_mul << FRAC_TOP_SHIFT).to(tl.uint32, bitcast=True)  # exp_mul * 2**6 < 2**32
    m_i = tl.full([ROWS], NEG_SCORE, dtype=tl.int32)
    l_i = tl.zeros([ROWS], dtype=tl.int32)
    acc = tl.zeros([ROWS, BLOCK_D], dtype=tl.int64 if WIDE_ACC else tl.int32)
    for start in range(0, N, BLOCK_N):
        keys = start + offs_n
        key_ok = keys < N
        kt_ptrs = k_head + keys[None, :] * stride_kn + offs_d[:, None] * stride_kd
        kt = _quantize(tl.load(kt_ptrs, mask=dim_ok[:, None] & key_ok[None, :], other=0), inv_k, SCALES_FROM_X)
        s = tl.dot(q, kt, out_dtype=tl.int32)
        if HAS_BIAS or HAS_MASK:
            # rows and keys past N read row / key N - 1 instead of a masked load: those rows are never
            # stored and those keys are replaced by NEG_SCORE below
            rows_in = tl.minimum(offs_m, N - 1)[:, None]
            keys_in = tl.minimum(keys, N - 1)[None, :]
            b = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
            if HAS_BIAS:
                b += tl.load(bias_head + rows_in * stride_bn + keys_in * stride_bk).to(tl.float32)
            if HAS_MASK:
                b += tl.load(mask_window + rows_in * stride_mn + keys_in * stride_mk).to(tl.float32)
            t = b * inv_c
            t = tl.where(t == t, t, 0.0)
            t = tl.minimum(tl.maximum(t, NEG_BIAS_INT_LIMIT), BIAS_INT_LIMIT)
            s += _round_clamped(t)
        if start + BLOCK_N > N:  # only the last tile holds keys past N
            s = tl.where(key_ok[None, :], s, NEG_SCORE)

        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        frac, whole = _exp2_split(tl.minimum(m_new[:, None] - s, exp_dlim), exp_mul, neg_mul_top)
        p = ((frac >> whole) + 1) >> 1
        if start > 0:  # l and acc are still 0 in the first key tile: nothing to rescale (Swin: one tile)
            d_max = tl.minimum(m_new - m_i, exp_dlim)
            frac_a, whole_a = _exp2_split(d_max, exp_mul, neg_mul_top)
            alpha = tl.where(d_max == 0, EXP_ONE, (frac_a + ((1 << whole_a) >> 1)) >> whole_a)
            l_i = _rescale(l_i, alpha)
            acc = _rescale(acc, alpha[:, None])

        # V's rows in the operand order of P: stored that way already (quantize_triton), or read so
        v_rows = keys if V_OPERAND_ORDER else start + _key_of_position(offs_n)
        v_ptrs = v_head + v_rows[:, None] * stride_vn + offs_d[None, :] * stride_vd
        v = _quantize(tl.load(v_ptrs, mask=(v_rows < N_V)[:, None] & dim_ok[None, :], other=0), inv_v, SCALES_FROM_X)
        # p = 128 * hi + lo with 7-bit halves: two exact int8 dots give the 14-bit product.
        p_hi = _to_operand_order((p >> 7).to(tl.int8), ROWS, BLOCK_N)
        p_lo = _to_operand_order((p & 127).to(tl.int8), ROWS, BLOCK_N)
        # (acc + 128 * hi.V as the lo dot's accumulator saves an add per element but ran 0-2 % slower)
        pv = tl.dot(p_hi, v, out_dtype=tl.int32) * 128
        pv += tl.dot(p_lo, v, out_dtype=tl.int32)
        acc += pv.to(acc.dtype)
        l_i += tl.sum(p, axis=1)
        m_i = m_new

    recip = _reciprocal(l_i)
    o = (acc.to(tl.int64) * recip[:, None] + NORM_HALF) >> NORM_SHIFT
    out = o.to(tl.int32).to(tl.float32) * out_scale  # |o| <= 128 * 2**8: the low word, one 32-bit convert
    o_ptrs = o_head + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od
    tl.store(o_ptrs, _to_output_dtype(out, o_head.dtype.element_ty), mask=row_ok[:, None] & dim_ok[None, :])


@triton.autotune(configs=_launch_configs(), key=["N", "HEAD_DIM", "HAS_BIAS", "HAS_MASK", "WIDE_ACC", "SCALES_FROM_X", "GRID_CLASS"],
                 prune_configs_by={"early_config_prune": _prune_configs})
@triton.jit
def qflash_fwd_kernel(
    Q, K, V, O,
    INV_Q, INV_K, INV_V, EXP_MUL, EXP_DLIM, INV_C, OUT_SCALE,
    BIAS, MASK,
    stride_qz, stride_qh, stride_qn, stride_qd,
    stride_kz, stride_kh, stride_kn, stride_kd,
    stride_vz, stride_vh, stride_vn, stride_vd,
    stride_oz, stride_oh, stride_on, stride_od,
    stride_bh, stride_bn, stride_bk,
    stride_mw, stride_mn, stride_mk,
    H, N, N_V, NUM_WINDOWS, GRID_CLASS,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TAIL_M: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, WIDE_ACC: tl.constexpr, SCALES_FROM_X: tl.constexpr,
    V_OPERAND_ORDER: tl.constexpr,
):
    # One program: BLOCK_M query rows of one (z, h), or, for the last rows of a head when at most
    # TAIL_M (< BLOCK_M) remain, a TAIL_M-row block: N = 197 computes 208 rows instead of 256.
    z = tl.program_id(0) // H
    h = tl.program_id(0) % H
    row_start = tl.program_id(1) * BLOCK_M
    args = (
        Q + z * stride_qz + h * stride_qh, K + z * stride_kz + h * stride_kh,
        V + z * stride_vz + h * stride_vh, O + z * stride_oz + h * stride_oh,
        BIAS + h * stride_bh, MASK + (z % NUM_WINDOWS) * stride_mw,
        stride_qn, stride_qd, stride_kn, stride_kd, stride_vn, stride_vd, stride_on, stride_od,
        stride_bn, stride_bk, stride_mn, stride_mk,
        tl.load(INV_Q + z), tl.load(INV_K + z), tl.load(INV_V + z), tl.load(EXP_MUL + z), tl.load(EXP_DLIM + z),
        tl.load(INV_C + z), tl.load(OUT_SCALE + z), N, N_V,
    )
    if TAIL_M > 0 and TAIL_M < BLOCK_M:
        if N - row_start <= TAIL_M:
            _attend_rows(row_start, *args, HEAD_DIM, BLOCK_D, TAIL_M, BLOCK_N, HAS_BIAS, HAS_MASK, WIDE_ACC,
                         SCALES_FROM_X, V_OPERAND_ORDER)
        else:
            _attend_rows(row_start, *args, HEAD_DIM, BLOCK_D, BLOCK_M, BLOCK_N, HAS_BIAS, HAS_MASK, WIDE_ACC,
                         SCALES_FROM_X, V_OPERAND_ORDER)
    else:
        _attend_rows(row_start, *args, HEAD_DIM, BLOCK_D, BLOCK_M, BLOCK_N, HAS_BIAS, HAS_MASK, WIDE_ACC,
                     SCALES_FROM_X, V_OPERAND_ORDER)


def tail_rows(n: int) -> int:
    """Rows (16 or 32) of the block that takes a head's last n % 64 rows when at most 32 remain (0: none).

    A tl.dot needs at least 16 rows; 64-row programs cover the rest.
    """
    tail = n % 64
    if tail == 0:
        return 0
    return 16 if tail <= 16 else 32 if tail <= 32 else 0


def launch_qflash(q, k, v, out, scales, bias=None, mask=None, v_rows=None, scales_from_inputs=False):
    """Run the kernel on validated (Z, H, N, D) tensors; `out` is written in place.

    scales_from_inputs: the scales are the amax scales ('sample' or 'batch') of these very q, k, v, so
    float inputs need no clamp or NaN test as they are quantized (see _quantize).

    v_rows: rows of v's storage along N that may be read (>= N, zero past N), as quantize_qkv returns;
    given, v is quantize_qkv's v as well: each group of 16 keys stored in the P.V operand's order
    (quantize_triton.operand_key_order). The default None reads exactly v, keys in their own order.
    """
    z, h, n, d = q.shape
    v_operand_order = v_rows is not None
    v_rows = n if v_rows is None else v_rows
    block_d = max(32, triton.next_power_of_2(d))  # int8 dots need K >= 32: smaller heads are zero-padded
    dummy = scales.inv_c  # never read when the flag is off
    b = bias if bias is not None else dummy
    mk = mask if mask is not None else dummy
    b_strides = bias.stride() if bias is not None else (0, 0, 0)
    m_strides = mask.stride() if mask is not None else (0, 0, 0)
    windows = mask.shape[0] if mask is not None else 1
    # Tuning key only (the kernel ignores it): a launch of a few programs and one that fills the GPU
    # want different shapes. 2 and 3 specialize alike, so this never compiles anything twice.
    grid_class = 3 if z * h * triton.cdiv(n, 64) >= 1024 else 2

    def grid(meta):
        return (z * h, triton.cdiv(n, meta["BLOCK_M"]))

    wide_acc = n > INT32_ACC_MAX_N
    kernel, launch_options = qflash_fwd_kernel, {}
    if _uses_fixed_config(d, wide_acc):  # straight to the jit function: no autotuner on the host path
        config = FIXED_CONFIG_MULTI_TILE if n > KEY_TILE else FIXED_CONFIG
        kernel, launch_options = qflash_fwd_kernel.fn, config.all_kwargs()
    kernel[grid](
        q, k, v, out,
        scales.inv_q, scales.inv_k, scales.inv_v, scales.exp_mul, scales.exp_dlim, scales.inv_c,
        scales.out_scale, b, mk,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *b_strides, *m_strides,
        h, n, v_rows, windows, grid_class,
        HEAD_DIM=d, BLOCK_D=block_d, BLOCK_N=KEY_TILE, TAIL_M=tail_rows(n),
        HAS_BIAS=bias is not None, HAS_MASK=mask is not None, WIDE_ACC=wide_acc,
        SCALES_FROM_X=scales_from_inputs, V_OPERAND_ORDER=v_operand_order, **launch_options,
    )
    return out
