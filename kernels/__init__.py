"""qflash_kernels: integer attention for vision transformers (QFlash, I-ViT Shiftmax, ablation)."""
from .attention import (
    BACKENDS,
    int8_attention_float_softmax,
    ivit_attention,
    qflash_attention,
    qflash_attention_int8,
    resolve_backend,
)
from .reference import KEY_TILE, qflash_reference
from .quant import GRANULARITIES, AttentionScales, compute_scales
from .shiftmax import DEFAULT_OUTPUT_BITS, shiftmax
from .validation import SUPPORTED_HEAD_DIMS

__all__ = [
    "BACKENDS", "DEFAULT_OUTPUT_BITS", "GRANULARITIES", "KEY_TILE", "SUPPORTED_HEAD_DIMS",
    "AttentionScales", "compute_scales", "int8_attention_float_softmax", "ivit_attention",
    "qflash_attention", "qflash_attention_int8", "qflash_reference", "resolve_backend", "shiftmax",
]
