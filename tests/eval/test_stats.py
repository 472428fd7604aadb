"""Paired statistics of a mode against fp16: exact McNemar p-values and Newcombe's interval."""
import math

import pytest

from qflash_eval.outcome import ImageOutcome
from qflash_eval.stats import mcnemar_exact_p, newcombe_paired_interval, summarize, wilson_interval


def test_mcnemar_exact_p_by_hand():
    # b = 10, c = 3: 2 * P(X <= 3), X ~ Binomial(13, 1/2) = 2 * (1 + 13 + 78 + 286) / 2**13
    assert mcnemar_exact_p(10, 3) == pytest.approx(2 * 378 / 8192, abs=1e-15)
    assert mcnemar_exact_p(3, 10) == mcnemar_exact_p(10, 3)
    assert mcnemar_exact_p(0, 0) == 1.0 and mcnemar_exact_p(2, 2) == 1.0
    assert mcnemar_exact_p(0, 12) == pytest.approx(2 / 2**12)


def test_wilson_interval_known_value():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)  # the textbook rule-of-three neighbourhood


@pytest.mark.parametrize("a, b, c, d", [(8, 5, 4, 9), (390, 3, 1, 106), (100, 0, 0, 0), (40, 0, 0, 10), (0, 2, 0, 0)])
def test_newcombe_interval_is_sound(a, b, c, d):
    n = a + b + c + d
    lo, hi = newcombe_paired_interval(a, b, c, d)
    theta = (b - c) / n
    assert -1.0 <= lo <= theta <= hi <= 1.0
    assert hi - lo > 0  # never the degenerate [0, 0] of a normal approximation without discordant pairs
    mirrored = newcombe_paired_interval(a, c, b, d)
    assert mirrored[0] == pytest.approx(-hi) and mirrored[1] == pytest.approx(-lo)


def test_newcombe_interval_narrows_with_more_images():
    small = newcombe_paired_interval(8, 1, 1, 2)
    large = newcombe_paired_interval(800, 100, 100, 200)
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5


def test_summary_reports_discordant_pairs_and_p():
    # (index, label, [top1 fp16, top1 mode], [hit5 fp16, hit5 mode])
    rows = [(i, 1, [1, 1], [1, 1]) for i in range(6)] + [(6, 2, [2, 0], [1, 1]), (7, 3, [0, 3], [0, 1])]
    rows = [ImageOutcome(*r, [], f"img{r[0]}") for r in rows + [(8, 4, [4, 0], [1, 0])]]
    res = summarize(["fp16", "qflash"], rows, [1.0, 1.0])["qflash"]
    assert res["discordant"] == {"only_mode_right": 1, "only_fp16_right": 2}
    assert res["mcnemar_p"] == pytest.approx(1.0)
    assert res["delta_top1"] == pytest.approx(100 * (1 - 2) / 9, abs=1e-3)
    lo, hi = res["delta_top1_ci95"]
    assert lo < res["delta_top1"] < hi and not math.isnan(lo)
