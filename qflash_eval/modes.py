"""The attention modes: one registry that the command line, the swap, the report and the benchmarks read.

Imports no torch at module level, so that `eval.py --help` starts at once.

A mode is a name, a sentence for reports and --help, the dtype its model runs in, the attention it puts
in place of timm's (None: timm's own SDPA), the fields the report records about it, and the paper's column
(FP32 or QFlash) its Top-1 is shown beside.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

REFERENCE_MODE = "fp16"  # every other mode is compared with it, image by image


@dataclass(frozen=True)
class AttentionConfig:
    """How the integer modes attend: the mode, the scale granularity, I-ViT's output bits, the kernel backend."""

    mode: str
    granularity: str = "sample"
    ivit_output_bits: int = 16
    backend: str = "auto"  # qflash and qflash_paper: auto | triton | reference


@dataclass(frozen=True)
class Mode:
    name: str
    description: str
    # the model's dtype: fixed for the float modes ("float32"), the run's --dtype for the integer ones
    fixed_dtype: Optional[str] = None
    # (q, k, v, config, **common) -> attention output; None: timm's own SDPA attention
    attend: Optional[Callable] = None
    # (config, device) -> what the report records about this mode beyond the common fields
    report_fields: Callable = field(default=lambda config, device: {})
    # the paper's Top-1 column ("fp32" or "qflash") shown beside this mode's, None: none
    paper_column: Optional[str] = None
    # attention layers (the swap's numbering) that attend in the model's float dtype instead
    float_layers: frozenset = frozenset()

    @property
    def is_integer(self) -> bool:
        return self.attend is not None

    def dtype(self, integer_dtype: str):
        """The torch dtype of this mode's model; integer_dtype is the run's --dtype (float16, ...)."""
        import torch

        return getattr(torch, self.fixed_dtype or integer_dtype)


def _qflash(q, k, v, config: AttentionConfig, **common):
    import qflash_kernels as qk

    return qk.qflash_attention(q, k, v, backend=config.backend, **common)


def _qflash_paper(q, k, v, config: AttentionConfig, **common):
    import qflash_kernels as qk

    return qk.qflash_paper_attention(q, k, v, backend=config.backend, **common)


def _ivit(q, k, v, config: AttentionConfig, **common):
    import qflash_kernels as qk

    return qk.ivit_attention(q, k, v, output_bits=config.ivit_output_bits, backend=config.backend, **common)


def _int8qkv(q, k, v, config: AttentionConfig, **common):
    import qflash_kernels as qk

    return qk.int8qkv_attention(q, k, v, **common)


def _sage(q, k, v, config: AttentionConfig, bias=None, mask=None, softmax_scale=None, **_scales):
    from qflash_kernels.peers import sage_attention

    return sage_attention(q, k, v, bias=bias, mask=mask, softmax_scale=softmax_scale)


def _intflash(q, k, v, config: AttentionConfig, bias=None, mask=None, softmax_scale=None, **_scales):
    from qflash_kernels.peers import intflash_attention

    return intflash_attention(q, k, v, bias=bias, mask=mask, softmax_scale=softmax_scale)


def _fp8(q, k, v, config: AttentionConfig, granularity="sample", group=1, bias=None, mask=None,
         softmax_scale=None, **_static):
    from qflash_kernels.peers import fp8_attention

    return fp8_attention(q, k, v, bias=bias, mask=mask, softmax_scale=softmax_scale, granularity=granularity,
                         group=group)


def _peer_fields(scales: str, implementation: str):
    def fields(config: AttentionConfig, device) -> dict:
        return {"scales": scales, "implementation": implementation}

    return fields


def _sage_fields(config: AttentionConfig, device) -> dict:
    import importlib.util

    package = importlib.util.find_spec("sageattention") is not None and getattr(device, "type", device) == "cuda"
    return {"scales": "per block: 128 query rows, 64 keys (the package's)",
            "last_key_tile": "unmasked as in sageattention 1.0.6 (zero keys up to a multiple of 64 join the softmax) "
                             "where its kernel takes the call: no bias or mask, head dim 64/96/128",
            "implementation": "sageattention package where it takes the call (no bias/mask), else the PyTorch "
                              "reference" if package else "PyTorch reference (sageattention not installed or CPU)"}


def _ivit_fields(config: AttentionConfig, device) -> dict:
    import qflash_kernels as qk

    return {"output_bits": config.ivit_output_bits, "backend": qk.resolve_backend(config.backend, device)}


