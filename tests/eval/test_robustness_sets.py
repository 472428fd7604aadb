"""The robustness sets' layouts: class-index folders (ImageNet-V2), 200-wnid folders scored in the 200-class
space without a flag (ImageNet-R / -A), --valid-labels for any subset."""
import csv
import json

import pytest
from PIL import Image

from cli_fixtures import WNIDS, base, model_state, weights  # noqa: F401 - fixtures
from qflash_eval.cli import main
from qflash_eval.data import FolderSource
from qflash_eval.labels import detect_subset, subset_indices


def _image(path, shade):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (shade % 255, 60, 90)).save(path)


def test_class_index_folders_are_imagenet_v2(tmp_path):
    for label in (0, 5, 999):
        _image(tmp_path / str(label) / "a.jpeg", label)
    source = FolderSource(tmp_path)
    assert sorted(label for _, label in source.items) == [0, 5, 999] and source.labels() == {0, 5, 999}


def test_the_200_class_sets_come_from_timm():
    r, a = subset_indices("imagenet-r"), subset_indices("imagenet-a")
    assert len(r) == len(a) == 200 and r != a and r[:3] == [1, 2, 4]
    assert detect_subset(set(r)) == "imagenet-r" and detect_subset(set(r[:-1])) is None


@pytest.fixture(scope="module")
def r_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet-r")
    for i, label in enumerate(subset_indices("imagenet-r")):
        _image(root / WNIDS[label] / f"art_{i}.jpg", i)
    return root


def test_a_200_wnid_folder_is_scored_in_its_classes_without_a_flag(tmp_path, weights, r_folder):
    out = tmp_path / "r.json"
    assert main(base(weights, r_folder, out, "--num-samples", "8", "-b", "8")) == 0
    report = json.loads(out.read_text())
    assert report["valid_labels"]["name"] == "imagenet-r" and report["valid_labels"]["how"].startswith("detected")
    allowed = {str(i) for i in subset_indices("imagenet-r")}
    rows = list(csv.DictReader(open(tmp_path / "r.predictions.csv")))
    assert len(rows) == 8 and all(set(r[f"top5_{m}"].split()) <= allowed for r in rows for m in ("fp16", "fp32"))


def test_valid_labels_flag_and_labels_outside_it(tmp_path, weights, r_folder, capsys):
    keep = tmp_path / "keep.txt"
    keep.write_text("\n".join(str(i) for i in subset_indices("imagenet-r")[:150]) + "\n")
    assert main(base(weights, r_folder, tmp_path / "x.json", "--valid-labels", str(keep))) == 2
    assert "labels outside its 150 classes" in capsys.readouterr().err
    assert main(base(weights, r_folder, tmp_path / "y.json", "--valid-labels", "nonsense")) == 2
    assert "neither imagenet-r, imagenet-a nor a file" in capsys.readouterr().err


def test_class_map_names_sub_folders_as_timm_reads_it(tmp_path):
    from qflash_eval.labels import load_class_map

    for name in ("cat", "dog"):
        _image(tmp_path / "data" / name / "x.jpeg", 3)
    by_line = tmp_path / "lines.txt"
    by_line.write_text("bird\ncat\ndog\n")  # index = line number
    assert load_class_map(str(by_line)) == {"bird": 0, "cat": 1, "dog": 2}
    explicit = tmp_path / "explicit.txt"
    explicit.write_text("cat 281\ndog 207\n")
    source = FolderSource(tmp_path / "data", class_map=load_class_map(str(explicit)))
    assert sorted(label for _, label in source.items) == [207, 281]
    explicit.write_text("cat 281\ncat 7\n")
    with pytest.raises(ValueError, match="'cat' is mapped twice"):
        load_class_map(str(explicit))
    from qflash_eval.data import DataError

    with pytest.raises(DataError, match="maps no class 'dog'"):
        FolderSource(tmp_path / "data", class_map={"cat": 1})


def test_class_map_runs_end_to_end(tmp_path, weights):
    for i, name in enumerate(("cat", "dog")):
        _image(tmp_path / "data" / name / f"{i}.jpeg", 40 * i)
    class_map = tmp_path / "map.txt"
    class_map.write_text("cat 281\ndog 207\n")
    out = tmp_path / "m.json"
    assert main(base(weights, tmp_path / "data", out, "--class-map", str(class_map))) == 0
    rows = list(csv.DictReader(open(tmp_path / "m.predictions.csv")))
    assert sorted(int(r["label"]) for r in rows) == [207, 281]


class _Labelled:
    def __init__(self, labels):
        self._labels = labels

    def labels(self):
        return self._labels

    def describe(self):
        return "folder /data"


