"""qflash's per-element integer arithmetic in Triton, as the kernel (jit/qflash.py) uses it: the exponential
2**-d split into a 15-bit fraction and a shift, the rescale of l and acc, the probabilities and their two 7-bit
int8 halves, the per-row reciprocal. Bit-exact with reference/qflash.py, on the GPU and in the interpreter.
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

from .. import constants as c
from .helpers import to_operand_order

EXP_POLY_A = tl.constexpr(c.EXP_POLY_A)
EXP_POLY_B = tl.constexpr(c.EXP_POLY_B)
EXP_ONE_BITS = tl.constexpr(c.EXP_ONE_BITS)
FRAC_BASE = tl.constexpr(1 << c.P_BITS)
RECIP_ONE = tl.constexpr(1 << c.RECIP_BITS)
# inline PTX on the GPU; the interpreter (TRITON_INTERPRET=1, read at import as triton reads it) runs plain ops
BYTE_PERMUTES = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")


@triton.jit
def exp2_split(d, mul_top, neg_mul_top):
    # reference.qflash.exp2_split on 32-bit words. With mul_top = exp_mul * 2**6 (< 2**32) and
    # y = d * exp_mul < 21 * 2**26: whole = y >> 26 is the high word of d * mul_top, and the low word is y's
    # fraction at the top of a word, so u = ~that is one IMAD: four multiplies (FMA pipe), one per step.
    du = d.to(tl.uint32, bitcast=True)
    whole = tl.umulhi(du, mul_top).to(tl.int32, bitcast=True)
    u = du * neg_mul_top + 0xFFFFFFFF
    inner = EXP_POLY_A + tl.umulhi(u, EXP_POLY_B)
    frac = FRAC_BASE + tl.umulhi(u, inner)
    return frac.to(tl.int32, bitcast=True), whole


@triton.jit
def rescale(x, alpha):
    # floor(x * alpha / 2**15): one 32 x 32 -> 64-bit product and one funnel shift; fits in x's type
    return ((x.to(tl.int64) * alpha) >> EXP_ONE_BITS).to(x.dtype)


@triton.jit
def reciprocal(l):
    # floor((2**40 + floor(l / 2)) / max(l, 1)) as int64 without a 64-bit integer division (a 72-instruction
    # call): the float64 quotient of the exact operands is off by at most one, and a remainder test fixes it
    den = tl.maximum(l, 1).to(tl.int64)
    num = RECIP_ONE + (l >> 1).to(tl.int64)
    q = (num.to(tl.float64) / den.to(tl.float64)).to(tl.int64)
    r = num - q * den
    return q - (r < 0).to(tl.int64) + (r >= den).to(tl.int64)


@triton.jit
def probabilities_doubled(d, mul_top, neg_mul_top, exp_dlim):
    """x1 = (2**-d at scale 2**15) + 1 for d = max - s >= 0: the probability rounded half up once
    (reference.probabilities) is x1 >> 1, and x1 < 2**15 holds its two 7-bit halves at bits 1-7 and 8-14."""
    frac, whole = exp2_split(tl.minimum(d, exp_dlim), mul_top, neg_mul_top)
    return (frac >> whole) + 1


@triton.jit
def probability_halves(x1, ROWS: tl.constexpr, KEYS: tl.constexpr):
    """The 7-bit halves of p = x1 >> 1 as int8 P.V operands: hi = x1 >> 8 (x1's second byte), lo =
    (x1 >> 1) & 127. On the GPU four elements at a time by byte permutes: hi's bytes gathered as they are,
    lo's first bytes gathered, then shifted and masked once for all four."""
    if BYTE_PERMUTES:
        p_hi, p_lo = tl.inline_asm_elementwise(
            asm="""{
            .reg .b32 pair01, pair23, low;
            prmt.b32 pair01, $2, $3, 0x5140;
            prmt.b32 pair23, $4, $5, 0x5140;
            prmt.b32 $0, pair01, pair23, 0x7632;
            prmt.b32 low, pair01, pair23, 0x5410;
            shr.b32 low, low, 1;
            and.b32 $1, low, 0x7F7F7F7F;
            }""",
            constraints="=r,=r,r,r,r,r", args=[x1], dtype=(tl.int8, tl.int8), is_pure=True, pack=4)
    else:
        p_hi = (x1 >> 8).to(tl.int8)
        p_lo = ((x1 >> 1) & 127).to(tl.int8)
    return to_operand_order(p_hi, ROWS, KEYS), to_operand_order(p_lo, ROWS, KEYS)
