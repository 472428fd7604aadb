"""ReaL labels: the validation index from ILSVRC2012_val_ names, multi-label hits, empty lists left out, and
--real-labels auto / on / off / FILE."""
import json

import pytest
from PIL import Image

from cli_fixtures import base, folder, model_state, weights  # noqa: F401 - fixtures
from qflash_eval.cli import main
from qflash_eval.labels.real import load_real_labels, real_labels_section, timm_real_labels_file, val_index
from qflash_eval.outcome import ImageOutcome


def test_validation_index_from_the_file_name():
    assert val_index("/data/val/ILSVRC2012_val_00000001.JPEG") == 0
    assert val_index("n01440764/ILSVRC2012_val_00050000.JPEG") == 49999
    assert val_index("ILSVRC2012_val_00050001.JPEG") is None
    assert val_index("n01440764_tench.JPEG") is None and val_index("ds#12") is None


def test_timm_ships_the_labels_this_test_relies_on():
    real = load_real_labels(str(timm_real_labels_file()))
    assert len(real) == 50000 and real[0] == frozenset() and real[1] == {970, 795} and real[3] == {809}


def _row(index, val, label, top5):
    return ImageOutcome(index, label, [t[0] for t in top5], [label in t for t in top5], top5,
                        f"x/ILSVRC2012_val_{val:08d}.JPEG")


def test_multi_label_hits_and_empty_lists_worked_by_hand():
    # ReaL: val 1 -> {}, val 2 -> {970, 795}, val 4 -> {809}
    rows = [
        _row(0, 1, 65, [[65, 1, 2, 3, 4], [7, 1, 2, 3, 4]]),  # empty ReaL list: left out for both modes
        _row(1, 2, 970, [[795, 1, 2, 3, 4], [970, 1, 2, 3, 4]]),  # both right (a multi-label hit for mode 0)
        _row(2, 4, 809, [[1, 2, 3, 4, 809], [1, 2, 3, 4, 5]]),  # mode 0: top-5 only; mode 1: wrong
    ]
    section, scores = real_labels_section("auto", ["a", "b"], rows)
    assert section["applied"] and section["scored"] == 2 and section["left_out_empty"] == 1
    assert scores["a"] == {"real_top1": 50.0, "real_top5": 100.0}
    assert scores["b"] == {"real_top1": 50.0, "real_top5": 50.0}


def test_a_label_file_of_ones_own(tmp_path):
    lists = [[] for _ in range(50000)]
    lists[1] = [7]
    path = tmp_path / "real.json"
    path.write_text(json.dumps(lists))
    rows = [_row(0, 2, 970, [[7, 1, 2, 3, 4]])]
    assert real_labels_section(str(path), ["a"], rows)[1]["a"]["real_top1"] == 100.0
    path.write_text(json.dumps(lists[:10]))
    load_real_labels.cache_clear()
    with pytest.raises(ValueError, match="expected a JSON list of 50000 lists"):
        real_labels_section(str(path), ["a"], rows)


def test_names_without_an_index_are_not_scored():
    rows = [ImageOutcome(0, 1, [1], [True], [[1, 2, 3, 4, 5]], "n01440764_tench.JPEG")]
    section, scores = real_labels_section("auto", ["a"], rows)
    assert not section["applied"] and "0 of 1 images" in section["why"] and scores == {}
    assert real_labels_section("off", ["a"], rows)[0] == {"applied": False, "why": "--real-labels off"}


@pytest.fixture(scope="module")
def val_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    names = []
    for i, label in enumerate((0, 970, 230, 809, 516, 1)):  # val 1..6
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        Image.new("RGB", (64, 64), (30 * i, 80, 120)).save(root / name)
        names.append(f"{name} {label}")
    (root / "labels.txt").write_text("\n".join(names) + "\n")
    return root


def test_the_report_scores_real_where_names_allow(tmp_path, weights, val_folder, folder):
    out = tmp_path / "r.json"
    assert main(base(weights, val_folder, out, "-b", "3")) == 0
    report = json.loads(out.read_text())
    assert report["real_labels"]["applied"] and report["real_labels"]["scored"] == 5  # val 1 has no ReaL label
    assert all("real_top1" in report["results"][m] for m in ("fp16", "fp32"))
    assert "ReaL Top-1 / Top-5" in (tmp_path / "r.md").read_text()
    other = tmp_path / "o.json"
    assert main(base(weights, folder, other)) == 0
    assert not json.loads(other.read_text())["real_labels"]["applied"]


def test_real_labels_on_stops_where_names_carry_no_index(tmp_path, weights, folder, capsys):
    assert main(base(weights, folder, tmp_path / "r.json", "--real-labels", "on")) == 2
    err = capsys.readouterr().err
    assert "--real-labels on" in err and "ILSVRC2012_val_" in err and not (tmp_path / "r.json").exists()


def test_parquet_rows_that_keep_their_file_names_are_scored_with_real(tmp_path, weights, val_folder):
    # the hub's ILSVRC/imagenet-1k keeps each image's ILSVRC2012_val_ file name in its `path`; so do the
    # shards tools/parquet_shards.py writes from a folder
    from tools.parquet_shards import folder_rows, write_shards

    write_shards(tmp_path / "pq", list(folder_rows(str(val_folder))), shards=2)
    folder_out, parquet_out = tmp_path / "f.json", tmp_path / "p.json"
    assert main(base(weights, val_folder, folder_out, "-b", "3")) == 0
    assert main(base(weights, tmp_path / "pq", parquet_out, "-b", "3")) == 0
    from_folder, from_parquet = (json.loads(p.read_text()) for p in (folder_out, parquet_out))
    assert from_parquet["real_labels"]["applied"] and from_parquet["real_labels"]["scored"] == 5
    for mode in ("fp16", "fp32"):
        assert from_parquet["results"][mode]["real_top1"] == from_folder["results"][mode]["real_top1"]
