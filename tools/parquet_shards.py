"""Write ImageNet rows (encoded image bytes, class index) as parquet shards in the hub's layout.

python -m tools.parquet_shards SOURCE OUT_DIR --shards 3
packs a local image folder (any layout eval.py reads) into OUT_DIR/validation-0000i-of-0000n.parquet,
byte for byte: the JPEGs are not re-encoded, so a parquet run sees exactly the folder's pixels. Each row keeps
its file's name as the image's `path`, as the hub's ImageNet does (ReaL scoring reads ILSVRC2012_val_ names).
"""
from __future__ import annotations

import argparse
import pathlib
from typing import Iterable, Sequence


def write_shards(out: pathlib.Path, rows: Sequence[tuple], shards: int) -> list[pathlib.Path]:
    """Split rows (image bytes, label[, file name]) in order into `shards` files of near-equal length."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if shards < 1:
        raise ValueError("shards must be >= 1")
    out.mkdir(parents=True, exist_ok=True)
    per = -(-len(rows) // shards)
    paths = []
    for s in range(shards):
        part = rows[s * per:(s + 1) * per]
        table = pa.Table.from_pylist([{"image": {"bytes": row[0], "path": row[2] if len(row) > 2 else None},
                                       "label": int(row[1])} for row in part])
        path = out / f"validation-{s:05d}-of-{shards:05d}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    return paths


def folder_rows(source: str) -> Iterable[tuple[bytes, int, str]]:
    from qflash_eval.data import open_source

    for record in open_source(source).records():
        payload = record.payload
        yield ((payload.read_bytes() if isinstance(payload, pathlib.Path) else payload), record.label,
               pathlib.PurePath(record.name).name)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="a local image folder (wnid sub-folders, wnid-prefixed names, or labels.txt)")
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--shards", type=int, default=3)
    args = p.parse_args(argv)
    for path in write_shards(args.out, list(folder_rows(args.source)), args.shards):
        print(path)


if __name__ == "__main__":
    main()
