"""Calibration images disjoint from the evaluated ones: the evaluation takes --num-samples images evenly
spaced over the source (image floor(i * size / N)); calibration takes `count` images evenly spaced over the
images it leaves out."""
from __future__ import annotations

from typing import Optional

import torch

from ..data import DataError, open_source
from ..data.base import Selection
from ..data.loader import decode_rgb


def calibration_positions(size: int, num_samples: Optional[int], count: int) -> list[int]:
    """Source positions of `count` calibration images, none of them among the evaluated ones."""
    evaluated = set(Selection(size, num_samples).positions or range(size))
    rest = [i for i in range(size) if i not in evaluated]
    if not rest:
        raise DataError(f"choosing float layers needs calibration images that are not evaluated: pass --num-samples "
                        f"below the source's {size} images")
    count = min(count, len(rest))
    return [rest[i * len(rest) // count] for i in range(count)]


def calibration_images(data: str, split: str, num_samples: Optional[int], count: int, transform):
    """(images (count, 3, H, W), their source positions) for `transform`, decoded in order."""
    source = open_source(data, split, None)
    if source.size is None:
        raise DataError(f"{data}: a stream of unknown length cannot set calibration images apart; use a folder or "
                        "parquet files")
    positions = calibration_positions(source.size, num_samples, count)
    wanted = set(positions)
    images = []
    for record in source.records(keep=wanted.__contains__):
        if record.error:
            raise DataError(f"calibration image {record.name}: {record.error}")
        images.append(transform(decode_rgb(record)))
    return torch.stack(images), positions
