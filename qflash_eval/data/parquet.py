"""Local parquet files (a file, a folder of them, or a glob) with columns `image` and an integer `label` (or a
`wnid` column of synset ids, as ImageNet-R and -A are published on the hub).

A reader of some indices opens only the files that hold their rows (a slot of the loader reads only its
own shards)."""
from __future__ import annotations

import bisect
import functools
from typing import Callable, Iterator, Optional

from .arrow import label_column, records_from_arrow, wnid_index
from .base import DataError, Record, Selection, describe, indices


class ParquetSource:
    kind = "parquet"
    split = None

    def __init__(self, files: list[str], location: str, limit: Optional[int] = None):
        import datasets  # noqa: F401 - imported here, before DataLoader workers fork, so they share it

        self.files, self.location = files, location
        checked = [rows_of_checked_file(f) for f in files]
        self.rows_per_file = [rows for rows, _ in checked]
        columns = {column for _, column in checked}
        if len(columns) > 1:
            raise DataError(f"{location}: some files label their rows by 'label', others by 'wnid'")
        self.column = columns.pop()
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
                yield from records_from_arrow(parquet_stream(f), f, rows[lo:hi], ordinals[lo:hi], first,
                                              column=self.column)

    def describe(self) -> str:
        return describe(self)

    @functools.cached_property
    def _labels(self) -> frozenset:
        import pyarrow.parquet as pq

        values = {v for f in self.files for v in pq.read_table(f, columns=[self.column]).column(0).to_pylist()}
        if self.column == "wnid":
            return frozenset(wnid_index()[v] for v in values if v in wnid_index())
        return frozenset(int(v) for v in values if v is not None)

    def labels(self) -> frozenset:
        """The class indices of every row (the label column alone is read, once), unknown wnids left out."""
        return self._labels


def rows_of_checked_file(file: str) -> tuple[int, str]:
    """(row count, label column) of a parquet file with columns image and an integer label (or string wnid),
    or a DataError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(file)
        rows = pq.ParquetFile(file).metadata.num_rows
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"cannot read parquet file {file}: {err}") from err
    column = label_column(schema.names)
    if "image" not in schema.names or column is None:
        missing = sorted({"image"} - set(schema.names)) + ([] if column else ["label"])
        raise DataError(f"{file} lacks column(s) {missing}; expected 'image' and 'label' (or 'wnid')")
    label_type = schema.field(column).type
    if column == "wnid" and not (pa.types.is_string(label_type) or pa.types.is_large_string(label_type)):
        raise DataError(f"{file}: column 'wnid' holds {label_type}, expected ImageNet synset ids (strings)")
    if column == "label" and not (pa.types.is_integer(label_type) or pa.types.is_dictionary(label_type)):
        raise DataError(f"{file}: column 'label' holds {label_type}, expected integer ImageNet-1k class indices")
    return rows, column


def parquet_stream(file: str):
    import datasets

    stream = datasets.load_dataset("parquet", data_files=[file], split="train", streaming=True)
    return stream.cast_column("image", datasets.Image(decode=False))
