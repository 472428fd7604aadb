"""The public entry points, each read as checks (validation.py) -> scales (scales.ScaleRule) -> dispatch to the
reference or the Triton launcher (jit/); the qflash launcher chooses its quantization pass itself.

Every variant takes float q (Z, H, N_q, D), k (Z, H, N_k, D), v (Z, H, N_k, D_v) and returns attention
(Z, H, N_q, D_v) in q's dtype: softmax(Q K^T * softmax_scale + bias + mask) V with int8 Q/K/V and the
variant's own softmax. Head dims outside the kernels' own, or D_v != D, run zero-padded (shapes.py).
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch

from . import constants as c
from .heads import attend_per_head
from .reference import DEFAULT_OUTPUT_BITS, int8qkv_reference, ivit_reference, qflash_reference
from .reference.ivit import check_output_bits
from .reference.qflash import check_knobs
from .reference.qflash_paper import check_paper_knobs, paper_scales, qflash_paper_reference
from .scales import AttentionScales, ScaleRule, scales_from_amax, static_amax
from .shapes import bias_view, default_softmax_scale, needs_padding, pad_head_dims
from .validation import SUPPORTED_HEAD_DIMS, check_attention_inputs, check_scale_arguments, check_static_scales

BACKENDS = ("auto", "triton", "reference")


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


def _padded(attend: Callable, q, k, v, softmax_scale: Optional[float], **options) -> torch.Tensor:
    """attend on q, k, v zero-padded to a kernel head dim, with the true D's softmax scale; cut to D_v."""
    scale = softmax_scale if softmax_scale is not None else q.shape[3] ** -0.5
    return attend(*pad_head_dims(q, k, v), softmax_scale=scale, **options)[..., :v.shape[3]]


def compute_scales(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, granularity: str = "sample", group: int = 1,
                   static_scales: Optional[tuple] = None) -> AttentionScales:
    """qflash's per-tensor int8 scales and integer constants for one call, on q's device, no host sync.

    granularity: 'sample' (one scale per image and tensor; `group` consecutive z form one image, as Swin's
    windows do), 'batch' (one per tensor over the whole call), 'static' (static_scales = (s_q, s_k, s_v)).
    On CUDA two Triton launches (jit/amax.py) compute the same bits as the torch path.
    """
    check_scale_arguments(q, granularity, group, static_scales)
    return ScaleRule(granularity, group, static_scales).compute(q, k, v)


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
    softmax_scale: Optional[float] = None,
    p_bits: int = c.P_BITS,
    key_tile: int = c.KEY_TILE,
    exp_degree: int = c.EXP_POLY_DEGREE,
    score_clamp: int = c.EXP_SATURATE,
) -> torch.Tensor:
    """qflash: int8 Q/K/V, quadratic integer exp2, 14-bit probabilities, integer online softmax.

    q: (Z, H, N_q, D), k: (Z, H, N_k, D), v: (Z, H, N_k, D_v); float16 / bfloat16 / float32, any strides;
        1 <= N <= 65536, D and D_v <= 1024 (16, 32, ..., 1024 run as they are, others zero-padded).
    bias: additive logits that broadcast to (Z, H, N_q, N_k), read by index: (H, N, N) is Swin's
        relative-position bias, (Z, 1, N_q, N_k) a per-image bias.
    mask: (W, N_q, N_k) additive mask, z uses mask[z % W] (Swin's shifted windows); Z a multiple of W.
    softmax_scale: the logit scale, 1 / sqrt(D) when None (SDPA's `scale`).
    granularity: 'sample' (default; `group` consecutive z share a scale: Swin's windows of one image),
        'head' (one scale per image and head: heads folded into Z, a copy of Q/K/V and the output),
        'batch' (one scale per tensor per call) or 'static' (static_scales = (s_q, s_k, s_v), floats or (Z,)).
    backend: 'triton' (one kernel, CUDA or the interpreter), 'reference' (bit-identical PyTorch), 'auto'.
    scales: precomputed AttentionScales (then granularity and static_scales are not read).
    p_bits (1-14), key_tile, exp_degree (1-3), score_clamp (1-21 doublings): the arithmetic's knobs
        (reference.qflash); values other than their defaults run the reference (the kernel fixes them),
        whatever `backend` says.
    Returns (Z, H, N_q, D_v) in q's dtype: a view of (Z, N, H, D) storage on the Triton path, so that
    timm's `out.transpose(1, 2).reshape(Z, N, H * D)` is free. Non-finite input: in 'sample' / 'batch' a
    group holding inf or NaN gives NaN outputs for that group; in 'static' NaN quantizes to 0, inf saturates.
    """
    check_attention_inputs(q, k, v, bias, mask, group, granularity=None if scales is not None else granularity,
                           static_scales=static_scales)
    check_knobs(p_bits, key_tile, exp_degree, score_clamp)
    knobs = {"p_bits": p_bits, "key_tile": key_tile, "exp_degree": exp_degree, "score_clamp": score_clamp}
    if (p_bits, key_tile, exp_degree, score_clamp) != (c.P_BITS, c.KEY_TILE, c.EXP_POLY_DEGREE, c.EXP_SATURATE):
        backend = "reference"
    if needs_padding(q, v):
        return _padded(qflash_attention, q, k, v, softmax_scale, granularity=granularity, group=group,
                       static_scales=static_scales, bias=bias, mask=mask, backend=backend, scales=scales, **knobs)
    bias, softmax_scale = bias_view(bias, q, k), default_softmax_scale(q.shape[3], softmax_scale)
    if granularity == "head" and scales is None:
        return attend_per_head(qflash_attention, q, k, v, bias, mask, group, backend=backend,
                               softmax_scale=softmax_scale, **knobs)
    rule = ScaleRule(granularity, group, static_scales, softmax_scale)
    if resolve_backend(backend, q.device) == "reference":
        return qflash_reference(q, k, v, scales if scales is not None else rule.compute(q, k, v), bias, mask,
                                **knobs)
    from .jit.qflash_launch import qflash_triton  # imported late: TRITON_INTERPRET is read at import

    return qflash_triton(q, k, v, bias, mask, scales, rule)  # the scales there: fused with int8 where it pays


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
    """qflash on already-quantized int8 (Z, H, N, D) Q/K/V with their scales (s_q, s_k, s_v); float16 output.

    scales: each a float or a tensor of shape () or (Z,) (per image). Tensors on q8's device are read there
    and floats are filled there (no host copy: the call can be captured in a CUDA graph); float scales are
    turned into the kernel's constants once per value and device, so later calls launch nothing for them.
    """
    check_attention_inputs(q8, k8, v8, bias, mask, allow_int8=True)
    if needs_padding(q8, v8):
        raise ValueError(f"qflash_attention_int8 needs q, k, v of one head dim in {SUPPORTED_HEAD_DIMS}, got "
                         f"{q8.shape[3]} and {v8.shape[3]} (qflash_attention pads others)")
    bias = bias_view(bias, q8, k8)
    check_static_scales(scales, q8.shape[0])
    int_scales = _int8_entry_scales(tuple(scales), q8.shape[0], q8.shape[3], q8.device)
    if resolve_backend(backend, q8.device) == "reference":
        return qflash_reference(q8, k8, v8, int_scales, bias, mask)
    from .jit.qflash_launch import empty_output, launch_qflash

    return launch_qflash(q8, k8, v8, empty_output(q8.shape, torch.float16, q8.device), int_scales, bias, mask)