def _kernel_fields(key_tile_name: str):
    def fields(config: AttentionConfig, device) -> dict:
        import qflash_kernels as qk
        from qflash_kernels import constants

        return {"backend": qk.resolve_backend(config.backend, device), "key_tile": getattr(constants, key_tile_name)}

    return fields


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("fp32", "float32 model, PyTorch SDPA", fixed_dtype="float32", paper_column="fp32"),
    Mode("fp16", "float16 model, PyTorch SDPA (the reference every other mode is compared with)",
         fixed_dtype="float16"),
    Mode("ivit", "int8 Q/K/V, scores requantized to int8 per image, I-ViT Shiftmax, integer P.V (fused Triton "
         "kernel or its bit-exact reference)",
         attend=_ivit, report_fields=_ivit_fields),
    Mode("qflash_paper", "QFlash as published: int8 Q/K/V, linear integer exp2, 7-bit probabilities, "
         "32-key tiles (Triton kernel or its bit-exact reference)",
         attend=_qflash_paper, report_fields=_kernel_fields("PAPER_KEY_TILE"), paper_column="qflash"),
    Mode("qflash", "int8 Q/K/V, this project's integer online softmax: quadratic exp2, 14-bit probabilities "
         "(Triton kernel or its bit-exact reference)",
         attend=_qflash, report_fields=_kernel_fields("KEY_TILE"), paper_column="qflash"),
    Mode("int8qkv", "ablation: int8 Q/K/V with an exact float softmax", attend=_int8qkv),
    Mode("sage", "peer: SageAttention 1.0.x: K smoothed, int8 Q/K per block, float softmax, float16 P.V",
         attend=_sage, report_fields=_sage_fields),
    Mode("intflash", "peer: INT-FlashAttention, fully int8: per-token int8 Q/K, int8 V, float online softmax, "
         "int8 P", attend=_intflash,
         report_fields=_peer_fields("per token (Q, K), per image and head (V)", "PyTorch reference")),
    Mode("fp8", "peer: FP8 attention as FlashAttention-3 runs it: e4m3 Q/K/V per image, e4m3 P, float32 "
         "accumulation", attend=_fp8,
         report_fields=_peer_fields("per tensor per image (--granularity sample or batch)", "PyTorch reference")),
)}
ALL_MODES = ("fp32", "fp16", "ivit", "qflash_paper", "qflash")  # what --mode all runs
PEER_MODES = ("sage", "intflash", "fp8")  # what --mode peers runs
GROUPS = {"all": ALL_MODES, "peers": PEER_MODES}


def parse_modes(text: str, with_reference: bool = True) -> list[str]:
    """'all', 'peers', one mode or a comma list of them -> the modes to run, fp16 first when with_reference.
    A user's variant ('package.module:function', 'file.py:function' or an entry point's name), a mode with
    knobs ('qflash(p_bits=8)') or with float layers ('qflash+fp16[3,7]') is registered here on first use
    (qflash_eval/variants)."""
    names = [name for m in _split_modes(text) for name in GROUPS.get(m, (m,))]
    unknown = [m for m in names if m not in MODES and not _register_variant(m)]
    if unknown or not names:
        raise ValueError(f"unknown mode {', '.join(unknown) or repr(text)}; choose from {', '.join(MODES)}, all, "
                         "peers, or a variant as package.module:function or file.py:function")
    if with_reference and REFERENCE_MODE not in names:
        names = [REFERENCE_MODE] + names
    return list(dict.fromkeys(names))


def _split_modes(text: str) -> list[str]:
    """Comma-separated modes; a comma inside parentheses or brackets belongs to the mode."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch in "([") - (ch in ")]")
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return [p for p in parts if p]


def _register_variant(name: str) -> bool:
    """Add a user's variant to MODES; False where `name` does not look like one. A variant that looks like
    one but cannot be loaded raises ValueError naming it."""
    from .variants import (
        entry_point_modes, float_layers_fields, is_float_layers_spec, is_knob_spec, is_variant_spec, knob_fields,
        parse_float_layers, parse_knobs, variant_fields,
    )

    if is_float_layers_spec(name):
        base = parse_float_layers(name)[0]
        if base not in MODES and not _register_variant(base):
            return False
        if not MODES[base].is_integer:
            raise ValueError(f"{name}: {base} is not an integer mode; float layers apply to integer modes")
        MODES[name] = Mode(**float_layers_fields(name, MODES[base]))
        return True
    if is_knob_spec(name):
        MODES[name] = Mode(**knob_fields(name, MODES[parse_knobs(name)[0]]))
        return True
    if not is_variant_spec(name) and name not in entry_point_modes():
        return False
    MODES[name] = Mode(**variant_fields(name))
    return True


def with_float_layers(modes: list[str], spec) -> list[str]:
    """--float-layers: each integer mode followed by MODE+fp16[spec] (3,7 or auto:K; auto is resolved on
    calibration images when the model is loaded, qflash_eval/fallback)."""
    from .variants import auto_count, is_float_layers_spec, layer_set

    if not spec:
        return modes
    inside = spec.replace(" ", "")
    if inside.startswith("auto:"):
        auto_count(inside, f"--float-layers {spec}")
    else:
        layer_set(inside, f"--float-layers {spec}")
    result = []
    for name in modes:
        result.append(name)
        if not is_float_layers_spec(name) and MODES[name].is_integer:
            result.append(f"{name}+fp16[{inside}]")
            if not inside.startswith("auto:"):
                _register_variant(result[-1])
    return result
