"""qflash's int8 pass: Q, K, V to int8 in one launch with the kernel's own rounding (bit-identical to
quantizing on load), laid out for the attention kernel.

The attention kernel can quantize float inputs as it loads them, but then every query block quantizes
every key and value tile again (N / BLOCK_M times); one pass that writes int8 costs 3 bytes per element
of memory traffic instead. `scales_and_int8_qkv` also finds the per-image amax in the same launch: one
program per image and tensor reads its tensor twice, the second time mostly from L2. Q is read by one
query block only, so the op leaves it in float (quantize_q=False) and the kernel quantizes it on load.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..scales import AttentionScales
from .amax import scales_from_amax_bits
from .helpers import (
    ROW_INV_Q, abs_max_init, abs_max_update, float_row, inverse_scale, program_head, quantize, tensor_of,
    to_operand_order,
)


@triton.jit
def _quantize_rows(base, sn, sd, out, out_sn, out_sd, rows, N, inv_scale,
                   HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   OPERAND_ORDER: tl.constexpr = False):
    # rows 0..rows-1 of one head to int8 at out; rows past N read as 0. OPERAND_ORDER: each group of 16
    # rows stored in the order in which the attention kernel's P.V operand holds the keys
    offs_d = tl.arange(0, BLOCK_D)
    dim_ok = offs_d[None, :] < HEAD_DIM
    for start in range(0, rows, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        x = tl.load(base + offs_n[:, None] * sn + offs_d[None, :] * sd, mask=(offs_n[:, None] < N) & dim_ok, other=0.0)
        x = quantize(x, inv_scale)
        if OPERAND_ORDER:
            x = tl.trans(to_operand_order(tl.trans(x), BLOCK_D, BLOCK_N))
        tl.store(out + offs_n[:, None] * out_sn + offs_d[None, :] * out_sd, x, mask=(offs_n[:, None] < rows) & dim_ok)


@triton.jit
def _quantize_head(which, zh, base, sn, sd, QK_OUT, VT_OUT, ZH, N, N_PAD, inv_scale,
                   HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, FIRST: tl.constexpr):
    # FIRST = 1: Q stays in float (the attention kernel quantizes it on load) and QK_OUT holds K alone
    if which == 2:
        # V transposed to (D, N_PAD), keys contiguous, each 16 in the P.V operand's order: as the dot
        # reads its operand from shared memory. Padding keys hold 0 (their probability is 0 as well).
        out = VT_OUT + zh.to(tl.int64) * HEAD_DIM * N_PAD
        _quantize_rows(base, sn, sd, out, 1, N_PAD, N_PAD, N, inv_scale, HEAD_DIM, BLOCK_N, BLOCK_D, True)
    else:
        out = QK_OUT + ((which - FIRST) * ZH + zh).to(tl.int64) * N * HEAD_DIM
        _quantize_rows(base, sn, sd, out, HEAD_DIM, 1, N, N, inv_scale, HEAD_DIM, BLOCK_N, BLOCK_D)


@triton.jit(do_not_specialize=["Z"])
def _quantize_qkv_kernel(Q, K, V, QK_OUT, VT_OUT, SCALES, Z, H, N, N_PAD,
                         sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd,
                         HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                         FIRST: tl.constexpr):
    which, zh, z, base, sn, sd = program_head(H, Q, K, V, sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd,
                                              FIRST)
    # the inverse scales of Q, K, V are rows 0, 1, 2 of the scales table (helpers.ROW_INV_Q + which)
    _quantize_head(which, zh, base, sn, sd, QK_OUT, VT_OUT, tl.num_programs(0), N, N_PAD,
                   float_row(SCALES, ROW_INV_Q + which, z, Z), HEAD_DIM, BLOCK_N, BLOCK_D, FIRST)


@triton.jit(do_not_specialize=["Z"])
def _amax_quantize_qkv_kernel(Q, K, V, QK_OUT, VT_OUT, AMAX, Z, H, N, N_PAD,
                              sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd,
                              HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                              FIRST: tl.constexpr):
    # one program per (image z, tensor): max|x| over all heads, then every head from tensor FIRST on to int8
    z = tl.program_id(0)
    which = tl.program_id(1)
    base, sz, sh, sn, sd = tensor_of(which, Q, K, V, sqz, sqh, sqn, sqd, skz, skh, skn, skd, svz, svh, svn, svd)
    base += z * sz
    best = abs_max_init(Q, BLOCK_N, BLOCK_D)
    for h in range(H):
        best = abs_max_update(best, base + h * sh, sn, sd, N, HEAD_DIM, BLOCK_N, BLOCK_D)
    amax = tl.max(tl.max(best, axis=1), axis=0).to(tl.float32)
    tl.store(AMAX + which * Z + z, amax.to(tl.int32, bitcast=True))
    inv_scale = inverse_scale(amax)
    for i in range(H if which >= FIRST else 0):
        h = H - 1 - i  # the heads read last first: they are the likeliest to be still in L2
        _quantize_head(which, z * H + h, base + h * sh, sn, sd, QK_OUT, VT_OUT, Z * H, N, N_PAD, inv_scale,
                       HEAD_DIM, BLOCK_N, BLOCK_D, FIRST)


V_ROW_MULTIPLE = 16  # keys of the transposed V are padded to this (whole 16-byte vectors)


def _int8_buffers(q, quantize_q):
    z, h, n, d = q.shape
    n_pad = triton.cdiv(n, V_ROW_MULTIPLE) * V_ROW_MULTIPLE
    qk = torch.empty((2 if quantize_q else 1, z, h, n, d), dtype=torch.int8, device=q.device)
    vt = torch.empty((z, h, d, n_pad), dtype=torch.int8, device=q.device)
    return qk, vt, n_pad


def operand_key_order(n_pad: int) -> torch.Tensor:
    """The key stored at each of the n_pad positions of quantize_qkv's V (a multiple of 16): in each group of
    16, position 4c + 2j + e holds key 8j + 2c + e (helpers.to_operand_order)."""
    pos = torch.arange(n_pad)
    return (pos & -16) | (((pos >> 1) & 1) << 3) | (((pos >> 2) & 3) << 1) | (pos & 1)


def v_in_key_order(v8: torch.Tensor, v_rows: int) -> torch.Tensor:
    """quantize_qkv's v8 with its keys back in their own order: (Z, H, N, D), a copy."""
    z, h, n, d = v8.shape
    padded = torch.as_strided(v8, (z, h, v_rows, d), v8.stride())
    by_key = torch.empty_like(padded)
    by_key[:, :, operand_key_order(v_rows).to(v8.device)] = padded
    return by_key[:, :, :n]


