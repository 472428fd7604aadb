"""Calibration per mode: expected calibration error (15 equal-width bins), NLL of the label and KL(fp16 || mode),
worked by hand; carried through the predictions file that --resume reads."""
import math

import pytest
import torch

from qflash_eval.evaluate import probability_stats
from qflash_eval.outcome import ImageOutcome
from qflash_eval.outputs import predictions_text, read_predictions
from qflash_eval.stats import calibration, summarize


def _row(i, label, top1, conf, logp, kl=(0.0, 0.0)):
    return ImageOutcome(i, label, list(top1), [True, True], [[t, 0, 0, 0, 0] for t in top1], f"img{i}",
                        list(conf), list(logp), list(kl))


def test_ece_and_nll_worked_by_hand():
    # mode 0: confidences 0.95 (right), 0.95 (wrong), 0.30 (right), 0.10 (wrong)
    # bins of width 1/15: {0.95, 0.95} in bin 14, 0.30 in bin 4, 0.10 in bin 1
    # ECE = (|1.9 - 1| + |0.3 - 1| + |0.1 - 0|) / 4 = (0.9 + 0.7 + 0.1) / 4 = 0.425
    rows = [_row(0, 1, (1, 1), (0.95, 0.5), (math.log(0.95), -1.0)),
            _row(1, 2, (3, 2), (0.95, 0.5), (math.log(0.01), -2.0)),
            _row(2, 3, (3, 3), (0.30, 0.5), (math.log(0.30), -1.0)),
            _row(3, 4, (5, 4), (0.10, 0.5), (math.log(0.05), -2.0))]
    c0 = calibration(rows, 0)
    assert c0["ece"] == pytest.approx(42.5)
    assert c0["nll"] == pytest.approx(-(math.log(0.95) + math.log(0.01) + math.log(0.30) + math.log(0.05)) / 4,
                                      abs=1e-5)
    # mode 1: every confidence 0.5 (bin 7), every prediction right: ECE = |2 - 4| / 4 = 0.5
    assert calibration(rows, 1)["ece"] == pytest.approx(50.0) and calibration(rows, 1)["nll"] == pytest.approx(1.5)


def test_kl_and_confidence_from_the_logits():
    ref = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), dim=1)
    mode = torch.log_softmax(torch.tensor([[1.0, 1.0, -1.0], [0.0, 0.0, 0.0]]), dim=1)
    stats = probability_stats([ref, mode], torch.tensor([0, 2]), reference=0)
    p, q = ref.exp(), mode.exp()
    assert stats.shape == (2, 2, 3)
    assert stats[0, 1, 2].item() == pytest.approx(float((p[0] * (p[0] / q[0]).log()).sum()))
    assert stats[1, 1, 2].item() == pytest.approx(0.0, abs=1e-9) and stats[:, 0, 2].abs().max() < 1e-9
    assert stats[0, 0, 0].item() == pytest.approx(p[0].max().item()) and stats[1, 1, 1].item() == pytest.approx(
        math.log(1 / 3))
    masked = torch.log_softmax(torch.tensor([[2.0, float("-inf"), 0.0]]), dim=1)  # --valid-labels
    assert torch.isfinite(probability_stats([masked, masked], torch.tensor([0]), 0)).all()


def test_the_predictions_file_carries_them_for_resume(tmp_path):
    rows = [_row(0, 1, (1, 1), (0.9, 0.8), (-0.1, -0.2), (0.0, 0.03)),
            _row(1, 2, (2, 0), (0.6, 0.4), (-0.5, -3.0), (0.0, 0.2))]
    path = tmp_path / "p.csv"
    path.write_text(predictions_text(["fp16", "qflash"], rows))
    back = read_predictions(path, ["fp16", "qflash"])
    assert [r.confidence for r in back] == [[0.9, 0.8], [0.6, 0.4]] and back[1].kl_from_fp16 == [0.0, 0.2]
    results = summarize(["fp16", "qflash"], back, [1.0, 1.0])
    assert results["qflash"]["kl_from_fp16"] == pytest.approx(0.115) and results["fp16"]["kl_from_fp16"] == 0.0


def test_older_rows_without_them_report_none(tmp_path):
    old = [ImageOutcome(0, 1, [1], [True], [[1, 2, 3, 4, 5]], "a")]
    assert calibration(old, 0) == {"ece": None, "nll": None, "kl_from_fp16": None}
    path = tmp_path / "old.csv"
    path.write_text(predictions_text(["fp16"], old))
    assert "confidence" not in path.read_text() and read_predictions(path, ["fp16"])[0].confidence is None
