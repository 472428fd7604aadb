"""qflash_kernels: integer attention for vision transformers.

Variants (each `<name>_attention` here, its PyTorch specification `reference.<name>_reference`):
qflash (this project's integer online softmax, one Triton kernel), qflash_paper (QFlash as published),
ivit (I-ViT Shiftmax), int8qkv (int8 Q/K/V with a float softmax, an ablation); peers/ holds the attentions
a user would install instead (sage, intflash, fp8).
Layout: constants.py, scales.py and heads.py (torch only), reference/ (the specifications), jit/ (Triton
kernels, shared helpers in jit/helpers.py), api.py (checks and dispatch).
"""
from . import peers
from .api import (
    BACKENDS, compute_scales, int8qkv_attention, ivit_attention, qflash_attention, qflash_attention_int8,
    qflash_paper_attention, resolve_backend,
)
from .constants import GRANULARITIES, KEY_TILE
from .reference import DEFAULT_OUTPUT_BITS, qflash_reference, shiftmax
from .scales import AttentionScales
from .validation import SUPPORTED_HEAD_DIMS

__all__ = [
    "BACKENDS", "DEFAULT_OUTPUT_BITS", "peers", "GRANULARITIES", "KEY_TILE", "SUPPORTED_HEAD_DIMS",
    "AttentionScales", "compute_scales", "int8qkv_attention", "ivit_attention",
    "qflash_attention", "qflash_attention_int8", "qflash_paper_attention", "qflash_reference", "resolve_backend", "shiftmax",
]