_FLOAT_SCALE_CONSTANTS: dict = {}  # (s_q, s_k, s_v, Z, D, device) -> AttentionScales of float scales
_FLOAT_SCALE_ENTRIES = 64


def _int8_entry_scales(scales: tuple, z: int, d: int, device: torch.device) -> AttentionScales:
    if not all(isinstance(s, (int, float)) for s in scales):
        return _static_constants(scales, z, d, device)
    key = (*(float(s) for s in scales), z, d, str(device))
    if key not in _FLOAT_SCALE_CONSTANTS:
        if len(_FLOAT_SCALE_CONSTANTS) >= _FLOAT_SCALE_ENTRIES:
            _FLOAT_SCALE_CONSTANTS.clear()
        _FLOAT_SCALE_CONSTANTS[key] = _static_constants(scales, z, d, device)
    return _FLOAT_SCALE_CONSTANTS[key]


def _static_constants(scales: tuple, z: int, d: int, device: torch.device) -> AttentionScales:
    """The constants of given scales: on CUDA one Triton launch (jit/amax.py, the same bits as the torch
    ops, which cost several launches of host time)."""
    amax = static_amax(scales, z, device)
    if device.type == "cuda":
        from .jit.amax import scales_from_amax_bits

        return scales_from_amax_bits(amax, z, d, 1, "static")
    return scales_from_amax(amax, d, "static")


