"""Readable PyTorch specifications of every attention variant: the test oracles and the CPU paths."""
from .int8qkv import int8qkv_reference
from .ivit import DEFAULT_OUTPUT_BITS, ivit_reference, shiftmax
from .qflash import qflash_reference
from .qflash_paper import qflash_paper_reference

__all__ = ["DEFAULT_OUTPUT_BITS", "int8qkv_reference", "ivit_reference", "qflash_paper_reference", "qflash_reference", "shiftmax"]
