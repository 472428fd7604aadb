"""qflash on the Triton path: the choice of quantization pass, the launch shape, and the launch.

Where Q/K/V become int8 (docs/performance.md, "qflash op paths"): up to PREQUANTIZE_ABOVE_N keys the
kernel quantizes them as it loads them (one query block per head, so no tile is quantized twice); above
it K and V get one int8 pass first (several query blocks would each quantize every K/V tile again), fused
with the per-image amax where that pays (ONE_PASS_*). Q is always quantized on load: each query row is
read once.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import triton

from .. import constants as c
from ..scales import AttentionScales, ScaleRule
from ..shapes import bias_view
from .helpers import bias_mask_args
from .qflash import KEY_TILE, fixed_config, qflash_fwd_kernel, uses_fixed_config

PREQUANTIZE_ABOVE_N = 64
# per-image amax and int8 K/V in one launch (a program per image and tensor) pays when its programs fill
# the GPU twice or each is small; else amax, constants and quantize launches spread the work wider
ONE_PASS_MIN_IMAGES = 16
ONE_PASS_SMALL_IMAGE = 65536  # elements of one image's Q (H * N * D)
TAIL_LAUNCH = True  # fixed launch shapes: a head's last 16 / 32 rows in a launch of their own, one warp per 16


def qflash_triton(q, k, v, bias=None, mask=None, scales: Optional[AttentionScales] = None,
                  rule: ScaleRule = ScaleRule(), hopper: Optional[bool] = None) -> torch.Tensor:
    """qflash of validated float (Z, H, N, D) q, k, v with `scales`, or with scales formed by `rule` here
    (the per-image amax may then run fused with the int8 pass). Returns a (Z, H, N, D) view of (Z, N, H, D).
    hopper: True runs the Gluon kernel of kernels/gluon (an error where it does not apply), False the
    Triton kernel, None the Gluon kernel where it applies and gluon.PREFERRED says it is the faster."""
    from .quantize import quantize_qkv, scales_and_int8_qkv

    out = empty_output(q.shape, q.dtype, q.device)
    if _use_hopper_kernel(hopper, q, k, v, bias, mask):
        from ..gluon import launch_qflash_sm90

        if scales is None and rule.fusable:
            scales, (q8, k8, v8, _) = scales_and_int8_qkv(q, k, v, quantize_q=True)
        else:
            scales = scales if scales is not None else rule.compute(q, k, v)
            q8, k8, v8, _ = quantize_qkv(q, k, v, scales, quantize_q=True)
        return launch_qflash_sm90(q8, k8, v8.transpose(2, 3), out, scales)
    from_inputs = scales is None and rule.from_inputs
    if k.shape[2] <= PREQUANTIZE_ABOVE_N or q.shape != k.shape or k.shape != v.shape:  # N_q != N_k: on load
        scales = scales if scales is not None else rule.compute(q, k, v)
        return launch_qflash(q, k, v, out, scales, bias, mask, scales_from_inputs=from_inputs)
    if scales is None and rule.fusable and one_pass_pays(q):
        scales, (q, k, v, v_rows) = scales_and_int8_qkv(q, k, v, quantize_q=False)
    else:
        scales = scales if scales is not None else rule.compute(q, k, v)
        q, k, v, v_rows = quantize_qkv(q, k, v, scales, quantize_q=False)
    return launch_qflash(q, k, v, out, scales, bias, mask, v_operand_order=True, v_rows=v_rows,
                         scales_from_inputs=from_inputs)


def _use_hopper_kernel(hopper: Optional[bool], q, k, v, bias, mask) -> bool:
    if hopper is False or (hopper is None and not q.is_cuda):
        return False
    from .. import gluon

    applies = gluon.sm90_kernel_applies(q, k, v, bias, mask)
    if hopper and not applies:
        raise ValueError("the Hopper kernel takes CUDA sm90 self-attention with D = 64, no bias or mask and "
                         f"N <= {c.INT32_ACC_MAX_N}; got q {tuple(q.shape)} on {q.device}"
                         f"{' with bias or mask' if bias is not None or mask is not None else ''}")
    return applies and (hopper or gluon.PREFERRED)


def one_pass_pays(q: torch.Tensor) -> bool:
    z, h, n, d = q.shape
    if not q.is_cuda or z < ONE_PASS_MIN_IMAGES:  # the interpreter takes it only when a test asks
        return False
    return 3 * z >= 2 * _sm_count(q.device) or h * n * d <= ONE_PASS_SMALL_IMAGE


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def empty_output(shape, dtype, device) -> torch.Tensor:
    """A (Z, H, N, D) view of (Z, N, H, D) storage, as PyTorch's flash SDPA returns."""
    z, h, n, d = shape
    return torch.empty((z, n, h, d), dtype=dtype, device=device).transpose(1, 2)


