"""The command line as a user meets it: flags, bad input, outputs, compare, the suite, the API
(faults, signals and resume: test_cli_faults.py).

Random-weight DeiT-Tiny on a dozen synthetic images: plumbing, not accuracy.
"""
import csv
import json
import os
import pathlib
import subprocess
import sys

import pytest
import timm
import torch

from cli_fixtures import ROOT, base, errors_of, folder, model_state, weights  # noqa: F401 - fixtures
from qflash_eval.cli import main


# ---- results files ---------------------------------------------------------------------------------------

def test_results_csv_name_writes_every_output_beside_it(tmp_path, weights, folder):
    out = tmp_path / "r.csv"
    assert main(base(weights, folder, out, "-b", "5")) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema_version"] >= 4 and report["batch_sizes_run"] == {"2": 1, "5": 2}
    from qflash_eval.run_config import FIELD_NAMES

    assert list(report["settings"]) == list(FIELD_NAMES) and report["settings"]["batch_size"] == 5
    on_cuda = torch.cuda.is_available()  # the default device; graphs resolve to on there, off on a CPU
    assert report["settings"]["cuda_graphs"] is on_cuda and report["cuda_graphs"] is on_cuda
    rows = list(csv.DictReader(open(out)))
    assert [r["mode"] for r in rows] == ["fp16", "fp32"]
    for r in rows:  # tidy: one value per column, numbers as numbers
        assert r["model"] == "deit_tiny" and r["timm_name"] == "deit_tiny_patch16_224.fb_in1k"
        assert float(r["top1"]) + float(r["top1_err"]) == pytest.approx(100.0)
        assert float(r["delta_top1_ci95_low"]) <= float(r["delta_top1"]) <= float(r["delta_top1_ci95_high"])
        assert int(r["param_count"]) == 5717416 and int(r["img_size"]) == 224 and r["interrupted"] == "False"
        assert float(r["crop_pct"]) == 0.9 and r["interpolation"] == "bicubic" and int(r["count"]) == 12
    predictions = list(csv.DictReader(open(tmp_path / "r.predictions.csv")))
    assert len(predictions) == 12 and predictions[0]["name"].endswith("_000.JPEG")
    assert len(predictions[0]["top5_fp32"].split()) == 5
    assert predictions[0]["top5_fp32"].split()[0] == predictions[0]["top1_fp32"]
    per_class = report["per_class"]
    assert sum(c["count"] for c in per_class.values()) == 12 and "fp32" in per_class["0"]["agreement"]
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "| fp32 |" in (tmp_path / "r.md").read_text() and "| 72.21 (n/c) |" in (tmp_path / "r.md").read_text()


def test_result_names_keep_every_dot_but_the_suffix():
    from qflash_eval.outputs import result_paths

    paths = result_paths("results/vit_base_patch16_224.augreg2_in21k_ft_in1k-20261201.csv")
    stem = "results/vit_base_patch16_224.augreg2_in21k_ft_in1k-20261201"
    assert [str(p) for p in paths.all()] == [stem + e for e in (".json", ".csv", ".md", ".predictions.csv", ".png")]
    assert str(result_paths("r.v2", "json").json) == "r.v2.json"


@pytest.mark.parametrize("case", ["exists", "folder", "parent is a file", "unwritable", "suffix"])
def test_results_path_is_checked_before_the_evaluation(tmp_path, weights, folder, case, capsys, monkeypatch):
    import qflash_eval.run as run_module

    out = tmp_path / "r.json"
    if case == "exists":
        out.write_text("{}")
    elif case == "folder":
        out.mkdir()
    elif case == "parent is a file":
        (tmp_path / "f").write_text("")
        out = tmp_path / "f" / "r.json"
    elif case == "unwritable":
        out = pathlib.Path("/proc/qflash-eval-test/r.json")
    else:
        out = tmp_path / "r.txt"
    monkeypatch.setattr(run_module, "create_model", lambda *a, **k: pytest.fail("the model was built"))
    assert main(base(weights, folder, out)) == 2
    message = errors_of(capsys)
    assert {"exists": "already exists: pass --overwrite", "folder": "is a folder", "parent is a file": "is a file",
            "unwritable": "cannot write results", "suffix": "must end in .json or .csv"}[case] in message
    if case == "exists":
        monkeypatch.undo()
        assert main(base(weights, folder, out, "--overwrite")) == 0
        assert json.loads(out.read_text())["data"]["count"] == 12


