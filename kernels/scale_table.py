"""The one per-call argument of the integer kernels: AttentionScales, a (rows, Z) int32 table of every
per-image constant (float32 rows as their bits first, then int32 rows), and the names of its rows.

scales.py computes it with torch ops, jit/amax.py with Triton; the kernels read its rows by index
(jit/helpers.py). It imports nothing of the package, so every room that reads the table can import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

# the rows of AttentionScales.table, one entry per z each: float32 rows (as their bits) first, then int32 rows
SCALE_ROWS = ("inv_q", "inv_k", "inv_v", "s_q", "s_k", "s_v", "inv_c", "out_scale", "exp_mul", "exp_dlim")
FLOAT_SCALE_ROWS = 8


class _Row:
    """One row of AttentionScales.table as a (Z,) view: float32 or int32 by its place in SCALE_ROWS."""

    def __set_name__(self, owner, name):
        self.index = SCALE_ROWS.index(name)

    def __get__(self, scales, owner=None) -> torch.Tensor:
        row = scales.table[self.index]
        return row.view(torch.float32) if self.index < FLOAT_SCALE_ROWS else row


@dataclass
class AttentionScales:
    """Per-call quantization state, one entry per leading index z of (Z, H, N, D), in one (10, Z) int32 `table`
    (rows SCALE_ROWS; float rows hold float32 bits) that the kernels take as one argument.

    inv_q/inv_k/inv_v: multipliers float -> int8 units (127 / amax, capped at the largest float32).
    s_q, s_k, s_v: the float scales (for the float-softmax ablation and for reports).
    inv_c: multiplier real logit -> integer score units (sqrt(D) / (s_q s_k)), for the additive bias.
    out_scale: s_v / 2**OUT_FRAC_BITS, NaN where the group held a non-finite value.
    exp_mul, exp_dlim (int32): integer score difference d becomes exponent units min(d, exp_dlim) * exp_mul,
        with 2**EXP_SHIFT units per doubling (exp_mul = round(s_q s_k log2(e) / sqrt(D) * 2**EXP_SHIFT)).
    """

    table: torch.Tensor
    granularity: str
    softmax_scale: Optional[float] = None  # None: 1 / sqrt(D) of the call's head dim

    inv_q = _Row()
    inv_k = _Row()
    inv_v = _Row()
    s_q = _Row()
    s_k = _Row()
    s_v = _Row()
    inv_c = _Row()
    out_scale = _Row()
    exp_mul = _Row()
    exp_dlim = _Row()

    @classmethod
    def from_rows(cls, granularity: str, softmax_scale: Optional[float] = None,
                  **rows: torch.Tensor) -> "AttentionScales":
        """The table from one (Z,) tensor per name of SCALE_ROWS (float32 rows, then int32 rows)."""
        return cls(pack_scale_rows([rows[n].float() for n in SCALE_ROWS[:FLOAT_SCALE_ROWS]],
                                   [rows[n] for n in SCALE_ROWS[FLOAT_SCALE_ROWS:]]), granularity, softmax_scale)


def pack_scale_rows(float_rows: list[torch.Tensor], int_rows: list[torch.Tensor]) -> torch.Tensor:
    """(rows, Z) int32: float32 rows as their bits, then int32 rows; one kernel argument for every constant."""
    return torch.stack([r.to(torch.float32).contiguous().view(torch.int32) for r in float_rows]
                       + [r.to(torch.int32) for r in int_rows])