def tail_rows(n: int) -> int:
    """Rows (16 or 32) of the block that takes a head's last n % 64 rows when at most 32 remain (0: none).

    A tl.dot needs at least 16 rows; 64-row programs cover the rest.
    """
    tail = n % 64
    if tail == 0:
        return 0
    return 16 if tail <= 16 else 32 if tail <= 32 else 0


def launch_qflash(q, k, v, out, scales, bias=None, mask=None, v_operand_order=False, v_rows=None,
                  scales_from_inputs=False):
    """Run the kernel on validated (Z, H, N, D) tensors; `out` is written in place and returned.

    v_operand_order: v is quantize.quantize_qkv's V, each 16 keys stored in the P.V operand's order
    (quantize.operand_key_order), with v_rows (>= N) rows along N that may be read, zero past N.
    Otherwise v is read as it is, keys in their own order, N rows.
    scales_from_inputs: the scales are the amax scales ('sample' or 'batch') of these very q, k, v, so
    float inputs need no lower clamp or NaN test as they are quantized (helpers.quantize).
    """
    z, h, n, d = q.shape
    n_k = k.shape[2]
    bias = bias_view(bias, q, k)
    if v_operand_order and v_rows is None:
        raise ValueError("v_operand_order needs v_rows, the rows of v's storage along N")
    v_rows = v_rows if v_operand_order else n_k
    block_d = max(32, triton.next_power_of_2(d))  # int8 dots need K >= 32: smaller heads are zero-padded
    b, mk, b_strides, m_strides, windows = bias_mask_args(bias, mask, scales.table)
    wide_acc = n_k > c.INT32_ACC_MAX_N
    tail = tail_rows(n)
    args = (q, k, v, out, scales.table, b, mk,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), *b_strides, *m_strides,
            z, h, n, n_k, v_rows, windows)
    constants = dict(HEAD_DIM=d, BLOCK_D=block_d, BLOCK_N=KEY_TILE, HAS_BIAS=bias is not None,
                     HAS_MASK=mask is not None, WIDE_ACC=wide_acc, SCALES_FROM_X=scales_from_inputs,
                     V_OPERAND_ORDER=v_operand_order, HALF_LAST_TILE=half_last_tile(n_k))
    if not uses_fixed_config(d, wide_acc):  # autotuned: the tail rows ride in the main launch
        qflash_fwd_kernel[lambda meta: (z * h, triton.cdiv(n, meta["BLOCK_M"]))](*args, 0, TAIL_M=tail, **constants)
        return out
    config = fixed_config(n_k, bias is not None or mask is not None, d).all_kwargs()
    launch = qflash_fwd_kernel.fn  # straight to the jit function: no autotuner on the host path
    if not (tail and TAIL_LAUNCH):
        launch[(z * h, triton.cdiv(n, config["BLOCK_M"]))](*args, 0, TAIL_M=tail, **constants, **config)
        return out
    full_blocks = n // config["BLOCK_M"]
    if full_blocks:
        launch[(z * h, full_blocks)](*args, 0, TAIL_M=0, **constants, **config)
    # a head's last rows: one warp per 16 rows, so that no row reduction crosses warps
    launch[(z * h, 1)](*args, full_blocks * config["BLOCK_M"], TAIL_M=0, **constants,
                       **{**config, "BLOCK_M": tail, "num_warps": tail // 16})
    return out


def half_last_tile(n_k: int) -> bool:
    """Whether the last key tile holds at most KEY_TILE / 2 keys (and so is computed as half a tile)."""
    return 0 < n_k % KEY_TILE <= KEY_TILE // 2
