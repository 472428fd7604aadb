"""A user's own attention variant as a mode: `package.module:function`, `file.py:function` and entry points
evaluate and diagnose like the built-in modes; a broken variant stops the run with its name and the finished
batches written."""
import csv
import json
import textwrap

import pytest
import torch

from cli_fixtures import base, folder, model_state, weights  # noqa: F401 - fixtures
from qflash_eval import modes
from qflash_eval.cli import main
from qflash_eval.variants import VariantError

VARIANTS = textwrap.dedent('''
    import torch
    import torch.nn.functional as F

    CALLS = [0]

    def sdpa(q, k, v, *, bias=None, mask=None, softmax_scale=None, granularity="sample", group=1):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=softmax_scale)

    def uniform(q, k, v, *, bias=None, mask=None, softmax_scale=None, granularity="sample", group=1):
        return v.mean(dim=2, keepdim=True).expand(*q.shape[:-1], v.shape[-1]).contiguous()

    def nan_after(q, k, v, **kw):
        CALLS[0] += 1
        out = F.scaled_dot_product_attention(q, k, v, scale=kw["softmax_scale"])
        return out if CALLS[0] <= 24 else out * float("nan")

    def wrong_shape(q, k, v, **kw):
        return q[..., :1]

    def float64(q, k, v, **kw):
        return q.double()

    def raises(q, k, v, **kw):
        raise ZeroDivisionError("my softmax divided by zero")
''')


@pytest.fixture
def variants_file(tmp_path, monkeypatch, clean_modes):
    path = tmp_path / "my_variants.py"
    path.write_text(VARIANTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return path


def _predictions(path):
    return list(csv.DictReader(open(path.with_suffix(".predictions.csv"))))


def test_exact_sdpa_from_a_file_predicts_as_fp16(tmp_path, weights, folder, variants_file):
    spec = f"{variants_file}:sdpa"
    out = tmp_path / "r.json"
    assert main(base(weights, folder, out, "-b", "4") + ["--mode", spec]) == 0
    report = json.loads(out.read_text())
    entry = report["results"][spec]
    assert entry["count"] == 12
    assert entry["variant"] == spec and entry["file"] == str(variants_file) and len(entry["file_sha256"]) == 64
    rows = _predictions(out)
    assert len(rows) == 12 and all(r[f"top5_{spec}"] == r["top5_fp16"] for r in rows)


def test_module_function_evaluates_and_diagnoses(tmp_path, weights, folder, variants_file):
    out = tmp_path / "r.json"
    assert main(base(weights, folder, out, "-b", "6") + ["--mode", "my_variants:uniform"]) == 0
    report = json.loads(out.read_text())
    entry = report["results"]["my_variants:uniform"]
    assert entry["count"] == 12 and entry["variant"] == "my_variants:uniform"
    assert entry["file"] == str(variants_file) and entry["package_version"] is None
    assert entry["attention"] == "user variant my_variants:uniform"
    d = tmp_path / "d.json"
    assert main(["diagnose", "-m", "deit_tiny", "--weights", str(weights), "--data", str(folder), "--mode",
                 "my_variants:uniform,my_variants:sdpa", "--num-samples", "2", "--results", str(d)]) == 0
    summary = json.loads(d.read_text())
    text = json.dumps(summary)
    assert "my_variants:uniform" in text and "my_variants:sdpa" in text


def test_a_variant_that_turns_non_finite_stops_with_the_finished_batches(tmp_path, weights, folder,
                                                                         variants_file, capsys):
    out = tmp_path / "r.json"
    # 12 attention layers a batch: the third batch of 4 gets NaN
    main(base(weights, folder, out, "-b", "4") + ["--mode", "my_variants:nan_after"])
    report = json.loads(out.read_text())
    assert not report["complete"] and "my_variants:nan_after" in report["stopped"][0]
    assert "non-finite" in report["stopped"][0] and report["results"]["fp16"]["count"] == 8
    assert len(_predictions(out)) == 8


@pytest.mark.parametrize("function, message", [
    ("wrong_shape", "of shape (4, 3, 197, 1); expected torch.float16 of shape (4, 3, 197, 64)"),
    ("float64", "returned torch.float64"),
    ("raises", "raised ZeroDivisionError: my softmax divided by zero"),
])
def test_broken_variants_are_named(tmp_path, weights, folder, variants_file, function, message):
    out = tmp_path / "r.json"
    main(base(weights, folder, out, "-b", "4") + ["--mode", f"my_variants:{function}"])
    stopped = json.loads(out.read_text())["stopped"][0]
    assert f"variant my_variants:{function}" in stopped and message in stopped


def test_the_check_itself():
    from qflash_eval.variants.check import checked_attend

    attend = checked_attend("v", lambda q, k, v, **kw: v * float("inf"))
    q = torch.ones(1, 2, 3, 4)
    with pytest.raises(VariantError, match="variant v returned 24 non-finite values of 24"):
        attend(q, q, q, None)
    inf_in = q.clone()
    inf_in[0, 0, 0, 0] = float("inf")
    assert attend(inf_in, q, inf_in, None).shape == q.shape  # non-finite inputs may give non-finite outputs
    from qflash_eval.variants.check import check_output

    check_output("v", q * float("nan"), q, q, finite=False)  # past CUDA's first calls: shape and dtype only
    with pytest.raises(VariantError, match="expected torch.float32 of shape"):
        check_output("v", q[..., :1], q, q, finite=False)


def test_specs_that_cannot_load_are_named(tmp_path, variants_file):
    with pytest.raises(ValueError, match="no file"):
        modes.parse_modes(f"{tmp_path}/absent.py:sdpa")
    with pytest.raises(ValueError, match="has no function 'nothing'"):
        modes.parse_modes("my_variants:nothing")
    with pytest.raises(ValueError, match="cannot import no_such_package_xyz"):
        modes.parse_modes("no_such_package_xyz.mod:fn")
    with pytest.raises(ValueError, match="unknown mode qflsh"):
        modes.parse_modes("qflsh")


def test_entry_points_register_modes(variants_file, monkeypatch, capsys):
    from qflash_eval.variants import load

    monkeypatch.setattr(load, "entry_point_modes", lambda: {"mine": "my_variants:sdpa"})
    monkeypatch.setattr("qflash_eval.variants.entry_point_modes", load.entry_point_modes)
    assert modes.parse_modes("qflash,mine") == ["fp16", "qflash", "mine"]
    fields = modes.MODES["mine"].report_fields(None, "cpu")
    assert fields["entry_point"] == "mine" and fields["variant"] == "my_variants:sdpa"
    assert main(["--list-modes"]) == 0
    listed = capsys.readouterr().out
    assert "mine" in listed and "my_variants:sdpa" in listed and "qflash_paper" in listed
