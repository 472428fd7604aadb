"""Records to batches: decoding, the batch slots of processes x workers, and the DataLoader.

The sequence is cut into batches of the requested size *before* it is split between processes x
DataLoader workers ("slots"), so batch k always holds images kB..kB+B-1 and a batch-granularity scale
never depends on the layout. Sources of known size give each slot a contiguous run of batches (a slot
reads only the parquet files that hold them); a hub stream of unknown size deals batches round-robin.
An item that cannot be used becomes a failure of its batch, named; the run decides whether to stop or skip.
"""
from __future__ import annotations

import io
import pathlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from PIL import Image, UnidentifiedImageError

from .base import DataError, ImageSource, Record


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


def slot_range(size: int, slot: int, slots: int) -> range:
    """The contiguous share of 0..size-1 that slot `slot` of `slots` takes."""
    return range(size * slot // slots, size * (slot + 1) // slots)


def batch_slots(size: Optional[int], batch_size: int, slot: int, slots: int) -> tuple[Optional[range], Callable]:
    """What one slot decodes: (a range of indices, a filter on indices). Batch k is indices kB..kB+B-1."""
    if size is not None:
        batches = slot_range(-(-size // batch_size), slot, slots)
        return range(batches.start * batch_size, min(batches.stop * batch_size, size)), None
    return None, lambda i: (i // batch_size) % slots == slot


class BatchedImageStream(torch.utils.data.IterableDataset):
    """Decodes, transforms and collates this process's and this worker's batches (used with batch_size=None)."""

    def __init__(self, source: ImageSource, transform, batch_size: int, rank: int = 0, world_size: int = 1,
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


def make_loader(source: ImageSource, transform, batch_size: int, workers: int, rank=0, world_size=1, pin=False,
                skip: Optional[Callable[[int], bool]] = None):
    stream = BatchedImageStream(source, transform, batch_size, rank, world_size, skip)
    return torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=workers, pin_memory=pin, collate_fn=_pass_through,
        persistent_workers=False, prefetch_factor=2 if workers else None,
    )
