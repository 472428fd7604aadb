"""The command line under faults: unusable items, Ctrl-C and SIGTERM, --resume, batches and workers.

Random-weight DeiT-Tiny on a dozen synthetic images: plumbing, not accuracy.
"""
import json
import os
import signal


from cli_fixtures import base, errors_of, folder, make_folder, model_state, weights  # noqa: F401 - fixtures
from qflash_eval.cli import main


# ---- unusable items, signals, resume ------------------------------------------------------------------------

def test_unreadable_image_stops_and_keeps_the_finished_batches(tmp_path, weights, capsys):
    data = make_folder(tmp_path / "d", 12, bad={5: b"not an image"})
    out = tmp_path / "r.json"
    assert main(base(weights, data, out, "-b", "2")) == 1
    report = json.loads(out.read_text())
    assert report["data"]["count"] == 4 and not report["complete"] and "_005.JPEG" in report["stopped"][0]
    assert "stopped early" in errors_of(capsys)
    assert main(base(weights, data, tmp_path / "s.json", "-b", "2", "--skip-unreadable")) == 0
    skipped = json.loads((tmp_path / "s.json").read_text())
    assert skipped["data"]["count"] == 11 and skipped["unusable"][0]["index"] == 5
    assert "unusable item(s) skipped" in (tmp_path / "s.md").read_text()
    assert skipped["results"]["fp32"]["count"] == 11 and skipped["batch_sizes_run"] == {"1": 1, "2": 5}


def test_unreadable_image_in_a_decode_worker_is_one_line(tmp_path, weights, capsys):
    data = make_folder(tmp_path / "d", 6, bad={2: b""})
    assert main(base(weights, data, tmp_path / "r.json", "-b", "2", "-j", "2")) == 1
    message = errors_of(capsys)
    assert "_002.JPEG" in message and "Traceback" not in message


def interrupt_after_batches(monkeypatch, batches: int, signum=None):
    """Ctrl-C (or the signal `signum` to this process) as soon as `batches` batches have finished: the test
    waits for progress, not for a number of forward calls (warm-up calls on CUDA) or for a time."""
    import dataclasses

    import qflash_eval.evaluate as evaluate_module

    class StopAfter(list):
        def append(self, batch):
            super().append(batch)
            if len(self) == batches:
                if signum is None:
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signum)

    @dataclasses.dataclass
    class Interrupting(evaluate_module.PerImage):
        def __post_init__(self):
            self.batches = StopAfter()

    monkeypatch.setattr(evaluate_module, "PerImage", Interrupting)


def test_sigterm_writes_the_finished_work(tmp_path, weights, folder, monkeypatch):
    interrupt_after_batches(monkeypatch, 2, signal.SIGTERM)
    out = tmp_path / "r.json"
    assert main(base(weights, folder, out, "-b", "3")) == 143
    report = json.loads(out.read_text())
    assert report["interrupted"] and report["interrupted_by"] == "SIGTERM" and report["data"]["count"] == 6
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_ctrl_c_while_the_results_are_written_leaves_every_file(tmp_path, weights, folder, monkeypatch):
    import qflash_eval.outputs as outputs_module

    real = outputs_module.atomic_write

    def write_and_press_ctrl_c(path, data):
        if path.suffix == ".csv" and not path.name.endswith(".predictions.csv"):
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C: the run's own handler is gone by now
        real(path, data)

    monkeypatch.setattr(outputs_module, "atomic_write", write_and_press_ctrl_c)
    out = tmp_path / "r.json"
    assert main(base(weights, folder, out, "-b", "6")) == 130
    for name in ("r.json", "r.csv", "r.md", "r.predictions.csv"):
        assert (tmp_path / name).is_file(), name
    assert json.loads(out.read_text())["complete"]


def test_ctrl_c_during_start_up_is_one_line(tmp_path, weights, folder, monkeypatch, capsys):
    import qflash_eval.run as run_module

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "create_model", interrupted)
    assert main(base(weights, folder, tmp_path / "r.json")) == 130
    assert errors_of(capsys).strip() == "eval.py: interrupted"


def comparable(report: dict) -> dict:
    keep = {k: v for k, v in report["results"].items()}
    for entry in keep.values():
        for key in ("images_per_s", "model_seconds"):
            entry.pop(key)
    return {"results": keep, "per_class": report["per_class"], "count": report["data"]["count"],
            "batch_sizes_run": report["batch_sizes_run"]}


def test_resume_equals_an_uninterrupted_run(tmp_path, weights, folder, monkeypatch):
    extra = ["--mode", "fp32,qflash", "--granularity", "batch", "--dtype", "float32", "--qflash-backend",
             "reference", "-b", "4"]
    full = tmp_path / "full.json"
    assert main(base(weights, folder, full, *extra)) == 0
    part = tmp_path / "part.json"
    with monkeypatch.context() as m:
        interrupt_after_batches(m, 2)
        assert main(base(weights, folder, part, *extra)) == 130
    assert json.loads(part.read_text())["data"]["count"] == 8
    assert main(["--resume", str(part), "--no-progress", "--mode", "fp32"]) == 2  # contradicts the saved run
    assert main(["--resume", str(part), "--no-progress", "-j", "0"]) == 0
    resumed = json.loads(part.read_text())
    assert resumed["resumed_from"]["images_before"] == 8 and resumed["complete"]
    assert comparable(resumed) == comparable(json.loads(full.read_text()))
    strip = lambda p: p.read_text()
    assert strip(tmp_path / "part.predictions.csv") == strip(tmp_path / "full.predictions.csv")


def test_batch_granularity_batches_do_not_depend_on_workers(tmp_path, weights, folder):
    extra = ["--mode", "qflash", "--granularity", "batch", "--dtype", "float32", "--qflash-backend", "reference",
             "-b", "4", "--no-fp16-reference"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert main(base(weights, folder, one, *extra)) == 0
    assert main([a if a != "0" else "3" for a in base(weights, folder, two, *extra)]) == 0
    assert json.loads(two.read_text())["workers"] == 3
    for path in (one, two):
        assert json.loads(path.read_text())["batch_sizes_run"] == {"4": 3}
    assert (tmp_path / "one.predictions.csv").read_text() == (tmp_path / "two.predictions.csv").read_text()




def test_a_cuda_error_in_the_loader_is_named_as_one():
    from qflash_eval.evaluate import loader_error_line

    cuda = RuntimeError("Caught RuntimeError in pin memory thread for device 0.\nTraceback ...\n"
                        "RuntimeError: CUDA error: operation not permitted when stream is capturing\n"
                        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")
    line = loader_error_line(cuda)
    assert "CUDA error: operation not permitted" in line and "not in the data" in line
    assert loader_error_line(ValueError("Traceback\n  bad.jpg: cannot identify image\n")) == \
        "the data loader failed: bad.jpg: cannot identify image"
