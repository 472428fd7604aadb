"""Triton helpers shared by the kernels: the constants as constexpr, rounding and quantization, operand order,
tensor selection and max|x| folding.

Globals read inside @triton.jit must be tl.constexpr instances (triton 3.6 refuses annotated ones), and
derived values are precomputed here: the interpreter cannot mix plain ints with constexpr objects.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .. import constants as c
from ..scale_table import FLOAT_SCALE_ROWS, SCALE_ROWS

QMAX = tl.constexpr(float(c.QMAX))
NEG_QMAX = tl.constexpr(-float(c.QMAX))
FLOAT32_MAX = tl.constexpr(c.FLOAT32_MAX)
ROUND_MAGIC = tl.constexpr(c.ROUND_MAGIC)
ROUND_MAGIC_BITS = tl.constexpr(c.ROUND_MAGIC_BITS)
# rows of scale_table.AttentionScales.table, the one per-image argument of the qflash kernels
ROW_INV_Q, ROW_INV_K, ROW_INV_V, ROW_S_Q, ROW_S_K, ROW_S_V, ROW_INV_C, ROW_OUT_SCALE, ROW_EXP_MUL, ROW_EXP_DLIM = (
    tl.constexpr(SCALE_ROWS.index(name)) for name in (
        "inv_q", "inv_k", "inv_v", "s_q", "s_k", "s_v", "inv_c", "out_scale", "exp_mul", "exp_dlim"))
assert ROW_EXP_MUL.value == FLOAT_SCALE_ROWS  # the rows before it are float32


def bias_mask_args(bias, mask, dummy):
    """(bias, mask, bias strides, mask strides, windows) as kernel arguments of every launcher: bias a
    (Z, H, N_q, N_k) view (4 strides, 0 where it broadcasts), mask (W, N_q, N_k); `dummy` stands in for an
    absent one (never read: its HAS_ flag is off)."""
    return (bias if bias is not None else dummy, mask if mask is not None else dummy,
            bias.stride() if bias is not None else (0, 0, 0, 0), mask.stride() if mask is not None else (0, 0, 0),
            mask.shape[0] if mask is not None else 1)


@triton.jit
def float_row(TABLE, row, z, Z):
    """Entry z of float32 row `row` of a (rows, Z) int32 table (scale_table.pack_scale_rows)."""
    return tl.load(TABLE + row * Z + z).to(tl.float32, bitcast=True)


@triton.jit
def int_row(TABLE, row, z, Z):
    """Entry z of int32 row `row` of a (rows, Z) int32 table."""
    return tl.load(TABLE + row * Z + z)


@triton.jit
def round_clamped(t):
    """round(t) for |t| <= 2**22, ties to even as torch.round: adding 1.5 * 2**23 leaves the integer in the
    low mantissa bits. The caller's clamp sits between any product and this add, so no FMA forms."""
    return (t + ROUND_MAGIC).to(tl.int32, bitcast=True) - ROUND_MAGIC_BITS


@triton.jit
def quantize(x, inv_scale, SCALES_FROM_X: tl.constexpr = False):
    """x to int8 as scales.quantize_int8 does; int8 x is returned as it is.

    SCALES_FROM_X: inv_scale is 127 / max|x| of x's own group (capped at the largest float), so a finite
    product rounds into [-127, 127] without the lower clamp, and a NaN product means a non-finite value in
    the group, whose out_scale is NaN (every output of the group is NaN): no NaN select either. The upper
    clamp stays: it keeps the product and the rounding add apart (one FMA would round once, not twice).
    """
    if x.dtype == tl.int8:
        q = x
    else:
        t = x.to(tl.float32) * inv_scale
        if SCALES_FROM_X:
            t = tl.minimum(t, QMAX)
        else:
            t = tl.where(t == t, t, 0.0)
            t = tl.minimum(tl.maximum(t, NEG_QMAX), QMAX)
        q = round_clamped(t).to(tl.int8)
    return q


