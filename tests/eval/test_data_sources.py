"""Data sources: folder layouts, parquet shards, labels, bad input, offline hub, exact-once sharding."""
import io
import time

import pytest
import torch
from PIL import Image

from qflash_eval.data import DataError, ShardedImageStream, decode_rgb, imagenet_wnids, open_source
from qflash_eval.hub import HubUnavailableError

WNIDS = imagenet_wnids()


def jpeg_bytes(mode="RGB", size=(40, 30), color=(200, 10, 10)) -> bytes:
    img = Image.new("RGB", size, color).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def write_flat_folder(root, classes=(0, 2, 999)):
    for c in classes:
        (root / f"{WNIDS[c]}_thing.JPEG").write_bytes(jpeg_bytes())
    return root


def write_parquet_shards(root, labels, shards=3):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    rows = [{"image": {"bytes": jpeg_bytes(), "path": None}, "label": int(l)} for l in labels]
    per = -(-len(rows) // shards)
    for s in range(shards):
        chunk = rows[s * per : (s + 1) * per]
        pq.write_table(pa.Table.from_pylist(chunk), root / f"val-{s:05d}.parquet")
    return root


def labels_of(source):
    return [r.label for r in source.records()]


def test_wnid_order_is_the_standard_one():
    assert WNIDS[0] == "n01440764" and WNIDS[999] == "n15075141" and WNIDS == sorted(WNIDS)


def test_flat_folder_labels_from_file_names(tmp_path):
    source = open_source(str(write_flat_folder(tmp_path)))
    assert source.kind == "folder" and source.size == 3
    assert labels_of(source) == [0, 2, 999]


def test_imagenet_val_layout_and_limit(tmp_path):
    for c in (5, 7):
        d = tmp_path / WNIDS[c]
        d.mkdir()
        for i in range(2):
            (d / f"ILSVRC2012_val_{c}{i}.JPEG").write_bytes(jpeg_bytes())
    assert labels_of(open_source(str(tmp_path))) == [5, 5, 7, 7]
    assert open_source(str(tmp_path), limit=3).size == 3


def test_labels_file(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "b.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "labels.txt").write_text(f"a.jpg 17\nb.jpg {WNIDS[400]}\n")
    assert labels_of(open_source(str(tmp_path))) == [17, 400]


def test_parquet_shards(tmp_path):
    labels = [3, 1, 4, 1, 5, 9, 2]
    source = open_source(str(write_parquet_shards(tmp_path / "pq", labels)))
    assert source.kind == "parquet" and source.size == 7
    assert labels_of(source) == labels
    assert open_source(str(tmp_path / "pq" / "*.parquet")).size == 7


def test_greyscale_and_cmyk_decode_to_rgb(tmp_path):
    for mode in ("L", "CMYK"):
        f = tmp_path / f"{WNIDS[1]}_{mode}.JPEG"
        f.write_bytes(jpeg_bytes(mode))
    for record in open_source(str(tmp_path)).records():
        assert decode_rgb(record).mode == "RGB"


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "no images found"),
        (lambda p: (p / "photo.jpg").write_bytes(jpeg_bytes()) and p, "cannot tell the class"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "not .parquet"),
        (lambda p: (p / "labels.txt").write_text("a.jpg 1000\n") and p, "neither an ImageNet-1k wnid"),
    ],
)
def test_bad_sources_are_rejected(tmp_path, setup, match):
    with pytest.raises(DataError, match=match):
        open_source(str(setup(tmp_path)))


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / f"{WNIDS[3]}_broken.JPEG"
    bad.write_bytes(b"not a jpeg at all")
    record = next(open_source(str(tmp_path)).records())
    with pytest.raises(DataError, match="broken.JPEG"):
        decode_rgb(record)


def test_parquet_without_label_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"image": {"bytes": jpeg_bytes(), "path": None}}]), tmp_path / "x.parquet")
    with pytest.raises(DataError, match="label"):
        open_source(str(tmp_path / "x.parquet"))


def test_offline_hub_fails_fast_with_advice():
    start = time.monotonic()
    with pytest.raises(HubUnavailableError, match="--data"):
        open_source("ILSVRC/imagenet-1k", "validation")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("world_size, workers", [(1, 0), (2, 2), (3, 1)])
def test_every_image_exactly_once_across_processes_and_workers(tmp_path, world_size, workers):
    labels = list(range(11))  # uneven on purpose
    source = open_source(str(write_parquet_shards(tmp_path / "pq", labels, shards=3)))
    seen = []
    for rank in range(world_size):
        stream = ShardedImageStream(source, lambda img: torch.zeros(1), rank, world_size)
        loader = torch.utils.data.DataLoader(stream, batch_size=4, num_workers=workers)
        for _, label, index in loader:
            seen += list(zip(index.tolist(), label.tolist()))
    assert sorted(seen) == [(i, l) for i, l in enumerate(labels)]


@pytest.mark.parametrize("limit", [None, 23])
@pytest.mark.parametrize("slots", [1, 4, 7, 40])
def test_slots_partition_parquet_and_folder_exactly(tmp_path, slots, limit):
    labels = [(7 * i) % 1000 for i in range(30)]
    parquet = open_source(str(write_parquet_shards(tmp_path / "pq", labels)), limit=limit)
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, label in enumerate(labels):
        (folder / f"{WNIDS[label]}_{i:03d}.JPEG").write_bytes(jpeg_bytes())
    for source in (parquet, open_source(str(folder), limit=limit)):
        got = [(r.index, r.label) for s in range(slots) for r in source.records(s, slots)]
        assert [i for i, _ in got] == list(range(limit or 30))
        if source.kind == "parquet":
            assert [l for _, l in got] == labels[: limit or 30]


def test_a_slot_reads_only_the_parquet_files_of_its_range(tmp_path, monkeypatch):
    import qflash_eval.data as data

    source = open_source(str(write_parquet_shards(tmp_path, list(range(30)), shards=3)))  # 10 rows per file
    opened = []
    real = data._parquet_stream
    monkeypatch.setattr(data, "_parquet_stream", lambda f: opened.append(f.rsplit("/", 1)[-1]) or real(f))
    assert [r.index for r in source.records(1, 3)] == list(range(10, 20))
    assert opened == ["val-00001.parquet"]
    opened.clear()
    assert [r.index for r in source.records(1, 2)] == list(range(15, 30))
    assert opened == ["val-00001.parquet", "val-00002.parquet"]


def test_stream_of_unknown_size_is_split_by_index_modulo(tmp_path):
    # the hub path: a stream whose length is unknown, cut by --num-samples, split row by row
    from qflash_eval.data import _parquet_stream, _records_from_arrow

    write_parquet_shards(tmp_path, list(range(600)), shards=1)  # more rows than one Arrow batch
    stream = _parquet_stream(str(tmp_path / "val-00000.parquet"))
    parts = [[r.index for r in _records_from_arrow(stream, "hub", range(513), 0, s, 3)] for s in range(3)]
    assert parts[1][:3] == [1, 4, 7]
    assert sorted(sum(parts, [])) == list(range(513))
