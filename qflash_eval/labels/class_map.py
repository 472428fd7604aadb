"""--class-map FILE, as timm's validate.py reads it: the class names of a folder's sub-folders (or of its
labels.txt) mapped to the model's class indices. A line is '<name>' (its index is its line number, counted
from 0, as timm does) or '<name> <index>'."""
from __future__ import annotations

import pathlib


def load_class_map(path: str) -> dict[str, int]:
    """{class name: model class index} from FILE, or a ValueError naming the file and the line."""
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"--class-map {path}: no such file")
    mapping: dict[str, int] = {}
    lines = [line.strip() for line in file.read_text().splitlines()]
    for line_no, line in enumerate(lines):
        if not line:
            raise ValueError(f"--class-map {path}:{line_no + 1}: empty line (a line's number is its class index)")
        name, _, index = line.rpartition(" ")
        if not name or not index.isdigit():  # one name a line: the index is the line number
            name, index = line, str(line_no)
        if name in mapping:
            raise ValueError(f"--class-map {path}:{line_no + 1}: class {name!r} is mapped twice")
        mapping[name] = int(index)
    if not mapping:
        raise ValueError(f"--class-map {path}: the file is empty")
    return mapping