@triton.jit
def to_operand_order(x, ROWS: tl.constexpr, KEYS: tl.constexpr):
    """Columns (keys) 16g + 8j + 2c + e to 16g + 4c + 2j + e.

    In the tensor cores' accumulator layout a thread holds key pairs 2c, 8 + 2c of each 16; the 8-bit
    operand of the P.V dot wants 4c .. 4c + 3. Relabelled this way the probabilities already sit where the
    operand wants them (no shuffles between threads); V's rows are read in the same order
    (key_of_position), so P.V is unchanged.
    """
    x = tl.reshape(x, [ROWS, KEYS // 16, 2, 4, 2])
    return tl.reshape(tl.permute(x, (0, 1, 3, 2, 4)), [ROWS, KEYS])


@triton.jit
def key_of_position(r):
    """The key at position r of to_operand_order: 16g + 4c + 2j + e -> 16g + 8j + 2c + e."""
    return (r & -16) | (((r >> 1) & 1) << 3) | (((r >> 2) & 3) << 1) | (r & 1)


@triton.jit
def to_output_dtype(x, dtype: tl.constexpr):
    """float32 -> dtype, rounding to nearest even (the interpreter's own fp32 -> bf16 cast truncates)."""
    if dtype == tl.bfloat16:
        bits = x.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
        x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)


@triton.jit
def program_rows(H, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """(z, h, query rows, head-dim offsets) of a program in the (Z * H, query blocks) grid."""
    z = tl.program_id(0) // H
    h = tl.program_id(0) % H
    return z, h, tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M), tl.arange(0, BLOCK_D)


@triton.jit
def load_rows(head, offs_m, offs_d, N, stride_n, stride_d, HEAD_DIM: tl.constexpr):
    """Rows offs_m of one head's (N, D) matrix, 0 past N and past HEAD_DIM."""
    return tl.load(head + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d,
                   mask=(offs_m < N)[:, None] & (offs_d < HEAD_DIM)[None, :], other=0)


@triton.jit
def store_rows(head, x, offs_m, offs_d, N, stride_n, stride_d, HEAD_DIM: tl.constexpr):
    """float32 x into rows offs_m (< N) of one head's (N, D) output, in the output's dtype."""
    tl.store(head + offs_m[:, None] * stride_n + offs_d[None, :] * stride_d, to_output_dtype(x, head.dtype.element_ty),
             mask=(offs_m < N)[:, None] & (offs_d < HEAD_DIM)[None, :])


@triton.jit
def load_bias_mask(bias_head, mask_window, offs_m, keys, N, N_K, stride_bn, stride_bk, stride_mn, stride_mk,
                   ROWS: tl.constexpr, BLOCK_N: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr):
    """bias + mask of one (rows, keys) tile in float32, read by index. Rows past N and keys past N_K read row
    N - 1 / key N_K - 1 instead of a masked load: those rows are never stored and the callers give those keys
    no weight."""
    rows_in = tl.minimum(offs_m, N - 1)[:, None]
    keys_in = tl.minimum(keys, N_K - 1)[None, :]
    total = tl.zeros([ROWS, BLOCK_N], dtype=tl.float32)
    if HAS_BIAS:
        total += tl.load(bias_head + rows_in * stride_bn + keys_in * stride_bk).to(tl.float32)
    if HAS_MASK:
        total += tl.load(mask_window + rows_in * stride_mn + keys_in * stride_mk).to(tl.float32)
    return total


@triton.jit
def tensor_of(which, Q, K, V, sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd):
    """Q (which = 0), K (1) or V (2): its pointer and its z, h, n, d strides."""
    if which == 0:
        base, sz, sh, sn, sd = Q, sqz, sqh, sqn, sqd
    elif which == 1:
        base, sz, sh, sn, sd = K, skz, skh, skn, skd
    else:
        base, sz, sh, sn, sd = V, svz, svh, svn, svd
    return base, sz, sh, sn, sd


@triton.jit
def program_head(H, Q, K, V, sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd, FIRST: tl.constexpr):
    """For a grid (Z * H, 3 - FIRST): which tensor (0 = Q, 1 = K, 2 = V, from FIRST on), the program's
    z * H + h and z, the start of its head and that head's row and column strides."""
    zh = tl.program_id(0)
    which = tl.program_id(1) + FIRST
    z = zh // H
    base, sz, sh, sn, sd = tensor_of(which, Q, K, V, sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd)
    return which, zh, z, base + z * sz + (zh % H) * sh, sn, sd


@triton.jit
def abs_max_init(X, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """A zero running max for X's dtype: |x| and max are exact, so fp16 stays fp16 (half the registers)."""
    if X.dtype.element_ty == tl.float16:
        best = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float16)
    else:
        best = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    return best


@triton.jit
def abs_max_fold(best, x):
    """max(best, |x|) elementwise; NaN counts as +inf."""
    a = tl.abs(x).to(best.dtype)
    return tl.maximum(best, tl.where(a == a, a, float("inf")))


@triton.jit
def abs_max_update(best, base, sn, sd, N, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Elementwise running max of |x| over the N rows of one head."""
    offs_d = tl.arange(0, BLOCK_D)
    for start in range(0, N, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        ok = (offs_n[:, None] < N) & (offs_d[None, :] < HEAD_DIM)
        best = abs_max_fold(best, tl.load(base + offs_n[:, None] * sn + offs_d[None, :] * sd, mask=ok, other=0.0))
    return best


@triton.jit
def inverse_scale(amax):
    """127 / amax (correctly rounded, as torch divides) capped at the largest float: 127 for an all-zero
    tensor, 0 for inf or NaN."""
    finite = amax < float("inf")
    inv = tl.minimum(tl.math.div_rn(QMAX, tl.where(finite & (amax > 0), amax, 1.0)), FLOAT32_MAX)
    return tl.where(finite, inv, 0.0)
