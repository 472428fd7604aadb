"""Records from an Arrow stream of `datasets` (local parquet or the hub): rows read as Arrow batches, only
the kept rows converted to Python, each checked for a usable image and label. The label is an integer
`label` column (ImageNet-1k class index), or a `wnid` column of synset ids (ImageNet-R / -A on the hub)."""
from __future__ import annotations

import bisect
import functools
import pathlib
from typing import Callable, Iterator, Optional

from .base import Record


LABEL_COLUMNS = ("label", "wnid")  # the first of these a table has holds its labels


def label_column(names) -> Optional[str]:
    return next((c for c in LABEL_COLUMNS if c in names), None)


def records_from_arrow(stream, location: str, rows: Optional[list[int]], ordinals: Optional[list[int]],
                       first: int, limit: Optional[int] = None,
                       keep: Optional[Callable[[int], bool]] = None, column: str = "label") -> Iterator[Record]:
    """Records of `stream` (whose first row has global row number `first`): the sorted `rows`, given the
    indices `ordinals`; or, with rows None, every row (row number = index) below `limit` that keep() takes.

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
            table = batch.select(["image", column]).take([r - start for r in keep_rows]).to_pylist()
            yield from (record(i, r - first, row, location, column)
                        for i, r, row in zip(keep_ordinals, keep_rows, table))
        start = stop
        if (rows is not None and done >= len(rows)) or (limit is not None and start >= first + limit):
            return


def record(index: int, row_number: int, row: dict, location: str, column: str = "label") -> Record:
    """One row as a Record; a missing or out-of-range label or a missing image becomes its error. The name is
    location#row, with the image's own file name after it where the row keeps one (ILSVRC/imagenet-1k keeps
    ILSVRC2012_val_########_<wnid>.JPEG, which ReaL scoring reads)."""
    image, label = row["image"], row[column]
    path = image.get("path") if isinstance(image, dict) else None
    name = f"{location}#{row_number}" + (f" ({pathlib.PurePath(path).name})" if path else "")
    if column == "wnid" and label is not None:
        label = wnid_index().get(label, label)
    payload = image.get("bytes") if isinstance(image, dict) else image
    if payload is None and isinstance(image, dict) and image.get("path"):
        payload = pathlib.Path(image["path"])
    error = None
    if label is None:
        error = "its label is missing (null)"
    elif isinstance(label, str):
        error = f"wnid {label!r} is not an ImageNet-1k synset"
    elif not 0 <= int(label) < 1000:
        error = f"label {label} is not an ImageNet-1k class index 0-999"
    elif payload is None:
        error = "its image is missing (null)"
    return Record(index, name, payload, -1 if error else int(label), error)


@functools.lru_cache(maxsize=1)
def wnid_index() -> dict:
    from .folder import imagenet_wnids

    return {w: i for i, w in enumerate(imagenet_wnids())}
