"""Public entry points: QFlash, I-ViT-style and the float-softmax ablation on float Q/K/V."""
from __future__ import annotations

import functools
import os
from typing import Optional

import torch

from .ablation import int8_float_softmax_attention
from .reference import qflash_reference
from .quant import AttentionScales, compute_scales, scales_from_amax, static_amax
from .shiftmax import DEFAULT_OUTPUT_BITS, ivit_attention_int
from .validation import check_attention_inputs

BACKENDS = ("auto", "triton", "reference")
# Up to this sequence length the kernel quantizes Q/K/V as it loads them (one query block per head, so
# no tile is quantized twice); above it a separate int8 pass is cheaper. Measured on the H100 in one
# process: ViT-B op at batch 256 0.819 -> 0.765 ms with the pass, Swin stage 1 (N = 49) 1.008 -> 1.079 ms.
PREQUANTIZE_ABOVE_N = 64
# Per-image amax and int8 Q/K/V in one launch (quantize_triton.scales_and_int8_qkv, a program per image
# and tensor) pays when its programs fill the GPU twice or each is small; else three launches (amax,
# constants, quantize) spread the work wider. Measured on the H100 (op, CUDA graph, timm's strided views):
# ViT-B (12 heads) at 256 images 0.580 -> 0.553 ms, at 64 0.155 -> 0.174 ms (so not there); DeiT-T (3 heads)
# at 16-256 images 10-19 % faster.
ONE_PASS_MIN_IMAGES = 16
ONE_PASS_SMALL_IMAGE = 65536  # elements of one image's Q (H * N * D)


def triton_interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, device: torch.device) -> str:
    """'auto' runs the Triton kernel on CUDA (and on CPU under TRITON_INTERPRET=1), else the reference."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" or triton_interpreter_on() else "reference"
    if backend == "triton" and device.type != "cuda" and not triton_interpreter_on():
        raise RuntimeError(
            "the Triton kernel needs a CUDA device; on CPU set TRITON_INTERPRET=1 before importing "
            "qflash_kernels, or use backend='reference' (bit-exact, faster on CPU)"
        )
    return backend


def qflash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    granularity: str = "sample",
    group: int = 1,
    static_scales: Optional[tuple] = None,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    backend: str = "auto",
    scales: Optional[AttentionScales] = None,
) -> torch.Tensor:
    """Integer attention softmax(Q K^T / sqrt(D) + bias + mask) V with int8 Q/K/V, output in q's dtype.

    q, k, v: (Z, H, N, D), any strides, D in {16, 32, 64, 128}. bias: (H, N, N); mask: (W, N, N),
    z uses mask[z % W]. `group` consecutive z share one scale in 'sample' granularity (Swin windows).
    Non-finite values: in 'sample'/'batch' a group holding inf or NaN gives NaN outputs for that group;
    in 'static' NaN inputs quantize to 0 and inf saturates to +-127.
    """
    check_attention_inputs(q, k, v, bias, mask, group)
    if resolve_backend(backend, q.device) == "reference":
        if scales is None:
            scales = compute_scales(q, k, v, granularity, group, static_scales)
        return qflash_reference(q, k, v, scales, bias, mask)
    from .qflash_triton import launch_qflash  # imported late: TRITON_INTERPRET is read at import
    from .quantize_triton import quantize_qkv, scales_and_int8_qkv

    out = _empty_output(q.shape, q.dtype, q.device)
    v_rows = None
    scales_from_inputs = scales is None and granularity != "static"
    if q.shape[2] <= PREQUANTIZE_ABOVE_N:
        if scales is None:
            scales = compute_scales(q, k, v, granularity, group, static_scales)
    elif scales is None and granularity == "sample" and group == 1 and _one_pass_pays(q):
        scales, (q, k, v, v_rows) = scales_and_int8_qkv(q, k, v, quantize_q=False)
    else:
        # several query blocks per head would each quantize every K/V tile again: quantize K and V once
        # instead (each query row is read once, so Q is quantized on load)
        if scales is None:
            scales = compute_scales(q, k, v, granularity, group, static_scales)
        q, k, v, v_rows = quantize_qkv(q, k, v, scales, quantize_q=False)
    return launch_qflash(q, k, v, out, scales, bias, mask, v_rows=v_rows, scales_from_inputs=scales_from_inputs)


def _one_pass_pays(q: torch.Tensor) -> bool:
    z, h, n, d = q.shape
    if not q.is_cuda or z < ONE_PASS_MIN_IMAGES:  # the interpreter takes it only when a test asks
        return False
    return 3 * z >= 2 * _sm_count(q.device) or h * n * d <= ONE_PASS_SMALL_IMAGE


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _empty_output(shape, dtype, device) -> torch.Tensor:
    """A (Z, H, N, D) view of (Z, N, H, D) storage, as PyTorch's flash SDPA returns: the caller's
    `out.transpose(1, 2).reshape(Z, N, H * D)` (timm's next step) is then a view, not a copy."""
    z, h, n, d = shape
    return torch.empty((z, n, h, d), dtype=dtype, device=device).transpose(1, 2)


def qflash_attention_int8(
    q8: torch.Tensor,
    k8: torch.Tensor,
    v8: torch.Tensor,
    scales: tuple,
    *,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """QFlash on already-quantized int8 Q/K/V with float scales (s_q, s_k, s_v); float16 output."""
    check_attention_inputs(q8, k8, v8, bias, mask, allow_int8=True)
    z, _, _, d = q8.shape
    int_scales = scales_from_amax(static_amax(scales, z, q8.device), d, "static")
    if resolve_backend(backend, q8.device) == "reference":
        return qflash_reference(q8, k8, v8, int_scales, bias, mask)
    from .qflash_triton import launch_qflash

    out = _empty_output(q8.shape, torch.float16, q8.device)
    return launch_qflash(q8, k8, v8, out, int_scales, bias, mask)


def ivit_attention(
    q, k, v, *, granularity="sample", group=1, static_scales=None, bias=None, mask=None,
    output_bits: int = DEFAULT_OUTPUT_BITS,
) -> torch.Tensor:
    """I-ViT-style attention (materialized scores, Shiftmax at `output_bits`), output in q's dtype."""
    check_attention_inputs(q, k, v, bias, mask, group)
    scales = compute_scales(q, k, v, granularity, group, static_scales)
    return ivit_attention_int(q, k, v, scales, bias, mask, output_bits, group)


def int8_attention_float_softmax(
    q, k, v, *, granularity="sample", group=1, static_scales=None, bias=None, mask=None,
) -> torch.Tensor:
    """Ablation: int8 Q/K/V with the same scales as QFlash, exact float softmax."""
    check_attention_inputs(q, k, v, bias, mask, group)
    scales = compute_scales(q, k, v, granularity, group, static_scales)
    return int8_float_softmax_attention(q, k, v, scales, bias, mask)