def test_data_outside_the_models_label_space_stops_before_loading(tmp_path, capsys, monkeypatch):
    from qflash_eval.labels import check_label_space

    check_label_space("deit_tiny_patch16_224", _Labelled({0, 999}))  # fits
    with pytest.raises(ValueError, match=r"folder /data is labelled in ImageNet-1k's 1000 classes, but model "
                                         r"vit_base_patch16_224.augreg_in21k predicts 21843"):
        check_label_space("vit_base_patch16_224.augreg_in21k", _Labelled({0, 5}))
    check_label_space("vit_base_patch16_224.augreg_in21k", _Labelled({0, 20000}), class_mapped=True)
    with pytest.raises(ValueError, match="labels up to 1200, but model deit_tiny_patch16_224 predicts 1000"):
        check_label_space("deit_tiny_patch16_224", _Labelled({1200}), class_mapped=True)
    with pytest.raises(ValueError, match="no classifier head"):
        check_label_space("eva02_tiny_patch14_224.mim_in22k", _Labelled({1}))
    # through the command line: the refusal comes before any model is built
    import qflash_eval.run as run

    monkeypatch.setattr(run, "create_model", lambda *a, **k: pytest.fail("the model was loaded"))
    _image(tmp_path / "data" / WNIDS[3] / "a.jpeg", 1)
    code = main(["--model", "vit_base_patch16_224.augreg_in21k", "--weights", "random", "--data", str(tmp_path / "data"),
                 "--mode", "fp32", "--results", str(tmp_path / "o.json"), "--no-progress", "-j", "0"])
    assert code == 2 and "predicts 21843" in capsys.readouterr().err


def _saved_run(path, source, results, valid=None, real=False):
    report = {"model": "deit_tiny", "timm_name": "deit_tiny_patch16_224", "granularity": "sample",
              "data": {"source": source, "count": 50}, "valid_labels": {"name": valid} if valid else None,
              "real_labels": {"applied": real},
              "results": {mode: {"top1": t, "count": 50, "correct_top1": round(t / 2),
                                 "delta_top1": t - results["fp16"], **({"real_top1": t + 5} if real else {})}
                          for mode, t in results.items()}}
    path.write_text(json.dumps(report))
    return path


def test_compare_lines_up_the_sets_a_column_each(tmp_path, capsys):
    from qflash_eval.robustness import set_of

    runs = [_saved_run(tmp_path / "clean.json", "folder /data/val", {"fp16": 80.0, "qflash": 79.0}, real=True),
            _saved_run(tmp_path / "v2.json", "folder /data/imagenetv2-matched-frequency", {"fp16": 70.0, "qflash": 66.0}),
            _saved_run(tmp_path / "r.json", "folder /data/renditions", {"fp16": 40.0, "qflash": 42.0},
                       valid="imagenet-r"),
            _saved_run(tmp_path / "mine.json", "folder /data/drawings", {"fp16": 30.0, "qflash": 28.0})]
    assert [set_of(json.loads(p.read_text())) for p in runs] == ["clean", "V2", "R", "clean"]
    # R and A only from the 200-class restriction the run recorded, never from a name alone
    assert set_of({"data": {"source": "folder /data/imagenet-r"}, "valid_labels": None}) == "clean"
    chart = tmp_path / "sets.png"
    assert main(["compare", *map(str, runs), "--set", "mine=Sketch", "--robustness-chart", str(chart)]) == 0
    captured = capsys.readouterr()
    table = captured.out.split("Top-1 % by evaluation set")[1]
    assert "| mode | clean | ReaL | V2 | Sketch | R |" in table
    # hand-computed: each cell Top-1 (change from fp16 on that set); ReaL from the clean run's ReaL Top-1
    assert "| fp16 | 80.00 | 85.00 | 70.00 | 30.00 | 40.00 |" in table
    assert "| qflash | 79.00 (-1.00) | 84.00 (-1.00) | 66.00 (-4.00) | 28.00 (-2.00) | 42.00 (+2.00) |" in table
    assert "differ in image set" not in captured.err  # different sets are the point here
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", *map(str, runs), "--set", "nosuchrun=V2"]) == 2
    assert "--set names run(s) nosuchrun" in capsys.readouterr().err
    assert main(["compare", str(runs[0]), str(runs[3])]) == 0  # two runs of the clean set: the later one shown
    assert "runs clean and mine both scored clean" in capsys.readouterr().err


def test_parquet_with_a_wnid_column_as_imagenet_r_is_published(tmp_path, weights):
    # axiong/imagenet-r on the hub: columns image, wnid, class_name; no integer label
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from qflash_eval.data import open_source

    def jpeg():
        buf = io.BytesIO()
        Image.new("RGB", (40, 40), (10, 200, 30)).save(buf, format="JPEG")
        return buf.getvalue()

    r = subset_indices("imagenet-r")
    rows = [{"image": {"bytes": jpeg(), "path": None}, "wnid": WNIDS[label], "class_name": "x"} for label in r]
    pq.write_table(pa.Table.from_pylist(rows[:100]), tmp_path / "test-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[100:]), tmp_path / "test-00001-of-00002.parquet")
    source = open_source(str(tmp_path), limit=4)
    assert source.labels() == set(r) and [rec.label for rec in source.records()] == [r[0], r[50], r[100], r[150]]
    out = tmp_path / "pr.json"
    assert main(base(weights, tmp_path, out, "--num-samples", "4")) == 0
    assert json.loads(out.read_text())["valid_labels"]["name"] == "imagenet-r"  # detected from the wnids
    rows[3]["wnid"] = "n99999999"
    pq.write_table(pa.Table.from_pylist(rows[:100]), tmp_path / "test-00000-of-00002.parquet")
    bad = [rec for rec in open_source(str(tmp_path)).records() if rec.error]
    assert len(bad) == 1 and "wnid 'n99999999' is not an ImageNet-1k synset" in bad[0].error
