"""Attention variants from outside the project: `--mode package.module:function`, `--mode path/file.py:function`,
or a name that an installed package registers under the entry-point group `qflash_eval.modes`.

A variant is `fn(q, k, v, *, bias=None, mask=None, softmax_scale=None, granularity="sample", group=1) -> out`,
the kernels' own call; it runs wherever a built-in mode runs (evaluation, diagnose, the report, compare).
A built-in mode with its arithmetic's knobs set, `qflash(p_bits=8)`, is a variant too (knobs.py), and so
is an integer mode with some layers kept in fp16, `qflash+fp16[3,7]` (float_layers.py).
"""
from .load import ENTRY_POINT_GROUP, entry_point_modes, is_variant_spec, variant_fields
from .check import VariantError
from .float_layers import (
    auto_count, float_layers_fields, float_layers_name, is_float_layers_spec, layer_set, parse_float_layers,
)
from .knobs import KNOBS, expand_ranges, is_knob_spec, knob_fields, parse_knobs

__all__ = ["ENTRY_POINT_GROUP", "KNOBS", "VariantError", "entry_point_modes", "expand_ranges", "float_layers_fields",
           "float_layers_name", "is_float_layers_spec", "is_knob_spec", "is_variant_spec", "knob_fields",
           "parse_float_layers", "parse_knobs", "variant_fields", "auto_count", "layer_set"]
