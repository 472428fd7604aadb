"""The low-precision attentions a user would install instead of qflash, each as a readable PyTorch
specification (every device; the CPU path and what the tests check) beside the real implementation where
one installs: `sage` (SageAttention 1.0.x), `intflash` (INT-FlashAttention, fully int8), `fp8`
(FlashAttention-3's FP8 arithmetic). Layout: online.py (the online softmax they share), one file each."""
from .fp8 import fp8_attention, fp8_reference
from .intflash import intflash_attention, intflash_reference
from .sage import sage_attention, sage_implementation, sage_reference

__all__ = ["fp8_attention", "fp8_reference", "intflash_attention", "intflash_reference", "sage_attention",
           "sage_implementation", "sage_reference"]
