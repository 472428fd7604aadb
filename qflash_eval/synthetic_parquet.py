"""Write a synthetic ImageNet-like parquet set (JPEGs of ImageNet sizes, random labels) for throughput runs.

python -m qflash_eval.synthetic_parquet OUT_DIR --images 5000 --shards 3 [--size 500x375]
Columns: image {bytes, path} and label (0-999), the layout of the hub's ILSVRC/imagenet-1k parquet files.
Pictures are smooth random colour fields plus noise, so JPEG sizes and decode cost resemble photos.
"""
from __future__ import annotations

import argparse
import io
import pathlib

import numpy as np
from PIL import Image


def synthetic_jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    coarse = rng.integers(0, 256, size=(height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(img, dtype=np.int16) + rng.integers(-20, 21, size=(height, width, 3))
    buf = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write(out: pathlib.Path, images: int, shards: int, width: int, height: int, seed: int = 0) -> list[pathlib.Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = -(-images // shards)
    paths = []
    for s in range(shards):
        count = min(per, images - s * per)
        rows = [{"image": {"bytes": synthetic_jpeg(rng, width, height), "path": None},
                 "label": int(rng.integers(0, 1000))} for _ in range(max(count, 0))]
        path = out / f"validation-{s:05d}-of-{shards:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        paths.append(path)
    return paths


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--size", default="500x375")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    for path in write(args.out, args.images, args.shards, width, height):
        print(path)


if __name__ == "__main__":
    main()