def qflash_paper_attention(
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
    softmax_scale: Optional[float] = None,
    p_bits: int = 7,
    key_tile: int = c.PAPER_KEY_TILE,
) -> torch.Tensor:
    """qflash_paper: QFlash as the paper published it (linear integer exp2, 7-bit probabilities, 32-key tiles,
    scale release at shift 30, int8 output); docs/algorithm.md says where it departs from the published code.

    Shapes, strides, bias, mask, group, softmax_scale and backends as qflash_attention.
    granularity: 'batch' is what the paper ran (one scale per tensor per call, so an image's result depends
    on its batch); 'sample' (default) one scale per image; 'head' per image and head; 'static' static_scales =
    (s_q, s_k, s_v).
    p_bits (1-7), key_tile: the arithmetic's knobs; values other than 7 and constants.PAPER_KEY_TILE run the
        reference (the kernel fixes them), whatever `backend` says.
    Returns (Z, H, N_q, D_v) in q's dtype; a group holding inf or NaN gives NaN outputs for that group.
    """
    check_attention_inputs(q, k, v, bias, mask, group, granularity=granularity, static_scales=static_scales)
    check_paper_knobs(p_bits, key_tile)
    knobs = {"p_bits": p_bits, "key_tile": key_tile}
    if (p_bits, key_tile) != (7, c.PAPER_KEY_TILE):
        backend = "reference"
    if needs_padding(q, v):
        return _padded(qflash_paper_attention, q, k, v, softmax_scale, granularity=granularity, group=group,
                       static_scales=static_scales, bias=bias, mask=mask, backend=backend, **knobs)
    bias, softmax_scale = bias_view(bias, q, k), default_softmax_scale(q.shape[3], softmax_scale)
    if granularity == "head":
        return attend_per_head(qflash_paper_attention, q, k, v, bias, mask, group, backend=backend,
                               softmax_scale=softmax_scale, **knobs)
    if resolve_backend(backend, q.device) == "reference":
        scales = paper_scales(q, k, v, granularity, group, static_scales, softmax_scale)
        return qflash_paper_reference(q, k, v, scales, bias, mask, **knobs)
    from .jit.paper_scales import paper_table_for_call
    from .jit.qflash_paper import launch_qflash_paper

    table = paper_table_for_call(q, k, v, granularity, group, static_scales, softmax_scale)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    return launch_qflash_paper(q, k, v, out, table, bias, mask)


def ivit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    granularity: str = "sample",
    group: int = 1,
    static_scales: Optional[tuple] = None,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    output_bits: int = DEFAULT_OUTPUT_BITS,
    backend: str = "auto",
    softmax_scale: Optional[float] = None,
) -> torch.Tensor:
    """ivit: I-ViT-style attention (scores requantized to int8 per image, Shiftmax at `output_bits`, 2-16),
    with qflash's int8 Q/K/V; shapes, strides, granularities, group, bias, mask and softmax_scale as
    qflash_attention.

    backend: 'triton' (a score-amax kernel and one fused kernel: scores never reach memory; CUDA or the
    interpreter), 'reference' (bit-identical PyTorch, which materializes the scores), 'auto'.
    Returns (Z, H, N, D) in q's dtype.
    """
    check_attention_inputs(q, k, v, bias, mask, group, granularity=granularity, static_scales=static_scales)
    check_output_bits(output_bits)
    if needs_padding(q, v):
        return _padded(ivit_attention, q, k, v, softmax_scale, granularity=granularity, group=group,
                       static_scales=static_scales, bias=bias, mask=mask, output_bits=output_bits, backend=backend)
    bias, softmax_scale = bias_view(bias, q, k), default_softmax_scale(q.shape[3], softmax_scale)
    if granularity == "head":
        return attend_per_head(ivit_attention, q, k, v, bias, mask, group, output_bits=output_bits, backend=backend,
                               softmax_scale=softmax_scale)
    scales = ScaleRule(granularity, group, static_scales, softmax_scale).compute(q, k, v)
    if resolve_backend(backend, q.device) == "reference":
        return ivit_reference(q, k, v, scales, bias, mask, output_bits, group)
    from .jit.ivit import launch_ivit  # imported late: TRITON_INTERPRET is read at import

    return launch_ivit(q, k, v, scales, bias, mask, output_bits, group)


def int8qkv_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    granularity: str = "sample",
    group: int = 1,
    static_scales: Optional[tuple] = None,
    bias: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    softmax_scale: Optional[float] = None,
) -> torch.Tensor:
    """int8qkv (ablation): qflash's int8 Q/K/V with an exact float softmax (PyTorch on every device);
    shapes, granularities, bias, mask and softmax_scale as qflash_attention. Returns (Z, H, N_q, D_v) in
    q's dtype."""
    check_attention_inputs(q, k, v, bias, mask, group, granularity=granularity, static_scales=static_scales)
    bias, softmax_scale = bias_view(bias, q, k), default_softmax_scale(q.shape[3], softmax_scale)
    if granularity == "head":
        return attend_per_head(int8qkv_attention, q, k, v, bias, mask, group, softmax_scale=softmax_scale)
    scales = ScaleRule(granularity, group, static_scales, softmax_scale).compute(q, k, v)
    return int8qkv_reference(q, k, v, scales, bias, mask)
