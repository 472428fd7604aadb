"""qflash's scales on CUDA in two launches: max|x| of Q, K, V, then every integer constant.

`amax_per_z` reduces each (z, h) slice, or chunks of whole rows when the heads of a row are contiguous
(timm's views of the qkv buffer), and folds it into slot z // group_div with an atomic max on the float
bits (non-negative floats order like their int32 bits); non-finite values count as +inf.
`_constants_kernel` computes what scales.scales_from_amax computes with torch, with the same IEEE
operations in the same order (divisions correctly rounded, no FMA contraction), so both paths give
identical bits (checked on the GPU by tests/kernels/test_qflash_kernel.py).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .. import constants as c
from ..scale_table import FLOAT_SCALE_ROWS, SCALE_ROWS, AttentionScales
from .helpers import QMAX, abs_max_fold, abs_max_init, abs_max_update, inverse_scale, tensor_of

EXP_DLIM_NUM = tl.constexpr(c.EXP_DLIM_NUMERATOR)
EXP_MUL_MAX = tl.constexpr(float(c.EXP_MUL_MAX))
OUT_STEP = tl.constexpr(2.0 ** -c.OUT_FRAC_BITS)


# Rows of one head per load, heads per program, warps per program: small programs keep the most loads in
# flight (docs/performance.md, "qflash op paths").
AMAX_ROWS = 32
AMAX_HEADS = 2
AMAX_WARPS = 2


@triton.jit(do_not_specialize=["ZH", "SLOTS"])
def _amax_kernel(Q, K, V, OUT, H, N, ZH, SLOTS, GROUP_DIV,
                 sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd,
                 HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HEADS: tl.constexpr):
    # HEADS consecutive (z, h) heads per program, each folded into its slot with an atomic max
    which = tl.program_id(1)
    base, sz, sh, sn, sd = tensor_of(which, Q, K, V, sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd)
    for j in range(HEADS):
        zh = tl.program_id(0) * HEADS + j
        if zh < ZH:
            z = zh // H
            best = abs_max_update(abs_max_init(Q, BLOCK_N, BLOCK_D), base + z * sz + (zh % H) * sh, sn, sd, N,
                                  HEAD_DIM, BLOCK_N, BLOCK_D)
            m = tl.max(tl.max(best, axis=1), axis=0).to(tl.float32)
            tl.atomic_max(OUT + which * SLOTS + z // GROUP_DIV, m.to(tl.int32, bitcast=True))


# Q/K/V as timm hands them, views of one (Z, N, 3, H, D) buffer: each tensor is Z * N rows of H * D
# contiguous values, and for windows (N <= 64) a program reads ROWS_CHUNK_BYTES of whole rows,
# ROWS_LOAD_ELEMENTS per load, instead of one head at a time; ViT sequences keep the per-head kernel, for
# which whole rows were slower (docs/performance.md, "qflash op paths").
ROWS_MAX_N = 64
ROWS_MAX_COLS = 4096  # H * D of one row: BLOCK_C columns per load
ROWS_LOAD_ELEMENTS = 4096
ROWS_CHUNK_BYTES = 32768
ROWS_WARPS = 4


@triton.jit(do_not_specialize=["SLOTS"])
def _amax_rows_kernel(Q, K, V, OUT, ROWS_PER_SLOT, CHUNKS_PER_SLOT, CHUNK_STEPS, SLOTS,
                      sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd,
                      COLS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    # one chunk of CHUNK_STEPS * BLOCK_R rows of slot `slot`, folded into it with an atomic max
    slot = tl.program_id(0) // CHUNKS_PER_SLOT
    which = tl.program_id(1)
    base, sz, sh, sn, sd = tensor_of(which, Q, K, V, sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd)
    first = (tl.program_id(0) % CHUNKS_PER_SLOT) * CHUNK_STEPS * BLOCK_R
    base += slot.to(tl.int64) * ROWS_PER_SLOT * sn
    offs_c = tl.arange(0, BLOCK_C)
    best = abs_max_init(Q, BLOCK_R, BLOCK_C)
    for i in range(CHUNK_STEPS):
        rows = first + i * BLOCK_R + tl.arange(0, BLOCK_R)
        ok = (rows[:, None] < ROWS_PER_SLOT) & (offs_c[None, :] < COLS)
        best = abs_max_fold(best, tl.load(base + rows[:, None].to(tl.int64) * sn + offs_c[None, :], mask=ok, other=0.0))
    m = tl.max(tl.max(best, axis=1), axis=0).to(tl.float32)
    tl.atomic_max(OUT + which * SLOTS + slot, m.to(tl.int32, bitcast=True))


def reads_whole_rows(q, k, v) -> bool:
    """amax_per_z takes the whole-row kernel: windows (N <= ROWS_MAX_N) in timm's qkv layout."""
    z, h, n, d = q.shape
    return n <= ROWS_MAX_N and h * d <= ROWS_MAX_COLS and all(_rows_contiguous(t) for t in (q, k, v))


def _rows_contiguous(t) -> bool:
    """Each image of t is N rows of H * D contiguous values (timm's q/k/v views of the qkv buffer)."""
    z, h, n, d = t.shape
    rows_apart = h == 1 or n == 1 or t.stride(2) >= h * d
    return t.stride(3) == 1 and t.stride(1) == d and t.stride(0) == n * t.stride(2) and rows_apart


