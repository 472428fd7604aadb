"""Layers kept in fp16: `MODE+fp16[3,7]`, `--float-layers 3,7 | auto:K`, and `eval.py fallback`."""
import copy
import json

import pytest
import torch

from cli_fixtures import base, folder, model_state, weights  # noqa: F401 - fixtures
from conftest import DEIT_TINY_WEIGHTS, SAMPLE_IMAGES
from family_models import input_for, lively_model
from qflash_eval import modes
from qflash_eval.attention_swap import AttentionConfig, swap_attention
from qflash_eval.cli import main
from qflash_eval.data import DataError
from qflash_eval.data.base import Selection
from qflash_eval.fallback import rank_layers
from qflash_eval.fallback.calibration import calibration_positions


@pytest.fixture(scope="module")
def vit():
    model = lively_model("vit_tiny_patch16_224")
    return model, input_for(model, 3)


def _logits(model, name, x):
    if name not in modes.MODES:
        modes.parse_modes(name, with_reference=False)
    swapped = copy.deepcopy(model)
    swap_attention(swapped, AttentionConfig(name, backend="reference"))
    with torch.no_grad():
        return swapped(x)


def test_every_layer_in_fp16_predicts_as_fp16(vit, clean_modes):
    model, x = vit
    every = _logits(model, "qflash+fp16[" + ",".join(map(str, range(12))) + "]", x)
    fp16 = _logits(model, "fp16", x)  # timm's own attention, switched to SDPA
    assert torch.equal(every.argmax(1), fp16.argmax(1))
    assert torch.allclose(every, fp16, atol=1e-5, rtol=0)
    assert not torch.allclose(_logits(model, "qflash", x), fp16, atol=1e-5, rtol=0)  # the integer mode differs


def test_no_float_layers_is_the_pure_mode(vit, clean_modes):
    model, x = vit
    assert torch.equal(_logits(model, "qflash+fp16[]", x), _logits(model, "qflash", x))
    one = _logits(model, "qflash+fp16[4]", x)
    assert not torch.equal(one, _logits(model, "qflash", x))


def test_the_worst_layer_is_ranked_first_on_a_coarsened_model():
    """An outlier channel in layer 7's keys (x 100, its queries / 100: the same scores) coarsens that layer's
    int8 steps (as in test_diagnose): ranking and auto:1 pick layer 7."""
    model = lively_model("vit_tiny_patch16_224")
    with torch.no_grad():
        qkv = model.blocks[7].attn.qkv
        dim = qkv.in_features
        qkv.weight[dim + 5] *= 100
        qkv.bias[dim + 5] *= 100
        qkv.weight[5] /= 100
        qkv.bias[5] /= 100
    ranking = rank_layers(model, "qflash", input_for(model, 2), torch.float32, torch.device("cpu"), "reference")
    assert ranking[0][0] == 7 and ranking[0][1] < ranking[1][1] - 3 and len(ranking) == 12


@pytest.mark.parametrize("size, n, count", [(500, 250, 64), (500, 499, 8), (10, 3, 100), (1000, 7, 5)])
def test_calibration_and_evaluation_images_never_overlap(size, n, count):
    calibration = calibration_positions(size, n, count)
    evaluated = set(Selection(size, n).positions)
    assert not evaluated & set(calibration)
    assert len(calibration) == min(count, size - n) == len(set(calibration))


def test_calibration_needs_images_left_out():
    with pytest.raises(DataError, match="pass --num-samples below"):
        calibration_positions(500, None, 8)
    with pytest.raises(DataError, match="pass --num-samples below"):
        calibration_positions(500, 500, 8)


def test_a_layer_past_the_model_is_named(vit, clean_modes):
    modes.parse_modes("qflash+fp16[12]")
    with pytest.raises(ValueError, match="attention layers 0-11; no layer 12"):
        swap_attention(copy.deepcopy(vit[0]), AttentionConfig("qflash+fp16[12]"))


def test_float_layers_flag_adds_the_mode_beside_each_integer_mode(tmp_path, weights, folder, clean_modes):
    out = tmp_path / "r.json"
    assert main(base(weights, folder, out, "-b", "6") + ["--mode", "qflash", "--float-layers", "1,3",
                                                         "--qflash-backend", "reference"]) == 0
    report = json.loads(out.read_text())
    assert list(report["results"]) == ["fp16", "qflash", "qflash+fp16[1,3]"]
    entry = report["results"]["qflash+fp16[1,3]"]
    assert entry["float_layers"] == [1, 3] and entry["integer_mode"] == "qflash" and entry["count"] == 12
    assert report["settings"]["float_layers"] == "1,3"


@pytest.mark.slow
def test_auto_and_the_fallback_command_on_real_images(tmp_path, clean_modes):
    out = tmp_path / "a.json"
    common = ["-m", "DeiT-T", "--checkpoint", str(DEIT_TINY_WEIGHTS), "--data", str(SAMPLE_IMAGES), "--mode",
              "qflash_paper", "--calibration-images", "4", "--num-samples", "4", "-b", "4", "--no-progress",
              "--qflash-backend", "reference"]
    assert main(common + ["--float-layers", "auto:1", "--results", str(out)]) == 0
    report = json.loads(out.read_text())
    chosen = report["float_layers"]
    name = next(iter(chosen["chosen"]))
    assert name in report["results"] and name.startswith("qflash_paper+fp16[")
    evaluated = set(Selection(500, 4).positions)
    assert chosen["images"] == 4 and not evaluated & set(chosen["positions"])
    worst = chosen["chosen"][name]["ranking_sqnr_db"][0][0]
    assert name == f"qflash_paper+fp16[{worst}]"
    fb = tmp_path / "f.json"
    assert main(["fallback"] + common + ["--max-float-layers", "1", "--results", str(fb)]) == 0
    table = json.loads((tmp_path / "f.fallback.json").read_text())
    assert [len(r["float_layers"]) for r in table["rows"]] == [0, 1]
    assert table["rows"][1]["float_layers"] == [table["ranking_sqnr_db"][0][0]]
    assert all(r["count"] == 4 for r in table["rows"]) and (tmp_path / "f.fallback.png").exists()
    # images/s are measured on CUDA only, apart from the evaluation; the CPU table says so
    assert all(r["images_per_s"] is None for r in table["rows"]) and "CUDA only" in table["speed"]
    assert "| none |" in (tmp_path / "f.fallback.md").read_text()


def test_each_step_is_timed_alike_on_one_batch(vit, clean_modes):
    from qflash_eval.fallback.speed import images_per_second

    model, _ = vit
    speeds = images_per_second(model, ["fp16", "qflash+fp16[0]"], 2, (3, 224, 224), torch.float32,
                               torch.device("cpu"), "reference", repeats=2)
    assert list(speeds) == ["fp16", "qflash+fp16[0]"] and all(s > 0 for s in speeds.values())


def test_fallback_and_sweep_refuse_existing_results_before_loading(tmp_path, capsys, monkeypatch):
    import qflash_eval.models

    def no_model(*_a, **_k):
        raise AssertionError("the model was loaded before the results path was checked")

    monkeypatch.setattr(qflash_eval.models, "create_model", no_model)
    taken = tmp_path / "r.json"
    taken.write_text("{}")
    common = ["-m", "DeiT-T", "--data", str(SAMPLE_IMAGES), "--results", str(taken)]
    assert main(["fallback", "--mode", "qflash"] + common) == 2
    assert main(["sweep", "--mode", "qflash(p_bits=5..6)"] + common) == 2
    assert capsys.readouterr().err.count("--overwrite") == 2

