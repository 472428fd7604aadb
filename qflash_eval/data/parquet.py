"""Local parquet files (a file, a folder of them, or a glob) with columns `image` and an integer `label`.

A reader of some indices opens only the files that hold their rows (a slot of the loader reads only its
own shards)."""
from __future__ import annotations

import bisect
from typing import Callable, Iterator, Optional

from .arrow import records_from_arrow
from .base import DataError, Record, Selection, describe, indices


class ParquetSource:
    kind = "parquet"
    split = None

    def __init__(self, files: list[str], location: str, limit: Optional[int] = None):
        import datasets  # noqa: F401 - imported here, before DataLoader workers fork, so they share it

        self.files, self.location = files, location
        self.rows_per_file = [rows_of_checked_file(f) for f in files]
        total = sum(self.rows_per_file)
        if total == 0:
            raise DataError(f"{location} holds no rows ({len(files)} parquet file(s), all empty)")
        self.chosen = Selection.of(total, limit, location)
        self.size, self.source_size, self.selection = self.chosen.count, total, self.chosen.describe()
        self.starts = [sum(self.rows_per_file[:i]) for i in range(len(files))]

    def records(self, wanted: Optional[range] = None, keep: Optional[Callable[[int], bool]] = None) -> Iterator[Record]:
        ordinals = indices(wanted, self.size, keep)
        rows = self.chosen.rows(ordinals)
        for f, first, count in zip(self.files, self.starts, self.rows_per_file):
            lo, hi = bisect.bisect_left(rows, first), bisect.bisect_left(rows, first + count)
            if lo < hi:  # this file holds some of the rows: stream it, convert only those
                yield from records_from_arrow(parquet_stream(f), f, rows[lo:hi], ordinals[lo:hi], first)

    def describe(self) -> str:
        return describe(self)


def rows_of_checked_file(file: str) -> int:
    """The row count of a parquet file with columns image and an integer label, or a DataError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(file)
        rows = pq.ParquetFile(file).metadata.num_rows
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"cannot read parquet file {file}: {err}") from err
    missing = {"image", "label"} - set(schema.names)
    if missing:
        raise DataError(f"{file} lacks column(s) {sorted(missing)}; expected 'image' and 'label'")
    label_type = schema.field("label").type
    if not (pa.types.is_integer(label_type) or pa.types.is_dictionary(label_type)):
        raise DataError(f"{file}: column 'label' holds {label_type}, expected integer ImageNet-1k class indices")
    return rows


def parquet_stream(file: str):
    import datasets

    stream = datasets.load_dataset("parquet", data_files=[file], split="train", streaming=True)
    return stream.cast_column("image", datasets.Image(decode=False))
