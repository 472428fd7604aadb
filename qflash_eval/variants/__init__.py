"""Attention variants from outside the project: `--mode package.module:function`, `--mode path/file.py:function`,
or a name that an installed package registers under the entry-point group `qflash_eval.modes`.

A variant is `fn(q, k, v, *, bias=None, mask=None, softmax_scale=None, granularity="sample", group=1) -> out`,
the kernels' own call; it runs wherever a built-in mode runs (evaluation, diagnose, the report, compare).
"""
from .load import ENTRY_POINT_GROUP, entry_point_modes, is_variant_spec, variant_fields
from .check import VariantError

__all__ = ["ENTRY_POINT_GROUP", "VariantError", "entry_point_modes", "is_variant_spec", "variant_fields"]
