"""A local folder of images: ImageNet val layout (wnid sub-folders: also ImageNet-Sketch, -R, -A), sub-folders
named by class index 0-999 (ImageNet-V2), file names that start with the wnid, or a labels.txt ('<file> <class
index or wnid>', every file once). Needs no `datasets`."""
from __future__ import annotations

import pathlib
import re
from typing import Callable, Iterator, Optional

from .base import DataError, Record, Selection, describe, indices

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
WNID = re.compile(r"^n\d{8}")
CLASS_INDEX_DIR = re.compile(r"^(\d{1,3})$")


def imagenet_wnids() -> list[str]:
    from timm.data import ImageNetInfo

    wnids = list(ImageNetInfo("imagenet-1k").label_names())
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise RuntimeError("timm's ImageNet-1k synset list is not the sorted 1000 wnids")
    return wnids


class FolderSource:
    kind = "folder"
    split = None

    def __init__(self, root: pathlib.Path, limit: Optional[int] = None, class_map: Optional[dict] = None):
        class_index = class_map or {w: i for i, w in enumerate(imagenet_wnids())}
        labels_file = root / "labels.txt"
        items = (items_from_labels_file(labels_file, class_index, mapped=class_map is not None) if labels_file.is_file()
                 else items_from_names(root, class_index, mapped=class_map is not None))
        if not items:
            raise DataError(f"no images found in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        selection = Selection.of(len(items), limit, str(root))
        self.location = str(root)
        self.all_labels = {label for _, label in items}
        self.items = [items[p] for p in selection.rows(list(range(selection.count)))]
        self.size, self.source_size, self.selection = len(self.items), len(items), selection.describe()

    def records(self, wanted: Optional[range] = None, keep: Optional[Callable[[int], bool]] = None) -> Iterator[Record]:
        for i in indices(wanted, self.size, keep):
            file, label = self.items[i]
            yield Record(i, str(file), file, label)

    def describe(self) -> str:
        return describe(self)

    def labels(self) -> set:
        """The classes of every image of the folder (not only the selected ones)."""
        return self.all_labels


def items_from_labels_file(labels_file: pathlib.Path, class_index: dict,
                           mapped: bool = False) -> list[tuple[pathlib.Path, int]]:
    """'<file name> <class index or wnid>' per line; every file must exist, once."""
    root = labels_file.parent
    items, first_line, missing = [], {}, []
    for line_no, line in enumerate(labels_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, _, label = line.strip().rpartition(" ")
        where = f"{labels_file}:{line_no}"
        if not name:
            raise DataError(f"{where}: expected '<file> <label>'")
        if name in first_line:
            raise DataError(f"{where}: {name} is listed again (first on line {first_line[name]})")
        first_line[name] = line_no
        file = root / name
        if not file.is_file():
            missing.append(f"{name} (line {line_no})")
        items.append((file, label_of(label, class_index, where, mapped)))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{labels_file} lists {len(missing)} file(s) that do not exist in {root}: {shown}")
    return items


def items_from_names(root: pathlib.Path, class_index: dict, mapped: bool = False) -> list[tuple[pathlib.Path, int]]:
    items = []
    for file in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = file.relative_to(root)
        if mapped:  # --class-map: the sub-folder's name is the class
            if len(rel.parts) < 2 or rel.parts[0] not in class_index:
                raise DataError(f"{file}: --class-map maps no class {rel.parts[0] if len(rel.parts) > 1 else '(none)'!r}"
                                " (it maps the names of the folder's sub-folders)")
            items.append((file, class_index[rel.parts[0]]))
            continue
        if len(rel.parts) > 1 and CLASS_INDEX_DIR.match(rel.parts[0]):  # ImageNet-V2: folders 0..999
            items.append((file, label_of(rel.parts[0], class_index, str(file))))
            continue
        wnid_dir = rel.parts[0] if len(rel.parts) > 1 and WNID.match(rel.parts[0]) else None
        match = WNID.match(wnid_dir or file.name)
        if not match:
            raise DataError(
                f"cannot tell the class of {file}: use wnid sub-folders (ImageNet val layout), class-index sub-folders "
                "(ImageNet-V2), "
                "file names starting with the wnid, or a labels.txt ('<file> <label>') in the folder"
            )
        items.append((file, label_of(match.group(0), class_index, str(file))))
    return items


def label_of(token: str, class_index: dict, where: str, mapped: bool = False) -> int:
    if token in class_index:
        return class_index[token]
    if mapped:  # a --class-map: its names alone
        raise DataError(f"{where}: --class-map maps no class {token!r}")
    if token.isdigit() and 0 <= int(token) < 1000:
        return int(token)
    raise DataError(f"{where}: {token!r} is neither an ImageNet-1k wnid nor a class index 0-999")
