"""eval.py diagnose: fp16 against itself is exact, a layer given coarse int8 scales is found as the worst,
and the command writes its JSON, Markdown and PNG from real weights and images."""
import json

import pytest
import torch

from conftest import DEIT_TINY_WEIGHTS, SAMPLE_IMAGES
from family_models import lively_model
from qflash_eval.diagnose.measure import Diagnosis

pytestmark = pytest.mark.slow


def images(n=4, size=224):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_fp16_against_itself_is_exact():
    diagnosis = Diagnosis(lively_model("vit_tiny_patch16_224"), ["fp16"], "sample", torch.float32, torch.device("cpu"),
                          "reference")
    diagnosis.add_batch(images(2))
    diagnosis.add_batch(images(1))
    for layer in range(12):
        assert torch.equal(diagnosis.sums.get(("error", "fp16", layer)), torch.zeros(3, dtype=torch.float64))
        assert torch.all(diagnosis.sums.get(("kl", "fp16", layer)) == 0)
        assert torch.all(diagnosis.sums.get(("flushed", "fp16", layer)) == 0)
    summary = diagnosis.summary()["fp16"]
    assert all(e[1] == 0 for e in (diagnosis.sums.get(("block", "fp16", d)) for d in range(12)))
    assert len(summary["propagated_sqnr_db"]) == 12 and diagnosis.images == 3
    assert all(c == pytest.approx(1.0) for layer in summary["layers"] for c in layer["cosine"])


@pytest.mark.parametrize("mode", ["qflash"])
def test_a_layer_with_coarse_scales_is_the_worst(mode):
    """An outlier channel in layer 7's keys (x 100, its queries / 100: the same scores) takes that layer's
    per-image int8 range: every other channel of k gets coarse steps, and the diagnosis names layer 7."""
    model = lively_model("vit_tiny_patch16_224")
    with torch.no_grad():
        qkv = model.blocks[7].attn.qkv
        dim = qkv.in_features
        qkv.weight[dim + 5] *= 100  # k channel 5
        qkv.bias[dim + 5] *= 100
        qkv.weight[5] /= 100  # q channel 5: q.k unchanged, so fp16 itself is untouched
        qkv.bias[5] /= 100
    diagnosis = Diagnosis(model, [mode], "sample", torch.float32, torch.device("cpu"), "reference")
    diagnosis.add_batch(images(2))
    summary = diagnosis.summary()[mode]
    assert summary["worst"]["layer"] == 7
    means = [sum(c["sqnr_db"]) / len(c["sqnr_db"]) for c in summary["layers"]]
    assert means[7] < min(m for i, m in enumerate(means) if i != 7) - 3
    scales = diagnosis.scales()
    assert scales[7]["k"]["mean"] > 5 * max(s["k"]["mean"] for i, s in enumerate(scales) if i != 7)


def test_diagnose_command_writes_its_files(tmp_path):
    from qflash_eval.cli import main

    out = tmp_path / "d.json"
    assert main(["diagnose", "-m", "DeiT-T", "--checkpoint", str(DEIT_TINY_WEIGHTS), "--data", str(SAMPLE_IMAGES),
                 "--mode", "qflash,peers", "-n", "4", "-b", "2", "-j", "0", "--no-progress", "--qflash-backend", "reference",
                 "--results", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["modes"]) == ["qflash", "sage", "intflash", "fp8"] and report["images"] == 4
    assert len(report["layers"]) == 12 and len(report["scales"]) == 12 and report["provenance"]["commit"]
    for mode, m in report["modes"].items():
        assert len(m["layers"][0]["sqnr_db"]) == 3 and len(m["propagated_sqnr_db"]) == 12
        assert m["layers"][m["worst"]["layer"]]["sqnr_db"][m["worst"]["head"]] == m["worst"]["sqnr_db"]
    rows = [line for line in (tmp_path / "d.md").read_text().splitlines() if line.startswith("| qflash | ")]
    assert len(rows) == 1 and f"| {report['modes']['qflash']['worst']['layer']} |" in rows[0]
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["diagnose", "-m", "DeiT-T", "--data", str(SAMPLE_IMAGES), "--mode", "fp16"]) == 2


def test_diagnose_keeps_finished_batches_on_ctrl_c_and_guards_results(tmp_path, monkeypatch):
    from qflash_eval.cli import main

    calls = []
    add = Diagnosis.add_batch

    def interrupted_second_time(self, images):
        calls.append(images.shape[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        add(self, images)

    monkeypatch.setattr(Diagnosis, "add_batch", interrupted_second_time)
    out = tmp_path / "d.json"
    argv = ["diagnose", "-m", "DeiT-T", "--checkpoint", str(DEIT_TINY_WEIGHTS), "--data", str(SAMPLE_IMAGES),
            "--mode", "qflash", "-n", "4", "-b", "2", "-j", "0", "--no-progress", "--qflash-backend", "reference",
            "--results", str(out)]
    assert main(argv) == 130
    report = json.loads(out.read_text())
    assert report["interrupted"] and not report["complete"] and report["images"] == 2
    assert main(argv) == 2  # the files are there: kept unless --overwrite
    assert main(argv[:-2] + ["--results", str(tmp_path / "d.csv")]) == 2