def _amax_by_rows(q, k, v, out, group_div, load_elements=ROWS_LOAD_ELEMENTS, chunk_bytes=ROWS_CHUNK_BYTES):
    # (the tests shrink load_elements and chunk_bytes to make a slot span several programs)
    z, h, n, d = q.shape
    cols, slots = h * d, out.shape[1]
    block_c = triton.next_power_of_2(cols)
    block_r = max(1, load_elements // block_c)
    rows_per_slot = group_div * n
    load_bytes = block_r * cols * q.element_size()
    steps = max(1, min(triton.cdiv(rows_per_slot, block_r), chunk_bytes // load_bytes))
    chunks = triton.cdiv(rows_per_slot, steps * block_r)
    _amax_rows_kernel[(slots * chunks, 3)](
        q, k, v, out, rows_per_slot, chunks, steps, slots, *q.stride(), *k.stride(), *v.stride(),
        COLS=cols, BLOCK_R=block_r, BLOCK_C=block_c, num_warps=ROWS_WARPS)


# entries per program of the constants kernel: one size for every batch, so one compilation serves them all
CONSTANTS_BLOCK = 256


@triton.jit(do_not_specialize=["Z", "SLOTS"])
def _constants_kernel(AMAX, CONST64, F32, I32, Z, SLOTS, GROUP_DIV, BLOCK: tl.constexpr):
    z = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = z < Z
    slot = z // GROUP_DIV
    exp_k = tl.load(CONST64)  # log2(e) * 2**EXP_SHIFT / sqrt(D), float64
    sqrt_d = tl.load(CONST64 + 1).to(tl.float32)
    all_finite = ok
    for i in tl.static_range(3):
        a = tl.load(AMAX + i * SLOTS + slot, mask=ok, other=0).to(tl.float32, bitcast=True)
        finite = a < float("inf")
        a_eff = tl.where(finite & (a > 0), a, 1.0)
        tl.store(F32 + i * Z + z, inverse_scale(a), mask=ok)
        tl.store(F32 + (3 + i) * Z + z, tl.math.div_rn(a_eff, QMAX), mask=ok)
        all_finite = all_finite & finite
    s_q = tl.load(F32 + 3 * Z + z, mask=ok, other=1.0)
    s_k = tl.load(F32 + 4 * Z + z, mask=ok, other=1.0)
    s_v = tl.load(F32 + 5 * Z + z, mask=ok, other=1.0)
    c = s_q.to(tl.float64) * s_k.to(tl.float64)
    exp_mul = tl.minimum(tl.maximum(tl.floor(c * exp_k + 0.5), 1.0), EXP_MUL_MAX).to(tl.int64)
    tl.store(I32 + z, exp_mul.to(tl.int32), mask=ok)
    dlim = tl.full([BLOCK], EXP_DLIM_NUM, tl.int64) // exp_mul
    tl.store(I32 + Z + z, dlim.to(tl.int32), mask=ok)
    tl.store(F32 + 6 * Z + z, tl.math.div_rn(sqrt_d, s_q * s_k), mask=ok)
    tl.store(F32 + 7 * Z + z, tl.where(all_finite, s_v * OUT_STEP, float("nan")), mask=ok)


def amax_per_z(q, k, v, group_div: int = 1) -> torch.Tensor:
    """(3, Z // group_div) float32 max|x| of q, k, v over each group of group_div consecutive z."""
    z, h, n, d = q.shape
    slots = z // group_div
    out = torch.zeros((3, slots), dtype=torch.int32, device=q.device)
    if reads_whole_rows(q, k, v):
        _amax_by_rows(q, k, v, out, group_div)
        return out.view(torch.float32)
    block_n = max(16, min(AMAX_ROWS, triton.next_power_of_2(n)))
    _amax_kernel[(triton.cdiv(z * h, AMAX_HEADS), 3)](
        q, k, v, out, h, n, z * h, slots, group_div, *q.stride(), *k.stride(), *v.stride(),
        HEAD_DIM=d, BLOCK_N=block_n, BLOCK_D=triton.next_power_of_2(d), HEADS=AMAX_HEADS, num_warps=AMAX_WARPS)
    return out.view(torch.float32)


@functools.lru_cache(maxsize=None)
def _head_constants(head_dim: int, device: torch.device) -> torch.Tensor:
    exp_k, sqrt_d = c.head_constants(head_dim)
    return torch.tensor([exp_k, sqrt_d], dtype=torch.float64, device=device)


def fused_scales(q, k, v, granularity: str, group: int) -> AttentionScales:
    z = q.shape[0]
    group_div = z if granularity == "batch" else group
    return scales_from_amax_bits(amax_per_z(q, k, v, group_div), z, q.shape[3], group_div, granularity)


def scales_from_amax_bits(amax: torch.Tensor, z: int, head_dim: int, group_div: int,
                          granularity: str) -> AttentionScales:
    """Every constant from a (3, Z // group_div) float32 amax into one AttentionScales table, in one launch
    (rows 0-7 stored as float32 through F32, the int rows through I32)."""
    table = torch.empty((len(SCALE_ROWS), z), dtype=torch.int32, device=amax.device)
    block = CONSTANTS_BLOCK
    _constants_kernel[(triton.cdiv(z, block),)](
        amax, _head_constants(head_dim, amax.device), table.view(torch.float32), table[FLOAT_SCALE_ROWS:], z,
        z // group_div, group_div, BLOCK=block, num_warps=4, enable_fp_fusion=False,
    )
    return AttentionScales(table, granularity)
