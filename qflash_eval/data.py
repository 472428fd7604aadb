"""ImageNet validation images from the hub (streamed), local parquet shards, or a local folder.

Every source becomes one ordered stream of records (index, encoded image, label), split between
processes x DataLoader workers ("slots") so that every image is decoded exactly once in the whole run.
Sources of known size (folders, local parquet) give each slot a contiguous range of indices, and a
slot reads only the parquet files that hold its range; a hub stream (size unknown) is split by
index % slots, and rows of other slots are skipped in Arrow form, never converted to Python.
Labels are the standard ImageNet-1k class indices (sorted wnids), whatever subset is present.
"""
from __future__ import annotations

import glob
import io
import pathlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from PIL import Image, UnidentifiedImageError

from .hub import HubUnavailableError, go_offline_if_unreachable

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
WNID = re.compile(r"^n\d{8}")
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    index: int
    name: str  # file name or "<source>#<row>", for error messages
    payload: object  # a path (folder) or bytes (parquet, hub)
    label: int


@dataclass
class DataSource:
    kind: str  # folder | parquet | hub
    location: str
    split: Optional[str]
    # records(slot, slots): this slot's share of the records, in index order
    records: Callable[..., Iterator[Record]]
    size: Optional[int]  # known ahead for folders and parquet, None for a hub stream

    def describe(self) -> str:
        return f"{self.kind}:{self.location}" + (f" (split {self.split})" if self.kind == "hub" else "")


