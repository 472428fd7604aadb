"""ImageNet validation images from the hub (streamed), local parquet shards, or a local folder.

Every source becomes one ordered stream of records (index, encoded image, label). Records are split
between processes and DataLoader workers by index (index % slots), so every image is decoded exactly
once across the whole run, and nothing else shards the stream.
Labels are the standard ImageNet-1k class indices (sorted wnids), whatever subset is present.
"""
from __future__ import annotations

import glob
import io
import itertools
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
DEFAULT_HUB_DATASET = "ILSVRC/imagenet-1k"


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
    records: Callable[[], Iterator[Record]]
    size: Optional[int]  # known ahead for folders and parquet, None for a hub stream

    def describe(self) -> str:
        return f"{self.kind}:{self.location}" + (f" (split {self.split})" if self.kind == "hub" else "")


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

    def records() -> Iterator[Record]:
        for i, (file, label) in enumerate(items):
            yield Record(i, str(file), file, label)

    return DataSource("folder", str(root), None, records, len(items))


def _label_of(token: str, class_index: dict, where: str) -> int:
    if token in class_index:
        return class_index[token]
    if token.isdigit() and 0 <= int(token) < 1000:
        return int(token)
    raise DataError(f"{where}: {token!r} is neither an ImageNet-1k wnid nor a class index 0-999")


def _parquet_source(files: list[str], location: str, limit: Optional[int]) -> DataSource:
    import pyarrow.parquet as pq

    size = 0
    for f in files:
        try:
            schema = pq.read_schema(f)
            size += pq.ParquetFile(f).metadata.num_rows
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise DataError(f"cannot read parquet file {f}: {err}") from err
        missing = {"image", "label"} - set(schema.names)
        if missing:
            raise DataError(f"{f} lacks column(s) {sorted(missing)}; expected 'image' and 'label'")

    def records() -> Iterator[Record]:
        import datasets

        stream = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
        stream = stream.cast_column("image", datasets.Image(decode=False))
        yield from _records_from_rows(stream, location, limit)

    return DataSource("parquet", location, None, records, min(size, limit) if limit else size)


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

    def records() -> Iterator[Record]:
        yield from _records_from_rows(stream, dataset_id, limit)

    return DataSource("hub", dataset_id, split, records, limit)


def _unbatched(stream, batch_size: int = 64) -> Iterator[dict]:
    # stream.iter() reads every shard in order; iterating the stream itself inside a DataLoader worker
    # would let `datasets` hand each worker a subset of the shards with row numbers restarting at 0.
    for batch in stream.iter(batch_size=batch_size):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns)):
            yield dict(zip(columns, values))


def _records_from_rows(stream, location: str, limit: Optional[int]) -> Iterator[Record]:
    for i, row in enumerate(itertools.islice(_unbatched(stream), limit)):
        image = row["image"]
        payload = image.get("bytes") if isinstance(image, dict) else image
        if payload is None and isinstance(image, dict) and image.get("path"):
            payload = pathlib.Path(image["path"])
        label = int(row["label"])
        if not 0 <= label < 1000:
            raise DataError(f"{location} row {i}: label {label} is not an ImageNet-1k class index")
        yield Record(i, f"{location}#{i}", payload, label)


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
        for record in self.source.records():
            if record.index % slots == slot:
                yield self.transform(decode_rgb(record)), record.label, record.index


def make_loader(source: DataSource, transform, batch_size: int, workers: int, rank=0, world_size=1, pin=False):
    stream = ShardedImageStream(source, transform, rank, world_size)
    return torch.utils.data.DataLoader(
        stream, batch_size=batch_size, num_workers=workers, pin_memory=pin,
        persistent_workers=False, prefetch_factor=4 if workers else None,
    )
