"""Attention variants from outside the project: `--mode package.module:function`, `--mode path/file.py:function`,
or a name that an installed package registers under the entry-point group `qflash_eval.modes`.

A variant is `fn(q, k, v, *, bias=None, mask=None, softmax_scale=None, granularity="sample", group=1) -> out`,
the kernels' own call; it runs wherever a built-in mode runs (evaluation, diagnose, the report, compare).
A built-in mode with its arithmetic's knobs set, `qflash(p_bits=8)`, is a variant too (knobs.py).
"""
from .load import ENTRY_POINT_GROUP, entry_point_modes, is_variant_spec, variant_fields
from .check import VariantError
from .knobs import KNOBS, expand_ranges, is_knob_spec, knob_fields, parse_knobs

__all__ = ["ENTRY_POINT_GROUP", "KNOBS", "VariantError", "entry_point_modes", "expand_ranges", "is_knob_spec",
           "is_variant_spec", "knob_fields", "parse_knobs", "variant_fields"]