def slot_range(size: int, slot: int, slots: int) -> range:
    """The contiguous share of indices 0..size-1 that slot `slot` of `slots` evaluates."""
    return range(size * slot // slots, size * (slot + 1) // slots)


def imagenet_wnids() -> list[str]:
    from timm.data import ImageNetInfo

    wnids = list(ImageNetInfo("imagenet-1k").label_names())
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise RuntimeError("timm's ImageNet-1k synset list is not the sorted 1000 wnids")
    return wnids


def open_source(data: str, split: str = "validation", limit: Optional[int] = None) -> DataSource:
    """A local folder, parquet file(s) (a file, a folder of them, or a glob), or a hub dataset id."""
    path = pathlib.Path(data).expanduser()
    if any(ch in data for ch in "*?[") and glob.glob(data):
        return _parquet_source(sorted(glob.glob(data)), data, limit)
    if path.is_file():
        if path.suffix != ".parquet":
            raise DataError(f"{path} is a file but not .parquet; pass a folder of images or parquet files")
        return _parquet_source([str(path)], str(path), limit)
    if path.is_dir():
        shards = sorted(str(p) for p in path.rglob("*.parquet"))
        if shards:
            return _parquet_source(shards, str(path), limit)
        return _folder_source(path, limit)
    if data.startswith((".", "/", "~")) or not HUB_ID.match(data):
        raise DataError(f"data path does not exist: {data}")
    return _hub_source(data, split, limit)


def _folder_source(root: pathlib.Path, limit: Optional[int]) -> DataSource:
    class_index = {w: i for i, w in enumerate(imagenet_wnids())}
    labels_file = root / "labels.txt"
    items: list[tuple[pathlib.Path, int]] = []
    if labels_file.is_file():
        # "<file name> <class index or wnid>" per line
        for line_no, line in enumerate(labels_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            name, _, label = line.strip().rpartition(" ")
            if not name:
                raise DataError(f"{labels_file}:{line_no}: expected '<file> <label>'")
            items.append((root / name, _label_of(label, class_index, f"{labels_file}:{line_no}")))
    else:
        for file in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            rel = file.relative_to(root)
            wnid_dir = rel.parts[0] if len(rel.parts) > 1 and WNID.match(rel.parts[0]) else None
            match = WNID.match(wnid_dir or file.name)
            if not match:
                raise DataError(
                    f"cannot tell the class of {file}: use wnid sub-folders (ImageNet val layout), "
                    "file names starting with the wnid, or a labels.txt ('<file> <label>') in the folder"
                )
            items.append((file, _label_of(match.group(0), class_index, str(file))))
    if not items:
        raise DataError(f"no images found in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    items = items[:limit] if limit else items

    def records(slot: int = 0, slots: int = 1) -> Iterator[Record]:
        for i in slot_range(len(items), slot, slots):
            file, label = items[i]
            yield Record(i, str(file), file, label)

    return DataSource("folder", str(root), None, records, len(items))


def _label_of(token: str, class_index: dict, where: str) -> int:
    if token in class_index:
        return class_index[token]
    if token.isdigit() and 0 <= int(token) < 1000:
        return int(token)
    raise DataError(f"{where}: {token!r} is neither an ImageNet-1k wnid nor a class index 0-999")


def _parquet_source(files: list[str], location: str, limit: Optional[int]) -> DataSource:
    import datasets  # noqa: F401 - imported here, before DataLoader workers fork, so they share it
    import pyarrow.parquet as pq

    rows_per_file = []
    for f in files:
        try:
            schema = pq.read_schema(f)
            rows_per_file.append(pq.ParquetFile(f).metadata.num_rows)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise DataError(f"cannot read parquet file {f}: {err}") from err
        missing = {"image", "label"} - set(schema.names)
        if missing:
            raise DataError(f"{f} lacks column(s) {sorted(missing)}; expected 'image' and 'label'")
    size = sum(rows_per_file)
    size = min(size, limit) if limit else size

    def records(slot: int = 0, slots: int = 1) -> Iterator[Record]:
        wanted = slot_range(size, slot, slots)
        first = 0  # global index of the current file's first row
        for f, rows in zip(files, rows_per_file):
            lo, hi = max(wanted.start, first), min(wanted.stop, first + rows)
            if lo < hi:  # this file holds part of the range: stream it, convert only rows lo..hi-1
                yield from _records_from_arrow(_parquet_stream(f), location, range(lo, hi), first)
            first += rows
            if first >= wanted.stop:
                break

    return DataSource("parquet", location, None, records, size)


def _parquet_stream(file: str):
    import datasets

    stream = datasets.load_dataset("parquet", data_files=[file], split="train", streaming=True)
    return stream.cast_column("image", datasets.Image(decode=False))


def _hub_source(dataset_id: str, split: str, limit: Optional[int]) -> DataSource:
    import datasets

    online = go_offline_if_unreachable()
    try:
        stream = datasets.load_dataset(dataset_id, split=split, streaming=True)
        stream = stream.cast_column("image", datasets.Image(decode=False))
    except Exception as err:  # noqa: BLE001
        text = f"{type(err).__name__}: {err}"
        if not online:
            hint = "the Hugging Face hub cannot be reached (offline)"
        elif "gated" in text.lower() or "401" in text or "403" in text:
            hint = (f"{dataset_id} is gated: accept its terms on the hub, then `huggingface-cli login` "
                    "or set HF_TOKEN")
        else:
            hint = f"loading {dataset_id} (split {split}) failed: {text[:300]}"
        raise HubUnavailableError(
            f"{hint}. No local path {dataset_id!r} exists either. To evaluate local data pass --data "
            "with an ImageNet folder or parquet files."
        ) from err

    def records(slot: int = 0, slots: int = 1) -> Iterator[Record]:
        taken = range(limit) if limit else None
        yield from _records_from_arrow(stream, dataset_id, taken, 0, slot, slots)

    return DataSource("hub", dataset_id, split, records, limit)


def _records_from_arrow(stream, location: str, wanted: Optional[range], first: int, slot: int = 0,
                        slots: int = 1) -> Iterator[Record]:
    """Records of `stream` (whose first row has global index `first`) with index in `wanted` (None: all)
    and index % slots == slot. Rows are read as Arrow batches; only the kept rows become Python objects.

    stream.iter() reads every shard in order; iterating the stream itself inside a DataLoader worker
    would let `datasets` hand each worker a subset of the shards with row numbers restarting at 0.
    """
    start = first
    for batch in stream.with_format("arrow").iter(batch_size=256):
        stop = start + batch.num_rows
        lo, hi = (start, stop) if wanted is None else (max(wanted.start, start), min(wanted.stop, stop))
        if lo < hi:
            keep = [i for i in range(lo, hi) if i % slots == slot]
            if keep:
                rows = batch.select(["image", "label"]).take([i - start for i in keep]).to_pylist()
                yield from (_record(i, row, location) for i, row in zip(keep, rows))
        start = stop
        if wanted is not None and start >= wanted.stop:
            return


def _record(i: int, row: dict, location: str) -> Record:
    image = row["image"]
    payload = image.get("bytes") if isinstance(image, dict) else image
    if payload is None and isinstance(image, dict) and image.get("path"):
        payload = pathlib.Path(image["path"])
    label = int(row["label"])
    if not 0 <= label < 1000:
        raise DataError(f"{location} row {i}: label {label} is not an ImageNet-1k class index")
    return Record(i, f"{location}#{i}", payload, label)


def decode_rgb(record: Record) -> Image.Image:
    """Decode once and convert to RGB (ImageNet holds greyscale and CMYK JPEGs)."""
    try:
        source = record.payload if isinstance(record.payload, pathlib.Path) else io.BytesIO(record.payload)
        with Image.open(source) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, TypeError) as err:
        raise DataError(f"unreadable image {record.name}: {err}") from err


class ShardedImageStream(torch.utils.data.IterableDataset):
    """Decodes and transforms this process's and this worker's share of the records."""

    def __init__(self, source: DataSource, transform, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.source, self.transform = source, transform
        self.rank, self.world_size = rank, world_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        slots = self.world_size * workers
        slot = self.rank * workers + worker
        for record in self.source.records(slot, slots):
            yield self.transform(decode_rgb(record)), record.label, record.index


def make_loader(source: DataSource, transform, batch_size: int, workers: int, rank=0, world_size=1, pin=False):
    stream = ShardedImageStream(source, transform, rank, world_size)
    return torch.utils.data.DataLoader(
        stream, batch_size=batch_size, num_workers=workers, pin_memory=pin,
        persistent_workers=False, prefetch_factor=2 if workers else None,
    )
