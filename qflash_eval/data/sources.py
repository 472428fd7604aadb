"""--data to a source: `hub:ID`, `parquet:PATH` (a file, a folder of them or a glob), `folder:PATH`, or the
kind guessed from the string (a glob or .parquet file or a folder holding parquet: parquet; another folder:
folder; a hub-like id that is no local path: hub)."""
from __future__ import annotations

import glob
import pathlib
import re
from typing import Optional

from .base import DataError, ImageSource, check_num_samples
from .folder import FolderSource
from .hub_stream import HubSource
from .parquet import ParquetSource

HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
PREFIXES = ("hub", "parquet", "folder")


def open_source(data: str, split: str = "validation", limit: Optional[int] = None,
                class_map: Optional[dict] = None) -> ImageSource:
    """The source --data names; `limit`: evaluate that many images, evenly spaced over it; `class_map`
    (--class-map, folders only): the folder's class names to the model's class indices."""
    check_num_samples(limit, None, data)
    if class_map is not None:
        return _folder(data.removeprefix("folder:"), limit, class_map)
    kind, _, rest = data.partition(":")
    if kind in PREFIXES and rest:
        return {"hub": lambda: _hub(rest, split, limit), "parquet": lambda: _parquet(rest, limit, True),
                "folder": lambda: _folder(rest, limit)}[kind]()
    path = pathlib.Path(data).expanduser()
    if any(ch in data for ch in "*?[") and glob.glob(data):
        return _parquet(data, limit, True)
    if path.is_file():
        if path.suffix != ".parquet":
            raise DataError(f"{path} is a file but not .parquet; pass a folder of images or parquet files")
        return _parquet(data, limit, True)
    if path.is_dir():
        return _parquet(data, limit, False) or FolderSource(path, limit)
    if data.startswith((".", "/", "~")) or not HUB_ID.match(data):
        raise DataError(f"data path does not exist: {data}")
    return HubSource(data, split, limit)


def _parquet(location: str, limit: Optional[int], required: bool) -> Optional[ParquetSource]:
    """The parquet files of a glob, a file or a folder; None (or, when required, an error) if there are none."""
    path = pathlib.Path(location).expanduser()
    if path.is_file():
        files = [str(path)]
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
    else:
        files = sorted(glob.glob(location)) if any(ch in location for ch in "*?[") else []
    if not files:
        if required:
            raise DataError(f"parquet:{location}: no parquet file there")
        return None
    return ParquetSource(files, str(path) if path.exists() else location, limit)


def _hub(dataset_id: str, split: str, limit: Optional[int]) -> HubSource:
    if not HUB_ID.match(dataset_id):
        raise DataError(f"hub:{dataset_id} is not a hub dataset id (owner/name); for local files use parquet: or "
                        "folder:")
    return HubSource(dataset_id, split, limit)


def _folder(location: str, limit: Optional[int], class_map: Optional[dict] = None) -> FolderSource:
    path = pathlib.Path(location).expanduser()
    if not path.is_dir():
        raise DataError(f"folder:{location}: no such folder" + (
            " (--class-map applies to folders of images; parquet and hub sets carry class indices)"
            if class_map is not None else ""))
    return FolderSource(path, limit, class_map)
