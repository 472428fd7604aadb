"""Data sources: folder layouts, parquet shards, labels, bad input, offline hub, exact-once sharding."""
import io
import time

import pytest
import torch
from PIL import Image

from qflash_eval.data import BatchedImageStream, DataError, batch_slots, decode_rgb, imagenet_wnids, open_source
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


def batches_seen(source, batch_size, world_size, workers):
    """Every batch every process's loader yields, as (index list, label list)."""
    seen = []
    for rank in range(world_size):
        stream = BatchedImageStream(source, lambda img: torch.zeros(1), batch_size, rank, world_size)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=lambda b: b)
        seen += [(b.index.tolist(), b.labels.tolist()) for b in loader]
    return seen


@pytest.mark.parametrize("world_size, workers", [(1, 0), (2, 2), (3, 1), (1, 4)])
def test_batches_are_formed_before_they_are_split(tmp_path, world_size, workers):
    """Batch k holds images 4k..4k+3 whatever the layout: every image once, every batch whole."""
    labels = list(range(11))  # uneven on purpose
    source = open_source(str(write_parquet_shards(tmp_path / "pq", labels, shards=3)))
    seen = batches_seen(source, 4, world_size, workers)
    assert sorted(seen) == [([0, 1, 2, 3], [0, 1, 2, 3]), ([4, 5, 6, 7], [4, 5, 6, 7]), ([8, 9, 10], [8, 9, 10])]


@pytest.mark.parametrize("n", [1, 7, 29, 30])
def test_num_samples_are_evenly_spaced_over_the_source(tmp_path, n):
    labels = [(7 * i) % 1000 for i in range(30)]
    parquet = open_source(str(write_parquet_shards(tmp_path / "pq", labels)), limit=n)
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, label in enumerate(labels):
        (folder / f"{WNIDS[label]}_{i:03d}.JPEG").write_bytes(jpeg_bytes())
    positions = [i * 30 // n for i in range(n)]
    files = sorted(str(p) for p in folder.iterdir())
    by_folder = open_source(str(folder), limit=n)
    assert [r.name for r in by_folder.records()] == [files[p] for p in positions]
    assert labels_of(parquet) == [labels[p] for p in positions]
    assert [r.name.rsplit("#", 1)[1] for r in parquet.records()] == [str(p % 10) for p in positions]  # row in file
    for source in (parquet, by_folder):
        assert source.size == n and ("evenly spaced" in source.selection) == (n < 30)
    # the same images through batches, whatever the layout
    assert sorted(batches_seen(parquet, 3, 2, 1)) == sorted(batches_seen(parquet, 3, 1, 0))


@pytest.mark.parametrize("n, match", [(0, "at least 1"), (-3, "at least 1"), (31, "more than the 30")])
def test_num_samples_out_of_range_is_an_error(tmp_path, n, match):
    write_parquet_shards(tmp_path, list(range(30)))
    with pytest.raises(DataError, match=match):
        open_source(str(tmp_path), limit=n)


def test_a_slot_reads_only_the_parquet_files_of_its_batches(tmp_path, monkeypatch):
    import qflash_eval.data.parquet as parquet

    source = open_source(str(write_parquet_shards(tmp_path, list(range(30)), shards=3)))  # 10 rows per file
    opened = []
    real = parquet.parquet_stream
    monkeypatch.setattr(parquet, "parquet_stream", lambda f: opened.append(f.rsplit("/", 1)[-1]) or real(f))
    wanted, keep = batch_slots(source.size, 5, 1, 3)  # 6 batches of 5: slot 1 takes batches 2 and 3
    assert keep is None and [r.index for r in source.records(wanted)] == list(range(10, 20))
    assert opened == ["val-00001.parquet"]
    opened.clear()
    wanted, _ = batch_slots(source.size, 5, 1, 2)
    assert [r.index for r in source.records(wanted)] == list(range(15, 30))
    assert opened == ["val-00001.parquet", "val-00002.parquet"]


def test_stream_of_unknown_size_deals_batches_round_robin(tmp_path):
    # the hub path: a stream whose length is unknown, cut by --num-samples, batch k to slot k % slots
    from qflash_eval.data.arrow import records_from_arrow
    from qflash_eval.data.parquet import parquet_stream

    write_parquet_shards(tmp_path, list(range(600)), shards=1)  # more rows than one Arrow batch
    stream = parquet_stream(str(tmp_path / "val-00000.parquet"))
    parts = []
    for s in range(3):
        _, keep = batch_slots(None, 4, s, 3)
        parts.append([r.index for r in records_from_arrow(stream, "hub", None, None, 0, 513, keep)])
    assert parts[1][:5] == [4, 5, 6, 7, 16]
    assert sorted(sum(parts, [])) == list(range(513))


def test_labels_file_with_a_duplicate_or_a_missing_file_is_refused(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "labels.txt").write_text("a.jpg 1\na.jpg 2\n")
    with pytest.raises(DataError, match="labels.txt:2: a.jpg is listed again"):
        open_source(str(tmp_path))
    (tmp_path / "labels.txt").write_text("a.jpg 1\ngone.jpg 2\n")
    with pytest.raises(DataError, match="1 file.*gone.jpg .line 2"):
        open_source(str(tmp_path))


def test_bad_parquet_rows_become_named_failures_of_their_batch(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"image": {"bytes": jpeg_bytes(), "path": None}, "label": 1},
            {"image": {"bytes": jpeg_bytes(), "path": None}, "label": 1000},
            {"image": {"bytes": jpeg_bytes(), "path": None}, "label": None},
            {"image": {"bytes": b"garbage", "path": None}, "label": 3},
            {"image": {"bytes": jpeg_bytes(), "path": None}, "label": 4}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "v.parquet")
    source = open_source(str(tmp_path / "v.parquet"))
    [batch] = list(BatchedImageStream(source, lambda img: torch.zeros(1), 8))
    assert batch.index.tolist() == [0, 4] and batch.labels.tolist() == [1, 4]
    reasons = {i: reason for i, _, reason in batch.failures}
    assert sorted(reasons) == [1, 2, 3]
    assert "v.parquet#1" in reasons[1] and "label 1000" in reasons[1]
    assert "v.parquet#2" in reasons[2] and "missing" in reasons[2]
    assert "v.parquet#3" in reasons[3] and "unreadable image" in reasons[3]


