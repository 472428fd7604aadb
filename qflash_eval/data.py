"""ImageNet validation images from the hub (streamed), local parquet shards, or a local folder.

Every source becomes one ordered sequence of records (index 0..N-1, encoded image, label). With
--num-samples N the sequence is N images evenly spaced over the source: image floor(i * size / N) for
i = 0..N-1, the same images whatever the process and worker layout.

The sequence is cut into batches of the requested size *before* it is split between processes x
DataLoader workers ("slots"), so batch k always holds images kB..kB+B-1 and a batch-granularity scale
never depends on the layout. Sources of known size give each slot a contiguous run of batches (a slot
reads only the parquet files that hold them); a hub stream of unknown size deals batches round-robin,
and rows of other slots are skipped in Arrow form, never converted to Python.

An item that cannot be used (an undecodable image, a parquet row with no or an out-of-range label)
becomes a failure of its batch, named by file or by parquet file and row; the run decides whether to
stop or to skip it. Labels are the standard ImageNet-1k class indices (sorted wnids).
"""
from __future__ import annotations

import bisect
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
SELECTION_RULE = "evenly spaced: image floor(i * size / N) of the source for i = 0..N-1"


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    index: int  # position in the evaluated sequence, 0..N-1
    name: str  # file path, or "<parquet file or dataset>#<row>"
    payload: object  # a path (folder) or bytes (parquet, hub)
    label: int
    error: Optional[str] = None  # why this item cannot be used (then payload and label are meaningless)


@dataclass
class DataSource:
    kind: str  # folder | parquet | hub
    location: str
    split: Optional[str]
    # records(wanted=None, keep=None): the records with index in `wanted` (a range) and keep(index) true
    records: Callable[..., Iterator[Record]]
    size: Optional[int]  # images evaluated; None for a hub stream of unknown length
    source_size: Optional[int]  # images the source holds
    selection: str  # "all", or the --num-samples rule

    def describe(self) -> str:
        return f"{self.kind}:{self.location}" + (f" (split {self.split})" if self.kind == "hub" else "")