# ---- weights ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["corrupt safetensors", "truncated safetensors", "garbage pth", "pickled model",
                                  "wrong model"])
def test_bad_weights_files_are_named(tmp_path, weights, folder, kind, capsys):
    path = tmp_path / ("w.safetensors" if "safetensors" in kind else "w.pth")
    if kind == "corrupt safetensors":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated safetensors":
        path.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif kind == "garbage pth":
        path.write_bytes(b"\x80\x04garbage" + os.urandom(64))
    elif kind == "pickled model":
        torch.save(timm.create_model("deit_tiny_patch16_224", pretrained=False), path)
    else:
        torch.save(timm.create_model("vit_small_patch16_224", pretrained=False).state_dict(), path)
    assert main(base(path, folder, tmp_path / "r.json")) == 2
    message = errors_of(capsys)
    assert str(path) in message and "Traceback" not in message
    if kind == "pickled model":
        assert "state_dict()" in message


def test_timm_checkpoint_with_ema_and_module_prefixes_loads(tmp_path, model_state, folder):
    ema = {k: v + 1.0 if v.is_floating_point() and k == "head.bias" else v for k, v in model_state.items()}
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model_state.items()},
                "state_dict_ema": {f"module.{k}": v for k, v in ema.items()}}, path)
    assert main(base(path, folder, tmp_path / "plain.json")) == 0
    assert main(base(path, folder, tmp_path / "ema.json", "--use-ema")) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    with_ema = json.loads((tmp_path / "ema.json").read_text())
    assert plain["weights_sha256"] == with_ema["weights_sha256"] and with_ema["settings"]["use_ema"]
    from safetensors.torch import save_file

    save_file(model_state, str(tmp_path / "same.safetensors"))
    assert main(base(tmp_path / "same.safetensors", folder, tmp_path / "same.json")) == 0
    same = (tmp_path / "same.predictions.csv").read_text().replace("same", "")
    assert (tmp_path / "plain.predictions.csv").read_text() == same  # the state_dict, prefixes stripped


# ---- model names and flags -------------------------------------------------------------------------------------

def test_paper_labels_and_timm_flags(tmp_path, weights, folder):
    argv = ["-m", "DeiT-T", "--checkpoint", str(weights), "--data", str(folder), "--mode", "fp32", "-b", "6", "-j",
            "1", "--results-file", str(tmp_path / "t"), "--results-format", "csv", "--no-progress"]
    assert main(argv) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["model"] == "deit_tiny" and report["batch_size"] == 6 and report["workers"] == 1
    assert (tmp_path / "t.csv").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--model", "deit_tiny", "--pretrained", "--weights", "w.safetensors"], "give one of them"),
    (["--all", "--model", "deit_tiny"], "give one of them"),
])
def test_conflicting_timm_flags_are_refused(argv, message, capsys):
    assert main(argv) == 2
    assert message in errors_of(capsys)


def test_all_means_the_papers_seven_models():
    from qflash_eval.cli import config_from_args
    from qflash_eval.config import expand_models

    config = config_from_args(["--all", "--data", "x"])
    assert expand_models(config.model) == ["vit_small", "vit_base", "deit_tiny", "deit_small", "deit_base",
                                         "swin_tiny", "swin_small"]


def test_unknown_model_gets_suggestions(capsys):
    assert main(["--model", "deit_tinny", "--data", "."]) == 2
    message = errors_of(capsys)
    assert "unknown model 'deit_tinny'" in message and "deit_tiny" in message.split("did you mean")[1]


