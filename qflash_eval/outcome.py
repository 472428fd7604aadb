"""The per-image outcome: one row per evaluated image, the unit that evaluate, gather, stats, outputs and
resume pass around. Imports no torch."""
from __future__ import annotations

from typing import NamedTuple, Optional


class ImageOutcome(NamedTuple):
    """What every mode predicted for one image; the lists hold one entry per mode, in the run's mode order.
    Tuples sort by index, so sorted(outcomes) is the source order."""

    index: int  # position in the evaluated sequence, 0..N-1
    label: int
    top1: list[int]  # predicted class
    hit5: list[bool]  # label among the top 5
    top5: list[list[int]]  # the top 5 classes, best first
    name: str  # file path, or "<parquet file or dataset>#<row>"
    # per mode, from its softmax: the top-1 probability, log p(label), and KL(fp16 || mode) in nats (None where
    # not measured: no fp16 mode in the run, or a predictions file written before these were recorded)
    confidence: Optional[list[float]] = None
    log_p_label: Optional[list[float]] = None
    kl_from_fp16: Optional[list[float]] = None

    def correct(self, mode: int) -> bool:
        return self.top1[mode] == self.label

    def agrees(self, mode: int, other: int) -> bool:
        return self.top1[mode] == self.top1[other]