def slot_range(size: int, slot: int, slots: int) -> range:
    """The contiguous share of 0..size-1 that slot `slot` of `slots` takes."""
    return range(size * slot // slots, size * (slot + 1) // slots)


def evenly_spaced(size: int, n: Optional[int]) -> Optional[list[int]]:
    """Source positions of the --num-samples images (None: all of them)."""
    if n is None or n == size:
        return None
    return [i * size // n for i in range(n)]


def check_num_samples(n: Optional[int], size: Optional[int], where: str) -> None:
    if n is not None and n < 1:
        raise DataError(f"--num-samples must be at least 1 (got {n})")
    if n is not None and size is not None and n > size:
        raise DataError(f"--num-samples {n} is more than the {size} images of {where}")


def imagenet_wnids() -> list[str]:
    from timm.data import ImageNetInfo

    wnids = list(ImageNetInfo("imagenet-1k").label_names())
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise RuntimeError("timm's ImageNet-1k synset list is not the sorted 1000 wnids")
    return wnids


def open_source(data: str, split: str = "validation", limit: Optional[int] = None) -> DataSource:
    """A local folder, parquet file(s) (a file, a folder of them, or a glob), or a hub dataset id.
    `limit`: evaluate that many images, evenly spaced over the source."""
    check_num_samples(limit, None, data)
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


def _selection(size: int, limit: Optional[int]) -> str:
    return "all" if limit is None or limit == size else f"{limit} of {size}, {SELECTION_RULE}"


def _folder_source(root: pathlib.Path, limit: Optional[int]) -> DataSource:
    class_index = {w: i for i, w in enumerate(imagenet_wnids())}
    labels_file = root / "labels.txt"
    items = _items_from_labels_file(labels_file, class_index) if labels_file.is_file() else _items_from_names(
        root, class_index)
    if not items:
        raise DataError(f"no images found in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    check_num_samples(limit, len(items), str(root))
    positions = evenly_spaced(len(items), limit)
    chosen = items if positions is None else [items[p] for p in positions]

    def records(wanted: Optional[range] = None, keep: Optional[Callable[[int], bool]] = None) -> Iterator[Record]:
        for i in wanted if wanted is not None else range(len(chosen)):
            if keep is None or keep(i):
                file, label = chosen[i]
                yield Record(i, str(file), file, label)

    return DataSource("folder", str(root), None, records, len(chosen), len(items), _selection(len(items), limit))


def _items_from_labels_file(labels_file: pathlib.Path, class_index: dict) -> list[tuple[pathlib.Path, int]]:
    """'<file name> <class index or wnid>' per line; every file must exist, once."""
    root = labels_file.parent
    items, first_line, missing = [], {}, []
    for line_no, line in enumerate(labels_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, _, label = line.strip().rpartition(" ")
        where = f"{labels_file}:{line_no}"
        if not name:
            raise DataError(f"{where}: expected '<file> <label>'")
        if name in first_line:
            raise DataError(f"{where}: {name} is listed again (first on line {first_line[name]})")
        first_line[name] = line_no
        file = root / name
        if not file.is_file():
            missing.append(f"{name} (line {line_no})")
        items.append((file, _label_of(label, class_index, where)))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{labels_file} lists {len(missing)} file(s) that do not exist in {root}: {shown}")
    return items


def _items_from_names(root: pathlib.Path, class_index: dict) -> list[tuple[pathlib.Path, int]]:
    items = []
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
    return items


def _label_of(token: str, class_index: dict, where: str) -> int:
    if token in class_index:
        return class_index[token]
    if token.isdigit() and 0 <= int(token) < 1000:
        return int(token)
    raise DataError(f"{where}: {token!r} is neither an ImageNet-1k wnid nor a class index 0-999")


def _parquet_source(files: list[str], location: str, limit: Optional[int]) -> DataSource:
    import datasets  # noqa: F401 - imported here, before DataLoader workers fork, so they share it
    import pyarrow as pa
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
        label_type = schema.field("label").type
        if not (pa.types.is_integer(label_type) or pa.types.is_dictionary(label_type)):
            raise DataError(f"{f}: column 'label' holds {label_type}, expected integer ImageNet-1k class indices")
    total = sum(rows_per_file)
    if total == 0:
        raise DataError(f"{location} holds no rows ({len(files)} parquet file(s), all empty)")
    check_num_samples(limit, total, location)
    positions = evenly_spaced(total, limit)
    size = total if positions is None else len(positions)
    starts = [sum(rows_per_file[:i]) for i in range(len(files))]

    def records(wanted: Optional[range] = None, keep: Optional[Callable[[int], bool]] = None) -> Iterator[Record]:
        ordinals = [i for i in (wanted if wanted is not None else range(size)) if keep is None or keep(i)]
        rows = ordinals if positions is None else [positions[i] for i in ordinals]
        for f, first, count in zip(files, starts, rows_per_file):
            lo, hi = bisect.bisect_left(rows, first), bisect.bisect_left(rows, first + count)
            if lo < hi:  # this file holds some of the rows: stream it, convert only those
                yield from _records_from_arrow(_parquet_stream(f), f, rows[lo:hi], ordinals[lo:hi], first)

    return DataSource("parquet", location, None, records, size, total, _selection(total, limit))


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
    splits = getattr(stream.info, "splits", None) or {}
    total = splits[split].num_examples if split in splits and splits[split].num_examples else None
    check_num_samples(limit, total, f"{dataset_id} (split {split})")
    positions = evenly_spaced(total, limit) if total else None
    size = limit if limit else total
    selection = _selection(total, limit) if total else (f"the first {limit} (stream of unknown size)" if limit
                                                        else "all")

    def records(wanted: Optional[range] = None, keep: Optional[Callable[[int], bool]] = None) -> Iterator[Record]:
        if size is not None and total is not None:
            ordinals = [i for i in (wanted if wanted is not None else range(size)) if keep is None or keep(i)]
            rows = ordinals if positions is None else [positions[i] for i in ordinals]
            yield from _records_from_arrow(stream, dataset_id, rows, ordinals, 0)
        else:
            yield from _records_from_arrow(stream, dataset_id, None, None, 0, limit, keep)

    return DataSource("hub", dataset_id, split, records, size, total, selection)


def _records_from_arrow(stream, location: str, rows: Optional[list[int]], ordinals: Optional[list[int]],
                        first: int, limit: Optional[int] = None,
                        keep: Optional[Callable[[int], bool]] = None) -> Iterator[Record]:
    """Records of `stream` (whose first row has global row number `first`): the sorted `rows`, given the
    indices `ordinals`; or, with rows None, every row (row number = index) below `limit` that keep() takes.
    Rows are read as Arrow batches; only the kept rows become Python objects.

    stream.iter() reads every shard in order; iterating the stream itself inside a DataLoader worker
    would let `datasets` hand each worker a subset of the shards with row numbers restarting at 0.
    """
    start, done = first, 0
    for batch in stream.with_format("arrow").iter(batch_size=256):
        stop = start + batch.num_rows
        if rows is None:
            hi = stop if limit is None else min(stop, first + limit)
            keep_rows = [r for r in range(start, hi) if keep is None or keep(r - first)]
            keep_ordinals = [r - first for r in keep_rows]
        else:
            lo, hi_i = done, bisect.bisect_left(rows, stop, lo=done)
            keep_rows, keep_ordinals, done = rows[lo:hi_i], ordinals[lo:hi_i], hi_i
        if keep_rows:
            table = batch.select(["image", "label"]).take([r - start for r in keep_rows]).to_pylist()
            yield from (_record(i, r - first, row, location) for i, r, row in zip(keep_ordinals, keep_rows, table))
        start = stop
        if (rows is not None and done >= len(rows)) or (limit is not None and start >= first + limit):
            return


def _record(index: int, row_number: int, row: dict, location: str) -> Record:
    name = f"{location}#{row_number}"
    image, label = row["image"], row["label"]
    payload = image.get("bytes") if isinstance(image, dict) else image
    if payload is None and isinstance(image, dict) and image.get("path"):
        payload = pathlib.Path(image["path"])
    error = None
    if label is None:
        error = "its label is missing (null)"
    elif not 0 <= int(label) < 1000:
        error = f"label {label} is not an ImageNet-1k class index 0-999"
    elif payload is None:
        error = "its image is missing (null)"
    return Record(index, name, payload, -1 if error else int(label), error)


def decode_rgb(record: Record) -> Image.Image:
    """Decode once and convert to RGB (ImageNet holds greyscale and CMYK JPEGs)."""
    if record.error:
        raise DataError(f"unusable item {record.name}: {record.error}")
    try:
        source = record.payload if isinstance(record.payload, pathlib.Path) else io.BytesIO(record.payload)
        with Image.open(source) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, TypeError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"unreadable image {record.name}: {err}") from err


@dataclass
class Batch:
    """One batch as the loader hands it over: the usable images and the items that were not."""

    images: Optional[torch.Tensor]  # (B, 3, H, W); None when no item of the batch was usable
    labels: torch.Tensor
    index: torch.Tensor
    names: list[str]
    failures: list[tuple[int, str, str]]  # (index, name, reason)

    def pin_memory(self) -> "Batch":  # called by the DataLoader's pinning thread
        if self.images is not None:
            self.images = self.images.pin_memory()
        return self


def batch_slots(size: Optional[int], batch_size: int, slot: int, slots: int) -> tuple[Optional[range], Callable]:
    """What one slot decodes: (a range of indices, a filter on indices). Batch k is indices kB..kB+B-1."""
    if size is not None:
        batches = slot_range(-(-size // batch_size), slot, slots)
        return range(batches.start * batch_size, min(batches.stop * batch_size, size)), None
    return None, lambda i: (i // batch_size) % slots == slot


class BatchedImageStream(torch.utils.data.IterableDataset):
    """Decodes, transforms and collates this process's and this worker's batches (used with batch_size=None)."""

    def __init__(self, source: DataSource, transform, batch_size: int, rank: int = 0, world_size: int = 1,
                 skip: Optional[Callable[[int], bool]] = None):
        super().__init__()
        self.source, self.transform, self.batch_size = source, transform, batch_size
        self.rank, self.world_size = rank, world_size
        self.skip = skip  # batches whose every index skip() takes are not decoded (resume)

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        wanted, keep = batch_slots(self.source.size, self.batch_size, self.rank * workers + worker,
                                   self.world_size * workers)
        current, pending = None, []
        for record in self.source.records(wanted, keep):
            k = record.index // self.batch_size
            if current is not None and k != current and pending:
                yield from self._collate(pending)
                pending = []
            current = k
            pending.append(record)
        if pending:
            yield from self._collate(pending)

    def _collate(self, records: list[Record]) -> Iterator[Batch]:
        if self.skip is not None and all(self.skip(r.index) for r in records):
            return
        images, labels, index, names, failures = [], [], [], [], []
        for r in records:
            try:
                images.append(self.transform(decode_rgb(r)))
            except DataError as err:
                failures.append((r.index, r.name, str(err)))
                continue
            labels.append(r.label)
            index.append(r.index)
            names.append(r.name)
        yield Batch(torch.stack(images) if images else None, torch.tensor(labels, dtype=torch.long),
                    torch.tensor(index, dtype=torch.long), names, failures)


def _pass_through(batch):
    return batch


def make_loader(source: DataSource, transform, batch_size: int, workers: int, rank=0, world_size=1, pin=False,
                skip: Optional[Callable[[int], bool]] = None):
    stream = BatchedImageStream(source, transform, batch_size, rank, world_size, skip)
    return torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=workers, pin_memory=pin, collate_fn=_pass_through,
        persistent_workers=False, prefetch_factor=2 if workers else None,
    )