@pytest.mark.parametrize("content", [b"", b"plain text, not an image", "truncated"])
def test_unreadable_files_are_named_failures(tmp_path, content):
    good = tmp_path / f"{WNIDS[1]}_good.JPEG"
    good.write_bytes(jpeg_bytes())
    bad = tmp_path / f"{WNIDS[2]}_bad.JPEG"
    bad.write_bytes(jpeg_bytes(size=(300, 300))[:200] if content == "truncated" else content)
    [batch] = list(BatchedImageStream(open_source(str(tmp_path)), lambda img: torch.zeros(1), 4))
    assert batch.names == [str(good)] and len(batch.failures) == 1 and "bad.JPEG" in batch.failures[0][2]


def test_decompression_bomb_is_an_unreadable_image(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 300 x 300 is more than twice that
    (tmp_path / f"{WNIDS[1]}_big.JPEG").write_bytes(jpeg_bytes(size=(300, 300)))
    with pytest.raises(DataError, match="big.JPEG"):
        decode_rgb(next(open_source(str(tmp_path)).records()))


@pytest.mark.parametrize("kind", ["empty", "string labels"])
def test_empty_parquet_and_string_labels_are_errors_naming_the_file(tmp_path, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind == "empty":
        table = pa.table({"image": pa.array([], pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                          "label": pa.array([], pa.int64())})
        match = "holds no rows"
    else:
        table = pa.Table.from_pylist([{"image": {"bytes": jpeg_bytes(), "path": None}, "label": "tench"}])
        match = "x.parquet: column 'label' holds string"
    pq.write_table(table, tmp_path / "x.parquet")
    with pytest.raises(DataError, match=match):
        open_source(str(tmp_path / "x.parquet"))


def test_explicit_prefixes_name_the_source_kind(tmp_path):
    (tmp_path / "imgs").mkdir()
    folder = write_flat_folder(tmp_path / "imgs")
    assert open_source(f"folder:{folder}").describe() == open_source(str(folder)).describe()
    assert labels_of(open_source(f"folder:{folder}")) == labels_of(open_source(str(folder)))
    shards = write_parquet_shards(tmp_path / "pq", [3, 1, 4, 1, 5])
    by_prefix = open_source(f"parquet:{shards}", limit=3)
    assert by_prefix.kind == "parquet" and labels_of(by_prefix) == labels_of(open_source(str(shards), limit=3))
    assert open_source(f"parquet:{shards}/*.parquet").size == 5
    with pytest.raises(DataError, match="parquet:.*no parquet file"):
        open_source(f"parquet:{folder}")  # a folder of JPEGs is not parquet, whatever the guess would say
    with pytest.raises(DataError, match="folder:.*no such folder"):
        open_source(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="not a hub dataset id"):
        open_source(f"hub:{shards}")  # hub: never reads a local path
    with pytest.raises(HubUnavailableError, match="--data"):
        open_source("hub:ILSVRC/imagenet-1k")  # offline here: fails fast


def test_a_folder_source_imports_no_datasets(tmp_path):
    import subprocess
    import sys

    (tmp_path / "imgs").mkdir()
    folder = write_flat_folder(tmp_path / "imgs")
    code = ("import sys; from qflash_eval.data import open_source; "
            f"s = open_source({str(folder)!r}); list(s.records()); assert 'datasets' not in sys.modules, 'datasets'")
    subprocess.run([sys.executable, "-c", code], check=True)
