"""ReaL Top-1 / Top-5 per mode: a prediction is right when it is among the image's ReaL labels; images whose
ReaL list is empty are left out (as the ReaL paper does). An image's entry is found by its validation index,
read from its ILSVRC2012_val_######## file name (a folder's file, or the name a parquet or hub row keeps with its
image, as ILSVRC/imagenet-1k does), so any subset can be scored (timm's own ReaL scorer needs all 50 000 images).

--real-labels auto (default): scored wherever every evaluated image is so named, and the report says whether it
applied; off: never; on or FILE (a JSON list of 50 000 label lists, default timm's imagenet_real_labels.json):
required, and a source whose images are not so named stops before the model is loaded."""
from __future__ import annotations

import functools
import json
import pathlib
import re
from typing import Optional

REAL_SETTINGS = ("auto", "off", "on")  # or a FILE
VAL_IMAGES = 50000
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})")


def timm_real_labels_file() -> pathlib.Path:
    import timm

    return pathlib.Path(timm.__file__).parent / "data" / "_info" / "imagenet_real_labels.json"


@functools.lru_cache(maxsize=4)
def load_real_labels(path: str) -> tuple:
    """The ReaL label lists, one per validation image (index 0 = ILSVRC2012_val_00000001)."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--real-labels {path}: no such file")
    try:
        lists = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"--real-labels {path}: not JSON ({err})") from None
    if (not isinstance(lists, list) or len(lists) != VAL_IMAGES
            or not all(isinstance(x, list) and all(isinstance(c, int) and 0 <= c < 1000 for c in x) for x in lists)):
        raise ValueError(f"--real-labels {path}: expected a JSON list of {VAL_IMAGES} lists of class indices 0-999")
    return tuple(frozenset(x) for x in lists)


def val_index(name: str) -> Optional[int]:
    """0-based validation index of an ILSVRC2012_val_######## file name, None for any other name."""
    m = _VAL_NAME.search(pathlib.PurePath(name).name)
    if not m or not 1 <= int(m.group(1)) <= VAL_IMAGES:
        return None
    return int(m.group(1)) - 1


def _file_of(setting: str) -> Optional[str]:
    if setting == "off":
        return None
    return str(timm_real_labels_file()) if setting in ("auto", "on") else setting


def check_real_labels_apply(setting: str, source) -> None:
    """An explicit --real-labels (on or FILE) on a source whose first image has no validation index stops here,
    before the model is loaded; the file is read (and checked) now too."""
    if setting in ("auto", "off"):
        return
    load_real_labels(_file_of(setting))
    first = next(iter(source.records(range(0, 1))), None) if source.size != 0 else None
    if first is not None and val_index(first.name) is None:
        raise ValueError(f"--real-labels {setting}: {source.describe()} names its images like {first.name!r}, not "
                         "ILSVRC2012_val_########; ReaL labels are found by that index (pass --real-labels off)")


def real_labels_section(setting: str, modes: list[str], rows) -> tuple[Optional[dict], dict]:
    """(the report's real_labels section, {mode: {real_top1, real_top5}}) for the evaluated outcomes."""
    path = _file_of(setting)
    if path is None:
        return {"applied": False, "why": "--real-labels off"}, {}
    indices = [val_index(r.name) for r in rows]
    if not rows or any(i is None for i in indices):
        named = sum(i is not None for i in indices)
        return {"applied": False, "why": f"{named} of {len(rows)} images named ILSVRC2012_val_########"}, {}
    real = load_real_labels(path)
    scored = [(r, real[i]) for r, i in zip(rows, indices) if real[i]]
    per_mode = {}
    for j, mode in enumerate(modes):
        top1 = sum(r.top1[j] in labels for r, labels in scored)
        top5 = sum(bool(labels.intersection(r.top5[j])) for r, labels in scored)
        n = len(scored)
        per_mode[mode] = {"real_top1": round(100.0 * top1 / n, 3) if n else None,
                          "real_top5": round(100.0 * top5 / n, 3) if n else None}
    return {"applied": True, "file": path, "scored": len(scored), "left_out_empty": len(rows) - len(scored),
            "rule": "right when the prediction is among the image's ReaL labels; empty label lists left out"}, per_mode
