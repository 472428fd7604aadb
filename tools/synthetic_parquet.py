"""Write a synthetic ImageNet-like parquet set (JPEGs of ImageNet sizes, random labels) for throughput runs.

python -m tools.synthetic_parquet OUT_DIR --images 5000 --shards 3 [--size 500x375] [--jobs 8]
Columns: image {bytes, path} and label (0-999), the layout of the hub's ILSVRC/imagenet-1k parquet files.
Pictures are smooth random colour fields plus noise, so JPEG sizes and decode cost resemble photos.
"""
from __future__ import annotations

import argparse
import io
import pathlib

import numpy as np
from PIL import Image

from tools.parquet_shards import write_shards


def synthetic_jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    coarse = rng.integers(0, 256, size=(height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(img, dtype=np.int16) + rng.integers(-20, 21, size=(height, width, 3))
    buf = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write(out: pathlib.Path, images: int, shards: int, width: int, height: int, seed: int = 0,
          jobs: int = 1) -> list[pathlib.Path]:
    # one seed per image: the set does not depend on how many processes encode it
    seeds = np.random.SeedSequence(seed).spawn(images)
    work = [(s, width, height) for s in seeds]
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            rows = pool.map(_one_row, work, chunksize=16)
    else:
        rows = [_one_row(w) for w in work]
    return write_shards(out, rows, shards)


def _one_row(work) -> tuple[bytes, int]:
    seed, width, height = work
    rng = np.random.default_rng(seed)
    return synthetic_jpeg(rng, width, height), int(rng.integers(0, 1000))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--size", default="500x375")
    p.add_argument("--jobs", type=int, default=1, help="encoding processes")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    for path in write(args.out, args.images, args.shards, width, height, jobs=args.jobs):
        print(path)


if __name__ == "__main__":
    main()
