"""Every constant of the integer arithmetic, defined once; docs/algorithm.md says what each one means.

The PyTorch references use them directly; jit/helpers.py wraps the ones the Triton kernels read.
"""
from __future__ import annotations

import math
import struct

# int8 scales per image and tensor (default), per image, tensor and head (heads.py), per call, or calibrated
GRANULARITIES = ("sample", "head", "batch", "static")

# --- int8 quantization (qflash, ivit, int8qkv) ---
QMAX = 127  # symmetric int8: values are clamped to [-127, 127]
FLOAT32_MAX = 3.4028234663852886e38  # 127 / amax is capped here: a tiny amax would give inf, and 0 * inf = NaN
ROUND_MAGIC = 1.5 * 2.0**23  # adding it in float32 rounds |t| <= 2**22 to an integer, ties to even
ROUND_MAGIC_BITS = struct.unpack("<i", struct.pack("<f", ROUND_MAGIC))[0]

# --- qflash: scores in base-2 fixed point ---
EXP_SHIFT = 26  # one doubling of the softmax = 2**EXP_SHIFT exponent units
# exp_mul is clamped to [1, 2**EXP_SHIFT - 1]: one integer score step stays below one doubling, and
# exp_mul << (32 - EXP_SHIFT) fits in 32 unsigned bits (the kernel's high-half multiplies).
EXP_MUL_MAX = (1 << EXP_SHIFT) - 1
# exponents saturate just below EXP_SATURATE doublings: every shift stays <= 20, every p past it is 0
EXP_SATURATE = 21
EXP_DLIM_NUMERATOR = EXP_SATURATE * (1 << EXP_SHIFT) - 1
# integer bias (score units) saturates here: score + bias fits in int32 and ROUND_MAGIC rounds it exactly
BIAS_INT_LIMIT = float(1 << 22)
OUT_FRAC_BITS = 8  # acc / l keeps 8 fractional bits before the final float scale

# --- qflash: the online softmax ---
KEY_TILE = 64  # keys per online-softmax step: part of the arithmetic, not a tuning knob
EXP_ONE_BITS = 15  # the exponential's fraction and alpha are at scale 2**15
P_BITS = 14  # probabilities for P.V at scale 2**14, at most 2**14 - 1 (two int8 halves of 7 bits)
P_MAX = (1 << P_BITS) - 1
RECIP_BITS = 40  # per-row reciprocal of l at scale 2**40
# 2**-t for t in [0, 1) through s = 1 - t: 2**(s - 1) ~ (1 + s (A + s B) / 2**14) / 2, fitted for minimal
# relative error (0.21 %), exact at s = 0; A + B < 2**14 - 1 keeps p within 14 bits without a clamp.
# The kernels run degree 2; the reference also takes degree 1 (3.8 %) and 3 (0.009 %), fitted the same way
# (the `exp_degree` knob). Coefficients from s's lowest power up, evaluated by Horner's rule.
EXP_POLY = {1: (15131,), 2: (10909, 5409), 3: (11389, 3731, 1261)}
EXP_POLY_DEGREE = 2
EXP_POLY_A, EXP_POLY_B = EXP_POLY[EXP_POLY_DEGREE]
FRAC_TOP_SHIFT = 32 - EXP_SHIFT  # y << 6 puts the 26 fraction bits of y at the top of a 32-bit word
NEG_SCORE = -((1 << 31) - (1 << 25) - 1)  # initial running max, and masked keys: p = 0 exactly
MAX_SEQUENCE = 65536  # keeps the integer row sum l below 2**31
# largest N for which |acc| <= P_MAX * 127 * N fits in int32; longer sequences use int64 accumulators
INT32_ACC_MAX_N = ((1 << 31) - 1) // (P_MAX * QMAX)

# --- ivit: I-ViT's Shiftmax ---
IVIT_SHIFTMAX_N = 15  # exp2 spans 15 doublings: scores further below the row max count as 15 below
IVIT_DEFAULT_OUTPUT_BITS = 16  # probabilities at scale 2**-(bits - 1); I-ViT's Swin uses 8
# one doubling in int8 score units, x0 = floor(-127 / max|score|), is clamped here (only a score range
# below 0.004 reaches it): e = (r - 2 x0) << 15 then stays below 2**31, and the kernel keeps it in int32
IVIT_X0_MIN = -((1 << 15) - 1)

# --- qflash_paper: the published arithmetic (docs/algorithm.md, "QFlash as published") ---
PAPER_QMIN, PAPER_QMAX = -128, 127  # its clamp of round(x / s)
PAPER_LOG2E = 1.44269504  # the digits it multiplies by
PAPER_SHIFT = 16  # fixed point of exp_M and req_M
PAPER_RELEASE_SHIFT = 30  # fixed point of l_M and acc_M ("scale release")
PAPER_NEG_INF = -(1 << 20)  # masked and padded scores
PAPER_MASKED_BELOW = -100.0  # additive-mask entries below this are masked (to PAPER_NEG_INF)
PAPER_KEY_TILE = 32  # BLOCK_N of its default launch configuration
PAPER_QUERY_TILE = 32  # BLOCK_M of its default launch configuration
PAPER_P_MAX = 127  # its probabilities are int8 at scale 1/127


def head_constants(head_dim: int, softmax_scale=None) -> tuple[float, float]:
    """(log2(e) * 2**EXP_SHIFT / sqrt(D), sqrt(D)) as float64: qflash's only head-dim dependent constants.
    A softmax_scale other than 1 / sqrt(D) takes the place of 1 / sqrt(D)."""
    if softmax_scale is not None:
        return math.log2(math.e) * 2.0**EXP_SHIFT * softmax_scale, 1.0 / softmax_scale
    return math.log2(math.e) * 2.0**EXP_SHIFT / math.sqrt(head_dim), math.sqrt(head_dim)