def _int8_views(q, qk, vt, n, n_pad):
    q_out = qk[0] if qk.shape[0] == 2 else q
    return q_out, qk[-1], vt.transpose(2, 3)[:, :, :n], n_pad


def quantize_qkv(q, k, v, scales, quantize_q: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """int8 copies of q, k, v quantized with the per-z scales, laid out for the attention kernel.

    Returns (q8, k8, v8, v_rows): q8, k8 contiguous (Z, H, N, D); v8 a (Z, H, N, D) view of a
    (Z, H, D, v_rows) tensor whose position i holds key operand_key_order(v_rows)[i], zero for keys N and
    past (launch_qflash reads it with v_operand_order=True and v_rows).
    quantize_q=False returns q itself as q8: the kernel reads every query row once, so quantizing Q as it
    loads costs less than a pass that writes int8 Q and a kernel that reads it back.
    """
    z, h, n, d = q.shape
    qk, vt, n_pad = _int8_buffers(q, quantize_q)
    first = 0 if quantize_q else 1
    block_n = max(16, min(64, triton.next_power_of_2(n)))
    _quantize_qkv_kernel[(z * h, 3 - first)](
        q, k, v, qk, vt, scales.table, z, h, n, n_pad,
        *q.stride(), *k.stride(), *v.stride(),
        HEAD_DIM=d, BLOCK_N=block_n, BLOCK_D=triton.next_power_of_2(d), FIRST=first, num_warps=4,
    )
    return _int8_views(q, qk, vt, n, n_pad)


# rows per step and warps of the one-pass kernel's programs (one per image and tensor): the best of the
# shapes measured in docs/performance.md ("qflash op paths")
ONE_PASS_ROWS = 64
ONE_PASS_WARPS = 8


def scales_and_int8_qkv(q, k, v, quantize_q: bool = True) -> tuple[AttentionScales, tuple]:
    """Per-image ('sample', one z per image) scales and quantize_qkv's int8 tensors, in two launches
    (amax and int8 in one, the constants in the other) instead of three."""
    z, h, n, d = q.shape
    qk, vt, n_pad = _int8_buffers(q, quantize_q)
    amax = torch.empty((3, z), dtype=torch.int32, device=q.device)
    _amax_quantize_qkv_kernel[(z, 3)](
        q, k, v, qk, vt, amax, z, h, n, n_pad, *q.stride(), *k.stride(), *v.stride(),
        HEAD_DIM=d, BLOCK_N=max(16, min(ONE_PASS_ROWS, triton.next_power_of_2(n))),
        BLOCK_D=triton.next_power_of_2(d), FIRST=0 if quantize_q else 1, num_warps=ONE_PASS_WARPS,
    )
    scales = scales_from_amax_bits(amax.view(torch.float32), z, d, 1, "sample")
    return scales, _int8_views(q, qk, vt, n, n_pad)
