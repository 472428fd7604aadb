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