@pytest.mark.parametrize("argv, message", [
    (["--num-samples", "0"], "--num-samples must be at least 1"),
    (["--num-samples", "-3"], "--num-samples must be at least 1"),
    (["--num-samples", "13"], "more than the 12 images"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--granularity", "static", "--calibration-images", "0", "--mode", "qflash"], "--calibration-images >= 1"),
])
def test_bad_numbers_name_their_flag(tmp_path, weights, folder, argv, message, capsys):
    assert main(base(weights, folder, tmp_path / "r.json", *argv)) == 2
    assert message in errors_of(capsys)


def test_default_workers_follow_the_cores_and_give_no_warning(tmp_path, weights, folder, capfd):
    from qflash_eval.run import default_workers

    cores = len(os.sched_getaffinity(0))
    assert default_workers(1) == max(0, min(8, cores - 1)) if cores > 1 else default_workers(1) == 0
    assert default_workers(cores) == 0
    argv = [a for a in base(weights, folder, tmp_path / "r.json") if a not in ("-j", "0")]
    assert main(argv) == 0
    assert "suggested max number of worker" not in capfd.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["workers"] == default_workers(1)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["compare", "--help"]])
def test_help_version_and_compare_start_without_torch(argv):
    code = ("import sys, time; t = time.perf_counter(); from qflash_eval.cli import main\n"
            f"try: main({argv!r})\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "qflash-eval" in done.stdout or "usage" in done.stdout


# ---- compare, the suite, the Python API ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, weights, folder):
    d = tmp_path_factory.mktemp("runs")
    assert main(base(weights, folder, d / "a.json")) == 0
    assert main(base(weights, folder, d / "b.json", "--num-samples", "6")) == 0
    return d / "a.json", d / "b.json"


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "not a qflash-eval results file"), ('{"results": {}}', "no 'data'"), ("{nope", "is not JSON")])
def test_compare_refuses_files_that_are_not_results(tmp_path, content, message, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["compare", str(bad)]) == 2
    assert message in errors_of(capsys)


def test_compare_warns_where_runs_differ_and_writes_table_csv_chart(tmp_path, two_runs, capsys):
    a, b = two_runs
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "nope" / "t.md")]) == 2
    assert "does not exist" in errors_of(capsys)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "t.md"), "--csv", str(tmp_path / "t.csv"),
                 "--chart", str(tmp_path / "t.png")]) == 0
    captured = capsys.readouterr()
    assert "| a | deit_tiny | fp32 |" in captured.out and "| b | deit_tiny | fp32 |" in captured.out
    assert "72.21 (n/c)" in captured.out  # the paper's FP32 Top-1, not comparable on 12 images
    assert "warning: the runs differ in image set" in captured.err
    assert "model" not in captured.err.split("image set")[0]
    assert len(list(csv.DictReader(open(tmp_path / "t.csv")))) == 4
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_several_models_in_one_command_report_the_missing_weights(tmp_path, weights, folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wdir = tmp_path / "weights"
    wdir.mkdir()
    (wdir / "DeiT-T.safetensors").symlink_to(weights)  # found by its paper label
    out = tmp_path / "suite"
    argv = ["--model", "deit_tiny,vit_small", "--weights-dir", str(wdir), "--data", str(folder), "--mode", "fp32",
            "--results", str(out), "--no-progress", "-j", "0", "--num-samples", "4"]
    assert main(argv) == 0
    combined = json.loads((out / "combined.json").read_text())
    assert list(combined["evaluated"]) == ["deit_tiny"] and "vit_small" in combined["not_evaluated"]
    assert "weights-dir" in combined["not_evaluated"]["vit_small"] or "hub" in combined["not_evaluated"]["vit_small"]
    assert json.loads((out / "deit_tiny.json").read_text())["data"]["count"] == 4
    assert "Not evaluated" in (out / "combined.md").read_text() and (out / "combined.png").is_file()
    assert [r["model"] for r in csv.DictReader(open(out / "combined.csv"))] == ["deit_tiny", "deit_tiny"]


def test_python_api(tmp_path, model_state, folder):
    import qflash_eval

    model = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    model.load_state_dict(model_state)
    report = qflash_eval.evaluate_model(model, str(folder), modes=("fp32",), num_samples=4, batch_size=2,
                                        workers=0, progress=False)
    assert report["results"]["fp32"]["count"] == 4 and list(report["results"]) == ["fp16", "fp32"]
    assert qflash_eval.AttentionConfig("qflash").granularity == "sample" and qflash_eval.__version__
    copy_ = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    assert qflash_eval.swap_attention(copy_, qflash_eval.AttentionConfig("qflash")) == 12
