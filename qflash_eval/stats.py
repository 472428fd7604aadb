"""Accuracy and paired statistics from per-image outcomes, every mode against the fp16 reference.

For a mode and the reference on the same n images: b = images the mode gets right and the reference
wrong, c = the reverse. The exact McNemar test gives the p-value of b against c; Newcombe's hybrid score
interval (his method 10, from two Wilson intervals and the correlation of the pairs) bounds the paired
difference of Top-1, and stays sound at b = c = 0 and at small counts.
"""
from __future__ import annotations

import math
from typing import Optional

from .modes import REFERENCE_MODE
from .outcome import ImageOutcome

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired_interval(a: int, b: int, c: int, d: int, z: float = Z95) -> tuple[float, float]:
    """95 % interval of p1 - p2 = (b - c) / n for paired outcomes: a both right, b only the first right,
    c only the second right, d both wrong (Newcombe 1998, method 10)."""
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(denom) if denom else 0.0
    theta = p1 - p2
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, theta - delta), min(1.0, theta + eps)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2 * tail)


def summarize(modes: list[str], rows: list[ImageOutcome], seconds: list[float]) -> dict:
    """Per mode: Top-1/Top-5, and against fp16 the agreement, the discordant pairs, McNemar's p and the
    interval of the Top-1 difference. rows: each image once."""
    n = len(rows)
    ref = modes.index(REFERENCE_MODE) if REFERENCE_MODE in modes else None
    results = {}
    for j, mode in enumerate(modes):
        correct = [r.correct(j) for r in rows]
        entry = {
            "top1": _pct(sum(correct), n),
            "top5": _pct(sum(bool(r.hit5[j]) for r in rows), n),
            "count": n,
            "correct_top1": sum(correct),
            "images_per_s": round(n / seconds[j], 2) if seconds[j] > 0 else None,
            "model_seconds": round(seconds[j], 4),
            "agreement": None, "delta_top1": None, "delta_top1_ci95": None,
            "discordant": None, "mcnemar_p": None,
        }
        if ref is not None and n:
            ref_correct = [r.correct(ref) for r in rows]
            b = sum(m and not f for m, f in zip(correct, ref_correct))
            c = sum(f and not m for m, f in zip(correct, ref_correct))
            a = sum(m and f for m, f in zip(correct, ref_correct))
            lo, hi = newcombe_paired_interval(a, b, c, n - a - b - c)
            entry["agreement"] = _pct(sum(r.agrees(j, ref) for r in rows), n)
            entry["delta_top1"] = round(100.0 * (b - c) / n, 3)
            entry["delta_top1_ci95"] = [round(100 * lo, 3), round(100 * hi, 3)]
            entry["discordant"] = {"only_mode_right": b, "only_fp16_right": c}
            entry["mcnemar_p"] = round(mcnemar_exact_p(b, c), 6)
        entry.update(calibration(rows, j))
        results[mode] = entry
    return results


ECE_BINS = 15


def calibration(rows: list[ImageOutcome], j: int) -> dict:
    """Expected calibration error (ECE_BINS equal-width bins of the top-1 probability, weighted by their
    images), negative log-likelihood of the label, and mean KL(fp16 || mode) in nats, for mode j; None where
    the rows do not carry them (a resumed run's older part)."""
    if not rows or any(r.confidence is None for r in rows):
        return {"ece": None, "nll": None, "kl_from_fp16": None}
    bins = [[0, 0.0, 0] for _ in range(ECE_BINS)]  # images, summed confidence, correct
    for r in rows:
        c = r.confidence[j]
        b = bins[min(int(c * ECE_BINS), ECE_BINS - 1)]
        b[0], b[1], b[2] = b[0] + 1, b[1] + c, b[2] + r.correct(j)
    n = len(rows)
    ece = sum(abs(total_c - correct) for count, total_c, correct in bins if count) / n
    kl = None if any(r.kl_from_fp16 is None for r in rows) else sum(r.kl_from_fp16[j] for r in rows) / n
    return {"ece": round(100.0 * ece, 3), "nll": round(-sum(r.log_p_label[j] for r in rows) / n, 5),
            "kl_from_fp16": round(kl, 6) if kl is not None else None}


def _pct(k: int, n: int) -> Optional[float]:
    return round(100.0 * k / n, 3) if n else None


def per_class(modes: list[str], rows: list[ImageOutcome]) -> dict:
    """Per ImageNet class present: images, Top-1 % per mode and agreement with fp16 % per mode."""
    ref = modes.index(REFERENCE_MODE) if REFERENCE_MODE in modes else None
    groups: dict[int, list[ImageOutcome]] = {}
    for r in rows:
        groups.setdefault(r.label, []).append(r)
    out = {}
    for label in sorted(groups):
        group = groups[label]
        n = len(group)
        entry = {"count": n, "top1": {m: _pct(sum(r.correct(j) for r in group), n) for j, m in enumerate(modes)}}
        if ref is not None:
            entry["agreement"] = {m: _pct(sum(r.agrees(j, ref) for r in group), n)
                                  for j, m in enumerate(modes) if j != ref}
        out[str(label)] = entry
    return out
